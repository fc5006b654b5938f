"""COCO panoptic segmentation (PNG + JSON) -> `ImageRecord`s.

Expected layout (panopticapi's format)::

    <panoptic_json>                 # {"images": [{"id", "file_name", "height", "width"}],
                                    #  "annotations": [{"image_id", "file_name": "<name>.png",
                                    #    "segments_info": [{"id", "category_id", "iscrowd", "bbox", "area"}]}],
                                    #  "categories": [{"id", "name", "isthing"}]}
    <panoptic_root>/<name>.png      # RGB PNG; segment id = R + 256 * G + 256^2 * B (`rgb2id`); 0 = void
    <image_root>/<file_name>        # the images

The PNG of an image is decoded when its record is produced (lazily, one image at a time)
and each segment becomes one RLE mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import DataFormatError
from ...masks import encode_rle, masks_to_boxes
from ...regions import Regions
from .base import ErrorPolicy, ImageRecord, ReadReport, check_box_xywh, check_unique, read_json

__all__ = ["rgb2id", "id2rgb", "read_coco_panoptic", "PanopticIndex"]


def rgb2id(color: np.ndarray) -> np.ndarray:
    """panopticapi's ``rgb2id``: ``(H, W, 3)`` uint8 -> ``(H, W)`` int64 ids ``R + 256 G + 256^2 B``."""
    color = np.asarray(color)
    if color.ndim == 3 and color.shape[2] >= 3:
        c = color[..., :3].astype(np.int64)
        return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]
    return color.astype(np.int64)


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of `rgb2id`: ``(H, W)`` ids -> ``(H, W, 3)`` uint8."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // (256 * 256) % 256], axis=-1).astype(np.uint8)


class PanopticIndex:
    """The checked JSON of a panoptic dataset: images, per-image annotation entries, categories."""

    def __init__(self, panoptic_json: str | Path, policy: ErrorPolicy):
        self.path = Path(panoptic_json)
        data = read_json(self.path, "panoptic annotation file", expect=dict)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataFormatError(f"{self.path}: '{key}' must be a list")
        self.categories = {c["id"]: c for c in data["categories"] if isinstance(c, dict) and "id" in c}
        dups = check_unique([i.get("id") for i in data["images"]], self.path, "image id", policy)
        self.images = {i["id"]: i for i in data["images"] if i.get("id") not in dups}
        self.entries = {}
        for k, a in enumerate(data["annotations"]):
            image_id = a.get("image_id") if isinstance(a, dict) else None
            where = f"image_id={image_id!r}"
            if image_id not in self.images:
                policy.fail(self.path, where, f"annotation entry {k} points at image {image_id!r}, not in 'images'")
                continue
            if image_id in self.entries:
                policy.fail(self.path, where, "duplicate annotation entry for the image")
                continue
            if not isinstance(a.get("segments_info"), list) or "file_name" not in a:
                policy.fail(self.path, where, "needs 'file_name' and a list 'segments_info'")
                continue
            self.entries[image_id] = a
        self.raw = data


def _segments(entry: dict, png: np.ndarray, size, index: PanopticIndex, policy: ErrorPolicy, where: str):
    """Good segments and their masks; bad ones go through ``policy``."""
    ids = rgb2id(png)
    infos, masks = [], []
    seen = set()
    for s in entry["segments_info"]:
        ref = f"{where} segment id={s.get('id')!r}"
        if s.get("id") in seen:
            policy.fail(index.path, ref, "duplicate segment id")
            continue
        seen.add(s.get("id"))
        if s.get("category_id") not in index.categories:
            policy.fail(index.path, ref, f"unknown category_id {s.get('category_id')!r}")
            continue
        if "bbox" in s:
            bad = check_box_xywh(s["bbox"], size)
            if bad:
                policy.fail(index.path, ref, bad)
                continue
        m = ids == s["id"]
        if not m.any():
            policy.fail(index.path, ref, f"segment id {s['id']} does not occur in the PNG")
            continue
        infos.append(s)
        masks.append(m)
    return infos, masks


def load_panoptic_regions(entry: dict, index: PanopticIndex, panoptic_root: Path, policy: ErrorPolicy):
    """`Regions` of one annotation entry (None if the PNG is missing or of the wrong size)."""
    from PIL import Image

    image_id = entry["image_id"]
    img = index.images[image_id]
    size = (int(img["height"]), int(img["width"]))
    where = f"image_id={image_id!r}"
    png_path = panoptic_root / entry["file_name"]
    if not png_path.is_file():
        policy.fail(index.path, where, f"panoptic PNG {png_path} does not exist")
        return None
    try:
        with Image.open(png_path) as im:
            png = np.asarray(im.convert("RGB"))
    except OSError as exc:
        policy.fail(index.path, where, f"panoptic PNG {png_path} cannot be decoded: {exc}")
        return None
    if png.shape[:2] != size:
        policy.fail(index.path, where, f"panoptic PNG is {png.shape[:2]}, the image is {size}")
        return None
    infos, masks = _segments(entry, png, size, index, policy, where)
    if not infos:
        return Regions.empty(size)
    cats = [index.categories[s["category_id"]] for s in infos]
    batch = np.stack(masks)
    regions = Regions(
        image_size=size, boxes_xyxy=masks_to_boxes(batch), masks_rle=encode_rle(batch), labels=[str(c["name"]) for c in cats],
        ids=[s["id"] for s in infos],
        data={"category_id": [s["category_id"] for s in infos], "iscrowd": [int(s.get("iscrowd", 0)) for s in infos],
              "isthing": [bool(c.get("isthing", 1)) for c in cats]})
    object.__setattr__(regions, "_masks_cache", batch)
    return regions


def read_coco_panoptic(panoptic_json: str | Path, panoptic_root: str | Path, image_root: str | Path, *,
                       on_error: str = "raise", report: ReadReport | None = None,
                       check_images: bool = True) -> Iterator[ImageRecord]:
    """One record per annotated image; regions = segments (``ids`` = segment ids, ``labels`` =
    category names, ``data["category_id" | "iscrowd" | "isthing"]``)."""
    policy = ErrorPolicy(on_error, report)
    index = PanopticIndex(panoptic_json, policy)
    return _records(index, Path(panoptic_root), Path(image_root), policy, check_images)


def _records(index, panoptic_root, image_root, policy, check_images):
    for image_id, entry in index.entries.items():
        img = index.images[image_id]
        file = image_root / img["file_name"]
        if check_images and not file.is_file():
            policy.fail(index.path, f"image_id={image_id!r}", f"image file {file} does not exist")
            continue
        regions = load_panoptic_regions(entry, index, panoptic_root, policy)
        if regions is None:
            continue
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=regions.image_size, regions=regions))
