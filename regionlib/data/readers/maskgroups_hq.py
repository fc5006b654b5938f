"""MaskGroups-HQ (RAS, seed 004) samples -> `ImageRecord`s.

Expected layout (the RAS release; a JSON list or a JSON-lines file of samples)::

    <json_path>                 # [{"image": "<file name>", "conversations": [{"from": "human",
                                #    "value": "<image>\\n<mask_pool>\\n<query>"}, {"from": "gpt", ...}],
                                #   "mask_pool": [RLE, ...],        candidate masks (e.g. SAM proposals)
                                #   "gt_mask_pool": [RLE, ...],     ground-truth masks
                                #   "gt_mask_group": [[i, ...]]}]   indices into gt_mask_pool
    <image_root>/<image>

RLEs are COCO RLE ``{"size": [H, W], "counts": str | list}``. One record per sample:
``regions`` = the ground-truth pool; ``extra["candidates"]`` = the mask pool as `Regions`;
``extra["groups"]`` = the target groups (lists of indices into ``regions``);
``extra["query"]`` = the human turn's text after ``<mask_pool>`` (or after ``<image>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ...errors import RegionLibError
from ...regions import Regions
from .base import (ErrorPolicy, ImageRecord, ReadReport, checked_size, iter_json_array, iter_json_lines, path_inside,
                   require_file)

__all__ = ["read_maskgroups_hq", "extract_query"]


def extract_query(conversations) -> str:
    """The referring text of the first human turn (without the ``<image>`` / ``<mask_pool>`` tags)."""
    for turn in conversations or []:
        if isinstance(turn, dict) and turn.get("from") == "human":
            value = str(turn.get("value", ""))
            for tag in ("<mask_pool>", "<image>"):
                if tag in value:
                    return value.split(tag, 1)[1].strip()
            return value.strip()
    return ""


def _pool(rles, size, path, where) -> Regions:
    anns = [{"id": i, "segmentation": r} for i, r in enumerate(rles)]
    return Regions.from_coco(anns, image_size=size, source=f"{path} {where}")


def read_maskgroups_hq(json_path: str | Path, image_root: str | Path, *, on_error: str = "raise",
                       report: ReadReport | None = None, check_images: bool = True,
                       max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """Stream the samples (JSON list or ``.jsonl``) as records (see the module docstring)."""
    path = require_file(json_path, "MaskGroups-HQ file")
    policy = ErrorPolicy(on_error, report)
    if path.suffix == ".jsonl":
        items = ((f"line {n}", v) for n, v in iter_json_lines(path, "MaskGroups-HQ file"))
    else:
        items = ((f"sample {k}", v) for k, v in enumerate(iter_json_array(path, "MaskGroups-HQ file")))
    return _records(items, path, Path(image_root), policy, check_images, max_pixels)


def _pool_size(s: dict, max_pixels) -> tuple[tuple[int, int] | None, str | None]:
    """The one ``(H, W)`` shared by every RLE of the sample's pools, else ``(None, reason)``."""
    pools = (s["gt_mask_pool"], s["mask_pool"])
    if not all(isinstance(p, list) for p in pools):
        return None, "fields 'gt_mask_pool' and 'mask_pool' must be lists of RLEs"
    rles = [*pools[0], *pools[1]]
    if not rles or not all(isinstance(r, dict) and isinstance(r.get("size"), list) and len(r["size"]) == 2
                           for r in rles):
        return None, "every pool entry must be an RLE {'size': [H, W], 'counts': ...}"
    sizes = {tuple(r["size"]) if all(isinstance(v, int) for v in r["size"]) else None for r in rles}
    if len(sizes) != 1 or None in sizes:
        return None, f"every pool entry must be an RLE of one image size, got sizes {sorted(map(str, sizes))}"
    return checked_size(*sizes.pop(), max_pixels)


def _records(items, path, image_root, policy, check_images, max_pixels):
    for where, s in items:
        if not isinstance(s, dict):
            policy.fail(path, where, "expected an object")
            continue
        missing = [k for k in ("image", "mask_pool", "gt_mask_pool", "gt_mask_group") if k not in s]
        if missing:
            policy.fail(path, where, f"missing fields {missing}")
            continue
        file, bad = path_inside(image_root, s["image"], "image")
        if not bad and check_images and not file.is_file():
            bad = f"image file {file} does not exist"
        size, bad = (None, bad) if bad else _pool_size(s, max_pixels)
        if bad:
            policy.fail(path, where, bad)
            continue
        try:
            gt, candidates = _pool(s["gt_mask_pool"], size, path, where), _pool(s["mask_pool"], size, path, where)
        except RegionLibError as exc:
            policy.error(exc, path, where)
            continue
        groups = s["gt_mask_group"]
        if not isinstance(groups, list) or not all(
                isinstance(g, list) and all(isinstance(i, int) and 0 <= i < len(gt) for i in g) for g in groups):
            policy.fail(path, where, f"gt_mask_group must be lists of indices into gt_mask_pool (size {len(gt)})")
            continue
        yield policy.count(ImageRecord(image_id=s.get("id", s["image"]), image_path=file, image_size=size, regions=gt,
                                       extra={"candidates": candidates, "groups": groups,
                                              "query": extract_query(s.get("conversations"))}))
