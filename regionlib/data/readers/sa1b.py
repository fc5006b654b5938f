"""SA-1B (Segment Anything 1B) per-image JSON -> `ImageRecord`s, one file at a time.

Expected layout: one extracted SA-1B tar, or a root holding one folder per tar (as the release
is downloaded: ``sa_000000.tar`` ... extracted to ``sa_000000/`` ...)::

    <root>/sa_<n>.jpg                  or   <root>/sa_000000/sa_<n>.jpg
    <root>/sa_<n>.json                 or   <root>/sa_000000/sa_<n>.json
                         # {"image": {"image_id", "file_name", "height", "width"},
                         #  "annotations": [{"id", "segmentation": {"size": [H, W], "counts": str},
                         #    "bbox" XYWH, "area", "predicted_iou", "stability_score",
                         #    "point_coords", "crop_box"}]}

Each JSON is read only when its record is produced. Regions keep the RLE (no decoding);
``scores`` = ``predicted_iou``; ``data`` holds ``predicted_iou``, ``stability_score``,
``point_coords`` and ``crop_box``, as `Regions.from_sam` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import DataFormatError
from ...regions import Regions
from ...errors import RegionLibError
from .base import (ErrorPolicy, ImageRecord, ReadReport, check_box_xywh, check_unique, checked_size, id_problem,
                   path_inside, read_json)

__all__ = ["read_sa1b", "read_sa1b_file", "sa1b_files"]


def read_sa1b_file(json_path: str | Path, *, policy: ErrorPolicy | None = None, check_images: bool = True,
                   image_dir: str | Path | None = None, max_pixels: int | None = None) -> ImageRecord | None:
    """One SA-1B image (None when skipped in skip mode)."""
    policy = policy or ErrorPolicy()
    path = Path(json_path)
    data = read_json(path, "SA-1B annotation file", expect=dict)
    info, anns = data.get("image"), data.get("annotations")
    if not isinstance(info, dict) or not isinstance(anns, list):
        raise DataFormatError(f"{path}: needs 'image' (object) and 'annotations' (list)")
    size, bad = checked_size(info.get("height"), info.get("width"), max_pixels)
    file, bad_name = path_inside(Path(image_dir or path.parent), info.get("file_name"), "file_name")
    if bad or bad_name:
        raise DataFormatError(f"{path}: record 'image': {bad or bad_name}")
    image_id = info.get("image_id")
    if check_images and not file.is_file():
        policy.fail(path, f"image_id={image_id!r}", f"image file {file} does not exist")
        return None
    dups = check_unique([a.get("id") for a in anns if isinstance(a, dict)], path, "annotation id", policy)
    good = []
    for k, a in enumerate(anns):
        ref = f"annotations[{k}]"
        if not isinstance(a, dict):
            policy.fail(path, ref, "expected an object")
            continue
        bad = id_problem(a.get("id"), "id")
        if bad:
            policy.fail(path, ref, bad)
            continue
        if a["id"] in dups:
            continue
        ref = f"annotation id={a['id']!r}"
        if not isinstance(a.get("segmentation"), dict):
            policy.fail(path, ref, "segmentation must be an RLE object")
            continue
        bad = check_box_xywh(a["bbox"], size) if "bbox" in a else None
        for key in ("predicted_iou", "stability_score"):
            if not bad and not isinstance(a.get(key, 0.0), (int, float)):
                bad = f"field {key!r} must be a number, got {a[key]!r:.60}"
        if bad:
            policy.fail(path, ref, bad)
            continue
        try:
            Regions.from_coco([a], image_size=size, source=str(path))
        except RegionLibError as exc:
            policy.error(exc, path, ref)
            continue
        good.append(a)
    base = Regions.from_coco(good, image_size=size, source=str(path))
    if not good:
        return policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=size, regions=base))
    iou = np.array([float(a.get("predicted_iou", np.nan)) for a in good])
    regions = Regions(image_size=size, boxes_xyxy=base.boxes_xyxy, masks_rle=base.masks_rle, scores=iou, ids=base.ids,
                      data={"predicted_iou": iou,
                            "stability_score": np.array([float(a.get("stability_score", np.nan)) for a in good]),
                            "point_coords": [a.get("point_coords") for a in good],
                            "crop_box": [a.get("crop_box") for a in good]})
    return policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=size, regions=regions))


def sa1b_files(root: str | Path) -> list[Path]:
    """The ``sa_*.json`` files of an SA-1B root, flat or one folder per tar, in sorted order.

    A root that does not exist or holds no ``sa_*.json`` at either level raises `DataFormatError`
    (never 0 records silently)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"SA-1B folder {root} does not exist")
    files = sorted([*root.glob("sa_*.json"), *root.glob("*/sa_*.json")])
    if not files:
        raise DataFormatError(f"SA-1B folder {root} holds no sa_*.json, neither at its top level nor in per-tar "
                              "folders (<root>/sa_000000/sa_1.json); expected an extracted SA-1B release")
    return files


def read_sa1b(root: str | Path, *, on_error: str = "raise", report: ReadReport | None = None,
              check_images: bool = True, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """Every ``sa_*.json`` of ``root`` (`sa1b_files`), one file per record; each image next to its JSON."""
    files = sa1b_files(root)
    policy = ErrorPolicy(on_error, report)
    return _records(files, policy, check_images, max_pixels)


def _records(files, policy, check_images, max_pixels):
    for f in files:
        rec = read_sa1b_file(f, policy=policy, check_images=check_images, max_pixels=max_pixels)
        if rec is not None:
            yield rec
