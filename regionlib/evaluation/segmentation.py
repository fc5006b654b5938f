"""Segmentation metrics: panoptic quality (panopticapi's definition) and gRefCOCO's gIoU / cIoU / N-acc / T-acc.

PQ (seed 002, REFERENCE §8): per image, predicted and ground-truth segments of the same
category match when IoU > 0.5 (unique by construction); pixels labelled void (id 0 by default)
are excluded from the predicted area, and predictions lying more than half in void or crowd
regions of their category are not counted as false positives. Per category
``PQ = sum IoU(TP) / (TP + FP/2 + FN/2)``; PQ, SQ, RQ averaged over categories that occur,
separately over things and stuff.

gRefCOCO (REFERENCE §7): per sample, I and U of the predicted union mask vs. the ground-truth
union mask; empty GT and empty prediction: IoU 1, adds nothing to I or U; empty GT and
non-empty prediction: IoU 0, U += predicted area. gIoU = 100 x mean IoU; cIoU = 100 x sum I / sum U;
N-acc = share of no-target samples predicted empty; T-acc = share of target samples predicted non-empty.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataFormatError

__all__ = ["panoptic_quality", "grefcoco_scores"]


def panoptic_quality(pairs: Sequence[tuple[np.ndarray, Mapping, np.ndarray, Mapping]], *,
                     things: set[int], void_id: int = 0) -> dict:
    """PQ over images. Each pair is ``(gt_ids (H, W), gt_segments, pred_ids (H, W), pred_segments)``
    where segments map segment id -> ``{"category_id", "iscrowd" (gt only, optional)}``.

    Returns ``{"all" | "things" | "stuff": {"pq", "sq", "rq", "n"}, "per_class": {cat: {...}}}``.
    """
    iou_sum, tp, fp, fn = defaultdict(float), defaultdict(int), defaultdict(int), defaultdict(int)
    for k, (gt, gt_segs, pred, pred_segs) in enumerate(pairs):
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape:
            raise DataFormatError(f"pairs[{k}]: gt {gt.shape} and prediction {pred.shape} differ in shape")
        for sid in np.unique(pred):
            if sid != void_id and sid not in pred_segs:
                raise DataFormatError(f"pairs[{k}]: predicted segment id {sid} has no segment info")
        gt_area = {s: int((gt == s).sum()) for s in gt_segs}
        pred_area = {s: int((pred == s).sum()) for s in pred_segs}
        base = int(max(pred.max(), 0)) + 1
        ids, counts = np.unique(gt.astype(np.int64) * base + pred.astype(np.int64), return_counts=True)
        inter = {(int(i) // base, int(i) % base): int(c) for i, c in zip(ids, counts)}  # (gt id, pred id) -> pixels
        matched_gt, matched_pred = set(), set()
        for (g, p), n in inter.items():
            if g not in gt_segs or p not in pred_segs or gt_segs[g].get("iscrowd", 0):
                continue
            if gt_segs[g]["category_id"] != pred_segs[p]["category_id"]:
                continue
            union = pred_area[p] + gt_area[g] - n - inter.get((void_id, p), 0)
            iou = n / union if union else 0.0
            if iou > 0.5:
                cat = gt_segs[g]["category_id"]
                tp[cat] += 1
                iou_sum[cat] += iou
                matched_gt.add(g)
                matched_pred.add(p)
        crowd_by_cat = {}
        for g, info in gt_segs.items():
            if info.get("iscrowd", 0):
                crowd_by_cat[info["category_id"]] = g
            elif g not in matched_gt:
                fn[info["category_id"]] += 1
        for p, info in pred_segs.items():
            if p in matched_pred or pred_area[p] == 0:
                continue
            ignored = inter.get((void_id, p), 0)
            crowd = crowd_by_cat.get(info["category_id"])
            if crowd is not None:
                ignored += inter.get((crowd, p), 0)
            if ignored / pred_area[p] > 0.5:
                continue
            fp[info["category_id"]] += 1

    def summarise(cats):
        rows = {}
        for c in cats:
            denom = tp[c] + 0.5 * fp[c] + 0.5 * fn[c]
            if denom == 0:
                continue
            sq = iou_sum[c] / tp[c] if tp[c] else 0.0
            rq = tp[c] / denom
            rows[c] = {"pq": sq * rq, "sq": sq, "rq": rq, "tp": tp[c], "fp": fp[c], "fn": fn[c]}
        n = len(rows)
        mean = lambda key: sum(r[key] for r in rows.values()) / n if n else 0.0  # noqa: E731
        return {"pq": mean("pq"), "sq": mean("sq"), "rq": mean("rq"), "n": n}, rows

    cats = set(tp) | set(fp) | set(fn)
    overall, per_class = summarise(cats)
    return {"all": overall, "things": summarise({c for c in cats if c in things})[0],
            "stuff": summarise({c for c in cats if c not in things})[0], "per_class": per_class}


def grefcoco_scores(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict:
    """gIoU, cIoU, N-acc, T-acc (percent) of predicted vs. ground-truth *union* masks ``(H, W)``."""
    if len(predictions) != len(targets) or not predictions:
        raise DataFormatError(f"need equally many predictions and targets (> 0), got {len(predictions)} and {len(targets)}")
    ious, inter_total, union_total = [], 0, 0
    n_empty = n_empty_ok = n_target = n_target_ok = 0
    for k, (p, t) in enumerate(zip(predictions, targets)):
        p, t = np.asarray(p, dtype=bool), np.asarray(t, dtype=bool)
        if p.shape != t.shape:
            raise DataFormatError(f"sample {k}: prediction {p.shape} and target {t.shape} differ in shape")
        if not t.any():
            n_empty += 1
            if not p.any():
                n_empty_ok += 1
                ious.append(1.0)
            else:
                ious.append(0.0)
                union_total += int(p.sum())
            continue
        n_target += 1
        n_target_ok += bool(p.any())
        i, u = int((p & t).sum()), int((p | t).sum())
        inter_total += i
        union_total += u
        ious.append(i / u)
    return {"gIoU": 100 * float(np.mean(ious)), "cIoU": 100 * inter_total / union_total if union_total else 0.0,
            "N-acc": 100 * n_empty_ok / n_empty if n_empty else float("nan"),
            "T-acc": 100 * n_target_ok / n_target if n_target else float("nan")}
