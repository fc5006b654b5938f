import numpy as np
import pytest

from regionlib.boxes import box_iou, clip_boxes, scale_boxes, validate_boxes
from regionlib.errors import InvalidBoxError, InvalidMaskError
from regionlib.masks import (
    as_mask_batch,
    boxes_to_masks,
    decode_rle,
    encode_rle,
    interior_points,
    mask_areas,
    mask_iou,
    masks_to_boxes,
    resize_masks,
    union_masks,
)


def random_masks(rng, n=6, h=37, w=53):
    m = rng.random((n, h, w)) < rng.uniform(0.05, 0.6, size=(n, 1, 1))
    m[np.arange(n), rng.integers(h, size=n), rng.integers(w, size=n)] = True
    return m


def test_rle_round_trip_and_coco_counts():
    rng = np.random.default_rng(0)
    m = random_masks(rng)
    rles = encode_rle(m)
    assert all(r["size"] == [37, 53] and isinstance(r["counts"], str) for r in rles)
    np.testing.assert_array_equal(decode_rle(rles), m)
    # uncompressed COCO RLE: column-major run lengths starting with zeros
    col = np.zeros((3, 2), bool)
    col[1:, 0] = True
    assert decode_rle({"size": [3, 2], "counts": [1, 2, 3]})[0].tolist() == col.tolist()


def test_rle_size_disagreement_and_corruption():
    rles = encode_rle(np.ones((1, 4, 5), bool))
    with pytest.raises(InvalidMaskError, match="image size"):
        decode_rle(rles, image_size=(5, 4))
    with pytest.raises(InvalidMaskError, match="sum to"):
        decode_rle({"size": [3, 2], "counts": [1, 2]})
    mixed = rles + encode_rle(np.ones((1, 2, 2), bool))
    with pytest.raises(InvalidMaskError, match="share one size"):
        decode_rle(mixed)


def test_mask_to_box_is_half_open_and_inverts_box_to_mask():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert masks_to_boxes(m).tolist() == [[3, 2, 9, 5]]
    boxes = np.array([[3, 2, 9, 5], [0, 0, 12, 10], [11, 9, 12, 10]], float)
    np.testing.assert_array_equal(masks_to_boxes(boxes_to_masks(boxes, (10, 12))), boxes)
    assert mask_areas(boxes_to_masks(boxes, (10, 12))).tolist() == [18, 120, 1]


def test_mask_validation_errors():
    with pytest.raises(InvalidMaskError, match=r"masks\[1\] is empty"):
        masks_to_boxes(np.stack([np.ones((3, 3)), np.zeros((3, 3))]))
    with pytest.raises(InvalidMaskError, match="binary"):
        as_mask_batch(np.full((2, 2), 0.5))
    with pytest.raises(InvalidMaskError, match="spatial shape"):
        as_mask_batch(np.ones((1, 4, 4), bool), image_size=(4, 5))
    with pytest.raises(InvalidMaskError, match="dtype"):
        as_mask_batch(np.array([["a"]]))
    with pytest.raises(InvalidMaskError, match="shape"):
        as_mask_batch(np.ones((1, 1, 2, 2)))


def test_mask_iou_matches_brute_force():
    rng = np.random.default_rng(1)
    a, b = random_masks(rng, 5), random_masks(rng, 4)
    got = mask_iou(a, b)
    for i in range(5):
        for j in range(4):
            inter = np.logical_and(a[i], b[j]).sum()
            union = np.logical_or(a[i], b[j]).sum()
            assert got[i, j] == pytest.approx(inter / union, abs=1e-12)
    empty = np.zeros((1, 37, 53), bool)
    assert mask_iou(empty, empty)[0, 0] == 0.0


def test_box_iou_matches_brute_force_and_validation():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 50, (6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (6, 2))], axis=1)
    got = box_iou(boxes, boxes[:3])
    for i in range(6):
        for j in range(3):
            a, b = boxes[i], boxes[j]
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            assert got[i, j] == pytest.approx(inter / union, abs=1e-12)
    with pytest.raises(InvalidBoxError, match="degenerate"):
        validate_boxes([[5, 5, 5, 9]])
    with pytest.raises(InvalidBoxError, match="NaN"):
        validate_boxes([[0, 0, np.nan, 1]])
    with pytest.raises(InvalidBoxError, match="outside the image"):
        validate_boxes([[0, 0, 20, 5]], image_size=(10, 10))
    assert validate_boxes([[-5, 0, 20, 5]], image_size=(10, 10), clip=True).tolist() == [[0, 0, 10, 5]]
    with pytest.raises(InvalidBoxError, match="degenerate"):
        validate_boxes([[20, 0, 30, 5]], image_size=(10, 10), clip=True)
    assert clip_boxes([[-1, -1, 11, 3]], (10, 10)).tolist() == [[0, 0, 10, 3]]
    assert scale_boxes([[1, 2, 3, 4]], (2, 0.5)).tolist() == [[2, 1, 6, 2]]


