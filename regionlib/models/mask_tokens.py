"""Mask tokens: features pooled inside each mask, projected into the LM (RAS §3, seed 004; PanCap "pool", seed 002).

`FeatureEncoders` runs one or more frozen vision transformers on an image and returns their
patch-feature grids ``(C_k, h_k, w_k)``; each encoder's input is made by its own image processor
(`RegionImageProcessor`: the checkpoint's ``AutoImageProcessor``, on the encoder's device). `MaskTokenizer` turns N masks into N LM tokens::

    t_n = MLP2( [mask_pool(F_1, M_n); ...; mask_pool(F_K, M_n); PE(centroid(M_n))] )

with `regionlib.pooling.mask_pool` (area-weighted average inside the mask on each grid), an
optional 2D sinusoidal position feature of the mask's centroid (normalised to [0, 1]), and a
2-layer MLP (Linear-GELU-Linear) into the LM width.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError
from ..images import to_rgb_uint8
from ..masks import as_mask_batch
from ..pooling import mask_pool
from .vision import VisionConfig, build_vision_encoder, vision_parts

__all__ = ["FeatureEncoders", "MaskTokenizer", "sinusoidal_position_2d"]


class FeatureEncoders(nn.Module):
    """Frozen vision encoders -> per-encoder patch grids of one image.

    Args: configs: the encoders' `VisionConfig`s; load_weights: load from their paths.
    """

    def __init__(self, configs: Sequence[VisionConfig], *, load_weights: bool = True):
        super().__init__()
        if not configs:
            raise ConfigError("encoders must name at least one VisionConfig")
        self.configs = tuple(configs)
        self.encoders = nn.ModuleList(build_vision_encoder(c, load_weights=load_weights) for c in configs)
        for p in self.encoders.parameters():
            p.requires_grad_(False)

    @property
    def dims(self) -> list[int]:
        return [int(e.config.hidden_size) for e in self.encoders]

    def train(self, mode: bool = True):
        return super().train(False)  # frozen

    @property
    def processors(self) -> list:
        """Each encoder's `RegionImageProcessor`."""
        return [e.regionlib_processor for e in self.encoders]

    @torch.no_grad()
    def forward(self, image) -> list[torch.Tensor]:
        """``image`` (H, W, 3) uint8 (or a ``(3, H, W)`` uint8 tensor on any device) -> list of
        ``(C_k, h_k, w_k)`` patch features (last hidden state, prefix tokens dropped)."""
        if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3 and image.dtype == torch.uint8:
            chw = image
        else:
            chw = torch.from_numpy(np.ascontiguousarray(to_rgb_uint8(image, "image"))).permute(2, 0, 1)
        out = []
        for enc in self.encoders:
            dev = next(enc.parameters()).device
            proc = enc.regionlib_processor
            x = proc([chw.to(dev)])
            h = enc(pixel_values=x).last_hidden_state[0, vision_parts(enc).n_prefix:]  # (gh*gw, C)
            p = int(enc.config.patch_size)
            gh, gw = proc.size[0] // p, proc.size[1] // p
            out.append(h.transpose(0, 1).reshape(h.shape[1], gh, gw))
        return out


def sinusoidal_position_2d(xy: torch.Tensor, dim: int, *, temperature: float = 10000.0) -> torch.Tensor:
    """``(N, 2)`` points in [0, 1] -> ``(N, dim)`` features: per axis ``dim/2`` (sin, cos) pairs (DETR style)."""
    if dim % 4:
        raise ConfigError(f"position dim must be a multiple of 4, got {dim}")
    k = dim // 4
    freqs = temperature ** (-torch.arange(k, dtype=torch.float32, device=xy.device) / k)  # (k,)
    ang = xy.float()[:, :, None] * 2 * math.pi * freqs  # (N, 2, k)
    return torch.cat([ang.sin(), ang.cos()], dim=2).flatten(1)


class MaskTokenizer(nn.Module):
    """N masks of one image -> N tokens ``(N, D_lm)`` (see the module docstring).

    Args: feature_dims: channels of each encoder's grid; lm_width: D_lm; position_dim: 0 = no position feature.
    """

    def __init__(self, feature_dims: Sequence[int], lm_width: int, *, position_dim: int = 32):
        super().__init__()
        self.position_dim = position_dim
        in_dim = sum(feature_dims) + position_dim
        self.proj = nn.Sequential(nn.Linear(in_dim, lm_width), nn.GELU(), nn.Linear(lm_width, lm_width))

    @torch.no_grad()
    def pooled_features(self, features: Sequence[torch.Tensor], masks, *,
                        image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The projector's input ``(N, sum C_k + position_dim)``: pooled features (+ centroid position).

        features: per encoder ``(C_k, g_k, g_k)`` (frozen, so this is computed once per mask set);
        masks ``(N, H, W)`` non-empty bool, of ``image_size`` when given.
        """
        batch = as_mask_batch(masks, "masks", image_size=image_size)
        pooled = [mask_pool(f, batch).tokens for f in features]
        if self.position_dim:
            h, w = batch.shape[1:]
            area = batch.sum(axis=(1, 2))
            cx = (batch.sum(axis=1) * (np.arange(w) + 0.5)).sum(axis=1) / area / w
            cy = (batch.sum(axis=2) * (np.arange(h) + 0.5)).sum(axis=1) / area / h
            xy = torch.as_tensor(np.stack([cx, cy], 1), dtype=torch.float32, device=pooled[0].device)
            pooled.append(sinusoidal_position_2d(xy, self.position_dim))
        return torch.cat([p.float() for p in pooled], dim=1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` from `pooled_features` -> ``(N, D_lm)`` mask tokens (the trainable 2-layer MLP)."""
        return self.proj(pooled.to(self.proj[0].weight.dtype))
