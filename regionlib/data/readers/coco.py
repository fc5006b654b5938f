"""COCO and LVIS instance annotations (polygons, RLE, crowd RLE) -> `ImageRecord`s.

Expected layout::

    <annotation_json>           # instances_{train,val}2017.json or lvis_v1_{train,val}.json
    <image_root>/<file_name>    # COCO: images[i]["file_name"] (image_root = e.g. coco/val2017)
    <image_root>/<split>/<name> # LVIS: the COCO split folder and file of images[i]["coco_url"]
                                # (http://images.cocodataset.org/train2017/000000391895.jpg ->
                                # train2017/000000391895.jpg; image_root = the COCO root holding
                                # train2017/ and val2017/: LVIS val images come from both)

The JSON holds ``images`` (``id, file_name | coco_url, height, width``), ``annotations``
(``id, image_id, category_id, segmentation, bbox`` XYWH, ``iscrowd``) and ``categories``
(``id, name``). Masks go through `Regions.from_coco` and stay RLE. LVIS extras per image
(``neg_category_ids``, ``not_exhaustive_category_ids``) land in ``record.extra``.

The annotation JSON is one object, so it is loaded whole (as pycocotools does); masks are
encoded per image as the returned iterator advances. Checked per record: duplicate image / annotation ids, an annotation whose ``image_id`` is
not an image, an unknown ``category_id``, a polygon with < 3 points (or non-finite, far outside
the image), an RLE whose size is not the image size or whose counts do not sum to H*W, a box
outside the image, an id that is not an int or str, an image size above ``max_pixels``, a file
name leaving ``image_root``, a missing image file (``check_images``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterator

from ...errors import DataFormatError, RegionLibError
from ...regions import Regions
from .base import (ErrorPolicy, ImageRecord, ReadReport, as_mapping, check_box_xywh, check_unique, id_problem,
                   path_inside, read_json, checked_size)

__all__ = ["read_coco", "read_lvis", "coco_image_file", "checked_image"]


def coco_image_file(image: dict, *, lvis: bool = False) -> str:
    """The file name of a COCO / LVIS image entry, relative to the image root: ``file_name``, or
    for LVIS the split folder and name from ``coco_url`` (``train2017/000000391895.jpg``).
    An entry with neither, or a non-string name, raises `DataFormatError` (the caller names the record)."""
    if "file_name" in image:
        if not isinstance(image["file_name"], str):
            raise DataFormatError(f"field 'file_name' must be a string, got {image['file_name']!r:.60}")
        return image["file_name"]
    if lvis and isinstance(image.get("coco_url"), str):
        parts = image["coco_url"].rstrip("/").split("/")
        return "/".join(parts[-2:]) if len(parts) >= 2 and parts[-2] else parts[-1]
    raise DataFormatError("no field 'file_name'" + (" or 'coco_url' (a string)" if lvis else ""))


def _image_entries(data: dict, path: Path, image_root: Path, policy: ErrorPolicy, lvis: bool,
                   max_pixels: int | None) -> dict:
    images = {}
    entries = data.get("images")
    if not isinstance(entries, list):
        raise DataFormatError(f"{path}: 'images' must be a list")
    dups = check_unique([e.get("id") for e in entries if isinstance(e, dict)], path, "image id", policy)
    for k, e in enumerate(entries):
        e = as_mapping(e, path, f"images[{k}]", policy)
        if e is None:
            continue
        bad = id_problem(e.get("id"), "id")
        if bad:
            policy.fail(path, f"images[{k}]", bad)
            continue
        if e["id"] in dups:
            continue
        size, file, bad = checked_image(e, image_root, lvis=lvis, max_pixels=max_pixels)
        if bad:
            policy.fail(path, f"image id={e['id']!r}", bad)
            continue
        images[e["id"]] = (file, size, e)
    return images


def checked_image(entry: dict, image_root: Path, *, lvis: bool = False, max_pixels: int | None = None):
    """``((H, W), file, None)`` of a COCO image entry (size within ``max_pixels``, file name inside
    ``image_root``), or ``(None, None, reason)`` (shared by the COCO, RefCOCO and gRefCOCO readers)."""
    size, bad = checked_size(entry.get("height"), entry.get("width"), max_pixels)
    if bad:
        return None, None, bad
    try:
        file, bad = path_inside(image_root, coco_image_file(entry, lvis=lvis), "file_name")
    except DataFormatError as exc:
        return None, None, str(exc)
    return (size, file, None) if not bad else (None, None, bad)


def read_coco(annotation_json: str | Path, image_root: str | Path, *, on_error: str = "raise",
              report: ReadReport | None = None, check_images: bool = True, lvis: bool = False,
              box_tolerance: float = 1.0, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """One `ImageRecord` per image (images without annotations give empty `Regions`).

    The JSON is loaded and the annotations checked when this is called; masks are encoded per
    image as the returned iterator advances.

    Regions: ``labels`` = category names, ``ids`` = annotation ids, ``data["category_id"]``,
    ``data["iscrowd"]``, ``data["bbox_xywh"]`` (the annotation's own box), ``data["area"]``.
    ``max_pixels`` bounds each image's H*W (default `regionlib.images.DEFAULT_MAX_PIXELS`).
    """
    policy = ErrorPolicy(on_error, report)
    path = Path(annotation_json)
    data = read_json(path, "annotation file", expect=dict)
    image_root = Path(image_root)
    cats = data.get("categories")
    if not isinstance(cats, list):
        raise DataFormatError(f"{path}: 'categories' must be a list")
    categories = {}
    for k, c in enumerate(cats):
        bad = "expected a JSON object" if not isinstance(c, dict) else id_problem(c.get("id"), "id")
        if bad:
            raise DataFormatError(f"{path}: record categories[{k}]: {bad}")
        categories[c["id"]] = str(c.get("name", c.get("synset", c["id"])))
    images = _image_entries(data, path, image_root, policy, lvis, max_pixels)
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise DataFormatError(f"{path}: 'annotations' must be a list")
    dup_anns = check_unique([a.get("id") for a in anns if isinstance(a, dict)], path, "annotation id", policy)
    per_image: dict = defaultdict(list)
    for k, a in enumerate(anns):
        a = as_mapping(a, path, f"annotations[{k}]", policy)
        if a is None:
            continue
        bad = id_problem(a.get("id"), "id") or id_problem(a.get("image_id"), "image_id") or \
            id_problem(a.get("category_id"), "category_id")
        if bad:
            policy.fail(path, f"annotations[{k}]", bad)
            continue
        if a["id"] in dup_anns:
            continue
        ref = f"annotation id={a['id']!r}"
        if a.get("image_id") not in images:
            policy.fail(path, ref, f"image_id {a.get('image_id')!r} is not in 'images'")
            continue
        if a.get("category_id") not in categories:
            policy.fail(path, ref, f"unknown category_id {a.get('category_id')!r}")
            continue
        size = images[a["image_id"]][1]
        bad = check_box_xywh(a["bbox"], size, tolerance=box_tolerance) if "bbox" in a else None
        if not bad and not isinstance(a.get("area", 0.0), (int, float)):
            bad = f"field 'area' must be a number, got {a['area']!r:.60}"
        if bad:
            policy.fail(path, ref, bad)
            continue
        per_image[a["image_id"]].append(a)
    return _records(images, per_image, categories, path, policy, check_images)


def _records(images, per_image, categories, path, policy, check_images) -> Iterator[ImageRecord]:
    for image_id, (file, size, entry) in images.items():
        if check_images and not file.is_file():
            policy.fail(path, f"image id={image_id!r}", f"image file {file} does not exist")
            continue
        regions = _regions(per_image.get(image_id, []), size, categories, path, policy)
        extra = {k: entry[k] for k in ("neg_category_ids", "not_exhaustive_category_ids") if k in entry}
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=size, regions=regions, extra=extra))


def _regions(anns: list, size: tuple[int, int], categories: dict, path: Path, policy: ErrorPolicy) -> Regions:
    """`Regions.from_coco` of all annotations at once; on failure, one by one to skip only the bad ones."""
    try:
        good = anns
        regions = Regions.from_coco(anns, image_size=size, categories=categories, source=str(path))
    except RegionLibError:
        if policy.on_error == "raise":
            raise
        good = []
        for a in anns:
            try:
                Regions.from_coco([a], image_size=size, categories=categories, source=str(path))
                good.append(a)
            except RegionLibError as exc:
                policy.error(exc, path, f"annotation id={a.get('id')!r}")
        regions = Regions.from_coco(good, image_size=size, categories=categories, source=str(path))
    if len(regions):
        regions = regions.with_fields(data={"bbox_xywh": [list(map(float, a.get("bbox", []))) for a in good],
                                            "area": [float(a.get("area", 0.0)) for a in good]})
    return regions


def read_lvis(annotation_json: str | Path, image_root: str | Path, **kwargs) -> Iterator[ImageRecord]:
    """LVIS v1 (COCO format; file names from ``coco_url``; category ``name`` or ``synset``)."""
    return read_coco(annotation_json, image_root, lvis=True, **kwargs)
