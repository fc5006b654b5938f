"""Visual Genome: region descriptions (+ densecap splits) and scene graphs -> `ImageRecord`s.

Expected layout (the VG 1.2 release and densecap's split file)::

    <root>/image_data.json            # [{"image_id" (or "id"), "width", "height", "url", ...}]
    <root>/region_descriptions.json   # [{"id": image_id, "regions": [{"region_id", "image_id",
                                      #    "phrase", "x", "y", "width", "height"}]}]
    <root>/attributes.json            # scene graphs: [{"image_id", "attributes": [{"object_id",
                                      #    "names", "x", "y", "w", "h", "attributes"?}]}]
    <root>/relationships.json         # [{"image_id", "relationships": [{"relationship_id",
                                      #    "predicate", "subject": {"object_id"}, "object": {...}}]}]
    <root>/VG_100K/<image_id>.jpg and <root>/VG_100K_2/<image_id>.jpg
    <densecap_splits.json>            # {"train": [image ids], "val": [...], "test": [...]}

The big arrays (region descriptions, attributes, relationships) are streamed element by
element (`base.iter_json_array`), so memory stays at one image's annotations. Regions are
boxes only (``masks_rle`` None): RAS (REFERENCE §7) gets masks from SAM with the boxes.

Boxes past the image border (the release has many) are clamped to the image, densecap's
convention (``preprocess.py``), and counted in ``report.stats["clamped_boxes"]``; a box with no
overlap with the image, a non-positive width or height or a non-finite coordinate is a bad record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import DataFormatError
from ...regions import Regions
from .base import (ErrorPolicy, ImageRecord, ReadReport, checked_size, id_problem, iter_json_array, read_json,
                   require_file)

__all__ = ["read_visual_genome", "read_vg_scene_graphs", "load_image_data", "load_densecap_split"]


def load_image_data(root: str | Path, *, max_pixels: int | None = None) -> dict:
    """``image_id -> ((H, W), relative file path)`` from ``image_data.json``."""
    path = Path(root) / "image_data.json"
    entries = read_json(path, "image metadata file", expect=list)
    out = {}
    for k, e in enumerate(entries):
        if not isinstance(e, dict):
            raise DataFormatError(f"{path}: record {k}: expected an object")
        image_id = e.get("image_id", e.get("id"))
        bad = id_problem(image_id, "image_id")
        if bad:
            raise DataFormatError(f"{path}: record {k}: {bad}")
        size, bad = checked_size(e.get("height"), e.get("width"), max_pixels)
        if bad:
            raise DataFormatError(f"{path}: record image_id={image_id!r}: {bad}")
        if image_id in out:
            raise DataFormatError(f"{path}: record image_id={image_id!r}: duplicate image id")
        url = str(e.get("url", ""))
        parts = url.rstrip("/").split("/")
        rel = "/".join(parts[-2:]) if len(parts) >= 2 and parts[-2].startswith("VG_100K") else f"VG_100K/{image_id}.jpg"
        out[image_id] = (size, rel)
    return out


def load_densecap_split(path: str | Path, split: str) -> set:
    """The image ids of ``split`` in densecap's ``densecap_splits.json``."""
    data = read_json(path, "densecap split file", expect=dict)
    if split not in data:
        raise DataFormatError(f"{path}: no split {split!r} (has {sorted(data)})")
    ids = data[split]
    bad = "must be a list" if not isinstance(ids, list) else next(
        (id_problem(i, f"{split}[{k}]") for k, i in enumerate(ids) if id_problem(i, "")), None)
    if bad:
        raise DataFormatError(f"{path}: split {split!r}: {bad}")
    return set(ids)


def _image_file(root: Path, image_id, rel: str) -> Path:
    file = root / rel
    if not file.is_file():
        for folder in ("VG_100K", "VG_100K_2"):
            alt = root / folder / f"{image_id}.jpg"
            if alt.is_file():
                return alt
    return file


