"""DAM's localized vision backbone (seed 003 §3.2, eq. 3-7; REFERENCE §1) over a transformers ViT.

``x = E_I(I) + E_M(M) + P``: the mask ``M`` (in {-1, +1}) is embedded by a *mask patch
embedding* ``E_M`` — a conv with kernel = stride = patch size, initialised to zero — and added to
the image patch tokens. The global pass ``f_G`` encodes the full image + mask; the regional pass
``f_R`` reuses the same blocks on the (focal) crop + mask, and after each block a cross-attention
adapter lets the crop tokens attend to the global features of that block (eq. 6-7)::

    h' = h + tanh(gamma) * CrossAttn(h, z);   h_adapter = h' + tanh(beta) * FFN(h')

gamma, beta are per-layer scalars initialised to 0, so with the zero-initialised parts the
backbone equals the base encoder exactly. ``gated=False`` gives the released code's variant
(bare scalars, pre-norm: ``h + a * CA(LN(h))``, ``h + m * MLP(LN(h))``). Features come from
``feature_layer`` (default -2: the second-to-last block's output).

Prompting variants (seed 003 Tab. 8) are values of ``variant``:
``full`` (full image only), ``crop`` / ``focal`` (the crop only, no context),
``full+crop-concat`` (both passes, tokens concatenated, no cross-attention),
``full+crop-xattn`` and ``full+focal-xattn`` (regional tokens with cross-attention — DAM).
Which crop (tight or focal) feeds the regional pass is chosen by the data (`regionlib.focal`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import ConfigError, RegionLibError

__all__ = ["VARIANTS", "CrossAttentionAdapter", "LocalizedBackbone"]

VARIANTS = ("full", "crop", "focal", "full+crop-concat", "full+crop-xattn", "full+focal-xattn")


class CrossAttentionAdapter(nn.Module):
    """Eq. 6-7 (gated, default) or the released pre-norm variant (``gated=False``)."""

    def __init__(self, dim: int, heads: int, *, gated: bool = True, mlp_ratio: float = 4.0):
        super().__init__()
        self.gated = gated
        self.norm_q, self.norm_kv, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.gamma = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """h: ``(B, N, D)`` regional tokens; z: ``(B, M, D)`` global tokens of the same block."""
        g, b = (torch.tanh(self.gamma), torch.tanh(self.beta)) if self.gated else (self.gamma, self.beta)
        q = self.norm_q(h)
        kv = self.norm_kv(z)
        h = h + g * self.attn(q, kv, kv, need_weights=False)[0]
        return h + b * self.ffn(self.norm_ffn(h))


def _vit_parts(model: nn.Module):
    """(embeddings, pre-norm, blocks, n_prefix_tokens) of a ViT / SigLIP / CLIP vision model."""
    inner = getattr(model, "vision_model", model)
    blocks = getattr(inner, "layers", None) or inner.encoder.layers
    pre = getattr(inner, "pre_layrnorm", nn.Identity())
    n_prefix = 1 if hasattr(inner.embeddings, "cls_token") or hasattr(inner.embeddings, "class_embedding") else 0
    return inner.embeddings, pre, blocks, n_prefix


class LocalizedBackbone(nn.Module):
    """Args:
        vision: a transformers vision model (`ViTModel`, `SiglipVisionModel`, `CLIPVisionModel`).
        variant: one of `VARIANTS`.
        gated: tanh-gated adapters (paper) or the released ungated pre-norm ones.
        feature_layer: which block output to return (negative: from the end, -1 = last).
    """

    def __init__(self, vision: nn.Module, *, variant: str = "full+focal-xattn", gated: bool = True, feature_layer: int = -2):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.vision, self.variant = vision, variant
        cfg = vision.config
        self.embeddings, self.pre_norm, self.blocks, self.n_prefix = _vit_parts(vision)
        n = len(self.blocks)
        self.depth = n + feature_layer + 1 if feature_layer < 0 else feature_layer
        if not 1 <= self.depth <= n:
            raise ConfigError(f"feature_layer {feature_layer} out of range for {n} blocks")
        self.mask_embed = nn.Conv2d(1, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        nn.init.zeros_(self.mask_embed.weight)
        nn.init.zeros_(self.mask_embed.bias)
        self.adapters = nn.ModuleList(
            CrossAttentionAdapter(cfg.hidden_size, cfg.num_attention_heads, gated=gated) for _ in range(self.depth)
        ) if variant.endswith("xattn") else None

    @property
    def width(self) -> int:
        return self.vision.config.hidden_size

    def _embed(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.embeddings(image)
        m = self.mask_embed(mask.to(tokens.dtype)).flatten(2).transpose(1, 2)  # (B, N_patches, D)
        tokens = torch.cat([tokens[:, : self.n_prefix], tokens[:, self.n_prefix :] + m], dim=1)
        return self.pre_norm(tokens)

    @staticmethod
    def _block(block, h):
        out = block(h, attention_mask=None)
        return out[0] if isinstance(out, tuple) else out

    def encode(self, image: torch.Tensor, mask: torch.Tensor, context: list[torch.Tensor] | None = None):
        """Run the blocks up to the feature layer; returns (features, per-block outputs)."""
        h = self._embed(image, mask)
        per_block = []
        for i in range(self.depth):
            h = self._block(self.blocks[i], h)
            if context is not None:
                h = self.adapters[i](h, context[i])
            per_block.append(h)
        return h, per_block

    def forward(self, full_image, full_mask, crop_image, crop_mask) -> torch.Tensor:
        """Images ``(B, 3, S, S)`` normalised, masks ``(B, 1, S, S)`` in {-1, +1} -> tokens ``(B, N, D)``."""
        for name, t in (("full_mask", full_mask), ("crop_mask", crop_mask)):
            if t is not None and (t.ndim != 4 or t.shape[1] != 1):
                raise RegionLibError(f"{name} must be (B, 1, S, S), got {tuple(t.shape)}")
        v = self.variant
        if v == "full":
            return self.encode(full_image, full_mask)[0]
        if v in ("crop", "focal"):
            return self.encode(crop_image, crop_mask)[0]
        z, per_block = self.encode(full_image, full_mask)
        if v == "full+crop-concat":
            return torch.cat([z, self.encode(crop_image, crop_mask)[0]], dim=1)
        return self.encode(crop_image, crop_mask, context=per_block)[0]
