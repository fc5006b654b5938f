"""A folder of image files as a dataset: ``{image id: path}`` (the unlabeled pool of self-labeling and
the input of the feature cache)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataFormatError

__all__ = ["IMAGE_SUFFIXES", "list_images"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(root: str | Path) -> dict[str, str]:
    """``{image id: path}`` for the image files under ``root`` (id = path relative to root, no suffix)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"--images: {root} is not a directory")
    found = {str(p.relative_to(root).with_suffix("")): str(p) for p in sorted(root.rglob("*"))
             if p.suffix.lower() in IMAGE_SUFFIXES}
    if not found:
        raise DataFormatError(f"--images: no image files under {root}")
    return found
