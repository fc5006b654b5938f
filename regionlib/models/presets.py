"""Named presets (one registry) and `create_model`.

``tiny-*`` presets run on a CPU in seconds (a 3-block 64-d ViT at 64 px, a 2-layer 64-d GPT-2,
the tiny SAM). Paper-size presets describe the real architectures and build from checkpoints by
path (``vision_path``, ``lm_path``, ``sam_checkpoint``) on users' machines.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ConfigError
from .captioner import CaptionerConfig, build_captioner

__all__ = ["PRESETS", "create_model", "regionworld_tokenizer"]

PRESETS: dict[str, CaptionerConfig] = {
    "tiny-dam": CaptionerConfig(kind="dam", variant="full+focal-xattn"),
    "tiny-dam-full": CaptionerConfig(kind="dam", variant="full"),
    "tiny-dam-crop": CaptionerConfig(kind="dam", variant="crop"),
    "tiny-dam-focal": CaptionerConfig(kind="dam", variant="focal"),
    "tiny-dam-concat": CaptionerConfig(kind="dam", variant="full+crop-concat"),
    "tiny-dam-crop-xattn": CaptionerConfig(kind="dam", variant="full+crop-xattn"),
    "tiny-sca": CaptionerConfig(kind="sca", prompt="", sam_preset="tiny", sca_mixer_depth=2),
    # paper-size architectures (weights from paths): DAM-3B-like with SigLIP-384, SCA with GPT2-large
    "dam-siglip": CaptionerConfig(kind="dam", image_size=384, patch_size=14, vision_width=1152, vision_depth=27,
                                  vision_heads=16, lm_width=2560, lm_depth=32, lm_heads=20),
    "sca-gpt2-large": CaptionerConfig(kind="sca", prompt="", sam_preset="vit_h", sca_mixer_depth=12, lm_width=1280,
                                      lm_depth=36, lm_heads=20, freeze_lm=True),
}


def regionworld_tokenizer():
    """The tiny presets' word-level tokenizer, trained on RegionWorld's grammar and DAM's prompt."""
    from ..data.regionworld import VOCABULARY
    from .captioner import DAM_PROMPT
    from .tokenizer import train_word_tokenizer

    words = [w for values in VOCABULARY.values() for v in values for w in v.split()]
    template = "a with dark outline in the of image , . to left right above below"
    return train_word_tokenizer([" ".join(words), template, DAM_PROMPT])


def create_model(name: str, *, tokenizer=None, seed: int = 0, **overrides):
    """Build the preset ``name`` with field ``overrides`` (tiny presets get the RegionWorld tokenizer)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    unknown = set(overrides) - set(CaptionerConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown config fields {sorted(unknown)}")
    config = replace(PRESETS[name], **overrides)
    if tokenizer is None:
        if not name.startswith("tiny") and config.lm_path:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(config.lm_path)
        else:
            tokenizer = regionworld_tokenizer()
    return build_captioner(config, tokenizer, seed=seed)
