"""RefCOCO / RefCOCO+ / RefCOCOg referring expressions -> `ImageRecord`s.

Expected layout (the refer toolkit's ``data/`` folder)::

    <root>/<dataset>/refs(<split_by>).p   # dataset: refcoco (unc | google), refcoco+ (unc),
                                          # refcocog (umd | google); a pickled list of refs
    <root>/<dataset>/instances.json       # COCO-format images, annotations, categories
    <image_root>/<file_name>              # COCO train2014 images

A ref: ``{"ref_id", "ann_id", "image_id", "category_id", "split", "sent_ids",
"sentences": [{"sent_id", "sent", "raw", "tokens"}], "file_name"}``. The pickle is read by
`load_refs_pickle`, a restricted unpickler whose ``find_class`` refuses every global: only
plain containers (dict, list, tuple), str, bytes, numbers, bools and None can come out, so
a pickle that tries to build any object or call any function is rejected (never executed).
"""

from __future__ import annotations

import io
import pickle
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from ...errors import DataFormatError
from ...regions import Regions
from ...errors import RegionLibError
from .base import ErrorPolicy, ImageRecord, ReadReport, id_problem, read_json, require_file
from .coco import checked_image

__all__ = ["PlainDataUnpickler", "load_refs_pickle", "read_refcoco", "DATASET_SPLITS"]

