import json

import numpy as np
import pytest

from regionlib.errors import DataFormatError
from regionlib.evaluation.segmentation import grefcoco_scores, panoptic_quality


def test_grefcoco_hand_computed():
    z = np.zeros((4, 4), bool)
    a = z.copy()
    a[:2, :2] = True  # 4 px
    b = z.copy()
    b[:2, :3] = True  # 6 px, contains a
    s = grefcoco_scores([a, z, b, z], [b, z, z, a])
    # IoUs: 4/6, 1 (both empty), 0 (empty GT, 6 px predicted), 0 (missed target)
    assert s["gIoU"] == pytest.approx(100 * (4 / 6 + 1 + 0 + 0) / 4)
    # cIoU: I = 4 + 0, U = 6 + 6 (predicted area on empty GT) + 4 (missed target)
    assert s["cIoU"] == pytest.approx(100 * 4 / 16)
    assert s["N-acc"] == pytest.approx(50.0) and s["T-acc"] == pytest.approx(50.0)
    with pytest.raises(DataFormatError):
        grefcoco_scores([a], [a[:2]])


def test_panoptic_quality_hand_computed():
    gt = np.zeros((4, 6), np.int32)
    gt[:, :3] = 1      # thing, category 1, 12 px
    gt[:, 3:] = 2      # stuff, category 2, 12 px
    gt[0, 5] = 0       # one void pixel
    pred = np.zeros_like(gt)
    pred[:, :2] = 10   # category 1: 8 px, IoU 8/12 > 0.5 -> TP
    pred[:, 2:] = 20   # category 2: overlaps gt 2 (11 px) and one void pixel
    pred[3, 0] = 30    # a small false positive of category 1 (1 px)
    pred[3, 1] = 10
    gt_segs = {1: {"category_id": 1}, 2: {"category_id": 2}}
    pred_segs = {10: {"category_id": 1}, 20: {"category_id": 2}, 30: {"category_id": 1}}
    out = panoptic_quality([(gt, gt_segs, pred, pred_segs)], things={1})
    n10 = int((pred == 10).sum())
    iou1 = n10 / (12 + n10 - n10)  # pred 10 lies inside gt 1
    n20 = int((pred == 20).sum())  # 15 px, 1 of them on void
    iou2 = 11 / (n20 + 11 - 11 - 1)
    assert out["per_class"][1] == pytest.approx({"pq": iou1 / 1.5, "sq": iou1, "rq": 1 / 1.5, "tp": 1, "fp": 1, "fn": 0})
    assert out["per_class"][2]["sq"] == pytest.approx(iou2) and out["per_class"][2]["rq"] == 1.0
    assert out["things"]["pq"] == pytest.approx(iou1 / 1.5) and out["stuff"]["pq"] == pytest.approx(iou2)
    assert out["all"]["pq"] == pytest.approx((iou1 / 1.5 + iou2) / 2)


def test_figures_render_to_png(tmp_path, photo):
    from regionlib.evaluation.figures import failure_gallery, metric_distributions, worst_k
    from regionlib.evaluation.report import figure_png, write_report

    rng = np.random.default_rng(0)
    scores = {"full": np.r_[np.zeros(20), rng.gamma(1, 0.5, 80)], "focal": rng.gamma(2, 0.5, 100)}
    fig = metric_distributions(scores)
    ax = fig.axes[0]
    assert "20.0% exactly zero" in ax.get_title()
    png = figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    mask = np.zeros(photo.shape[:2], bool)
    mask[30:60, 40:80] = True
    items = [{"image": photo, "mask": mask, "prediction": "a red ball", "reference": "a face", "scores": {"CIDEr": 0.0}}]
    assert worst_k([0.5, 0.1, 0.9], 2).tolist() == [1, 0]
    path = write_report(tmp_path, "t", tables={"scores": [{"method": "full", "CIDEr": 0.5}]},
                        figures={"dist": png, "gallery": figure_png(failure_gallery(items))}, numbers={"x": 1.0})
    html = path.read_text()
    assert "<td>full</td>" in html and html.count("data:image/png;base64") == 2
    assert json.loads((tmp_path / "report.json").read_text())["numbers"] == {"x": 1.0}
    assert len(list(tmp_path.glob("figure_*.png"))) == 2


def test_content_metrics_known_values():
    from regionlib.evaluation.content import content_recall, osprey_keyword_scores

    cr = content_recall(["A man rides a horse."], [["A man rides a red horse near a barn."]])
    assert cr["noun_exact"][0] == pytest.approx(2 / 3)  # man, horse of {man, horse, barn}
    assert cr["noun_fuzzy"][0] > cr["noun_exact"][0] - 1e-9 and cr["noun_fuzzy"][0] <= 1.0 + 1e-6
    none = content_recall(["A red ball."], [["A red ball."]])
    assert none["verb_exact"][0] == 0.0  # no reference verbs -> 0 (REFERENCE §4)
    s = osprey_keyword_scores(["Answer: traffic light.", "a cat"], ["traffic_light", "dog"])
    assert s["semantic_iou"] == pytest.approx((1.0 + 0.0) / 2)
    same = osprey_keyword_scores(["dog"], ["dog"])
    assert same["semantic_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_cli_accepts_coco_and_dlc_formats(tmp_path, dam_descriptions):
    from regionlib.evaluation.__main__ import main

    a, b = dam_descriptions
    ids = sorted(set(a) & set(b))[:12]
    (tmp_path / "p.json").write_text(json.dumps([{"image_id": i, "caption": a[i]} for i in ids]))
    (tmp_path / "r.json").write_text(json.dumps({"annotations": [{"image_id": i, "caption": b[i]} for i in ids]}))
    (tmp_path / "dlc.json").write_text(json.dumps({i: a[i] for i in ids}))
    out = main(["--predictions", str(tmp_path / "p.json"), "--references", str(tmp_path / "r.json"),
                "--metrics", "CIDEr", "BLEU-4", "--out", str(tmp_path / "o")])
    out2 = main(["--predictions", str(tmp_path / "dlc.json"), "--references", str(tmp_path / "r.json"),
                 "--metrics", "CIDEr", "BLEU-4", "--out", str(tmp_path / "o2")])
    assert out["corpus"] == out2["corpus"] and out["corpus"]["CIDEr"] > 0
    assert (tmp_path / "o" / "report.html").exists()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        main(["--predictions", str(tmp_path / "bad.json"), "--references", str(tmp_path / "r.json")])
