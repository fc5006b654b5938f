"""Image loading and validation: everything becomes ``(H, W, 3)`` uint8 RGB.

Conversion policy (documented, tested):

* ``(H, W)`` grayscale and ``(H, W, 1)`` -> replicated to 3 channels;
* ``(H, W, 4)`` RGBA -> alpha dropped (the colour channels are kept as they are);
* uint16 -> ``round(v / 257)`` (full 16-bit range mapped onto 0..255);
* float in ``[0, 1]`` -> ``round(v * 255)``; float outside ``[0, 1]`` or non-finite -> refused
  (also for files: a 32-bit float TIFF, PIL mode ``"F"``, is read as float, not clipped by PIL);
* bool, complex, other integer types, other channel counts -> refused.

Images above ``max_pixels`` (default `DEFAULT_MAX_PIXELS`, configurable per call) are
refused *before* decoding, so a decompression bomb never allocates.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import InvalidImageError

__all__ = ["DEFAULT_MAX_PIXELS", "to_rgb_uint8", "load_image", "image_size_of", "encode_png"]

#: Default pixel limit (H * W) for images; 64 megapixels.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024


def _check_pixels(h: int, w: int, max_pixels: int, name: str) -> None:
    if h * w > max_pixels:
        raise InvalidImageError(
            f"{name} has {h}x{w} = {h * w} pixels, above the limit max_pixels={max_pixels}; "
            "pass a larger max_pixels to accept it"
        )


def to_rgb_uint8(image, name: str = "image", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Validate and convert an array image to ``(H, W, 3)`` uint8 (policy in the module doc)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"{name} must be a numpy array, torch tensor or PIL image, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InvalidImageError(f"{name} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise InvalidImageError(f"{name} is empty: shape {image.shape}")
    _check_pixels(h, w, max_pixels, name)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return np.round(image.astype(np.float64) / 257.0).astype(np.uint8)
    if image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise InvalidImageError(f"{name} contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(f"float {name} must lie in [0, 1], got range [{lo:g}, {hi:g}]")
        return np.round(image * 255.0).astype(np.uint8)
    raise InvalidImageError(f"{name} must be uint8, uint16 or float in [0, 1], got dtype {image.dtype}")


def load_image(source, name: str = "image", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file (path, ``bytes`` or binary file object) -> ``(H, W, 3)`` uint8.

    The header is read first and the pixel limit checked before decoding. Corrupt or
    truncated data raises `InvalidImageError` naming the source.
    """
    label = str(source) if isinstance(source, (str, os.PathLike)) else name
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        if not Path(source).is_file():
            raise InvalidImageError(f"{name}: file not found: {source}")
    elif not hasattr(source, "read"):
        raise InvalidImageError(f"{name} must be a path, bytes or a binary file object, got {type(source).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit checked here replaces PIL's
            with Image.open(source) as im:
                w, h = im.size
                _check_pixels(h, w, max_pixels, label)
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64)
                    if arr.dtype != np.uint16:
                        if arr.min() < 0 or arr.max() > 65535:
                            raise InvalidImageError(f"{label}: 32-bit integer image values outside 0..65535")
                        arr = arr.astype(np.uint16)
                elif im.mode in ("RGB", "RGBA", "L", "F"):  # "F": float32, range checked by to_rgb_uint8
                    arr = np.asarray(im)
                else:
                    arr = np.asarray(im.convert("RGB"))
    except InvalidImageError:
        raise
    except Exception as exc:  # PIL's decoders raise many types on corrupt data (OSError, ValueError, struct.error, ...)
        raise InvalidImageError(f"{label}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return to_rgb_uint8(arr, label, max_pixels=max_pixels)


def image_size_of(image) -> tuple[int, int]:
    """``(H, W)`` of an ``(H, W, C)`` or ``(H, W)`` array."""
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) < 2:
        raise InvalidImageError(f"image must be an array with shape (H, W[, C]), got {type(image).__name__}")
    return int(shape[0]), int(shape[1])


def encode_png(image, *, compress_level: int = 1) -> bytes:
    """Lossless PNG bytes of an image (anything `to_rgb_uint8` accepts); level 1 favours speed."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_rgb_uint8(image)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