DATASET_SPLITS = {"refcoco": ("unc", "google"), "refcoco+": ("unc",), "refcocog": ("umd", "google")}
_PLAIN = (dict, list, tuple, str, bytes, int, float, bool, type(None))


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global (classes, functions) and persistent id."""

    def __init__(self, file, *, source: str):
        super().__init__(file, encoding="utf-8")
        self.source = source

    def find_class(self, module, name):
        raise DataFormatError(f"{self.source}: the pickle refers to {module}.{name}; only plain containers, str and "
                              "numbers are accepted (refused, nothing was executed)")

    def persistent_load(self, pid):
        raise DataFormatError(f"{self.source}: the pickle uses persistent ids; refused")


def _check_plain(obj, source: str, depth: int = 0) -> None:
    if depth > 64:
        raise DataFormatError(f"{source}: nesting deeper than 64 levels")
    if not isinstance(obj, _PLAIN):
        raise DataFormatError(f"{source}: holds a {type(obj).__name__}; only plain data is accepted")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, source, depth + 1)
            _check_plain(v, source, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, source, depth + 1)


def load_refs_pickle(path: str | Path):
    """Load a refer-toolkit pickle with `PlainDataUnpickler` (Python 2 str decoded as UTF-8)."""
    path = require_file(path, "refs pickle")
    data = path.read_bytes()
    try:
        obj = PlainDataUnpickler(io.BytesIO(data), source=str(path)).load()
    except DataFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError, ValueError, TypeError, IndexError,
            AttributeError, KeyError) as exc:
        raise DataFormatError(f"{path}: not a readable pickle (truncated or corrupt): {exc!r}") from exc
    _check_plain(obj, str(path))
    return obj


def _instances(path: Path, policy: ErrorPolicy):
    data = read_json(path, "instances file", expect=dict)
    try:
        images = {i["id"]: i for i in data["images"]}
        anns = {}
        for a in data["annotations"]:
            if a["id"] in anns:
                policy.fail(path, f"annotation id={a['id']!r}", "duplicate annotation id")
                continue
            anns[a["id"]] = a
        cats = {c["id"]: str(c["name"]) for c in data["categories"]}
    except (KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: needs images, annotations and categories with ids ({exc!r})") from exc
    return images, anns, cats


def checked_refs(refs, refs_path, images, inst_path, split, policy):
    """Yield ``(where, ref)`` for the refs of ``split`` (None: all) that are dicts with a unique
    ``ref_id`` and a known ``image_id``; the others go to ``policy`` (shared by RefCOCO and gRefCOCO)."""
    seen = set()
    for k, ref in enumerate(refs):
        rid = ref.get("ref_id", k) if isinstance(ref, dict) else k
        where = f"ref_id={rid!r}"
        if not isinstance(ref, dict):
            policy.fail(refs_path, where, "expected an object (dict)")
            continue
        bad = id_problem(rid, "ref_id") or id_problem(ref.get("image_id"), "image_id")
        if bad:
            policy.fail(refs_path, f"refs[{k}]", bad)
            continue
        if split is not None and ref.get("split") != split:
            continue
        if rid in seen:
            policy.fail(refs_path, where, "duplicate ref_id")
            continue
        seen.add(rid)
        if ref.get("image_id") not in images:
            policy.fail(refs_path, where, f"image_id {ref.get('image_id')!r} is not in {inst_path}")
            continue
        yield where, ref


def read_refcoco(root: str | Path, dataset: str = "refcoco", split_by: str = "unc", *, image_root: str | Path,
                 split: str | None = None, on_error: str = "raise", report: ReadReport | None = None,
                 check_images: bool = True, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """One record per image with one region per ref (its annotation's mask).

    Regions: ``ids`` = ref ids, ``captions`` = the first sentence, ``labels`` = category names,
    ``data["sentences"]`` (all sentences), ``data["ann_id"]``, ``data["split"]``.
    """
    if dataset not in DATASET_SPLITS or split_by not in DATASET_SPLITS[dataset]:
        raise DataFormatError(f"unknown dataset/split_by {dataset!r}/{split_by!r}; choose from {DATASET_SPLITS}")
    policy = ErrorPolicy(on_error, report)
    folder = Path(root) / dataset
    refs_path = folder / f"refs({split_by}).p"
    refs = load_refs_pickle(refs_path)
    if not isinstance(refs, list):
        raise DataFormatError(f"{refs_path}: expected a list of refs, got {type(refs).__name__}")
    inst_path = folder / "instances.json"
    images, anns, cats = _instances(inst_path, policy)
    per_image = defaultdict(list)
    for where, ref in checked_refs(refs, refs_path, images, inst_path, split, policy):
        ann = None if id_problem(ref.get("ann_id"), "ann_id") else anns.get(ref.get("ann_id"))
        if ann is None or ann.get("image_id") != ref["image_id"]:
            policy.fail(refs_path, where, f"ann_id {ref.get('ann_id')!r} is not an annotation of image {ref['image_id']!r}")
            continue
        sents = ref.get("sentences")
        if not isinstance(sents, list) or not sents or not all(isinstance(s, dict) and "sent" in s for s in sents):
            policy.fail(refs_path, where, "needs a non-empty list of sentences with 'sent'")
            continue
        per_image[ref["image_id"]].append(ref)
    return _records(per_image, images, anns, cats, Path(image_root), inst_path, refs_path, policy, check_images,
                    max_pixels)


def image_of(images, image_id, image_root, inst_path, policy, check_images, max_pixels):
    """``(size, file)`` of a checked COCO image entry (on disk when checked), else None after reporting
    it (shared by RefCOCO and gRefCOCO)."""
    size, file, bad = checked_image(images[image_id], image_root, max_pixels=max_pixels)
    if not bad and check_images and not file.is_file():
        bad = f"image file {file} does not exist"
    if bad:
        policy.fail(inst_path, f"image_id={image_id!r}", bad)
        return None
    return size, file


def _records(per_image, images, anns, cats, image_root, inst_path, refs_path, policy, check_images, max_pixels):
    for image_id, refs in per_image.items():
        found = image_of(images, image_id, image_root, inst_path, policy, check_images, max_pixels)
        if found is None:
            continue
        size, file = found
        good, masks = [], []
        for ref in refs:
            try:
                masks.append(Regions.from_coco([anns[ref["ann_id"]]], image_size=size, categories=cats,
                                               source=str(inst_path)))
                good.append(ref)
            except RegionLibError as exc:
                policy.error(exc, refs_path, f"ref_id={ref.get('ref_id')!r}")
        if not good:
            continue
        base = Regions.concat(masks)
        regions = Regions(
            image_size=size, boxes_xyxy=base.boxes_xyxy, masks_rle=base.masks_rle, labels=base.labels,
            ids=[r["ref_id"] for r in good], captions=[str(r["sentences"][0]["sent"]) for r in good],
            data={"sentences": [[str(s["sent"]) for s in r["sentences"]] for r in good],
                  "ann_id": [r["ann_id"] for r in good], "split": [r.get("split") for r in good]})
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=size, regions=regions))
