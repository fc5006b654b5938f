"""Region captioners: a visual prefix (DAM localized backbone or SCA mixer) + an `LMHead`.

`CaptionerConfig` names the architecture; `build_captioner` wires it from configs (tiny presets
on a CPU, or real checkpoints by path: ``vision_path`` / ``lm_path`` / ``sam_checkpoint``);
`RegionCaptioner.save_pretrained` / `from_pretrained` use safetensors + JSON only.

Batches (`collate`): DAM — ``full_image``, ``full_mask``, ``crop_image``, ``crop_mask`` as made by
`regionlib.focal.focal_prompt`; SCA — ``image_embedding`` ``(B, C, h, w)`` from SAM and either
``boxes`` ``(B, 4)`` or ``points`` / ``point_labels`` in SAM's input frame; both with ``captions``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError, RegionLibError
from .dam import LocalizedBackbone
from .lm_head import LMHead

__all__ = ["CaptionerConfig", "RegionCaptioner", "build_captioner", "collate", "DAM_PROMPT"]

DAM_PROMPT = "Describe the masked region in detail."


@dataclass(frozen=True)
class CaptionerConfig:
    kind: str = "dam"                      # "dam" | "sca"
    variant: str = "full+focal-xattn"      # DAM prompting variant (models.dam.VARIANTS)
    gated: bool = True
    image_size: int = 64                   # vision encoder input size S (DAM)
    patch_size: int = 8
    vision_width: int = 64
    vision_depth: int = 3
    vision_heads: int = 4
    lm_width: int = 64
    lm_depth: int = 2
    lm_heads: int = 4
    prompt: str = DAM_PROMPT
    freeze_lm: bool = False
    sam_preset: str = "tiny"
    sca_queries: int = 8
    sca_mixer_depth: int = 2
    sca_task_tokens: int = 6
    sca_mixer_inputs: str = "queries+sam"
    vision_path: str | None = None         # a transformers vision checkpoint (SigLIP / CLIP / ViT)
    lm_path: str | None = None             # a transformers causal-LM checkpoint
    sam_checkpoint: str | None = None
    extra: dict = field(default_factory=dict)


class RegionCaptioner(nn.Module):
    """``prefix(batch)`` -> visual tokens in the LM's width; ``loss`` / ``generate`` / ``stream`` through `LMHead`."""

    def __init__(self, config: CaptionerConfig, encoder: nn.Module, lm_head: LMHead, projector: nn.Module | None):
        super().__init__()
        self.config, self.encoder, self.lm_head, self.projector = config, encoder, lm_head, projector

    def prefix(self, batch: dict) -> torch.Tensor:
        if self.config.kind == "dam":
            feats = self.encoder(batch["full_image"], batch["full_mask"], batch["crop_image"], batch["crop_mask"])
            return self.projector(feats)
        points = None
        if batch.get("points") is not None:
            points = (batch["points"], batch["point_labels"])
        return self.encoder(batch["image_embedding"], boxes=batch.get("boxes"), points=points)

    def loss(self, batch: dict, *, label_smoothing: float = 0.0) -> torch.Tensor:
        return self.lm_head.loss(self.prefix(batch), batch["captions"], label_smoothing=label_smoothing)

    def forward(self, batch: dict, label_smoothing: float = 0.0) -> torch.Tensor:
        """The training loss (so DistributedDataParallel can wrap the captioner)."""
        return self.loss(batch, label_smoothing=label_smoothing)

    def generate(self, batch: dict, **kwargs) -> list[str]:
        self.eval()
        with torch.no_grad():
            return self.lm_head.generate(self.prefix(batch), **kwargs)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        save_model(self, str(d / "model.safetensors"))  # handles tied / aliased tensors
        self.lm_head.tokenizer.save_pretrained(str(d / "tokenizer"))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "RegionCaptioner":
        from safetensors.torch import load_model
        from transformers import PreTrainedTokenizerFast

        d = Path(directory)
        if (d / "model.safetensors").exists() is False:
            pickles = list(d.glob("*.bin")) + list(d.glob("*.pt")) + list(d.glob("*.pth"))
            raise CheckpointError(f"{d}: no model.safetensors" + (f" (refusing pickle files {pickles})" if pickles else ""))
        config = CaptionerConfig(**json.loads((d / "config.json").read_text()))
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(d / "tokenizer"))
        model = build_captioner(config, tokenizer)
        try:
            load_model(model, str(d / "model.safetensors"), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{d}: weights disagree with config.json ({exc})") from exc
        return model


def _vision(config: CaptionerConfig):
    from transformers import AutoModel, ViTConfig, ViTModel

    if config.vision_path:
        model = AutoModel.from_pretrained(config.vision_path)
        return getattr(model, "vision_model", model) if hasattr(model, "text_model") else model
    return ViTModel(ViTConfig(image_size=config.image_size, patch_size=config.patch_size, hidden_size=config.vision_width,
                              num_hidden_layers=config.vision_depth, num_attention_heads=config.vision_heads,
                              intermediate_size=4 * config.vision_width), add_pooling_layer=False)


def _lm(config: CaptionerConfig, tokenizer):
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    if config.lm_path:
        return AutoModelForCausalLM.from_pretrained(config.lm_path)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=config.lm_width, n_layer=config.lm_depth,
                                      n_head=config.lm_heads, n_positions=256, bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id))


def build_captioner(config: CaptionerConfig, tokenizer, *, seed: int = 0) -> RegionCaptioner:
    """Wire a `RegionCaptioner` from ``config`` (random init for the parts without a path)."""
    if config.kind not in ("dam", "sca"):
        raise ConfigError(f"kind must be 'dam' or 'sca', got {config.kind!r}")
    torch.manual_seed(seed)
    lm_head = LMHead(_lm(config, tokenizer), tokenizer, prompt=config.prompt, freeze=config.freeze_lm)
    if config.kind == "dam":
        backbone = LocalizedBackbone(_vision(config), variant=config.variant, gated=config.gated)
        width = backbone.width
        projector = nn.Sequential(nn.Linear(width, lm_head.width), nn.GELU(), nn.Linear(lm_head.width, lm_head.width))
        return RegionCaptioner(config, backbone, lm_head, projector)
    from ..sam import build_sam
    from .sca import SCAMixer

    sam = build_sam(config.sam_preset, checkpoint=config.sam_checkpoint, seed=seed)
    dim = sam.prompt_encoder.embed_dim
    mixer = SCAMixer(sam, lm_head.width, num_queries=config.sca_queries, mixer_depth=config.sca_mixer_depth,
                     num_task_tokens=config.sca_task_tokens, mixer_heads=max(1, dim // 16), mixer_mlp_dim=4 * dim,
                     mixer_inputs=config.sca_mixer_inputs)
    return RegionCaptioner(config, mixer, lm_head, None)


def collate(examples: Sequence[dict], *, device: torch.device | str = "cpu") -> dict:
    """Stack per-region example dicts (tensors stacked, ``captions`` listed)."""
    if not examples:
        raise RegionLibError("collate needs at least one example")
    out = {"captions": [e["caption"] for e in examples]}
    for key in examples[0]:
        if key == "caption" or not isinstance(examples[0][key], torch.Tensor):
            continue
        out[key] = torch.stack([e[key] for e in examples]).to(device)
    return out
