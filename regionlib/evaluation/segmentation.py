"""Segmentation metrics: panoptic quality (panopticapi's definition) and gRefCOCO's gIoU / cIoU / N-acc / T-acc.

PQ (Kirillov et al. 2019; COCONut-PanCap, seed 002; REFERENCE §8), as panopticapi's
``pq_compute``: per image, a ground-truth and a predicted segment of the same category match
when their IoU > 0.5, where the union leaves out predicted pixels on void (unique matches by
construction); crowd ground-truth segments are never matched nor counted as false negatives;
an unmatched prediction is not a false positive when more than half of it lies on void or on a
crowd region of its category. Per category ``PQ = sum IoU(TP) / (TP + FP/2 + FN/2)``,
``SQ = sum IoU / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``; PQ / SQ / RQ are averaged over the
categories that occur (TP + FP + FN > 0), over all, things and stuff. Values are fractions.

gRefCOCO (RAS, seed 004; REFERENCE §7; the official ReLA scorer, ``ReferEvaluator.evaluate``): per
sample, I and U of the predicted union mask vs. the ground-truth union mask, and the model's
no-target decision — ReLA's explicit ``nt_label`` when given (``no_target=``), else "the predicted
mask is empty". A no-target sample (empty ground truth) decided no-target has IoU 1 and adds
nothing to I or U, whatever stray pixels the mask has; otherwise IoU 0 and U grows by the
predicted area. A target sample decided no-target has IoU 0 and adds I = 0 and its union U;
otherwise IoU = I / U. gIoU = 100 x mean IoU, cIoU = 100 x sum I / sum U, N-acc = 100 x share of
no-target samples decided no-target, T-acc = 100 x share of target samples decided targeted
(cIoU is NaN when every union is empty).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataFormatError, InvalidMaskError

__all__ = ["panoptic_quality", "grefcoco_scores"]


def _segment_stats(k: int, gt: np.ndarray, gt_segs: Mapping, pred: np.ndarray, pred_segs: Mapping,
                   categories: Mapping[int, bool], void_id: int, stats: dict) -> None:
    """Add one image's TP / FP / FN / IoU sums per category to ``stats`` (panopticapi's single-core loop)."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise DataFormatError(f"samples[{k}]: id maps must be (H, W) of one shape, got {gt.shape} and {pred.shape}")
    if not (np.issubdtype(gt.dtype, np.integer) and np.issubdtype(pred.dtype, np.integer)):
        raise DataFormatError(f"samples[{k}]: id maps must be integer arrays, got {gt.dtype} and {pred.dtype}")
    for name, segs in (("ground-truth", gt_segs), ("predicted", pred_segs)):
        for sid, info in segs.items():
            if info.get("category_id") not in categories:
                raise DataFormatError(f"samples[{k}]: {name} segment {sid} has unknown category_id "
                                      f"{info.get('category_id')!r}")
    pred_ids, pred_counts = np.unique(pred, return_counts=True)
    pred_area = {int(i): int(c) for i, c in zip(pred_ids, pred_counts)}
    unknown = [i for i in pred_area if i != void_id and i not in pred_segs]
    if unknown:
        raise DataFormatError(f"samples[{k}]: predicted ids {unknown[:5]} are in the map but not in the segments")
    absent = [i for i in pred_segs if i not in pred_area]
    if absent:
        raise DataFormatError(f"samples[{k}]: predicted segments {absent[:5]} do not occur in the map")
    gt_ids, gt_counts = np.unique(gt, return_counts=True)
    gt_area = {int(i): int(c) for i, c in zip(gt_ids, gt_counts)}
    offset = int(max(pred.max(), 0)) + 1
    pair_ids, pair_counts = np.unique(gt.astype(np.int64) * offset + pred.astype(np.int64), return_counts=True)
    inter = {(int(p) // offset, int(p) % offset): int(c) for p, c in zip(pair_ids, pair_counts)}
    tp, fp, fn, iou_sum = stats["tp"], stats["fp"], stats["fn"], stats["iou"]
    matched_gt, matched_pred = set(), set()
    for (g, p), n in inter.items():
        if g not in gt_segs or p not in pred_segs or gt_segs[g].get("iscrowd", 0) == 1:
            continue
        if gt_segs[g]["category_id"] != pred_segs[p]["category_id"]:
            continue
        union = pred_area[p] + gt_area.get(g, 0) - n - inter.get((void_id, p), 0)
        iou = n / union
        if iou > 0.5:
            cat = gt_segs[g]["category_id"]
            tp[cat] += 1
            iou_sum[cat] += iou
            matched_gt.add(g)
            matched_pred.add(p)
    crowd_by_category = {}
    for g, info in gt_segs.items():
        if g in matched_gt:
            continue
        if info.get("iscrowd", 0) == 1:
            crowd_by_category[info["category_id"]] = g
            continue
        fn[info["category_id"]] += 1
    for p, info in pred_segs.items():
        if p in matched_pred:
            continue
        ignored = inter.get((void_id, p), 0)
        if info["category_id"] in crowd_by_category:
            ignored += inter.get((crowd_by_category[info["category_id"]], p), 0)
        if ignored / pred_area[p] > 0.5:
            continue
        fp[info["category_id"]] += 1


def panoptic_quality(samples: Sequence[tuple[np.ndarray, Mapping, np.ndarray, Mapping]], *,
                     categories: Mapping[int, bool], void_id: int = 0) -> dict:
    """PQ, SQ, RQ over images (panopticapi's definition; see the module docstring).

    Args:
        samples: per image ``(gt_ids (H, W) int, gt_segments, pred_ids (H, W) int, pred_segments)``;
            segments map a segment id of the map to ``{"category_id": int, "iscrowd": 0 | 1}``
            (``iscrowd`` ground truth only, default 0). Pixels equal to ``void_id`` are void.
            Every non-void predicted id needs a segment and every predicted segment pixels.
        categories: category id -> is it a *thing* (True) or *stuff* (False).

    Returns ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {cat: {"pq", "sq",
    "rq", "tp", "fp", "fn"}}}``.
    """
    if not samples:
        raise DataFormatError("panoptic_quality needs at least one sample")
    stats = {"tp": defaultdict(int), "fp": defaultdict(int), "fn": defaultdict(int), "iou": defaultdict(float)}
    for k, sample in enumerate(samples):
        if len(sample) != 4:
            raise DataFormatError(f"samples[{k}] must be (gt_ids, gt_segments, pred_ids, pred_segments)")
        _segment_stats(k, *sample, categories=categories, void_id=void_id, stats=stats)
    per_class = {}
    for cat in categories:
        tp, fp, fn, iou = stats["tp"][cat], stats["fp"][cat], stats["fn"][cat], stats["iou"][cat]
        if tp + fp + fn == 0:
            continue
        denom = tp + 0.5 * fp + 0.5 * fn
        per_class[cat] = {"pq": iou / denom, "sq": iou / tp if tp else 0.0, "rq": tp / denom, "tp": tp, "fp": fp,
                          "fn": fn}
    out: dict = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        rows = [r for c, r in per_class.items() if isthing is None or categories[c] == isthing]
        n = len(rows)
        out[name] = {key: sum(r[key] for r in rows) / n if n else 0.0 for key in ("pq", "sq", "rq")} | {"n": n}
    out["per_class"] = per_class
    return out


def _union(mask, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool:
        raise InvalidMaskError(f"{name} must be a bool array, got {m.dtype}")
    if m.ndim == 3:
        return m.any(axis=0)
    if m.ndim != 2:
        raise InvalidMaskError(f"{name} must be (H, W) or (N, H, W), got shape {m.shape}")
    return m


def grefcoco_scores(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                    no_target: Sequence[bool] | None = None) -> dict:
    """gIoU, cIoU, N-acc, T-acc (percent) of predicted vs. ground-truth masks.

    Each prediction / target is a bool ``(H, W)`` mask or ``(N, H, W)`` masks (a group, N >= 0),
    reduced to its union. ``no_target``: per sample, the model's explicit no-target flag (ReLA's
    ``nt_label``); None decides by an empty predicted mask. N-acc (T-acc) is NaN when there is no
    no-target (target) sample.
    """
    if len(predictions) != len(targets) or not len(predictions):
        raise DataFormatError(f"need equally many predictions and targets (> 0), got {len(predictions)} and "
                              f"{len(targets)}")
    if no_target is not None:
        no_target = list(no_target)
        if len(no_target) != len(predictions) or not all(isinstance(f, (bool, np.bool_)) for f in no_target):
            raise DataFormatError(f"no_target must be {len(predictions)} bools (one per prediction), got {no_target!r}")
    ious, inter_total, union_total = [], 0, 0
    empty_gt = empty_gt_ok = target = target_ok = 0
    for k, (p, t) in enumerate(zip(predictions, targets)):
        p, t = _union(p, f"predictions[{k}]"), _union(t, f"targets[{k}]")
        if p.shape != t.shape:
            raise InvalidMaskError(f"sample {k}: prediction {p.shape} and target {t.shape} differ in size")
        says_no_target = not p.any() if no_target is None else bool(no_target[k])
        u = int(np.count_nonzero(p | t))
        if not t.any():
            empty_gt += 1
            empty_gt_ok += says_no_target
            ious.append(1.0 if says_no_target else 0.0)
            union_total += 0 if says_no_target else u
            continue
        target += 1
        target_ok += not says_no_target
        i = 0 if says_no_target else int(np.count_nonzero(p & t))
        inter_total += i
        union_total += u
        ious.append(i / u)
    return {"gIoU": 100 * float(np.mean(ious)),
            "cIoU": 100 * inter_total / union_total if union_total else float("nan"),
            "N-acc": 100 * empty_gt_ok / empty_gt if empty_gt else float("nan"),
            "T-acc": 100 * target_ok / target if target else float("nan")}
