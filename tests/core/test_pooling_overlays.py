import numpy as np
import pytest
import torch

from regionlib.errors import InvalidMaskError, RegionLibError
from regionlib.overlays import draw_boxes, draw_marks, draw_masks, draw_points, side_by_side
from regionlib.pooling import mask_pool


def loop_pool(feats, masks, grid):
    out = []
    for m in masks:
        t = torch.from_numpy(m.astype(np.float32))[None, None]
        w = torch.nn.functional.adaptive_avg_pool2d(t, grid)[0, 0]
        out.append((feats * w).sum((1, 2)) / w.sum())
    return torch.stack(out)


def test_batched_pool_equals_loop():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(16, 8, 8, generator=g, dtype=torch.float64)
    rng = np.random.default_rng(0)
    masks = rng.random((12, 64, 64)) < 0.3
    masks[0] = False
    masks[0, 5, 5] = True  # a one-pixel mask keeps a positive weight
    got = mask_pool(feats, masks).tokens
    torch.testing.assert_close(got, loop_pool(feats, masks, (8, 8)), atol=1e-6, rtol=0)
    batched = mask_pool(torch.stack([feats, 2 * feats]), masks, batch_index=[1] * 12).tokens
    torch.testing.assert_close(batched, 2 * got, atol=1e-6, rtol=0)


def test_vanishing_masks_fall_back_to_area_weights():
    feats = torch.arange(16.0).reshape(1, 4, 4)
    m = np.zeros((2, 64, 64), bool)
    m[0, 1, 1] = True  # vanishes under nearest resize to 4x4
    m[1] = True
    out = mask_pool(feats, m, weights="nearest")
    assert out.vanished.tolist() == [0]
    assert torch.isfinite(out.tokens).all() and out.tokens[0, 0].item() == 0.0  # cell (0, 0) holds 0
    assert out.tokens[1, 0].item() == pytest.approx(7.5)
    with pytest.raises(InvalidMaskError, match="empty"):
        mask_pool(feats, np.zeros((1, 8, 8), bool))
    with pytest.raises(RegionLibError, match="batch_index"):
        mask_pool(feats[None], m)


def test_overlays_return_new_images(photo):
    before = photo.copy()
    m = np.zeros((2, 128, 128), bool)
    m[0, 10:40, 10:40] = True
    m[1, 60:100, 70:120] = True
    out = draw_masks(photo, m)
    assert out.shape == photo.shape and not np.array_equal(out, photo)
    assert (out[0, 0] == photo[0, 0]).all()
    np.testing.assert_array_equal(photo, before)
    marks = draw_marks(photo, m)
    # the label box is black with a white border at the mask's interior point
    assert (marks[25, 25] == 0).all() or (marks[25, 25] == 255).all()
    assert draw_boxes(photo, [[5, 5, 50, 60]]).shape == photo.shape
    assert not np.array_equal(draw_points(photo, [[20, 20], [90, 90]], [1, 0]), photo)
    panel = side_by_side([photo, photo[:64, :32]], gap=2)
    assert panel.shape == (128, 128 + 2 + 64, 3)
    np.testing.assert_array_equal(photo, before)
    with pytest.raises(RegionLibError, match="colors"):
        draw_masks(photo, m, colors=[[0, 0, 0]] * 3)


def _two_quadrants():
    masks = np.zeros((2, 16, 16), bool)
    masks[0, :8, :8] = True
    masks[1, 8:, 8:] = True
    feats = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    expected = torch.stack([feats[:, :2, :2].mean((1, 2)), feats[:, 2:, 2:].mean((1, 2))])
    return feats, masks, expected


def test_integer_features_are_cast_not_nan():
    """Bug caught: integer features gave NaN / wrong tokens: the area weights were cast to the integer dtype
    (a mask covering part of a cell lost it; a mask inside one cell got total weight 0, hence 0 / 0)."""
    feats, masks, _ = _two_quadrants()
    masks[0] = False
    masks[0, 1:3, 1:3] = True  # 4 pixels inside cell (0, 0) of the 4 x 4 grid: weight 0.25
    masks[1, 6:, 6:] = True  # covers part of the cells around its quadrant
    ref = mask_pool(feats.double(), masks).tokens
    for dtype in (torch.int64, torch.uint8, torch.int32):
        out = mask_pool(feats.to(dtype), masks).tokens
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert torch.allclose(out.double(), ref, atol=1e-5)


def test_non_finite_features_outside_every_mask_do_not_poison_tokens():
    """Bug caught: one NaN outside every mask made every token NaN (0 * NaN = NaN in the contraction);
    a NaN inside a mask is a typed error naming the mask, never a silent NaN token."""
    feats, masks, expected = _two_quadrants()
    bad = feats.clone()
    bad[0, 0, 3], bad[1, 3, 0] = float("nan"), float("inf")  # cells neither mask covers
    for weights in ("area", "nearest"):
        assert torch.allclose(mask_pool(bad, masks, weights=weights).tokens, expected)
    batched = mask_pool(torch.stack([feats, bad]), masks, batch_index=[1, 0]).tokens
    assert torch.allclose(batched, expected)
    bad[1, 3, 3] = float("nan")  # inside masks[1]
    with pytest.raises(RegionLibError, match=r"NaN or inf inside masks\[1\]"):
        mask_pool(bad, masks)


@pytest.mark.parametrize("grid", [(16, 16), (27, 27), (10, 7)])
def test_tensor_masks_pool_on_their_device_equal_to_the_numpy_path(grid):
    """Bug caught: torch masks copied to numpy on the CPU (a GPU->CPU->GPU round trip), or the on-device
    area weights (separable bin averages) differing from adaptive average pooling on a grid that does
    not divide the image (e.g. 27 x 27)."""
    import torch.nn.functional as F

    from regionlib.masks import _area_fraction, resize_masks
    from regionlib.pooling import mask_pool

    rng = np.random.default_rng(1)
    masks = rng.random((5, 96, 80)) < 0.3
    t = torch.from_numpy(masks)
    ref = F.adaptive_avg_pool2d(t.float()[:, None], grid)[:, 0]
    torch.testing.assert_close(resize_masks(t, grid), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(_area_fraction(t, *grid, chunk=2), ref, atol=1e-6, rtol=0)  # the accelerator path
    feats = torch.randn(8, *grid)
    a = mask_pool(feats, masks).tokens
    b = mask_pool(feats, t).tokens
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(InvalidMaskError, match="bool"):
        mask_pool(feats, t.float())
