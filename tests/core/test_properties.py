"""Property-based: random boxes, masks and crops give a result or a RegionLibError, nothing else; and a
result exactly when the input is valid (computed independently here), so a function that always
raises fails these tests too."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from regionlib.boxes import box_iou, validate_boxes
from regionlib.errors import RegionLibError
from regionlib.focal import CROP_MODES, crop_boxes
from regionlib.masks import boxes_to_masks, decode_rle, encode_rle, mask_iou, masks_to_boxes, resize_masks
from regionlib.pooling import mask_pool

coords = st.floats(allow_nan=True, allow_infinity=True, width=32)
any_boxes = arrays(np.float64, st.tuples(st.integers(0, 4), st.sampled_from([3, 4, 5])), elements=coords)
mask_shapes = st.tuples(st.integers(0, 3), st.integers(1, 24), st.integers(1, 24))
mask_arrays = st.one_of(
    arrays(np.bool_, mask_shapes),
    arrays(st.sampled_from([np.uint8, np.float32, np.int64]), mask_shapes, elements=st.integers(0, 2)),
)


def result_or_library_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except RegionLibError:
        return None


def binary(masks) -> bool:
    return bool(np.isin(masks, (0, 1)).all())


def nonempty(masks) -> bool:
    return bool(masks.any(axis=(1, 2)).all())


def boxes_valid(boxes, size, clip) -> bool:
    """Independent statement of `validate_boxes`' contract (module docstring of regionlib.boxes)."""
    b = boxes.reshape(-1, 4) if boxes.ndim == 1 and boxes.shape[0] == 4 else boxes
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        return False
    h, w = size
    inside = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)
    if not clip and not inside.all():
        return False
    c = b.copy()
    c[:, [0, 2]] = c[:, [0, 2]].clip(0, w)
    c[:, [1, 3]] = c[:, [1, 3]].clip(0, h)
    return bool(((c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])).all())


@settings(max_examples=150, deadline=None)
@given(any_boxes, st.tuples(st.integers(1, 50), st.integers(1, 50)), st.booleans())
def test_boxes(boxes, size, clip):
    out = result_or_library_error(validate_boxes, boxes, image_size=size, clip=clip)
    assert (out is not None) == boxes_valid(boxes, size, clip)
    if out is not None:
        assert out.shape == (len(out), 4) and (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
        if len(out):
            iou = box_iou(out, out)
            assert np.allclose(np.diag(iou), 1.0) and ((iou >= 0) & (iou <= 1 + 1e-12)).all()
            m = result_or_library_error(boxes_to_masks, out, size)
            assert m is not None and m.shape == (len(out), *size)


@settings(max_examples=150, deadline=None)
@given(mask_arrays, st.sampled_from(CROP_MODES), st.integers(1, 64), st.floats(0.5, 6.0))
def test_masks_and_crops(masks, mode, min_size, expansion):
    boxes = result_or_library_error(masks_to_boxes, masks)
    rles = result_or_library_error(encode_rle, masks)
    assert (boxes is not None) == (binary(masks) and nonempty(masks))
    assert (rles is not None) == binary(masks)
    if rles is not None and len(rles):
        assert (decode_rle(rles) == masks.astype(bool)).all()
    crops = result_or_library_error(crop_boxes, masks, mode, expansion=expansion, min_size=min_size)
    if crops is not None and len(crops):
        h, w = masks.shape[1:]
        assert boxes is not None
        assert (crops[:, 0] >= 0).all() and (crops[:, 1] >= 0).all()
        assert (crops[:, 2] <= w).all() and (crops[:, 3] <= h).all()
        assert (crops[:, 2] > crops[:, 0]).all() and (crops[:, 3] > crops[:, 1]).all()
        # every crop contains its mask's box
        assert (crops[:, :2] <= boxes[:, :2]).all() and (crops[:, 2:] >= boxes[:, 2:]).all()
    iou = result_or_library_error(mask_iou, masks, masks)
    assert (iou is not None) == binary(masks)
    if iou is not None:
        assert ((iou >= 0) & (iou <= 1)).all()
        assert np.allclose(np.diag(iou), masks.any(axis=(1, 2)))  # a mask vs itself: 1 (0 if empty)


@settings(max_examples=60, deadline=None)
@given(mask_arrays, st.sampled_from(["area", "nearest"]), st.integers(1, 6))
def test_pooling(masks, weights, grid):
    import torch

    feats = torch.randn(3, grid, grid)
    out = result_or_library_error(mask_pool, feats, masks, weights=weights)
    assert (out is not None) == (binary(masks) and nonempty(masks))
    if out is not None:
        assert out.tokens.shape == (len(masks), 3) and torch.isfinite(out.tokens).all()
        lo, hi = feats.flatten(1).min(1).values, feats.flatten(1).max(1).values  # a mean lies within the range
        assert ((out.tokens >= lo - 1e-5) & (out.tokens <= hi + 1e-5)).all()


@settings(max_examples=80, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(0, 3), st.integers(1, 40), st.integers(1, 40))),
       st.tuples(st.integers(1, 50), st.integers(1, 50)), st.sampled_from(["area", "nearest"]))
def test_resize_masks_equals_the_torch_kernels(masks, grid, mode):
    """The CPU resize (integer bin counts, gathered nearest pixels) is bit-identical to adaptive_avg_pool2d /
    nearest F.interpolate of the float32 masks on any grid, coarser or finer than the masks."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(masks).float()[:, None]
    want = (F.adaptive_avg_pool2d(t, grid) if mode == "area" else F.interpolate(t, size=grid, mode="nearest"))[:, 0]
    assert torch.equal(resize_masks(masks, grid, mode=mode), want)
