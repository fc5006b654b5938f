"""COCO panoptic segmentation (PNG + JSON) -> `ImageRecord`s.

Expected layout (panopticapi's format)::

    <panoptic_json>                 # {"images": [{"id", "file_name", "height", "width"}],
                                    #  "annotations": [{"image_id", "file_name": "<name>.png",
                                    #    "segments_info": [{"id", "category_id", "iscrowd", "bbox", "area"}]}],
                                    #  "categories": [{"id", "name", "isthing"}]}
    <panoptic_root>/<name>.png      # RGB PNG; segment id = R + 256 * G + 256^2 * B (`rgb2id`); 0 = void
    <image_root>/<file_name>        # the images

The PNG of an image is decoded when its record is produced (lazily, one image at a time)
and each segment becomes one RLE mask. Its header is read first: a PNG whose size differs from
the image entry, or above ``max_pixels``, is a bad record and is never decoded (a decompression
bomb does not allocate).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import DataFormatError
from ...masks import encode_rle, masks_to_boxes
from ...regions import Regions
from .base import (ErrorPolicy, ImageRecord, ReadReport, check_box_xywh, check_unique, checked_size, id_problem,
                   path_inside, read_json)

__all__ = ["rgb2id", "id2rgb", "read_coco_panoptic", "PanopticIndex", "load_panoptic_regions", "image_file"]


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
    """The checked JSON of a panoptic dataset: images (with their checked ``(H, W)`` in ``sizes``),
    per-image annotation entries (segments checked to be objects with int / str ids), categories."""

    def __init__(self, panoptic_json: str | Path, policy: ErrorPolicy, *, max_pixels: int | None = None):
        self.path = Path(panoptic_json)
        data = read_json(self.path, "panoptic annotation file", expect=dict)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataFormatError(f"{self.path}: '{key}' must be a list")
        self.categories = {}
        for k, c in enumerate(data["categories"]):
            bad = "expected a JSON object" if not isinstance(c, dict) else id_problem(c.get("id"), "id")
            if bad:
                raise DataFormatError(f"{self.path}: record categories[{k}]: {bad}")
            self.categories[c["id"]] = c
        dups = check_unique([i.get("id") for i in data["images"] if isinstance(i, dict)], self.path, "image id", policy)
        self.images, self.sizes = {}, {}
        for k, img in enumerate(data["images"]):
            bad = "expected a JSON object" if not isinstance(img, dict) else id_problem(img.get("id"), "id")
            if bad:
                policy.fail(self.path, f"images[{k}]", bad)
                continue
            if img["id"] in dups:
                continue
            size, bad = checked_size(img.get("height"), img.get("width"), max_pixels)
            if bad:
                policy.fail(self.path, f"image id={img['id']!r}", bad)
                continue
            self.images[img["id"]], self.sizes[img["id"]] = img, size
        self.entries = {}
        for k, a in enumerate(data["annotations"]):
            image_id = a.get("image_id") if isinstance(a, dict) else None
            where = f"image_id={image_id!r}"
            if id_problem(image_id, "image_id") or image_id not in self.images:
                policy.fail(self.path, where, f"annotation entry {k} points at image {image_id!r}, not in 'images'")
                continue
            if image_id in self.entries:
                policy.fail(self.path, where, "duplicate annotation entry for the image")
                continue
            segments = a.get("segments_info")
            if not isinstance(segments, list) or not isinstance(a.get("file_name"), str):
                policy.fail(self.path, where, "needs 'file_name' (str) and a list 'segments_info'")
                continue
            bad = _segments_problem(segments)
            if bad:
                policy.fail(self.path, where, bad)
                continue
            self.entries[image_id] = a
        self.raw = data


def _segments_problem(segments: list) -> str | None:
    for j, seg in enumerate(segments):
        if not isinstance(seg, dict):
            return f"segments_info[{j}]: expected an object, got {type(seg).__name__}"
        bad = id_problem(seg.get("id"), f"segments_info[{j}].id") or \
            id_problem(seg.get("category_id"), f"segments_info[{j}].category_id")
        if bad:
            return bad
    return None


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


def _read_png(png_path: Path, size, max_pixels, index: PanopticIndex, policy: ErrorPolicy, where: str):
    """The ``(H, W, 3)`` PNG, its size checked from the header before decoding; None if bad."""
    from PIL import Image

    from ...images import DEFAULT_MAX_PIXELS

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked here
            with Image.open(png_path) as im:
                w, h = im.size
                if (h, w) == size and h * w <= limit:
                    return np.asarray(im.convert("RGB"))
        bad = f"panoptic PNG {png_path} is {(h, w)}, the image is {size} (limit max_pixels={limit}); not decoded"
    except Exception as exc:  # PIL raises OSError, ValueError, DecompressionBombError, ... on bad files
        bad = f"panoptic PNG {png_path} cannot be decoded: {type(exc).__name__}: {exc}"
    policy.fail(index.path, where, bad)
    return None


def load_panoptic_regions(entry: dict, index: PanopticIndex, panoptic_root: Path, policy: ErrorPolicy, *,
                          max_pixels: int | None = None):
    """`Regions` of one annotation entry (None if the PNG is missing, unreadable or of the wrong size)."""
    image_id = entry["image_id"]
    size = index.sizes[image_id]
    where = f"image_id={image_id!r}"
    png_path, bad = path_inside(panoptic_root, entry["file_name"], "file_name")
    if bad:
        policy.fail(index.path, where, bad)
        return None
    if not png_path.is_file():
        policy.fail(index.path, where, f"panoptic PNG {png_path} does not exist")
        return None
    png = _read_png(png_path, size, max_pixels, index, policy, where)
    if png is None:
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
                       check_images: bool = True, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """One record per annotated image; regions = segments (``ids`` = segment ids, ``labels`` =
    category names, ``data["category_id" | "iscrowd" | "isthing"]``). ``max_pixels`` bounds image
    sizes (default `regionlib.images.DEFAULT_MAX_PIXELS`)."""
    policy = ErrorPolicy(on_error, report)
    index = PanopticIndex(panoptic_json, policy, max_pixels=max_pixels)
    return _records(index, Path(panoptic_root), Path(image_root), policy, check_images, max_pixels)


def image_file(index: PanopticIndex, image_id, image_root: Path, policy: ErrorPolicy, check_images: bool):
    """The image file of ``image_id`` (inside ``image_root``; on disk when checked), else None after
    reporting it (shared by the panoptic and PanCap readers)."""
    file, bad = path_inside(image_root, index.images[image_id].get("file_name"), "file_name")
    if not bad and check_images and not file.is_file():
        bad = f"image file {file} does not exist"
    if bad:
        policy.fail(index.path, f"image_id={image_id!r}", bad)
        return None
    return file


def _records(index, panoptic_root, image_root, policy, check_images, max_pixels):
    for image_id, entry in index.entries.items():
        file = image_file(index, image_id, image_root, policy, check_images)
        if file is None:
            continue
        regions = load_panoptic_regions(entry, index, panoptic_root, policy, max_pixels=max_pixels)
        if regions is None:
            continue
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=regions.image_size, regions=regions))
