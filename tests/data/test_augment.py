"""Flip round trip and left/right swap; large-scale jitter keeps image and regions consistent."""

from __future__ import annotations

import numpy as np
import pytest

from regionlib.data.augment import hflip, large_scale_jitter, swap_left_right
from regionlib.data.regionworld import generate_regionworld
from regionlib.regions import Regions


@pytest.fixture(scope="module")
def sample():
    return generate_regionworld(1, seed=2)[0]


def test_swap_left_right_words():
    assert swap_left_right("the left cup, Right of the LEFT box; leftmost") == "the right cup, Left of the RIGHT box; rightmost"
    assert swap_left_right("copyright bright leftover") == "copyright bright leftover"  # whole words only
    text = "A dog to the left of a cat on the right-hand side."
    assert swap_left_right(swap_left_right(text)) == text


def test_hflip_twice_is_identity_and_swaps_once(sample):
    img, r = sample.image, sample.regions
    img1, r1 = hflip(img, r)
    img2, r2 = hflip(img1, r1)
    np.testing.assert_array_equal(img2, img)
    np.testing.assert_array_equal(r2.masks, r.masks)
    np.testing.assert_allclose(r2.boxes_xyxy, r.boxes_xyxy)
    assert r2.captions == r.captions and r2.data["questions"] == r.data["questions"]
    for a2, a in zip(r2.data["attributes"], r.data["attributes"]):
        assert a2["center_xy"] == pytest.approx(a["center_xy"], abs=1e-9)
        assert {k: v for k, v in a2.items() if k != "center_xy"} == {k: v for k, v in a.items() if k != "center_xy"}
    np.testing.assert_array_equal(img1, img[:, ::-1])
    np.testing.assert_array_equal(r1.masks, r.masks[:, :, ::-1])
    w = img.shape[1]
    np.testing.assert_allclose(r1.boxes_xyxy[:, 0], w - r.boxes_xyxy[:, 2])
    for a0, a1, c0, c1 in zip(r.data["attributes"], r1.data["attributes"], r.captions, r1.captions):
        assert c1 == swap_left_right(c0)
        assert a1["position"] == swap_left_right(a0["position"])
        assert a1["center_xy"] == [w - a0["center_xy"][0], a0["center_xy"][1]]
    # a flipped RegionWorld caption names the position its flipped mask is in
    from regionlib.data.grammar import position_name

    for a in r1.data["attributes"]:
        assert position_name(*a["center_xy"], w) == a["position"]
    # the boxes recomputed from the flipped masks equal the flipped boxes
    np.testing.assert_allclose(Regions.from_masks(r1.masks).boxes_xyxy, r1.boxes_xyxy)


def test_lsj_identity_at_scale_one():
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    m = np.zeros((2, 64, 64), bool)
    m[0, 5:20, 5:30] = True
    m[1, 40:60, 30:50] = True
    r = Regions.from_masks(m, captions=["a", "b"])
    out, r2, keep = large_scale_jitter(img, r, output_size=64, scale_range=(1.0, 1.0), rng=np.random.default_rng(1))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(r2.masks, m)
    assert keep.tolist() == [0, 1] and r2.captions == ["a", "b"]


def test_lsj_small_scale_pads_and_large_scale_crops(sample):
    img, r = sample.image, sample.regions
    out, r2, keep = large_scale_jitter(img, r, output_size=128, scale_range=(0.25, 0.25), rng=np.random.default_rng(0))
    assert out.shape == (128, 128, 3) and r2.image_size == (128, 128)
    assert not out[32:].any() and not out[:, 32:].any()  # 256 * 0.25 * 128/256 = 32 px image, zero padding
    assert not r2.masks[:, 32:].any()
    rng = np.random.default_rng(3)
    for _ in range(5):
        out, r2, keep = large_scale_jitter(img, r, output_size=128, scale_range=(1.5, 2.0), rng=rng)
        assert out.any(axis=2).all()  # a crop of an upscaled image: no padding
        assert len(r2) == len(keep) <= len(r)
        assert r2.masks.reshape(len(r2), -1).any(1).all()
        np.testing.assert_allclose(Regions.from_masks(r2.masks).boxes_xyxy, r2.boxes_xyxy)
        assert r2.captions == [r.captions[i] for i in keep]


def test_lsj_box_only_regions():
    img = np.zeros((100, 200, 3), np.uint8)
    r = Regions.from_boxes(np.array([[0, 0, 50, 50], [150, 80, 200, 100]], float), image_size=(100, 200))
    out, r2, keep = large_scale_jitter(img, r, output_size=100, scale_range=(1.0, 1.0), rng=np.random.default_rng(0))
    # f = min(100/100, 100/200) = 0.5: the image becomes 50 x 100, padded to 100 x 100
    np.testing.assert_allclose(r2.boxes_xyxy, [[0, 0, 25, 25], [75, 40, 100, 50]])
    assert keep.tolist() == [0, 1]


def test_bad_arguments(sample):
    with pytest.raises(Exception, match="output_size"):
        large_scale_jitter(sample.image, sample.regions, output_size=0)
    with pytest.raises(Exception, match="image size"):
        hflip(sample.image[:100], sample.regions)
