"""SAM prompts: batched predict_torch equals SamPredictor.predict once per prompt."""

import numpy as np
import pytest
import torch

from regionlib.errors import CheckpointError, ConfigError, InvalidPromptError
from regionlib.prompts import Prompt, cpb_points, rpb_points, rpm_points, sample_scribble
from regionlib.sam import SamSegmenter, build_sam


@pytest.fixture(scope="module")
def segmenter(tiny_sam, photo):
    seg = SamSegmenter(tiny_sam)
    seg.set_image(photo)
    return seg


def test_batched_prompts_equal_single_calls(segmenter):
    rng = np.random.default_rng(0)
    prompts = []
    for _ in range(6):
        xy = rng.uniform(0, 100, 2)
        prompts.append(Prompt.from_box(np.concatenate([xy, xy + rng.uniform(5, 28, 2)])))
    for _ in range(5):
        prompts.append(Prompt.from_points(rng.uniform(0, 128, (1, 2))))
    for _ in range(3):
        prompts.append(Prompt.from_points(rng.uniform(0, 128, (2, 2)), [1, 0]))
    prompts.append(Prompt(points_xy=[[40, 40]], box_xyxy=[20, 20, 80, 90]))
    pred = segmenter.predict(prompts, batch_size=4)
    for i, p in enumerate(prompts):
        masks, iou, low = segmenter.predictor.predict(
            point_coords=p.points_xy, point_labels=p.point_labels, box=p.box_xyxy, multimask_output=True
        )
        np.testing.assert_allclose(pred.iou_predictions[i], iou, atol=1e-5)
        np.testing.assert_allclose(pred.low_res_logits[i], low, atol=1e-5)
        np.testing.assert_array_equal(pred.masks[i], masks)


def test_segment_picks_best_iou_and_mask_prompts(segmenter):
    prompts = [Prompt.from_box([10, 10, 90, 90]), Prompt.from_points([[64, 64]])]
    pred = segmenter.predict(prompts)
    regions = segmenter.segment(prompts)
    best = pred.iou_predictions.argmax(1)
    np.testing.assert_array_equal(regions.masks, pred.masks[[0, 1], best])
    np.testing.assert_allclose(regions.data["predicted_iou"], pred.iou_predictions.max(1))
    # a mask prompt runs through the same batched path
    out = segmenter.predict([Prompt.from_mask(regions.masks[0]), Prompt.from_mask(regions.masks[1])], multimask_output=False)
    assert out.masks.shape == (2, 1, 128, 128)


def test_prompt_errors(segmenter):
    with pytest.raises(InvalidPromptError, match="at least one"):
        Prompt()
    with pytest.raises(InvalidPromptError, match="NaN"):
        Prompt.from_points([[np.nan, 1]])
    with pytest.raises(InvalidPromptError, match="outside the image"):
        segmenter.predict([Prompt.from_points([[500, 1]])])
    with pytest.raises(InvalidPromptError, match="outside the image"):
        segmenter.predict([Prompt.from_box([0, 0, 200, 50])])
    with pytest.raises(InvalidPromptError, match="degenerate"):
        Prompt.from_box([5, 5, 3, 9])
    with pytest.raises(InvalidPromptError, match="empty"):
        segmenter.predict([])
    with pytest.raises(InvalidPromptError, match="set_image"):
        SamSegmenter(segmenter.sam).predict([Prompt.from_points([[1, 1]])])


def test_scribble_and_pseudo_points():
    pts = sample_scribble([[0, 0], [10, 0], [10, 10]], num_points=5)
    np.testing.assert_allclose(pts, [[0, 0], [5, 0], [10, 0], [10, 5], [10, 10]])
    boxes = np.array([[0, 0, 10, 20], [5, 5, 7, 9]], float)
    np.testing.assert_allclose(cpb_points(boxes), [[5, 10], [6, 7]])
    r1, r2 = rpb_points(boxes, seed=3), rpb_points(boxes, seed=3)
    np.testing.assert_array_equal(r1, r2)
    assert ((r1 >= boxes[:, :2]) & (r1 <= boxes[:, 2:])).all()
    m = np.zeros((2, 10, 10), bool)
    m[0, 2, 3] = True
    m[1, 5:7, 5:7] = True
    p = rpm_points(m, seed=1)
    assert p[0].tolist() == [3.5, 2.5]
    assert m[1, int(p[1, 1]), int(p[1, 0])]


def test_builders_and_safe_loading(tmp_path):
    with pytest.raises(ConfigError, match="preset must be one of"):
        build_sam("vit_x")
    sam = build_sam("tiny", seed=1)
    path = tmp_path / "tiny.pth"
    torch.save(sam.state_dict(), path)
    loaded = build_sam("tiny", checkpoint=path, seed=2)
    for (k, a), b in zip(sam.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    evil = tmp_path / "evil.pth"
    torch.save({"x": object.__new__(SamSegmenter)}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        build_sam("tiny", checkpoint=evil)
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"image_encoder.pos_embed": torch.zeros(1)}, str(bad))
    with pytest.raises(CheckpointError, match="disagree"):
        build_sam("tiny", checkpoint=bad)


def test_automatic_proposals_become_regions(segmenter, photo):
    regions = segmenter.propose(photo, points_per_side=4, pred_iou_thresh=-10.0, stability_score_thresh=0.0,
                                box_nms_thresh=1.0)
    assert len(regions) > 0 and regions.image_size == (128, 128)
    assert set(regions.data) >= {"predicted_iou", "stability_score", "point_coords", "crop_box"}
    assert np.isfinite(regions.data["stability_score"]).all()
    np.testing.assert_array_equal(regions.scores, regions.data["predicted_iou"])
    # same proposals in COCO RLE output mode
    rle = segmenter.propose(photo, points_per_side=4, pred_iou_thresh=-10.0, stability_score_thresh=0.0,
                            box_nms_thresh=1.0, output_mode="coco_rle")
    np.testing.assert_array_equal(rle.masks, regions.masks)
