"""Named presets in one registry and `create_model` (the timm / open_clip pattern).

``tiny-*`` presets run on a CPU in seconds: a 3-block 64-d ViT at 64 px (patch 8), a 2-layer
64-d GPT-2 (or Llama) with a word-level tokenizer trained here on `BUILTIN_CORPUS`, the tiny SAM.
Paper-size presets describe the real architectures; their weights come from paths
(``vision.path``, ``lm.path``, ``sam_checkpoint``) on the user's machine, and without paths they
build random-init (e.g. on the meta device, ``create_model(name, device="meta")``, to count
parameters and FLOPs without memory).

Real checkpoints: ``vision__path`` is read with ``AutoConfig`` (SigLIP, CLIP — also a full CLIP /
SigLIP model directory —, DINOv2, ViT: whatever its ``config.json`` says; the preset's vision sizes
are then ignored), ``lm__path`` with ``AutoModelForCausalLM`` and its own ``AutoTokenizer`` (the
built-in word tokenizer is for tiny presets only), ``sam_checkpoint`` with segment-anything's
state-dict layout. Weights that do not load are a `CheckpointError`, never a random init.

Overrides: any config field by name (``variant="full"``), nested fields with a double underscore
(``lm__freeze=True``, ``vision__path="/ckpt/siglip"``), or whole sub-configs (``lm=LMConfig(...)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable

import torch

from ..errors import CheckpointError, ConfigError
from .checkpoint import MODEL_KINDS, RegionModel
from .dam import DAMConfig, vila_v1_prompt
from .lm_head import LMConfig
from .pooled_captioner import PooledCaptionerConfig
from .ras import RASConfig
from .sca import SCAConfig
from .tokenizer import builtin_tokenizer
from .vision import VisionConfig

__all__ = ["Preset", "PRESETS", "register_preset", "create_model", "list_presets", "preset_config"]


@dataclass(frozen=True)
class Preset:
    kind: str  # a key of checkpoint.MODEL_KINDS: "dam" | "sca" | "ras" | "pooled"
    config: object
    description: str = ""


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, kind: str, config, description: str = "") -> None:
    if name in PRESETS:
        raise ConfigError(f"preset {name!r} is already registered")
    PRESETS[name] = Preset(kind, config, description)


_TINY_SCA_LM = LMConfig(template="{visual}", freeze=False, label_smoothing=0.0, max_target_tokens=20)
_TINY_SCA = SCAConfig(sam_preset="tiny", lm=_TINY_SCA_LM, num_queries=8, mixer_depth=2, mixer_heads=2,
                      mixer_mlp_dim=64, num_task_tokens=6)

for _name, _variant in (("tiny-dam", "full+focal-crop-xattn"), ("tiny-dam-full", "full"),
                        ("tiny-dam-local-crop", "local-crop"), ("tiny-dam-focal-crop", "focal-crop"),
                        ("tiny-dam-concat", "full+local-crop-concat"), ("tiny-dam-local-xattn", "full+local-crop-xattn")):
    register_preset(_name, "dam", DAMConfig(variant=_variant), f"DAM {_variant} (seed 003 Tab. 8), 64-px ViT + 2-layer GPT-2")
register_preset("tiny-dam-siglip", "dam", DAMConfig(vision=VisionConfig(arch="siglip")), "DAM over a tiny SigLIP")
register_preset("tiny-dam-clip", "dam", DAMConfig(vision=VisionConfig(arch="clip")), "DAM over a tiny CLIP ViT")
register_preset("tiny-dam-dinov2", "dam", DAMConfig(vision=VisionConfig(arch="dinov2")), "DAM over a tiny DINOv2")
register_preset("tiny-dam-llama", "dam", DAMConfig(lm=LMConfig(arch="llama")), "DAM with a tiny Llama LM")
register_preset("tiny-sca", "sca", _TINY_SCA, "SCA over the tiny SAM (LM trainable for CPU tests)")
register_preset("tiny-sca-raw-tokens", "sca", dataclasses.replace(_TINY_SCA, mixer_inputs="queries+raw-tokens"),
                "SCA ablation: queries without SAM-encoded tokens (seed 000 App. I.3)")
register_preset("tiny-sca-direct", "sca", dataclasses.replace(_TINY_SCA, mixer_inputs="sam-tokens"),
                "SCA ablation: direct decoding of SAM's mask tokens (App. I.2)")
register_preset("tiny-sca-roi", "sca", dataclasses.replace(_TINY_SCA, mixer_inputs="roi-align"),
                "SCA ablation: ROI-align + projection (App. I.1)")
register_preset("tiny-ras", "ras", RASConfig(), "RAS mask tokens + selection head, tiny ViT + GPT-2")
register_preset("tiny-ras-2enc", "ras", RASConfig(encoders=(VisionConfig(), VisionConfig(arch="siglip", patch_size=16,
                                                                                          width=32, depth=2, heads=2))),
                "RAS pooling from two encoders")
register_preset("tiny-pooled", "pooled", PooledCaptionerConfig(), "mask-pooled captioner (seed 002 'pool'), tiny")

# paper-size architectures: weights by path; without paths they build random-init (use device="meta")
_SIGLIP_SO400M = VisionConfig(arch="siglip", image_size=384, patch_size=14, width=1152, depth=27, heads=16,
                              intermediate=4304)
register_preset("dam-3b", "dam", DAMConfig(
    vision=_SIGLIP_SO400M,
    lm=LMConfig(arch="llama", width=2560, depth=32, heads=20, intermediate=6912, vocab_size=32000, max_positions=4096,
                template=vila_v1_prompt()),
    adapter="released", projector="mlp_downsample", preprocess="pil", conversation="vila_v1"),
    "DAM-3B's released architecture (SigLIP so400m-384, released adapters, mlp_downsample -> 196 tokens, VILA v1 "
    "prompt, a 2.7B Llama of VILA1.5-3B's Sheared-LLaMA shape); the released weights open with "
    "RegionModel.from_pretrained(path)")
register_preset("sca-gpt2-large", "sca", SCAConfig(
    sam_preset="vit_h",
    lm=LMConfig(arch="gpt2", width=1280, depth=36, heads=20, vocab_size=50257, max_positions=1024, template="{visual}",
                freeze=True, label_smoothing=0.1, max_target_tokens=20)),
    "SCA paper config: SAM ViT-H, 8 queries, 12 mixer layers, 6 task tokens, frozen GPT2-large")


def list_presets() -> list[str]:
    return sorted(PRESETS)


def _apply_overrides(config, overrides: dict, name: str):
    fields = {f.name: f for f in dataclasses.fields(config)}
    direct, nested = {}, {}
    for key, value in overrides.items():
        head, _, rest = key.partition("__")
        if head not in fields:
            raise ConfigError(f"preset {name!r}: unknown config field {key!r}; fields are {sorted(fields)}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[key] = value
    for head, sub in nested.items():
        base = direct.get(head, getattr(config, head))
        if not dataclasses.is_dataclass(base):
            raise ConfigError(f"preset {name!r}: field {head!r} has no sub-fields")
        direct[head] = _apply_overrides(base, sub, name)
    return dataclasses.replace(config, **direct)


def preset_config(name: str, **overrides):
    """``(kind, config)`` of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {list_presets()}")
    preset = PRESETS[name]
    return preset.kind, _apply_overrides(preset.config, overrides, name)


