"""Overlays: composable annotators that each return a *new* ``(H, W, 3)`` uint8 image.

In the spirit of supervision's annotators — none draws in place. Set-of-marks (PanCap,
REFERENCE §8): each mask gets a number placed at its most interior pixel (maximum of the
distance transform), drawn as white text on a black box with a white border so it reads on
any background.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .boxes import validate_boxes
from .errors import RegionLibError
from .images import to_rgb_uint8
from .masks import as_mask_batch, interior_points

__all__ = ["palette", "draw_masks", "draw_boxes", "draw_points", "draw_marks", "side_by_side"]


def palette(n: int) -> np.ndarray:
    """``n`` distinct saturated colours ``(n, 3)`` uint8 (golden-ratio hue walk, deterministic)."""
    import colorsys

    hues = (np.arange(n) * 0.618033988749895 + 0.12) % 1.0
    return np.array([[round(c * 255) for c in colorsys.hsv_to_rgb(h, 0.85, 0.95)] for h in hues], dtype=np.uint8).reshape(-1, 3)


def _colors(colors, n: int) -> np.ndarray:
    if colors is None:
        return palette(n)
    c = np.asarray(colors, dtype=np.int64).reshape(-1, 3)
    if len(c) == 1:
        c = np.repeat(c, n, axis=0)
    if len(c) != n or (c < 0).any() or (c > 255).any():
        raise RegionLibError(f"colors must be one RGB triple or {n} triples in 0..255, got shape {c.shape}")
    return c.astype(np.uint8)


def draw_masks(image, masks, *, colors=None, alpha: float = 0.5, contour: bool = True, contour_width: int = 2) -> np.ndarray:
    """Fill each of ``(N, H, W)`` masks with a translucent colour and outline its contour."""
    out = to_rgb_uint8(image).astype(np.float32)
    batch = as_mask_batch(masks, "masks", image_size=out.shape[:2], allow_empty=True)
    if not 0.0 <= alpha <= 1.0:
        raise RegionLibError(f"alpha must lie in [0, 1], got {alpha}")
    cols = _colors(colors, len(batch)).astype(np.float32)
    for m, c in zip(batch, cols):
        out[m] = (1 - alpha) * out[m] + alpha * c
        if contour and m.any():
            edge = m & ~ndimage.binary_erosion(m, iterations=contour_width, border_value=0)
            out[edge] = c
    return out.round().astype(np.uint8)


def draw_boxes(image, boxes_xyxy, *, colors=None, width: int = 2, labels=None) -> np.ndarray:
    """Draw ``(N, 4)`` XYXY boxes (half-open pixel boxes) with optional text labels."""
    rgb = to_rgb_uint8(image)
    boxes = validate_boxes(boxes_xyxy, "boxes_xyxy") if len(boxes_xyxy) else np.zeros((0, 4))
    cols = _colors(colors, len(boxes))
    if labels is not None and len(labels) != len(boxes):
        raise RegionLibError(f"labels must have one entry per box ({len(boxes)}), got {len(labels)}")
    im = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(im)
    for i, (b, c) in enumerate(zip(boxes, cols)):
        draw.rectangle([b[0], b[1], b[2] - 1, b[3] - 1], outline=tuple(int(v) for v in c), width=width)
        if labels is not None:
            draw.text((b[0] + 2, b[1] + 1), str(labels[i]), fill=tuple(int(v) for v in c))
    return np.asarray(im)


def draw_points(image, points_xy, labels=None, *, radius: int = 5) -> np.ndarray:
    """Draw ``(K, 2)`` points: positive (label 1) green, negative (0) red, white rim."""
    rgb = to_rgb_uint8(image)
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise RegionLibError("points_xy contains NaN or infinite coordinates")
    lab = np.ones(len(pts), dtype=int) if labels is None else np.asarray(labels).reshape(-1)
    if lab.shape != (len(pts),):
        raise RegionLibError(f"labels must have one entry per point ({len(pts)}), got {lab.shape}")
    im = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(im)
    for (x, y), l in zip(pts, lab):
        fill = (40, 200, 60) if l == 1 else (220, 40, 40)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=(255, 255, 255), width=2)
    return np.asarray(im)


def draw_marks(image, masks, marks=None, *, font_size: int | None = None, fill: bool = True) -> np.ndarray:
    """Set-of-marks: masks (optionally filled) with numbered labels at their interior points.

    Args:
        masks: ``(N, H, W)`` binary masks.
        marks: N labels (default ``1..N``).
        font_size: pixel size of the label font (default ~3% of the image's short side, >= 10).
    """
    rgb = to_rgb_uint8(image)
    batch = as_mask_batch(masks, "masks", image_size=rgb.shape[:2])
    marks = [str(i + 1) for i in range(len(batch))] if marks is None else [str(m) for m in marks]
    if len(marks) != len(batch):
        raise RegionLibError(f"marks must have one entry per mask ({len(batch)}), got {len(marks)}")
    base = draw_masks(rgb, batch, alpha=0.35) if fill else rgb.copy()
    size = font_size or max(10, int(0.03 * min(rgb.shape[:2])))
    font = ImageFont.load_default(size=size)
    im = Image.fromarray(base)
    draw = ImageDraw.Draw(im)
    for (x, y), text in zip(interior_points(batch).tolist(), marks):
        l, t, r, b = draw.textbbox((x, y), text, font=font, anchor="mm")
        draw.rectangle([l - 3, t - 3, r + 3, b + 3], fill=(0, 0, 0), outline=(255, 255, 255), width=1)
        draw.text((x, y), text, fill=(255, 255, 255), font=font, anchor="mm")
    return np.asarray(im)


def side_by_side(panels, *, height: int | None = None, gap: int = 4, background=(255, 255, 255)) -> np.ndarray:
    """Concatenate images horizontally, each resized to a common ``height`` (default: the tallest)."""
    imgs = [to_rgb_uint8(p, f"panels[{i}]") for i, p in enumerate(panels)]
    if not imgs:
        raise RegionLibError("panels must hold at least one image")
    height = height or max(i.shape[0] for i in imgs)
    resized = []
    for img in imgs:
        w = max(1, round(img.shape[1] * height / img.shape[0]))
        resized.append(np.asarray(Image.fromarray(img).resize((w, height), Image.BICUBIC)))
    total = sum(r.shape[1] for r in resized) + gap * (len(resized) - 1)
    out = np.empty((height, total, 3), dtype=np.uint8)
    out[:] = np.asarray(background, dtype=np.uint8)
    x = 0
    for r in resized:
        out[:, x : x + r.shape[1]] = r
        x += r.shape[1] + gap
    return out
