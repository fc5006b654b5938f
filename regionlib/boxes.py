"""Boxes ``(N, 4)`` float XYXY in absolute pixels: validation, IoU, clip, scale, areas.

Out-of-image policy: `validate_boxes` raises `InvalidBoxError` for a box that leaves the
image unless ``clip=True``, in which case it is clipped to ``[0, W] x [0, H]``; a box that
becomes degenerate after clipping (entirely outside) always raises.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InvalidBoxError

__all__ = ["validate_boxes", "box_areas", "box_iou", "clip_boxes", "scale_boxes"]


def _image_size(image_size, name: str = "image_size") -> tuple[float, float]:
    """``(H, W)`` as two finite non-negative numbers, else `InvalidBoxError`."""
    try:
        h, w = (float(v) for v in image_size)
    except (TypeError, ValueError) as exc:
        raise InvalidBoxError(f"{name} must be (H, W), two numbers, got {image_size!r}") from exc
    if not (np.isfinite(h) and np.isfinite(w)) or h < 0 or w < 0:
        raise InvalidBoxError(f"{name} must be finite and non-negative (H, W), got {image_size!r}")
    return h, w


def validate_boxes(
    boxes,
    name: str = "boxes",
    *,
    image_size: tuple[int, int] | None = None,
    clip: bool = False,
) -> np.ndarray:
    """Check ``(N, 4)`` (or ``(4,)``) XYXY boxes; return them as ``(N, 4)`` float64.

    Raises `InvalidBoxError` naming ``name`` for a wrong shape, non-numeric or non-finite
    values, ``x1 <= x0`` or ``y1 <= y0``, or (with ``image_size = (H, W)`` and
    ``clip=False``) a box outside the image.
    """
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidBoxError(f"{name} must be numeric XYXY boxes of shape (N, 4): {exc}") from exc
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise InvalidBoxError(f"{name} must have shape (N, 4) XYXY, got shape {b.shape}")
    if not np.isfinite(b).all():
        i = int(np.flatnonzero(~np.isfinite(b).all(axis=1))[0])
        raise InvalidBoxError(f"{name}[{i}] has a NaN or infinite coordinate: {b[i].tolist()}")
    if image_size is not None:
        h, w = _image_size(image_size)
        outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)
        if outside.any():
            if not clip:
                i = int(np.flatnonzero(outside)[0])
                raise InvalidBoxError(
                    f"{name}[{i}] = {b[i].tolist()} lies outside the image of size (H, W) = {(h, w)}; "
                    "pass clip=True to clip it"
                )
            b = clip_boxes(b, image_size)
    bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidBoxError(f"{name}[{i}] = {b[i].tolist()} is degenerate: expected x1 > x0 and y1 > y0")
    return b


def box_areas(boxes, name: str = "boxes") -> np.ndarray:
    """Areas of ``(N, 4)`` boxes -> ``(N,)`` float64."""
    b = validate_boxes(boxes, name)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` boxes -> ``(N, M)`` float64."""
    a = validate_boxes(boxes_a, "boxes_a")
    b = validate_boxes(boxes_b, "boxes_b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_areas(a)[:, None] + box_areas(b)[None] - inter
    return inter / union


def clip_boxes(boxes, image_size: tuple[int, int]) -> np.ndarray:
    """Clip ``(N, 4)`` boxes to ``[0, W] x [0, H]`` (may produce degenerate boxes)."""
    b = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
    h, w = _image_size(image_size)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    return b


def scale_boxes(boxes, scale) -> np.ndarray:
    """Scale ``(N, 4)`` boxes by ``scale`` (a number or ``(sx, sy)``) -> ``(N, 4)`` float64."""
    b = validate_boxes(boxes, "boxes")
    try:
        s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (2,))
    except (TypeError, ValueError) as exc:
        raise InvalidBoxError(f"scale must be a number or (sx, sy), got {scale!r}") from exc
    if not np.isfinite(s).all() or (s <= 0).any():
        raise InvalidBoxError(f"scale must be positive and finite, got {scale!r}")
    return b * np.array([s[0], s[1], s[0], s[1]])