def test_resize_and_union():
    m = np.zeros((1, 8, 8), bool)
    m[0, :4, :4] = True
    area = resize_masks(m, (2, 2), mode="area")
    assert area[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    near = resize_masks(m, (4, 4), mode="nearest")
    assert near[0].sum().item() == 4
    u = union_masks(np.stack([m[0], np.flipud(m[0])]))
    assert u.sum() == 32
    assert union_masks([], image_size=(3, 4)).shape == (3, 4)


@pytest.mark.parametrize("shape,grid", [((5, 64, 64), (16, 16)), ((3, 64, 96), (8, 12)), ((4, 30, 40), (6, 5)), ((2, 33, 64), (11, 8))])
def test_area_resize_fast_path_equals_adaptive_pool(shape, grid):
    import torch

    rng = np.random.default_rng(7)
    m = rng.random(shape) < 0.4
    want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(m).float()[:, None], grid)[:, 0]
    got = resize_masks(m, grid, mode="area")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_area_fast_path_with_uint64_words_and_large_blocks():
    import torch

    rng = np.random.default_rng(3)
    for shape, grid in [((3, 64, 128), (8, 8)), ((2, 256, 256), (4, 4)), ((2, 32, 64), (1, 8))]:
        m = rng.random(shape) < 0.5
        want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(m).float()[:, None], grid)[:, 0]
        torch.testing.assert_close(resize_masks(m, grid), want, atol=0, rtol=0)


def test_compressed_counts_are_checked_against_the_size():
    """Bug caught: compressed RLE counts were never checked against H x W: counts of a smaller mask decoded
    silently to a wrong mask, counts of a larger one made pycocotools write past its buffer."""
    from regionlib.masks import check_rle, rle_counts

    small = encode_rle(np.ones((10, 6), bool))[0]
    large = encode_rle(np.ones((40, 60), bool))[0]
    for counts, why in ((small["counts"], "sum to 60, expected H\\*W = 600"),
                        (large["counts"], "sum to 2400, expected H\\*W = 600"),
                        (large["counts"] + "g", "truncated"), ("\x01\x7f", "outside '0'..'o'")):
        with pytest.raises(InvalidMaskError, match=why):
            decode_rle({"size": [20, 30], "counts": counts})
    with pytest.raises(InvalidMaskError, match="max_pixels"):
        check_rle({"size": [100_000, 100_000], "counts": ""})
    rng = np.random.default_rng(3)
    m = rng.random((17, 23)) < 0.4
    runs = rle_counts(encode_rle(m)[0]["counts"])
    assert runs.sum() == 17 * 23 and runs[1::2].sum() == m.sum()  # runs alternate 0s and 1s, column-major


def test_hostile_polygons_are_refused_before_pycocotools():
    """Bug caught: a NaN, inf or 1e9 polygon coordinate segfaulted or hung inside pycocotools' rasteriser."""
    from regionlib.masks import polygons_to_rle

    for poly, why in (([5, float("nan"), 15, 5, 5, 15], "NaN or infinite"), ([5, 5, float("inf"), 5, 5, 15], "NaN"),
                      ([5, 5, 1e9, 5, 5, 15], "far outside"), ([5, 5, "a", 5, 5, 15], "numbers only")):
        with pytest.raises(InvalidMaskError, match=why):
            polygons_to_rle([poly], (20, 30))
    zigzag = [v for k in range(2000) for v in (0, 0, 29, 19)[2 * (k % 2): 2 * (k % 2) + 2]]
    with pytest.raises(InvalidMaskError, match="edge length"):
        polygons_to_rle([zigzag], (20, 30))
    assert mask_areas(decode_rle(polygons_to_rle([[0, 0, 10, 0, 10, 10, 0, 10]], (20, 30))))[0] == 100


def test_interior_points_lie_inside_even_where_the_centroid_does_not():
    ring = np.zeros((41, 41), bool)
    yy, xx = np.mgrid[:41, :41]
    ring[(np.hypot(xx - 20, yy - 20) <= 18) & (np.hypot(xx - 20, yy - 20) >= 10)] = True  # centroid (20, 20) is outside
    square = np.zeros((41, 41), bool)
    square[5:16, 22:33] = True  # 11 x 11: the single most interior pixel is its centre
    pts = interior_points(np.stack([ring, square]))
    assert pts.dtype == np.int64 and pts.shape == (2, 2)
    assert ring[pts[0, 1], pts[0, 0]] and not ring[20, 20]
    assert 13 <= np.hypot(pts[0, 0] - 20, pts[0, 1] - 20) <= 15  # mid-way through the ring's width
    assert pts[1].tolist() == [27, 10]
    edge = np.zeros((10, 10), bool)
    edge[:, :3] = True  # touching the image border: the border counts as outside
    assert interior_points(edge)[0, 0] == 1
    with pytest.raises(InvalidMaskError):
        interior_points(np.zeros((2, 5, 5), bool))
