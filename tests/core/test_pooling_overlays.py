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
    torch.testing.assert_close(resize_masks(t, grid), ref, atol=0, rtol=0)  # CPU tensors: the exact CPU path
    torch.testing.assert_close(_area_fraction(t, *grid, chunk=2), ref, atol=1e-6, rtol=0)  # the accelerator path
    feats = torch.randn(8, *grid)
    a = mask_pool(feats, masks).tokens
    b = mask_pool(feats, t).tokens
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    with pytest.raises(InvalidMaskError, match="bool"):
        mask_pool(feats, t.float())


def reference_pool(features, masks, weights="area", batch_index=None):
    """The straightforward mask pooling that `mask_pool` must equal bit for bit on the CPU: float32 copies of
    the masks, `adaptive_avg_pool2d` (area) or nearest `F.interpolate` weights (a vanished mask falls back to
    its area weights), non-finite features outside every mask zeroed, one einsum over the weights."""
    import torch.nn.functional as F

    m = torch.as_tensor(np.asarray(masks)).float()[:, None]
    if not features.is_floating_point():
        features = features.float()
    grid = tuple(features.shape[-2:])
    area = F.adaptive_avg_pool2d(m, grid)[:, 0]
    w = area
    if weights == "nearest":
        near = F.interpolate(m, size=grid, mode="nearest")[:, 0]
        w = torch.where((near.flatten(1).sum(1) == 0)[:, None, None], area, near)
    w = w.to(features.dtype)
    f = features[None] if features.ndim == 3 else features
    bi = torch.zeros(len(m), dtype=torch.long) if batch_index is None else torch.as_tensor(batch_index)
    bad = ~torch.isfinite(f).all(1)
    if bad.any():
        f = f.masked_fill(bad[:, None], 0)
    denom = w.flatten(1).sum(1, keepdim=True)
    if f.shape[0] == 1:
        return torch.einsum("nhw,chw->nc", w, f[0]) / denom
    return torch.einsum("nhw,nchw->nc", w, f[bi]) / denom


