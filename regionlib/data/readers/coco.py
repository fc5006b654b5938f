"""COCO and LVIS instance annotations (polygons, RLE, crowd RLE) -> `ImageRecord`s.

Expected layout::

    <annotation_json>           # instances_{train,val}2017.json or lvis_v1_{train,val}.json
    <image_root>/<file_name>    # COCO: images[i]["file_name"]; LVIS: the last part of
                                # images[i]["coco_url"] (e.g. train2017/000000391895.jpg -> 000000391895.jpg)

The JSON holds ``images`` (``id, file_name | coco_url, height, width``), ``annotations``
(``id, image_id, category_id, segmentation, bbox`` XYWH, ``iscrowd``) and ``categories``
(``id, name``). Masks go through `Regions.from_coco` and stay RLE. LVIS extras per image
(``neg_category_ids``, ``not_exhaustive_category_ids``) land in ``record.extra``.

The annotation JSON is one object, so it is loaded whole (as pycocotools does); masks are
encoded per image as the returned iterator advances. Checked per record: duplicate image / annotation ids, an annotation whose ``image_id`` is
not an image, an unknown ``category_id``, a polygon with < 3 points, an RLE whose size is
not the image size, a box outside the image, a missing image file (``check_images``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterator

from ...errors import DataFormatError
from ...regions import Regions
from .base import ErrorPolicy, ImageRecord, ReadReport, as_mapping, check_box_xywh, check_unique, read_json

__all__ = ["read_coco", "read_lvis", "coco_image_file"]


def coco_image_file(image: dict, *, lvis: bool = False) -> str:
    """The file name of a COCO / LVIS image entry."""
    if "file_name" in image:
        return str(image["file_name"])
    if lvis and "coco_url" in image:
        return str(image["coco_url"]).rstrip("/").rsplit("/", 1)[-1]
    raise KeyError("file_name")


def _image_entries(data: dict, path: Path, policy: ErrorPolicy, lvis: bool) -> dict:
    images = {}
    entries = data.get("images")
    if not isinstance(entries, list):
        raise DataFormatError(f"{path}: 'images' must be a list")
    dups = check_unique([e.get("id") for e in entries if isinstance(e, dict)], path, "image id", policy)
    for k, e in enumerate(entries):
        e = as_mapping(e, path, f"images[{k}]", policy)
        if e is None or e.get("id") in dups:
            continue
        try:
            h, w = int(e["height"]), int(e["width"])
            name = coco_image_file(e, lvis=lvis)
        except (KeyError, TypeError, ValueError) as exc:
            policy.fail(path, f"image id={e.get('id')!r}", f"needs height, width and a file name ({exc!r})")
            continue
        if h <= 0 or w <= 0:
            policy.fail(path, f"image id={e['id']!r}", f"non-positive size {(h, w)}")
            continue
        images[e["id"]] = (name, (h, w), e)
    return images


def read_coco(annotation_json: str | Path, image_root: str | Path, *, on_error: str = "raise",
              report: ReadReport | None = None, check_images: bool = True, lvis: bool = False,
              box_tolerance: float = 1.0) -> Iterator[ImageRecord]:
    """One `ImageRecord` per image (images without annotations give empty `Regions`).

    The JSON is loaded and the annotations checked when this is called; masks are encoded per
    image as the returned iterator advances.

    Regions: ``labels`` = category names, ``ids`` = annotation ids, ``data["category_id"]``,
    ``data["iscrowd"]``, ``data["bbox_xywh"]`` (the annotation's own box), ``data["area"]``.
    """
    policy = ErrorPolicy(on_error, report)
    path = Path(annotation_json)
    data = read_json(path, "annotation file", expect=dict)
    image_root = Path(image_root)
    cats = data.get("categories")
    if not isinstance(cats, list):
        raise DataFormatError(f"{path}: 'categories' must be a list")
    categories = {c["id"]: str(c.get("name", c.get("synset", c["id"]))) for c in cats if isinstance(c, dict) and "id" in c}
    images = _image_entries(data, path, policy, lvis)
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise DataFormatError(f"{path}: 'annotations' must be a list")
    dup_anns = check_unique([a.get("id") for a in anns if isinstance(a, dict)], path, "annotation id", policy)
    per_image: dict = defaultdict(list)
    for k, a in enumerate(anns):
        a = as_mapping(a, path, f"annotations[{k}]", policy)
        if a is None or a.get("id") in dup_anns:
            continue
        ref = f"annotation id={a.get('id', k)!r}"
        if a.get("image_id") not in images:
            policy.fail(path, ref, f"image_id {a.get('image_id')!r} is not in 'images'")
            continue
        if a.get("category_id") not in categories:
            policy.fail(path, ref, f"unknown category_id {a.get('category_id')!r}")
            continue
        size = images[a["image_id"]][1]
        if "bbox" in a:
            bad = check_box_xywh(a["bbox"], size, tolerance=box_tolerance)
            if bad:
                policy.fail(path, ref, bad)
                continue
        per_image[a["image_id"]].append(a)
    return _records(images, per_image, categories, image_root, path, policy, check_images)


def _records(images, per_image, categories, image_root, path, policy, check_images) -> Iterator[ImageRecord]:
    for image_id, (name, size, entry) in images.items():
        file = image_root / name
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
    except DataFormatError:
        if policy.on_error == "raise":
            raise
        good = []
        for a in anns:
            try:
                Regions.from_coco([a], image_size=size, categories=categories, source=str(path))
                good.append(a)
            except DataFormatError as exc:
                policy.error(exc, path, f"annotation id={a.get('id')!r}")
        regions = Regions.from_coco(good, image_size=size, categories=categories, source=str(path))
    if len(regions):
        regions = regions.with_fields(data={"bbox_xywh": [list(map(float, a.get("bbox", []))) for a in good],
                                            "area": [float(a.get("area", 0.0)) for a in good]})
    return regions


def read_lvis(annotation_json: str | Path, image_root: str | Path, **kwargs) -> Iterator[ImageRecord]:
    """LVIS v1 (COCO format; file names from ``coco_url``; category ``name`` or ``synset``)."""
    return read_coco(annotation_json, image_root, lvis=True, **kwargs)