def create_model(name: str, *, tokenizer=None, tokenizer_texts: Iterable[str] = (), seed: int = 0,
                 load_weights: bool = True, device: str | torch.device | None = None, base: str | None = None,
                 **overrides) -> RegionModel:
    """Build preset ``name`` (random parts seeded by ``seed``) with config ``overrides``.

    Args:
        base: start from a pretrained base (`regionlib.models.bases`): ``"regionworld"`` (shipped) or a
            base directory. DAM presets take its vision encoder, projector, LM and tokenizer (mask
            embedding and adapters keep their zero init); SCA presets its frozen SAM, LM and tokenizer.
        tokenizer: a transformers tokenizer. Default: the LM path's own (``AutoTokenizer``), else the
            built-in word-level one (tiny presets). With ``lm__path`` an explicit tokenizer must match
            the LM's vocabulary (`CheckpointError` otherwise).
        tokenizer_texts: extra texts the built-in tokenizer is trained on (tiny presets without
            ``lm__path`` and without ``tokenizer``; ignored when the LM brings its own tokenizer).
        load_weights: load weights from the paths named in the config (else their architectures only).
        device: build directly on this device (``"meta"``: no memory, for counting).
    """
    kind, config = preset_config(name, **overrides)
    finish = None
    if base is not None:
        from .bases import apply_base

        config, tokenizer, finish = apply_base(kind, config, base, preset=name, tokenizer=tokenizer,
                                               tokenizer_texts=tuple(tokenizer_texts))
    elif tokenizer is None:
        lm_path = config.lm.path
        if lm_path:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(lm_path)
            except (OSError, ValueError, KeyError) as exc:
                raise CheckpointError(f"lm__path {lm_path!r} has no loadable tokenizer ({exc}); pass the LM's own "
                                      "tokenizer with tokenizer=") from exc
        else:
            tokenizer = builtin_tokenizer(tuple(tokenizer_texts))
    if kind == "dam" and load_weights and base is None and (config.vision.path or config.lm.path):
        import warnings

        warnings.warn(f"{name}: the vision encoder / LM load from their paths, but the projector starts from random "
                      "weights: DAM starts from a VLM whose projector is trained (VILA1.5-3B for DAM-3B, seed 003 "
                      "§3.2). Train it (the dam recipe trains every part) or start from a trained DAM "
                      "(RegionModel.from_pretrained / task.init_from)", stacklevel=2)
    torch.manual_seed(seed)
    builder = MODEL_KINDS[kind].builder
    if device is not None:
        with torch.device(device):
            model = builder(config, tokenizer, load_weights=load_weights)
    else:
        model = builder(config, tokenizer, load_weights=load_weights)
    return finish(model) if finish is not None and load_weights else model