def _clamped_xyxy(box, size) -> tuple[list[float] | None, str | None, bool]:
    """``(xyxy, None, clamped)`` of an XYWH box clamped to the image (densecap's rule), or
    ``(None, reason, False)`` for a box that is not finite, empty, or entirely outside."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return None, f"box {box} is not finite", False
    if w <= 0 or h <= 0:
        return None, f"empty box {box} (width and height must be positive)", False
    H, W = size
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(W), x + w), min(float(H), y + h)
    if x1 <= x0 or y1 <= y0:
        return None, f"box {box} (XYWH) lies entirely outside the image of size (H, W) = ({H}, {W})", False
    return [x0, y0, x1, y1], None, [x0, y0, x1, y1] != [x, y, x + w, y + h]


def _boxes(items, size, keys, path, image_id, id_key, policy):
    good, boxes = [], []
    seen = set()
    for k, r in enumerate(items):
        rid = r.get(id_key, k) if isinstance(r, dict) else k
        ref = f"image_id={image_id!r} {id_key}={rid!r}"
        if not isinstance(r, dict):
            policy.fail(path, ref, "expected an object")
            continue
        bad = id_problem(rid, id_key)
        if bad:
            policy.fail(path, f"image_id={image_id!r} element {k}", bad)
            continue
        if rid in seen:
            policy.fail(path, ref, f"duplicate {id_key} {rid!r}")
            continue
        seen.add(rid)
        values = [r.get(key) for key in keys]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            policy.fail(path, ref, f"needs numeric {', '.join(keys)}, got {values!r:.80}")
            continue
        xyxy, bad, clamped = _clamped_xyxy([float(v) for v in values], size)
        if bad:
            policy.fail(path, ref, bad)
            continue
        if clamped:
            policy.report.note("clamped_boxes")
        boxes.append(xyxy)
        good.append(r)
    return good, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def read_visual_genome(root: str | Path, *, split: str | None = None, densecap_splits: str | Path | None = None,
                       on_error: str = "raise", report: ReadReport | None = None, check_images: bool = True,
                       max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """Region descriptions: one record per image; ``captions`` = phrases, ``ids`` = region ids.

    ``split`` (with ``densecap_splits``) keeps only that densecap split's images. Boxes past the
    border are clamped and counted in ``report.stats["clamped_boxes"]`` (module docstring).
    """
    root = Path(root)
    policy = ErrorPolicy(on_error, report)
    meta = load_image_data(root, max_pixels=max_pixels)
    keep = None
    if split is not None:
        if densecap_splits is None:
            raise DataFormatError("split needs densecap_splits (the path of densecap_splits.json)")
        keep = load_densecap_split(densecap_splits, split)
    path = require_file(root / "region_descriptions.json", "region descriptions file")
    return _read_regions(root, path, meta, keep, policy, check_images)


def _known_image(root, meta, image_id, path, ref, policy, check_images):
    """``(size, file)`` of an image listed in image_data.json (and on disk when checked), else None
    after reporting the record to ``policy``."""
    bad = id_problem(image_id, "image_id")
    if bad:
        policy.fail(path, ref, bad)
        return None
    if image_id not in meta:
        policy.fail(path, ref, f"image {image_id!r} is not in image_data.json")
        return None
    size, rel = meta[image_id]
    file = _image_file(root, image_id, rel)
    if check_images and not file.is_file():
        policy.fail(path, ref, f"image file {file} does not exist")
        return None
    return size, file


def _read_regions(root, path, meta, keep, policy, check_images) -> Iterator[ImageRecord]:
    for k, entry in enumerate(iter_json_array(path, "region descriptions file")):
        image_id = entry.get("id", entry.get("image_id")) if isinstance(entry, dict) else None
        if keep is not None and (id_problem(image_id, "id") or image_id not in keep):
            continue
        ref = f"image_id={image_id!r}" if image_id is not None else f"element {k}"
        if not isinstance(entry, dict) or not isinstance(entry.get("regions"), list):
            policy.fail(path, ref, "expected {'id', 'regions': [...]}")
            continue
        found = _known_image(root, meta, image_id, path, ref, policy, check_images)
        if found is None:
            continue
        size, file = found
        good, boxes = _boxes(entry["regions"], size, ("x", "y", "width", "height"), path, image_id, "region_id",
                             policy)
        regions = Regions.from_boxes(boxes, image_size=size, captions=[str(r.get("phrase", "")).strip() for r in good],
                                     ids=[r.get("region_id") for r in good])
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=size, regions=regions))


def read_vg_scene_graphs(root: str | Path, *, on_error: str = "raise", report: ReadReport | None = None,
                         check_images: bool = True, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """Objects with names and attributes plus relationships, one record per image.

    Regions: boxes, ``labels`` = first name, ``ids`` = object ids, ``data["names"]``,
    ``data["attributes"]`` (list of str per object). ``extra["relationships"]``: list of
    ``(subject_index, predicate, object_index)`` into the regions. Boxes are clamped as in
    `read_visual_genome`.
    """
    root = Path(root)
    policy = ErrorPolicy(on_error, report)
    meta = load_image_data(root, max_pixels=max_pixels)
    attr_path = require_file(root / "attributes.json", "attributes file")
    rel_path = require_file(root / "relationships.json", "relationships file")
    return _read_graphs(root, attr_path, rel_path, meta, policy, check_images)


def _strings(value) -> list[str] | None:
    """A VG list-of-strings field (names, attributes) as a list, or None if it is not one."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _read_graphs(root, attr_path, rel_path, meta, policy, check_images) -> Iterator[ImageRecord]:
    rel_iter = iter_json_array(rel_path, "relationships file")
    for k, entry in enumerate(iter_json_array(attr_path, "attributes file")):
        rel_entry = next(rel_iter, None)
        image_id = entry.get("image_id") if isinstance(entry, dict) else None
        ref = f"image_id={image_id!r}"
        if not isinstance(rel_entry, dict) or rel_entry.get("image_id") != image_id:
            raise DataFormatError(f"{rel_path}: element {k} is not image {image_id!r} (the files must list the "
                                  "same images in the same order)")
        if not isinstance(entry, dict) or not isinstance(entry.get("attributes"), list):
            policy.fail(attr_path, ref, "expected {'image_id', 'attributes': [...]}")
            continue
        found = _known_image(root, meta, image_id, attr_path, ref, policy, check_images)
        if found is None:
            continue
        size, file = found
        objects, boxes = _boxes(entry["attributes"], size, ("x", "y", "w", "h"), attr_path, image_id, "object_id",
                                policy)
        good, keep, names, attributes = [], [], [], []
        for i, o in enumerate(objects):
            n = _strings(o.get("names") or ([o["name"]] if "name" in o else []))
            a = _strings(o.get("attributes"))
            if n is None or a is None:
                policy.fail(attr_path, f"{ref} object_id={o['object_id']!r}",
                            "fields 'names' and 'attributes' must be lists of strings")
                continue
            good.append(o)
            keep.append(i)
            names.append(n)
            attributes.append([v.strip().lower() for v in a])
        boxes = boxes[keep]
        index = {o["object_id"]: i for i, o in enumerate(good)}
        relationships = []
        rels = rel_entry.get("relationships", [])
        if not isinstance(rels, list):
            policy.fail(rel_path, ref, "field 'relationships' must be a list")
            rels = []
        for r in rels:
            if not isinstance(r, dict):
                policy.fail(rel_path, ref, f"a relationship must be an object, got {type(r).__name__}")
                continue
            try:
                s_id, o_id, pred = r["subject"]["object_id"], r["object"]["object_id"], str(r["predicate"])
            except (KeyError, TypeError):
                policy.fail(rel_path, f"{ref} relationship_id={r.get('relationship_id')!r}",
                            "needs subject.object_id, object.object_id and predicate")
                continue
            if id_problem(s_id, "subject.object_id") or id_problem(o_id, "object.object_id") or \
                    s_id not in index or o_id not in index:
                policy.fail(rel_path, f"{ref} relationship_id={r.get('relationship_id')!r}",
                            f"subject {s_id!r} or object {o_id!r} is not an object of the image")
                continue
            relationships.append((index[s_id], pred.strip().lower(), index[o_id]))
        regions = Regions.from_boxes(
            boxes, image_size=size, labels=[(n[0] if n else "").strip().lower() for n in names],
            ids=[o["object_id"] for o in good],
            data={"names": names, "attributes": attributes})
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=size, regions=regions,
                                       extra={"relationships": relationships}))
