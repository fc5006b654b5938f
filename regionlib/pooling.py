"""Mask pooling: the average of a feature map inside each of N masks (RAS §3, PanCap "pool").

For features ``F`` of shape ``(C, h, w)`` and masks ``M_n`` at image resolution, each mask is
resized to the ``h x w`` grid giving weights ``W_n`` and the pooled token is
``t_n = sum_{ij} W_n[ij] F[:, i, j] / sum_{ij} W_n[ij]`` — all N at once as one contraction
``einsum("nhw,chw->nc")``.

Weights (``weights=``):

* ``"area"`` (default): ``W_n[ij]`` = fraction of the cell's pixels inside the mask
  (adaptive average pooling). A non-empty mask always has positive total weight, however
  small, so nothing vanishes.
* ``"nearest"``: 0/1 nearest-neighbour resize. A mask that *vanishes* on the grid (no cell
  selected, e.g. a 3-pixel mask on a 16x16 grid of a 1024-px image) falls back to its
  ``"area"`` weights — documented rule: no NaN and no silent zero vector; the indices of
  such masks are reported in ``PooledMasks.vanished``.

Empty masks are refused (`InvalidMaskError`).

Features: floating features keep their dtype; integer and bool features are cast to float32
(integer division would give wrong tokens); complex features are refused. Only the cells a mask
covers (weight > 0) contribute to its token: a NaN or inf *outside* every mask is ignored (it is
never multiplied by a zero weight, which would give NaN), and a NaN or inf in a cell a mask covers
raises `RegionLibError` naming the mask — a token is never silently NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InvalidMaskError, RegionLibError
from .masks import as_mask_batch, resize_masks

__all__ = ["PooledMasks", "mask_pool"]


@dataclass
class PooledMasks:
    """tokens ``(N, C)``; weights ``(N, h, w)`` used; vanished: indices that fell back to area weights."""

    tokens: torch.Tensor
    weights: torch.Tensor
    vanished: np.ndarray


def mask_pool(features: torch.Tensor, masks, *, weights: str = "area", batch_index=None) -> PooledMasks:
    """Average ``features`` inside each mask.

    Args:
        features: ``(C, h, w)`` feature map of one image, or ``(B, C, h, w)`` with
            ``batch_index`` ``(N,)`` naming the image of each mask.
        masks: ``(N, H, W)`` non-empty binary masks (numpy, or a bool tensor on any device: the
            weights are then computed there), at any resolution of the image (usually the image's).
        weights: ``"area"`` or ``"nearest"`` (see the module docstring).
    Returns:
        `PooledMasks` with ``tokens`` of shape ``(N, C)`` in the features' dtype (float32 for
        integer / bool features). Non-finite features: see the module docstring.
    """
    if not isinstance(features, torch.Tensor) or features.ndim not in (3, 4):
        raise RegionLibError(f"features must be a (C, h, w) or (B, C, h, w) tensor, got {getattr(features, 'shape', type(features))}")
    if features.is_complex():
        raise RegionLibError(f"features must be real, got dtype {features.dtype}")
    if not features.is_floating_point():
        features = features.float()
    if weights not in ("area", "nearest"):
        raise RegionLibError(f"weights must be 'area' or 'nearest', got {weights!r}")
    if isinstance(masks, torch.Tensor):  # stays on its device; moved to the features' device if elsewhere
        if masks.dtype != torch.bool or masks.ndim != 3:
            raise InvalidMaskError(f"masks as a tensor must be (N, H, W) bool, got {masks.dtype} {tuple(masks.shape)}")
        batch = masks.detach().to(features.device)
    else:
        batch = as_mask_batch(masks, "masks", allow_empty=True)
    grid = tuple(features.shape[-2:])
    area = resize_masks(batch, grid, mode="area").to(features.device)
    area_sum = area.flatten(1).sum(1, keepdim=True)  # (N, 1)
    empty = (area_sum[:, 0] == 0).cpu().numpy()  # area weights vanish only for empty masks
    if empty.any():
        raise InvalidMaskError(f"masks[{int(np.flatnonzero(empty)[0])}] is empty (no pixel set)")
    w = area
    vanished = np.zeros(0, dtype=np.int64)
    if weights == "nearest":
        w = resize_masks(batch, grid, mode="nearest").to(features.device)
        gone = w.flatten(1).sum(1) == 0
        vanished = np.flatnonzero(gone.cpu().numpy())
        w = torch.where(gone[:, None, None], area, w)
    w = w.to(features.dtype)
    if features.ndim == 3:
        bi = torch.zeros(len(batch), dtype=torch.long, device=features.device)
        features = features[None]
    else:
        if batch_index is None:
            raise RegionLibError("batch_index (N,) is required with (B, C, h, w) features")
        try:
            bi = torch.as_tensor(np.asarray(batch_index), dtype=torch.long, device=features.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise RegionLibError(f"batch_index must be ({len(batch)},) ints: {exc}") from exc
        if bi.shape != (len(batch),) or (len(bi) and (bi.min() < 0 or bi.max() >= features.shape[0])):
            raise RegionLibError(f"batch_index must be ({len(batch)},) ints in [0, {features.shape[0]}), got {tuple(bi.shape)}")
    if not torch.isfinite(features.sum()):  # one pass: a NaN or inf anywhere makes the sum non-finite
        bad = ~torch.isfinite(features).all(1)  # (B, h, w) (or none: the finite sum overflowed)
        covered = w > 0  # (N, h, w): the cells that contribute to each token
        hit = (covered & bad[bi]).flatten(1).any(1)
        if hit.any():
            raise RegionLibError(f"features hold NaN or inf inside masks[{int(hit.nonzero()[0, 0])}] "
                                 "(only cells outside every mask may be non-finite)")
        features = features.masked_fill(bad[:, None], 0)  # outside every mask: weight 0, never NaN * 0
    denom = area_sum if w is area else w.flatten(1).sum(1, keepdim=True)  # (N, 1), > 0 for non-empty masks
    if features.shape[0] == 1:
        tokens = torch.einsum("nhw,chw->nc", w, features[0]) / denom
    else:
        tokens = torch.einsum("nhw,nchw->nc", w, features[bi]) / denom
    return PooledMasks(tokens=tokens, weights=w, vanished=vanished)
