"""DAM's focal prompt: crop modes, encoder-ready tensors and the inverse coordinate map.

Implements the crop modes of the released DAM code (seed 003 §3.1, REFERENCE §1), batched
over the N regions of one image. With ``(x0, y0, x1, y1)`` the tight half-open box of a
mask, ``w = x1 - x0``, ``h = y1 - y0`` and ``e = (expansion - 1) / 2`` (``e = 1`` for DAM's
``alpha = 3``):

* ``full``         — the whole image;
* ``crop``         — exactly the tight box;
* ``context_crop`` — rows ``[max(y0 - e*h, 0), min(y0 + h + e*h, H))``, likewise columns;
* ``focal_crop``   — ``xc = x0 + w/2``, ``yc = y0 + h/2``; ``w = max(w, min_size)``,
  ``h = max(h, min_size)``; ``x0 = int(xc - w/2)``, ``y0 = int(yc - h/2)`` (truncation toward
  zero, as Python's ``int``); then the ``context_crop`` slicing. Clipped, never padded;
* ``crop_mask``    — the tight box, pixels outside the mask set to 0.

For non-integer ``e * h`` the lower bound is floored and the upper bound ceiled (exact for
``alpha = 3``). Encoder inputs (REFERENCE §1): image resized bicubically (antialiased) to the
encoder size and normalised ``(x/255 - mean) / std``; the mask resized bilinearly,
thresholded at 0.5 and mapped to {-1, +1}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import RegionLibError
from .images import to_rgb_uint8
from .masks import as_mask_batch, masks_to_boxes

__all__ = ["CROP_MODES", "crop_boxes", "crops_of", "FocalPrompt", "focal_prompt", "crop_to_image", "encoder_tensors",
           "image_tensors", "mask_tensors"]

CROP_MODES = ("full", "crop", "context_crop", "focal_crop", "crop_mask")


def _check_mode(mode: str) -> None:
    if mode not in CROP_MODES:
        raise RegionLibError(f"mode must be one of {CROP_MODES}, got {mode!r}")


def crop_boxes(
    masks,
    mode: str = "focal_crop",
    *,
    expansion: float = 3.0,
    min_size: int = 48,
) -> np.ndarray:
    """Crop boxes of ``(N, H, W)`` non-empty masks for ``mode`` -> ``(N, 4)`` int64 XYXY (half-open)."""
    _check_mode(mode)
    if not (isinstance(expansion, (int, float)) and math.isfinite(expansion) and expansion >= 1):
        raise RegionLibError(f"expansion must be a finite number >= 1, got {expansion!r}")
    if not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise RegionLibError(f"min_size must be a positive int, got {min_size!r}")
    batch = as_mask_batch(masks, "masks")
    n, big_h, big_w = batch.shape
    if mode == "full":
        return np.tile(np.array([0, 0, big_w, big_h], dtype=np.int64), (n, 1))
    box = masks_to_boxes(batch).astype(np.int64)
    x0, y0, x1, y1 = box.T
    if mode in ("crop", "crop_mask"):
        return box
    w, h = x1 - x0, y1 - y0
    if mode == "focal_crop":
        xc, yc = x0 + w / 2, y0 + h / 2
        w, h = np.maximum(w, min_size), np.maximum(h, min_size)
        x0 = np.trunc(xc - w / 2).astype(np.int64)
        y0 = np.trunc(yc - h / 2).astype(np.int64)
    e = (expansion - 1) / 2
    lo_x = np.maximum(np.floor(x0 - e * w), 0)
    lo_y = np.maximum(np.floor(y0 - e * h), 0)
    hi_x = np.minimum(np.ceil(x0 + w + e * w), big_w)
    hi_y = np.minimum(np.ceil(y0 + h + e * h), big_h)
    return np.stack([lo_x, lo_y, hi_x, hi_y], axis=1).astype(np.int64)


def _image_tensor(img: np.ndarray, size: tuple[int, int], mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(h, w, 3)`` uint8 -> ``(3, S_h, S_w)``: bicubic (antialiased) resize, ``(x/255 - mean) / std``."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 255)[0]
    return (t / 255.0 - mean) / std


def _mask_tensor(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(h, w)`` bool -> ``(1, S_h, S_w)`` in {-1, +1}: bilinear (antialiased) resize, threshold 0.5."""
    t = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return torch.where(t >= 0.5, 1.0, -1.0)


def image_tensors(images: list[np.ndarray], size: tuple[int, int], *, mean=(0.5, 0.5, 0.5),
                  std=(0.5, 0.5, 0.5)) -> torch.Tensor:
    """N uint8 arrays ``(h_i, w_i, 3)`` -> ``(N, 3, S_h, S_w)`` float32: bicubic resize, ``(x/255 - mean) / std``."""
    if not images:
        raise RegionLibError("images must be non-empty")
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return torch.stack([_image_tensor(img, size, mean_t, std_t) for img in images])


def mask_tensors(masks, size: tuple[int, int]) -> torch.Tensor:
    """N bool arrays ``(h_i, w_i)`` (or an ``(N, H, W)`` array) -> ``(N, 1, S_h, S_w)`` in {-1, +1}."""
    if len(masks) == 0:
        raise RegionLibError("masks must be non-empty")
    return torch.stack([_mask_tensor(m, size) for m in masks])


