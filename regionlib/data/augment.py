"""Augmentations applied consistently to an image and its `Regions` (SCA's training recipe, seed 000 Tab. 1).

* `large_scale_jitter` — LSJ as in detectron2's ``ResizeScale`` + ``FixedSizeCrop``: draw a
  scale ``s ~ U[scale_range]`` (SCA: [0.1, 2.0]), resize the image by
  ``f = min(s * out / H, s * out / W)`` (aspect kept), take a random ``out x out`` crop when
  the result is larger and pad at the bottom / right when smaller. Masks are resized with
  nearest neighbour and cropped / padded the same way; regions left empty are dropped
  (the kept indices are returned); boxes are recomputed from the masks (box-only regions:
  scaled, shifted, clipped, dropped when degenerate).
* `hflip` — mirror image, masks and boxes (``x0' = W - x1``, ``x1' = W - x0``) and swap the
  words *left* / *right* (and *leftmost* / *rightmost*) in captions and in every string of
  ``data`` (phrases, attribute dicts, questions, sentences); a RegionWorld ``center_xy`` is
  mirrored too. Applying it twice is the identity.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import RegionLibError
from ..images import to_rgb_uint8
from ..masks import encode_rle, masks_to_boxes
from ..regions import Regions

__all__ = ["large_scale_jitter", "hflip", "swap_left_right"]

_LR = re.compile(r"\b(left|right)(most)?\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """Swap *left* and *right* (keeping the case pattern of each word); an involution."""

    def repl(m: re.Match) -> str:
        word = m.group(1)
        new = "right" if word.lower() == "left" else "left"
        if word.isupper():
            new = new.upper()
        elif word[0].isupper():
            new = new.capitalize()
        return new + (m.group(2) or "")

    return _LR.sub(repl, text)


def _swap_any(value, width: int, key: str | None = None):
    if isinstance(value, str):
        return swap_left_right(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "center_xy" and isinstance(v, (list, tuple)) and len(v) == 2:
                out[k] = [float(width - v[0]), float(v[1])]
            else:
                out[k] = _swap_any(v, width, k)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_swap_any(v, width) for v in value)
    return value


def hflip(image, regions: Regions) -> tuple[np.ndarray, Regions]:
    """Mirror ``image`` (H, W, 3) and ``regions`` left-right (module docstring)."""
    img = to_rgb_uint8(image, "image")
    h, w = img.shape[:2]
    if tuple(regions.image_size) != (h, w):
        raise RegionLibError(f"regions.image_size {regions.image_size} differs from the image size {(h, w)}")
    boxes = regions.boxes_xyxy.copy()
    boxes[:, [0, 2]] = w - regions.boxes_xyxy[:, [2, 0]]
    changes = {"boxes_xyxy": boxes}
    if regions.captions is not None:
        changes["captions"] = [swap_left_right(c) for c in regions.captions]
    data = {k: (v if isinstance(v, np.ndarray) else _swap_any(list(v), w)) for k, v in regions.data.items()}
    masks = None
    if regions.has_masks:
        masks = np.ascontiguousarray(regions.masks[:, :, ::-1]) if len(regions) else regions.masks
        changes["masks_rle"] = encode_rle(masks)
    out = Regions(**{**_fields(regions), **changes, "data": data})
    if masks is not None:
        object.__setattr__(out, "_masks_cache", masks)
    return np.ascontiguousarray(img[:, ::-1]), out


def _fields(r: Regions) -> dict:
    return dict(image_size=r.image_size, boxes_xyxy=r.boxes_xyxy, masks_rle=r.masks_rle, scores=r.scores,
                captions=r.captions, labels=r.labels, ids=r.ids, data=r.data)


def large_scale_jitter(image, regions: Regions, *, output_size: int = 1024, scale_range: tuple[float, float] = (0.1, 2.0),
                       rng: np.random.Generator | None = None, pad_value: int = 0) -> tuple[np.ndarray, Regions, np.ndarray]:
    """Large-scale jitter (module docstring).

    Returns:
        ``(image (out, out, 3) uint8, regions of size (out, out), kept (K,) int64 indices
        into the input regions)``.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    if not isinstance(output_size, (int, np.integer)) or output_size < 1:
        raise RegionLibError(f"output_size must be a positive int, got {output_size!r}")
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise RegionLibError(f"scale_range must be 0 < low <= high, got {scale_range!r}")
    rng = rng if rng is not None else np.random.default_rng()
    img = to_rgb_uint8(image, "image")
    h, w = img.shape[:2]
    if tuple(regions.image_size) != (h, w):
        raise RegionLibError(f"regions.image_size {regions.image_size} differs from the image size {(h, w)}")
    s = float(rng.uniform(lo, hi))
    f = min(s * output_size / h, s * output_size / w)
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    resized = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    y0 = int(rng.integers(0, nh - output_size + 1)) if nh > output_size else 0
    x0 = int(rng.integers(0, nw - output_size + 1)) if nw > output_size else 0
    ch, cw = min(nh, output_size), min(nw, output_size)
    out = np.full((output_size, output_size, 3), pad_value, np.uint8)
    out[:ch, :cw] = resized[y0 : y0 + ch, x0 : x0 + cw]
    if regions.has_masks:
        if len(regions):
            m = torch.from_numpy(regions.masks).to(torch.uint8)[:, None]
            m = F.interpolate(m, size=(nh, nw), mode="nearest")[:, 0].numpy().astype(bool)
        else:
            m = np.zeros((0, nh, nw), bool)
        masks = np.zeros((len(regions), output_size, output_size), bool)
        masks[:, :ch, :cw] = m[:, y0 : y0 + ch, x0 : x0 + cw]
        keep = np.flatnonzero(masks.reshape(len(regions), -1).any(1))
        kept = regions[keep]
        masks = masks[keep]
        res = Regions(**{**_fields(kept), "image_size": (output_size, output_size),
                         "boxes_xyxy": masks_to_boxes(masks) if len(keep) else np.zeros((0, 4)),
                         "masks_rle": encode_rle(masks)})
        object.__setattr__(res, "_masks_cache", masks)
        return out, res, keep
    boxes = regions.boxes_xyxy * f - np.array([x0, y0, x0, y0])
    boxes = np.clip(boxes, 0, [cw, ch, cw, ch])
    keep = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    kept = regions[keep]
    res = Regions(**{**_fields(kept), "image_size": (output_size, output_size), "boxes_xyxy": boxes[keep]})
    return out, res, keep
