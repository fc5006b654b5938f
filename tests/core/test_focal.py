"""Focal-crop parity with the released DAM semantics (REFERENCE §1), written out per mask."""

import numpy as np
import pytest
import torch

from regionlib.errors import InvalidMaskError, RegionLibError
from regionlib.focal import CROP_MODES, crop_boxes, crop_to_image, focal_prompt


def reference_crop_box(mask, mode, min_box=48):
    """Scalar transcription of the released crop_image box logic (Python ints, int())."""
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    w, h = x1 - x0, y1 - y0
    if mode == "full":
        return [0, 0, W, H]
    if mode in ("crop", "crop_mask"):
        return [x0, y0, x1, y1]
    if mode == "focal_crop":
        xc, yc = x0 + w / 2, y0 + h / 2
        w, h = max(w, min_box), max(h, min_box)
        x0, y0 = int(xc - w / 2), int(yc - h / 2)
    rows = slice(max(y0 - h, 0), min(y0 + 2 * h, H))
    cols = slice(max(x0 - w, 0), min(x0 + 2 * w, W))
    return [cols.start, rows.start, cols.stop, rows.stop]


def random_mask(rng, H, W):
    kind = rng.integers(4)
    m = np.zeros((H, W), bool)
    if kind == 0:  # tiny blob, below the minimum size
        y, x = rng.integers(H), rng.integers(W)
        m[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = True
    elif kind == 1:  # touching a border (or several)
        side = rng.integers(4)
        y0, x0 = rng.integers(H // 2), rng.integers(W // 2)
        y1, x1 = y0 + rng.integers(1, H // 2), x0 + rng.integers(1, W // 2)
        if side == 0:
            y0 = 0
        elif side == 1:
            x1 = W
        elif side == 2:
            y1 = H
        else:
            x0 = 0
        m[y0:y1, x0:x1] = True
    elif kind == 2:  # random scattered pixels
        m = rng.random((H, W)) < 0.01
        m[rng.integers(H), rng.integers(W)] = True
    else:  # large box
        y0, x0 = rng.integers(H // 3), rng.integers(W // 3)
        m[y0 : y0 + rng.integers(H // 3, H - y0 + 1), x0 : x0 + rng.integers(W // 3, W - x0 + 1)] = True
    return m


@pytest.mark.parametrize("mode", CROP_MODES)
def test_crop_boxes_match_released_semantics(mode):
    rng = np.random.default_rng(123)
    n_checked = 0
    for shape in [(64, 96), (120, 80), (33, 47), (256, 256)]:
        masks = np.stack([random_mask(rng, *shape) for _ in range(60)])
        # every border touched at least once, and a single-pixel corner mask
        masks[0] = 0
        masks[0, 0, 0] = True
        masks[1] = 0
        masks[1, -1, -1] = True
        got = crop_boxes(masks, mode)
        want = [reference_crop_box(m, mode) for m in masks]
        assert got.tolist() == want
        n_checked += len(masks)
    assert n_checked >= 200


def test_focal_crop_negative_truncation_case():
    # xc - w/2 = 2.5 - 24 = -21.5 -> int() = -21 (toward zero), so the upper bound is -21 + 96 = 75
    m = np.zeros((200, 200), bool)
    m[0:5, 0:5] = True
    assert crop_boxes(m, "focal_crop").tolist() == [[0, 0, 75, 75]]


def test_focal_prompt_tensors(photo):
    m = np.zeros((2, 128, 128), bool)
    m[0, 10:20, 30:60] = True
    m[1, 60:128, 0:128] = True
    fp = focal_prompt(photo, m, size=(32, 32))
    assert fp.image_tensor.shape == (2, 3, 32, 32) and fp.mask_tensor.shape == (2, 1, 32, 32)
    assert fp.full_image_tensor.shape == (1, 3, 32, 32) and fp.full_mask_tensor.shape == (2, 1, 32, 32)
    assert set(torch.unique(fp.mask_tensor).tolist()) == {-1.0, 1.0}
    assert fp.image_tensor.min() >= -1.0 and fp.image_tensor.max() <= 1.0
    x0, y0, x1, y1 = fp.crop_boxes[0]
    np.testing.assert_array_equal(fp.crops[0], photo[y0:y1, x0:x1])
    cm = focal_prompt(photo, m, mode="crop_mask", size=(16, 16))
    assert (cm.crops[0][~cm.crop_masks[0]] == 0).all()
    with pytest.raises(InvalidMaskError, match="spatial shape"):
        focal_prompt(photo, m[:, :100])
    with pytest.raises(RegionLibError, match="mode must be one of"):
        crop_boxes(m, "zoom")


def test_crop_to_image_inverts_the_crop():
    boxes = np.array([[10, 20, 50, 100], [0, 0, 30, 30]])
    pts_crop = np.array([[5.0, 7.0], [29.0, 0.0]])
    np.testing.assert_allclose(crop_to_image(pts_crop, boxes), [[15, 27], [29, 0]])
    # from the resized 64x64 encoder frame: the far corner maps to the crop's far corner
    np.testing.assert_allclose(crop_to_image(np.array([[64.0, 64.0], [32, 32]]), boxes, from_size=(64, 64)),
                               [[50, 100], [15, 15]])