def encoder_tensors(
    images: list[np.ndarray],
    masks: list[np.ndarray],
    size: tuple[int, int],
    *,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize and normalise crops for a vision encoder.

    Args:
        images: N uint8 arrays ``(h_i, w_i, 3)``; masks: N bool arrays ``(h_i, w_i)``.
        size: encoder input ``(S_h, S_w)``.
    Returns:
        ``(N, 3, S_h, S_w)`` float32 normalised images and ``(N, 1, S_h, S_w)`` masks in {-1, +1}.
    """
    if len(images) != len(masks) or not images:
        raise RegionLibError(f"images and masks must be equally long and non-empty, got {len(images)} and {len(masks)}")
    return image_tensors(images, size, mean=mean, std=std), mask_tensors(masks, size)


def crops_of(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray, mode: str) -> tuple[list, list]:
    """The image and mask crops of ``boxes`` (`crop_boxes`); ``crop_mask`` zeroes pixels outside the mask."""
    crops, crop_masks = [], []
    for (x0, y0, x1, y1), m in zip(boxes, masks):
        c = image[y0:y1, x0:x1].copy()
        cm = m[y0:y1, x0:x1].copy()
        if mode == "crop_mask":
            c[~cm] = 0
        crops.append(c)
        crop_masks.append(cm)
    return crops, crop_masks


@dataclass
class FocalPrompt:
    """Focal prompt of N regions of one image.

    Attributes:
        crop_boxes: ``(N, 4)`` int64 XYXY crop boxes in image pixels.
        crops: N uint8 crops ``(h_i, w_i, 3)`` (``crop_mask`` mode zeroes pixels outside the mask).
        crop_masks: N bool crops of the masks ``(h_i, w_i)``.
        image_tensor: ``(N, 3, S, S)`` normalised crops; mask_tensor: ``(N, 1, S, S)`` in {-1, +1}.
        full_image_tensor: ``(1, 3, S, S)`` the normalised whole image (shared by all regions).
        full_mask_tensor: ``(N, 1, S, S)`` the whole-image masks in {-1, +1}.
    """

    crop_boxes: np.ndarray
    crops: list[np.ndarray]
    crop_masks: list[np.ndarray]
    image_tensor: torch.Tensor
    mask_tensor: torch.Tensor
    full_image_tensor: torch.Tensor
    full_mask_tensor: torch.Tensor


def focal_prompt(
    image,
    masks,
    *,
    mode: str = "focal_crop",
    size: tuple[int, int] = (384, 384),
    expansion: float = 3.0,
    min_size: int = 48,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
) -> FocalPrompt:
    """Build DAM's two-stream input for the N regions of one image (see module docstring).

    Args:
        image: ``(H, W, 3)`` uint8 (or anything `to_rgb_uint8` converts).
        masks: ``(N, H, W)`` non-empty binary masks of the same image.
        size: encoder input size ``(S, S)`` (SigLIP-384: 384).
    """
    rgb = to_rgb_uint8(image, "image")
    batch = as_mask_batch(masks, "masks", image_size=rgb.shape[:2])
    boxes = crop_boxes(batch, mode, expansion=expansion, min_size=min_size)
    crops, crop_masks = crops_of(rgb, batch, boxes, mode)
    size = (int(size[0]), int(size[1]))
    img_t, mask_t = encoder_tensors(crops, crop_masks, size, mean=mean, std=std)
    full_i = image_tensors([rgb], size, mean=mean, std=std)
    return FocalPrompt(boxes, crops, crop_masks, img_t, mask_t, full_i, mask_tensors(batch, size))


def crop_to_image(points_xy, crop_boxes_xyxy, *, from_size: tuple[int, int] | None = None) -> np.ndarray:
    """Map points from crop coordinates back to image coordinates.

    Args:
        points_xy: ``(N, K, 2)`` points, one set per crop (``(N, 2)`` accepted as K = 1).
        crop_boxes_xyxy: ``(N, 4)`` crop boxes from `crop_boxes`.
        from_size: ``(S_h, S_w)`` if the points are in the resized encoder frame; None if
            they are in crop pixels.
    Returns:
        ``(N, K, 2)`` float64 image coordinates: ``x = x0 + x' * (x1 - x0) / S_w`` (and y).
    """
    p = np.asarray(points_xy, dtype=np.float64)
    squeeze = p.ndim == 2
    if squeeze:
        p = p[:, None]
    b = np.asarray(crop_boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if p.ndim != 3 or p.shape[2] != 2 or p.shape[0] != len(b):
        raise RegionLibError(f"points_xy must be (N, K, 2) with N = {len(b)} crop boxes, got {p.shape}")
    scale = np.ones((len(b), 1, 2))
    if from_size is not None:
        scale[:, 0, 0] = (b[:, 2] - b[:, 0]) / from_size[1]
        scale[:, 0, 1] = (b[:, 3] - b[:, 1]) / from_size[0]
    out = b[:, None, :2] + p * scale
    return out[:, 0] if squeeze else out