def _blobs(rng, n, h, w):
    """``n`` masks of one random box each, a few of them scattered noise or a single pixel."""
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x = rng.integers(0, h), rng.integers(0, w)
        masks[i, y: y + rng.integers(1, h // 2 + 2), x: x + rng.integers(1, w // 2 + 2)] = True
    masks[0] = rng.random((h, w)) < 0.3
    masks[-1] = False
    masks[-1, rng.integers(0, h), rng.integers(0, w)] = True
    return masks


@pytest.mark.parametrize("size,grid", [((1024, 1024), (32, 32)), ((1024, 1024), (64, 64)), ((1024, 1024), (27, 27)),
                                       ((96, 96), (4, 4)), ((100, 108), (7, 9)), ((30, 38), (12, 48)),
                                       ((40, 48), (1, 1)), ((600, 608), (2, 3))])
def test_mask_pool_equals_the_reference_bit_for_bit(size, grid):
    """mask_pool reads integer bin counts straight from the bool masks (no float copy of them); its weights
    and tokens must be bit-identical to the float32 adaptive_avg_pool2d / interpolate + einsum reference on a
    dividing grid (1024 -> 32, 64; 96 -> 4, where the old dividing fast path divided by kh * kw and was 1 ulp
    off adaptive pooling's count / kh / kw), a non-dividing one (1024 -> 27, 100 -> 7 x 9), a grid finer than
    the masks (30 -> 12 x 48), 1 x 1 (adaptive pooling's mean) and row bins over 255 rows (600 -> 2),
    for numpy masks, CPU bool tensors (contiguous or not), both weights, float32 / float64 / int features."""
    rng = np.random.default_rng(size[0] + grid[0])
    masks = _blobs(rng, 6, *size)
    h, w = size
    big = torch.zeros((7, h + 3, w + 5), dtype=torch.bool)
    big[1:, 2: h + 2, 3: w + 3] = torch.from_numpy(masks)
    view = big[1:, 2: h + 2, 3: w + 3]  # a CPU bool tensor that is not contiguous
    transposed = torch.from_numpy(np.ascontiguousarray(masks.transpose(0, 2, 1))).transpose(1, 2)
    assert not view.is_contiguous() and not transposed.is_contiguous()
    g = torch.Generator().manual_seed(0)
    for weights in ("area", "nearest"):
        for feats in (torch.randn(5, *grid, generator=g), torch.randn(3, *grid, generator=g, dtype=torch.float64),
                      torch.randint(-9, 9, (2, *grid), generator=g)):
            want = reference_pool(feats, masks, weights)
            for m in (masks, torch.from_numpy(masks), view, transposed):
                out = mask_pool(feats, m, weights=weights)
                assert out.tokens.dtype == want.dtype and torch.equal(out.tokens, want), (weights, feats.dtype, type(m))


def test_mask_pool_batch_index_non_finite_and_empty_masks_match_the_reference():
    rng = np.random.default_rng(5)
    masks = _blobs(rng, 9, 200, 150)
    masks[0] = False
    masks[0, 150:, 100:] = True  # no noise mask: some cells lie outside every mask
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 4, 13, 11, generator=g)
    bi = [2, 0, 1, 1, 0, 2, 2, 1, 0]
    assert torch.equal(mask_pool(feats, masks, batch_index=bi).tokens, reference_pool(feats, masks, batch_index=bi))
    # a NaN in a cell whose (area) weight is 0 for every mask is ignored, in both
    area = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], (13, 11))[:, 0]
    free = torch.nonzero(area.sum(0) == 0)
    assert len(free)
    bad = feats.clone()
    bad[1, 2, free[0, 0], free[0, 1]] = float("nan")
    for weights in ("area", "nearest"):
        got = mask_pool(bad, masks, weights=weights, batch_index=bi).tokens
        assert torch.equal(got, reference_pool(bad, masks, weights, batch_index=bi))
    huge = feats.clone()
    huge[0, 0, :2, :2] = 3e38  # finite features whose sum overflows: the precise check finds nothing wrong
    assert not torch.isfinite(huge.sum())
    assert torch.equal(mask_pool(huge, masks, batch_index=bi).tokens, reference_pool(huge, masks, batch_index=bi))
    masks[4] = False
    for m in (masks, torch.from_numpy(masks)):
        with pytest.raises(InvalidMaskError, match=r"masks\[4\] is empty"):
            mask_pool(feats, m, batch_index=bi)


@pytest.mark.parametrize("shape,grid", [((3, 4095, 6), (255, 3)), ((2, 7, 5), (20, 13)), ((2, 1, 1), (3, 2)),
                                        ((2, 33, 64), (11, 8)), ((4, 768, 96), (32, 4)), ((2, 520, 300), (2, 3))])
def test_resize_masks_equals_torch_kernels_bit_for_bit(shape, grid):
    """The CPU resize (integer counts; nearest pixels gathered) equals adaptive_avg_pool2d and nearest
    F.interpolate of the float32 masks exactly, including nearest's float32 index rounding (4095 -> 255
    picks other rows than a float64 scale would) and upsampling grids."""
    import torch.nn.functional as F

    from regionlib.masks import resize_masks

    rng = np.random.default_rng(sum(shape))
    m = rng.random(shape) < rng.random((shape[0], 1, 1))
    t = torch.from_numpy(m).float()[:, None]
    for mode, want in (("area", F.adaptive_avg_pool2d(t, grid)), ("nearest", F.interpolate(t, size=grid, mode="nearest"))):
        for masks in (m, torch.from_numpy(m), m.astype(np.uint8)):
            got = resize_masks(masks, grid, mode=mode)
            assert got.dtype == torch.float32 and torch.equal(got, want[:, 0]), (mode, type(masks))
    assert resize_masks(np.zeros((0, *shape[1:]), bool), grid).shape == (0, *grid)
