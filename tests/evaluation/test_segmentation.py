"""PQ (panopticapi's definition) and gRefCOCO's gIoU / cIoU / N-acc / T-acc on hand-computed cases."""

import math

import numpy as np
import pytest

from regionlib.errors import DataFormatError, InvalidMaskError
from regionlib.evaluation.segmentation import grefcoco_scores, panoptic_quality

CATEGORIES = {1: True, 2: False, 3: True}  # 1, 3: things; 2: stuff


def test_pq_true_positive_void_and_small_false_positive():
    gt = np.zeros((4, 6), np.int32)
    gt[:, :3] = 1      # thing (category 1), 12 px
    gt[:, 3:] = 2      # stuff (category 2), 11 px after the void pixel
    gt[0, 5] = 0       # void
    pred = np.zeros_like(gt)
    pred[:, :2] = 10   # category 1: 8 px inside gt 1 -> IoU 8/12
    pred[:, 2:] = 20   # category 2: 16 px, 11 on gt 2, 1 on void, 4 on gt 1 -> IoU 11 / (16 + 11 - 11 - 1)
    pred[3, 0] = 30    # category 1, 1 px on gt 1: unmatched -> a false positive
    gt_segs = {1: {"category_id": 1}, 2: {"category_id": 2}}
    pred_segs = {10: {"category_id": 1}, 20: {"category_id": 2}, 30: {"category_id": 1}}
    out = panoptic_quality([(gt, gt_segs, pred, pred_segs)], categories=CATEGORIES)
    iou1 = 7 / 12  # pred 10 lost one pixel to pred 30
    iou2 = 11 / 15
    assert out["per_class"][1] == pytest.approx({"pq": iou1 / 1.5, "sq": iou1, "rq": 1 / 1.5,
                                                 "tp": 1, "fp": 1, "fn": 0})
    assert out["per_class"][2] == pytest.approx({"pq": iou2, "sq": iou2, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0})
    assert out["Things"]["pq"] == pytest.approx(iou1 / 1.5) and out["Stuff"]["pq"] == pytest.approx(iou2)
    assert out["All"] == pytest.approx({"pq": (iou1 / 1.5 + iou2) / 2, "sq": (iou1 + iou2) / 2,
                                        "rq": (1 / 1.5 + 1) / 2, "n": 2})
    assert 3 not in out["per_class"]  # a category that never occurs is not averaged


def test_pq_iou_must_exceed_one_half_and_categories_must_agree():
    gt = np.zeros((2, 4), np.int32)
    gt[:, :2] = 1
    pred = np.zeros_like(gt)
    pred[:, 1:3] = 5  # IoU exactly 2 / 6 < 0.5
    out = panoptic_quality([(gt, {1: {"category_id": 1}}, pred, {5: {"category_id": 1}})], categories=CATEGORIES)
    assert (out["per_class"][1]["tp"], out["per_class"][1]["fp"], out["per_class"][1]["fn"]) == (0, 1, 1)
    pred[:, :2] = 5  # perfect overlap but the wrong category: FN for 1, FP for 3
    out = panoptic_quality([(gt, {1: {"category_id": 1}}, pred, {5: {"category_id": 3}})], categories=CATEGORIES)
    assert out["per_class"][1]["fn"] == 1 and out["per_class"][3]["fp"] == 1 and out["All"]["pq"] == 0.0


def test_pq_crowd_regions_absorb_unmatched_predictions():
    gt = np.zeros((2, 8), np.int32)
    gt[:, :4] = 7  # a crowd region of category 1
    pred = np.zeros_like(gt)
    pred[:, :3] = 1  # 6 px inside the crowd region: not a false positive
    pred[:, 5:] = 2  # 6 px on void: not a false positive
    out = panoptic_quality([(gt, {7: {"category_id": 1, "iscrowd": 1}}, pred,
                             {1: {"category_id": 1}, 2: {"category_id": 3}})], categories=CATEGORIES)
    assert out["per_class"] == {} and out["All"]["n"] == 0  # crowd is neither TP nor FN
    gt[:, 4:] = 8  # stuff of category 2 instead of void
    pred = np.zeros_like(gt)
    pred[:, 2:] = 1  # 12 px: 4 in the crowd region, 8 on the stuff -> a false positive (4/12 <= 1/2)
    out = panoptic_quality([(gt, {7: {"category_id": 1, "iscrowd": 1}, 8: {"category_id": 2}}, pred,
                             {1: {"category_id": 1}})], categories=CATEGORIES)
    assert out["per_class"][1]["fp"] == 1 and out["per_class"][2]["fn"] == 1 and out["All"]["pq"] == 0.0


