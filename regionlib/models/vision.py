"""Vision transformers from transformers (SigLIP, CLIP, ViT) and uniform access to their parts.

`build_vision_encoder` returns ``SiglipVisionModel`` / ``CLIPVisionModel`` / ``ViTModel`` — from a
checkpoint path (real weights) or built from `VisionConfig` fields (random init, tiny presets).
`VisionParts` exposes what the DAM backbone and the feature extractors need: the patch
embedding module, the pre-norm (CLIP's ``pre_layrnorm``), the list of blocks, and how many
prefix (CLS) tokens precede the patch tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError

__all__ = ["VisionConfig", "VisionParts", "build_vision_encoder", "vision_parts", "patch_grid", "NORMALISATION"]

# (mean, std) of each family's image processor
NORMALISATION = {
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


@dataclass(frozen=True)
class VisionConfig:
    """A vision transformer: ``arch`` in {"siglip", "clip", "vit"}, from ``path`` or these fields."""

    arch: str = "vit"
    path: str | None = None
    image_size: int = 64
    patch_size: int = 8
    width: int = 64
    depth: int = 3
    heads: int = 4
    intermediate: int | None = None


def build_vision_encoder(config: VisionConfig, *, load_weights: bool = True) -> nn.Module:
    """The transformers vision model of ``config`` (``load_weights=False``: the path's architecture, random init)."""
    from transformers import (AutoConfig, CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel,
                              ViTConfig, ViTModel)

    classes = {"siglip": (SiglipVisionModel, SiglipVisionConfig), "clip": (CLIPVisionModel, CLIPVisionConfig),
               "vit": (ViTModel, ViTConfig)}
    if config.arch not in classes:
        raise ConfigError(f"VisionConfig.arch must be one of {sorted(classes)}, got {config.arch!r}")
    model_cls, config_cls = classes[config.arch]
    kwargs = {"add_pooling_layer": False} if config.arch == "vit" else {}
    if config.path:
        try:
            if load_weights:
                return model_cls.from_pretrained(config.path, **kwargs)
            cfg = AutoConfig.from_pretrained(config.path)
            cfg = getattr(cfg, "vision_config", cfg)
            return model_cls(cfg, **kwargs)
        except OSError as exc:
            raise CheckpointError(f"VisionConfig.path {config.path!r}: cannot load a {model_cls.__name__} ({exc})") from exc
    cfg = config_cls(image_size=config.image_size, patch_size=config.patch_size, hidden_size=config.width,
                     num_hidden_layers=config.depth, num_attention_heads=config.heads,
                     intermediate_size=config.intermediate or 4 * config.width)
    return model_cls(cfg, **kwargs)


@dataclass
class VisionParts:
    embeddings: nn.Module
    pre_norm: nn.Module
    blocks: nn.ModuleList
    n_prefix: int


def vision_parts(model: nn.Module) -> VisionParts:
    """Parts of a ``ViTModel`` / ``SiglipVisionModel`` / ``CLIPVisionModel`` (transformers 5 layout)."""
    inner = getattr(model, "vision_model", model)
    blocks = getattr(inner, "layers", None)
    if blocks is None:
        blocks = inner.encoder.layers
    emb = inner.embeddings
    n_prefix = 1 if (hasattr(emb, "cls_token") or hasattr(emb, "class_embedding")) else 0
    return VisionParts(emb, getattr(inner, "pre_layrnorm", nn.Identity()), blocks, n_prefix)


def run_block(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """One encoder block (no attention mask) -> ``(B, N, D)``."""
    out = block(h, None)
    return out[0] if isinstance(out, tuple) else out


def patch_grid(model: nn.Module) -> tuple[int, int, int]:
    """(image size, patch size, hidden width) of a vision model's config."""
    cfg = model.config
    return int(cfg.image_size), int(cfg.patch_size), int(cfg.hidden_size)
