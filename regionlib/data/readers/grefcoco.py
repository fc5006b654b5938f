"""gRefCOCO generalized referring expressions (no-target, single- and multi-target) -> `ImageRecord`s.

Expected layout (the gRefCOCO release)::

    <root>/grefs(unc).json    # [{"ref_id", "image_id", "ann_id": [ids] (or [-1] / -1 when no
                              #   target), "no_target": bool, "split", "sent_ids",
                              #   "sentences": [{"sent_id", "sent", "raw", "tokens"}], ...}]
    <root>/instances.json     # COCO-format images, annotations, categories
    <image_root>/<file_name>  # COCO train2014 images

One record per image: the regions are *all* instance annotations of the image and
``extra["expressions"]`` lists the expressions, each with ``target_indices`` into the
regions (empty for a no-target expression, several for a multi-target one) — the
mask-group view RAS trains on (REFERENCE §7).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterator

from ...errors import DataFormatError, RegionLibError
from ...regions import Regions
from .base import ErrorPolicy, ImageRecord, ReadReport, read_json
from .refcoco import checked_refs, image_of

__all__ = ["read_grefcoco"]


def _target_ids(ref) -> list | None:
    ids = ref.get("ann_id")
    ids = [ids] if isinstance(ids, int) else ids
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        return None
    return [i for i in ids if i != -1]


def read_grefcoco(root: str | Path, *, image_root: str | Path, split: str | None = None, split_by: str = "unc",
                  on_error: str = "raise", report: ReadReport | None = None,
                  check_images: bool = True, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """One record per image that has expressions (of ``split`` if given); see the module docstring.

    Each expression: ``{"ref_id", "sentences": [str], "target_indices": [int], "no_target": bool, "split"}``.
    """
    policy = ErrorPolicy(on_error, report)
    root = Path(root)
    refs_path = root / f"grefs({split_by}).json"
    refs = read_json(refs_path, "grefs file", expect=list)
    inst_path = root / "instances.json"
    inst = read_json(inst_path, "instances file", expect=dict)
    try:
        images = {i["id"]: i for i in inst["images"]}
        cats = {c["id"]: str(c["name"]) for c in inst["categories"]}
        anns_by_image = defaultdict(list)
        ann_ids = set()
        for a in inst["annotations"]:
            if a["id"] in ann_ids:
                policy.fail(inst_path, f"annotation id={a['id']!r}", "duplicate annotation id")
                continue
            ann_ids.add(a["id"])
            anns_by_image[a["image_id"]].append(a)
    except (KeyError, TypeError) as exc:
        raise DataFormatError(f"{inst_path}: needs images, annotations and categories with ids ({exc!r})") from exc
    per_image = defaultdict(list)
    for where, ref in checked_refs(refs, refs_path, images, inst_path, split, policy):
        targets = _target_ids(ref)
        if targets is None:
            policy.fail(refs_path, where, f"ann_id must be an int or a list of ints, got {ref.get('ann_id')!r}")
            continue
        no_target = bool(ref.get("no_target", not targets))
        if no_target and targets:
            policy.fail(refs_path, where, f"no_target is true but ann_id lists {targets}")
            continue
        if not no_target and not targets:
            policy.fail(refs_path, where, "no target annotations and no_target is false")
            continue
        image_anns = {a["id"] for a in anns_by_image[ref["image_id"]]}
        missing = [t for t in targets if t not in image_anns]
        if missing:
            policy.fail(refs_path, where, f"ann_id {missing} are not annotations of image {ref['image_id']!r}")
            continue
        sents = ref.get("sentences")
        if not isinstance(sents, list) or not sents or not all(isinstance(s, dict) and "sent" in s for s in sents):
            policy.fail(refs_path, where, "needs a non-empty list of sentences with 'sent'")
            continue
        per_image[ref["image_id"]].append((ref, targets, no_target))
    return _records(per_image, images, anns_by_image, cats, Path(image_root), inst_path, refs_path, policy,
                    check_images, max_pixels)


def _records(per_image, images, anns_by_image, cats, image_root, inst_path, refs_path, policy, check_images,
             max_pixels):
    for image_id, exprs in per_image.items():
        found = image_of(images, image_id, image_root, inst_path, policy, check_images, max_pixels)
        if found is None:
            continue
        size, file = found
        try:
            regions = Regions.from_coco(anns_by_image[image_id], image_size=size, categories=cats, source=str(inst_path))
        except RegionLibError as exc:
            policy.error(exc, inst_path, f"image_id={image_id!r}")
            continue
        index = {a: i for i, a in enumerate(regions.ids)}
        expressions = [{"ref_id": ref["ref_id"], "sentences": [str(s["sent"]) for s in ref["sentences"]],
                        "target_indices": [index[t] for t in targets], "no_target": no_target, "split": ref.get("split")}
                       for ref, targets, no_target in exprs]
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=size, regions=regions,
                                       extra={"expressions": expressions}))