def test_pq_rejects_inconsistent_inputs():
    gt = np.ones((2, 2), np.int32)
    pred = np.full((2, 2), 4, np.int32)
    segs = {1: {"category_id": 1}}
    with pytest.raises(DataFormatError, match="not in the segments"):
        panoptic_quality([(gt, segs, pred, {})], categories=CATEGORIES)
    with pytest.raises(DataFormatError, match="do not occur in the map"):
        panoptic_quality([(gt, segs, pred, {4: {"category_id": 1}, 9: {"category_id": 1}})], categories=CATEGORIES)
    with pytest.raises(DataFormatError, match="unknown category_id"):
        panoptic_quality([(gt, segs, pred, {4: {"category_id": 99}})], categories=CATEGORIES)
    with pytest.raises(DataFormatError, match="one shape"):
        panoptic_quality([(gt, segs, pred[:1], {4: {"category_id": 1}})], categories=CATEGORIES)


def test_grefcoco_hand_computed():
    z = np.zeros((4, 4), bool)
    a = z.copy()
    a[:2, :2] = True  # 4 px
    b = z.copy()
    b[:2, :3] = True  # 6 px, contains a
    group = np.stack([a, b & ~a])  # a group of two masks whose union is b
    s = grefcoco_scores([a, np.zeros((0, 4, 4), bool), group, z], [b, z, z, a])
    # IoUs: 4/6; 1 (no target, predicted empty); 0 (no target, 6 px predicted); 0 (target missed)
    assert s["gIoU"] == pytest.approx(100 * (4 / 6 + 1 + 0 + 0) / 4)
    # I = 4; U = 6 + 6 (predicted area on a no-target sample) + 4 (the missed target's union)
    assert s["cIoU"] == pytest.approx(100 * 4 / 16)
    assert s["N-acc"] == pytest.approx(50.0) and s["T-acc"] == pytest.approx(50.0)
    only_targets = grefcoco_scores([a], [a])
    assert only_targets["gIoU"] == 100.0 and math.isnan(only_targets["N-acc"])
    with pytest.raises(InvalidMaskError, match="differ in size"):
        grefcoco_scores([a], [a[:2]])
    with pytest.raises(InvalidMaskError, match="bool"):
        grefcoco_scores([a.astype(np.uint8)], [a])
    with pytest.raises(DataFormatError, match="equally many"):
        grefcoco_scores([a, a], [a])


def test_grefcoco_explicit_no_target_flag_as_rela():
    """ReLA's evaluator decides no-target by the model's nt_label, not by the mask: a model that says
    "no target" and leaves a stray pixel scores IoU 1 there; saying "no target" on a target sample
    gives I = 0 but still adds the union."""
    z = np.zeros((4, 4), bool)
    stray = z.copy()
    stray[0, 0] = True
    a = z.copy()
    a[:2, :2] = True
    s = grefcoco_scores([stray, a, a], [z, a, a], no_target=[True, False, True])
    assert s["gIoU"] == pytest.approx(100 * (1 + 1 + 0) / 3)
    assert s["cIoU"] == pytest.approx(100 * 4 / (0 + 4 + 4))
    assert s["N-acc"] == 100.0 and s["T-acc"] == 50.0
    without_flag = grefcoco_scores([stray, a, a], [z, a, a])  # the stray pixel means "targeted": IoU 0
    assert without_flag["gIoU"] == pytest.approx(100 * 2 / 3) and without_flag["N-acc"] == 0.0
    with pytest.raises(DataFormatError, match="one per prediction"):
        grefcoco_scores([a], [a], no_target=[True, False])
