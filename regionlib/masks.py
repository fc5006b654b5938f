"""Binary masks: validation, COCO RLE (pycocotools), boxes, IoU, areas, resizing, union.

Conventions
-----------
* A batch of masks is a ``(N, H, W)`` bool array; a single ``(H, W)`` mask is accepted
  wherever a batch is and treated as ``N = 1``.
* Boxes are ``(N, 4)`` float XYXY in absolute pixels, *half-open*: the tight box of a mask
  is ``[min_x, min_y, max_x + 1, max_y + 1]`` (DAM's released ``mask_to_box``, REFERENCE §1).
* RLE is COCO's compressed RLE: ``{"size": [H, W], "counts": str}`` (the ``counts`` bytes of
  pycocotools decoded to ASCII so the dict is JSON- and Arrow-serialisable).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as coco_mask

from .errors import InvalidMaskError

__all__ = [
    "as_mask_batch",
    "encode_rle",
    "decode_rle",
    "rle_size",
    "rle_counts",
    "check_rle",
    "check_rle_header",
    "polygons_to_rle",
    "mask_areas",
    "masks_to_boxes",
    "interior_points",
    "boxes_to_masks",
    "mask_iou",
    "resize_masks",
    "union_masks",
    "iter_decoded",
]


def as_mask_batch(
    masks,
    name: str = "masks",
    *,
    image_size: tuple[int, int] | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Validate binary masks and return them as a ``(N, H, W)`` bool array.

    Accepts bool arrays, or integer / float arrays whose values are only 0 and 1 (torch
    tensors are converted). Raises `InvalidMaskError` for other dtypes, values outside
    {0, 1}, wrong rank, a shape that differs from ``image_size = (H, W)``, and — unless
    ``allow_empty`` — for a mask with no pixel set.
    """
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if not isinstance(masks, np.ndarray):
        try:
            masks = np.asarray(masks)
        except Exception as exc:  # ragged lists and the like
            raise InvalidMaskError(f"{name} must be an array of shape (N, H, W) or (H, W): {exc}") from exc
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise InvalidMaskError(f"{name} must have shape (N, H, W) or (H, W), got shape {masks.shape}")
    if masks.dtype != bool:
        if masks.dtype.kind not in "biuf":
            raise InvalidMaskError(f"{name} must be bool or numeric 0/1, got dtype {masks.dtype}")
        if masks.size and not np.isin(masks, (0, 1)).all():
            bad = masks[~np.isin(masks, (0, 1))].flat[0]
            raise InvalidMaskError(f"{name} must be binary (values 0/1), found value {bad!r}")
        masks = masks.astype(bool)
    if image_size is not None and tuple(masks.shape[1:]) != tuple(image_size):
        raise InvalidMaskError(
            f"{name} must have spatial shape (H, W) = {tuple(image_size)} of the image, got {tuple(masks.shape[1:])}"
        )
    if not allow_empty and masks.shape[0]:
        empty = ~masks.any(axis=(1, 2))
        if empty.any():
            raise InvalidMaskError(f"{name}[{int(np.flatnonzero(empty)[0])}] is empty (no pixel set)")
    return masks


def encode_rle(masks, name: str = "masks", *, allow_empty: bool = True) -> list[dict]:
    """Encode ``(N, H, W)`` (or ``(H, W)``) binary masks to a list of N COCO RLE dicts."""
    batch = as_mask_batch(masks, name, allow_empty=allow_empty)
    fortran = np.asfortranarray(batch.transpose(1, 2, 0).astype(np.uint8))
    rles = coco_mask.encode(fortran) if batch.shape[0] else []
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def _size(size, label: str, max_pixels: int) -> tuple[int, int]:
    """``(H, W)`` from ``size``: two non-negative integers with ``H * W <= max_pixels``."""
    if not isinstance(size, (list, tuple)) or len(size) != 2 or \
            not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        raise InvalidMaskError(f"{label} must be [H, W] (two integers), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h < 0 or w < 0:
        raise InvalidMaskError(f"{label} must be non-negative [H, W], got {size!r}")
    if h * w > max_pixels:
        raise InvalidMaskError(f"{label} = [{h}, {w}] has {h * w} pixels, above the limit max_pixels={max_pixels}")
    return h, w


def rle_counts(counts, name: str = "counts") -> np.ndarray:
    """Run lengths (int64) of COCO's compressed RLE string, decoded in numpy (no C call).

    The format (pycocotools ``rleFrString``): each run is a group of characters ``c - 48`` holding
    5 bits each, low bits first, bit ``0x20`` meaning "more characters follow" and bit ``0x10`` of
    the last one the sign; from the third run on, each value is a difference to the run two before.
    Characters outside ``'0'..'o'``, an unfinished last group, a group longer than 12 characters and
    negative run lengths raise `InvalidMaskError`.
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError as exc:
            raise InvalidMaskError(f"{name} must be ASCII (COCO compressed RLE): {exc}") from exc
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise InvalidMaskError(f"{name} holds characters outside '0'..'o': not COCO compressed RLE")
    more = (c & 0x20) != 0
    if more[-1]:
        raise InvalidMaskError(f"{name} is truncated (its last run is unfinished)")
    ends = np.flatnonzero(~more)  # last character of each run
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 12:
        raise InvalidMaskError(f"{name} has a run of {int(lengths.max())} characters (corrupt)")
    run = np.repeat(np.arange(len(ends)), lengths)
    k = np.arange(c.size) - starts[run]  # position of each character inside its run
    values = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    values = values - (negative.astype(np.int64) << (5 * lengths))
    runs = values.copy()
    for parity in (0, 1):  # runs[m] = values[m] + runs[m - 2] for m > 2
        first = 2 if parity == 0 else 1
        runs[first::2] = np.cumsum(values[first::2])
    if (runs < 0).any():
        raise InvalidMaskError(f"{name} decodes to a negative run length (corrupt)")
    return runs


def check_rle_header(rle, name: str = "rle", *, image_size: tuple[int, int] | None = None,
                     max_pixels: int | None = None) -> tuple[int, int]:
    """``(H, W)`` of a COCO RLE dict after the cheap checks of `check_rle` (a dict with ``size`` and
    ``counts``; the size; the type of ``counts``), without decoding the runs."""
    from .images import DEFAULT_MAX_PIXELS

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        what = f"keys {sorted(map(str, rle))}" if isinstance(rle, dict) else type(rle).__name__
        raise InvalidMaskError(f"{name} must be a COCO RLE dict with 'size' and 'counts', got {what}")
    h, w = _size(rle["size"], f"{name}['size']", DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    if image_size is not None and (h, w) != tuple(image_size):
        raise InvalidMaskError(f"{name}: RLE size [{h}, {w}] differs from the image size {list(image_size)}")
    if not isinstance(rle["counts"], (str, bytes, list)):
        raise InvalidMaskError(f"{name}['counts'] must be str, bytes or a list of ints, "
                               f"got {type(rle['counts']).__name__}")
    return h, w


def check_rle(rle, name: str = "rle", *, image_size: tuple[int, int] | None = None,
              max_pixels: int | None = None) -> dict:
    """Validate a COCO RLE dict and return it in pycocotools' form ``{"size": [H, W], "counts": bytes}``.

    Checked before any pycocotools call (a corrupt RLE makes the C code read or write out of bounds):
    ``size`` is two non-negative ints with ``H * W <= max_pixels`` (default
    `regionlib.images.DEFAULT_MAX_PIXELS`) and equal to ``image_size`` when given; ``counts`` is a
    compressed string / bytes (checked by `rle_counts`) or an uncompressed list of non-negative ints;
    the runs sum to ``H * W``. Raises `InvalidMaskError` naming ``name`` and the field.
    """
    h, w = check_rle_header(rle, name, image_size=image_size, max_pixels=max_pixels)
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise InvalidMaskError(f"{name}['counts'] (uncompressed) must be non-negative integers")
        total = sum(int(v) for v in counts)
        if total != h * w:
            raise InvalidMaskError(f"{name}['counts']: uncompressed runs sum to {total}, expected H*W = {h * w}")
        return coco_mask.frPyObjects({"size": [h, w], "counts": [int(v) for v in counts]}, h, w)
    total = int(rle_counts(counts, f"{name}['counts']").sum())
    if total != h * w:
        raise InvalidMaskError(f"{name}['counts']: compressed runs sum to {total}, expected H*W = {h * w}")
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


#: Polygon bounds (`polygons_to_rle`): coordinates within one image size of the image, and a total
#: edge length (Chebyshev, the rasteriser's work) of at most this many times ``H + W``.
POLYGON_PERIMETER_FACTOR = 100


def polygons_to_rle(polygons, image_size: tuple[int, int], name: str = "polygons") -> dict:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` -> one compressed RLE (pycocotools' form).

    Validated before pycocotools rasterises them (its work and memory grow with the edge length,
    so a 1e9 coordinate hangs it and NaN is undefined): each polygon is a list of >= 6 numbers of
    even length, finite, with x in ``[-W, 2W]`` and y in ``[-H, 2H]``, and the summed edge length
    at most ``POLYGON_PERIMETER_FACTOR * (H + W)``. Raises `InvalidMaskError` naming ``name``.
    """
    h, w = image_size
    if not isinstance(polygons, (list, tuple)) or not polygons:
        raise InvalidMaskError(f"{name} must be a non-empty list of polygons")
    arrays, perimeter = [], 0.0
    for i, p in enumerate(polygons):
        if not isinstance(p, (list, tuple)) or len(p) < 6 or len(p) % 2:
            raise InvalidMaskError(f"{name}[{i}] needs >= 3 points (an even list of >= 6 numbers)")
        if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in p):
            raise InvalidMaskError(f"{name}[{i}] must hold numbers only")
        xy = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise InvalidMaskError(f"{name}[{i}] has a NaN or infinite coordinate")
        if (xy[:, 0] < -w).any() or (xy[:, 0] > 2 * w).any() or (xy[:, 1] < -h).any() or (xy[:, 1] > 2 * h).any():
            raise InvalidMaskError(f"{name}[{i}] has a point far outside the image of size (H, W) = ({h}, {w})")
        closed = np.concatenate([xy, xy[:1]])
        perimeter += float(np.abs(np.diff(closed, axis=0)).max(axis=1).sum())
        arrays.append(xy.reshape(-1).tolist())
    if perimeter > POLYGON_PERIMETER_FACTOR * (h + w):
        raise InvalidMaskError(f"{name}: total edge length {perimeter:.0f} px exceeds "
                               f"{POLYGON_PERIMETER_FACTOR} * (H + W) = {POLYGON_PERIMETER_FACTOR * (h + w)}")
    return coco_mask.merge(coco_mask.frPyObjects(arrays, h, w))


def rle_size(rle, name: str = "rle") -> tuple[int, int]:
    """Return ``(H, W)`` of a COCO RLE dict."""
    return tuple(int(s) for s in check_rle(rle, name)["size"])


def decode_rle(rles: Sequence[dict] | dict, name: str = "rles", *, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode COCO RLE dicts (compressed or uncompressed) to a ``(N, H, W)`` bool array.

    Each RLE is checked by `check_rle` first; all must share one size, equal to ``image_size``
    when given (else `InvalidMaskError`).
    """
    if isinstance(rles, dict):
        rles = [rles]
    if not isinstance(rles, (list, tuple)):
        raise InvalidMaskError(f"{name} must be a list of COCO RLE dicts, got {type(rles).__name__}")
    objs = [check_rle(r, f"{name}[{i}]", image_size=image_size) for i, r in enumerate(rles)]
    sizes = {tuple(o["size"]) for o in objs}
    if not objs:
        h, w = image_size if image_size is not None else (0, 0)
        return np.zeros((0, h, w), dtype=bool)
    if len(sizes) > 1:
        raise InvalidMaskError(f"{name} must share one size, got sizes {sorted(sizes)}")
    decoded = coco_mask.decode(objs)  # (H, W, N) uint8; safe: every RLE was checked above
    return np.ascontiguousarray(decoded.transpose(2, 0, 1)).astype(bool)


def mask_areas(masks, name: str = "masks") -> np.ndarray:
    """Pixel counts of ``(N, H, W)`` masks -> ``(N,)`` int64."""
    batch = as_mask_batch(masks, name, allow_empty=True)
    return batch.reshape(batch.shape[0], batch.shape[1] * batch.shape[2]).sum(axis=1, dtype=np.int64)


def masks_to_boxes(masks, name: str = "masks") -> np.ndarray:
    """Tight half-open boxes of ``(N, H, W)`` masks -> ``(N, 4)`` float64 XYXY.

    ``x1 = max_x + 1`` and ``y1 = max_y + 1`` (REFERENCE §1). An empty mask has no box and
    raises `InvalidMaskError` (the released DAM code crashes there).
    """
    batch = as_mask_batch(masks, name, allow_empty=False)
    rows = batch.any(axis=2)  # (N, H)
    cols = batch.any(axis=1)  # (N, W)
    h, w = batch.shape[1:]
    y0 = rows.argmax(axis=1)
    y1 = h - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float64)


def interior_points(masks, name: str = "masks") -> np.ndarray:
    """The most interior pixel of each mask -> ``(N, 2)`` int64 ``(x, y)``: the argmax of the
    Euclidean distance to the nearest pixel outside (the image border counts as outside).

    Unlike the centroid it always lies inside the mask (a ring, a star, a crescent); set-of-marks
    labels sit there and a scripted click at a region's centre lands there. An empty mask raises
    `InvalidMaskError`."""
    from scipy import ndimage

    batch = as_mask_batch(masks, name, allow_empty=False)
    out = np.empty((len(batch), 2), np.int64)
    for i, m in enumerate(batch):
        dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(dist.argmax()), dist.shape)
        out[i] = x, y
    return out


def boxes_to_masks(boxes, image_size: tuple[int, int], name: str = "boxes") -> np.ndarray:
    """Rasterise ``(N, 4)`` XYXY boxes into ``(N, H, W)`` bool masks.

    Pixel ``(y, x)`` is inside when ``floor(x0) <= x < ceil(x1)`` and likewise for y, so
    an integer half-open box maps to exactly ``mask[y0:y1, x0:x1]`` and
    ``masks_to_boxes(boxes_to_masks(b)) == b`` for integer boxes inside the image.
    Boxes are validated (finite, non-degenerate) and clipped to the image.
    """
    from .boxes import validate_boxes
    from .images import DEFAULT_MAX_PIXELS

    h, w = _size(image_size, "image_size", DEFAULT_MAX_PIXELS)
    b = validate_boxes(boxes, name, image_size=image_size, clip=True)
    x0 = np.floor(b[:, 0]).astype(int)
    y0 = np.floor(b[:, 1]).astype(int)
    x1 = np.ceil(b[:, 2]).astype(int)
    y1 = np.ceil(b[:, 3]).astype(int)
    xs = np.arange(w)
    ys = np.arange(h)
    in_x = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])  # (N, W)
    in_y = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])  # (N, H)
    return in_y[:, :, None] & in_x[:, None, :]


def mask_iou(masks_a, masks_b, *, names: tuple[str, str] = ("masks_a", "masks_b")) -> np.ndarray:
    """Pairwise IoU of ``(N, H, W)`` and ``(M, H, W)`` masks -> ``(N, M)`` float64.

    Intersections are one matrix product of the flattened masks (exact: counts stay below
    2**24 in float32, float64 is used beyond). A pair whose union is empty has IoU 0.
    """
    a = as_mask_batch(masks_a, names[0], allow_empty=True)
    b = as_mask_batch(masks_b, names[1], allow_empty=True)
    if a.shape[1:] != b.shape[1:]:
        raise InvalidMaskError(f"{names[0]} and {names[1]} must share (H, W), got {a.shape[1:]} and {b.shape[1:]}")
    dtype = np.float32 if a.shape[1] * a.shape[2] < 2**24 else np.float64
    hw = a.shape[1] * a.shape[2]
    fa = a.reshape(a.shape[0], hw).astype(dtype)
    fb = b.reshape(b.shape[0], hw).astype(dtype)
    inter = (fa @ fb.T).astype(np.float64)
    union = fa.sum(1, dtype=np.float64)[:, None] + fb.sum(1, dtype=np.float64)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _bins(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive average pooling's bins along one axis: output ``i`` averages inputs ``[lo[i], hi[i])``,
    ``lo = floor(i n_in / n_out)``, ``hi = ceil((i + 1) n_in / n_out)``. Neighbours overlap by at most
    one input (the inputs of one bin follow those of the previous one)."""
    i = np.arange(n_out, dtype=np.int64)
    return (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out


def _uint_for(limit: int):
    """The smallest unsigned integer dtype that holds ``limit``."""
    return next(d for d in (np.uint8, np.uint16, np.uint32, np.uint64) if limit <= np.iinfo(d).max)


def _bin_runs(lo: np.ndarray, hi: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Consecutive bins of one height whose starts step evenly, as ``(first bin, bins, step, height)``: each run
    is one strided view. 1024 rows -> 27 bins (starts 37.9 rows apart, heights 38 / 39) are 5 runs."""
    runs, k = [], 0
    while k < len(lo):
        height, end = int(hi[k] - lo[k]), k + 1
        step = int(lo[end] - lo[k]) if end < len(lo) else 0
        while end < len(lo) and hi[end] - lo[end] == height and lo[end] - lo[end - 1] == step:
            end += 1
        runs.append((k, end - k, step, height))
        k = end
    return runs


def _row_bin_sums(u8: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` 0/1 bytes -> ``(N, h, W)``: per column, the pixels set in each row bin. Row bins of at
    most 255 rows add the bytes as they are (uint8, no carries). Each run of evenly spaced bins of one
    height (`_bin_runs`; all of them when ``h`` divides ``H``) is one reduction of an ``(N, bins, height, W)``
    strided view: numpy's reduction is much slower split into many calls over all the masks."""
    n, _, big_w = u8.shape
    dtype = _uint_for(int((hi - lo).max()))
    s_mask, s_row, s_col = u8.strides
    out = np.empty((n, len(lo), big_w), dtype)
    for first, count, step, height in _bin_runs(lo, hi):
        window = np.lib.stride_tricks.as_strided(u8[:, int(lo[first]):], shape=(n, count, height, big_w),
                                                 strides=(s_mask, step * s_row, s_row, s_col), writeable=False)
        np.add.reduce(window, axis=2, dtype=dtype, out=out[:, first: first + count])
    return out


def _col_bin_sums(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, tall: int) -> np.ndarray:
    """``(N, h, W)`` row-bin counts (each <= ``tall``) -> ``(N, h, w)`` cell counts (unsigned ints).

    An equal split of the columns adds ``s`` neighbouring byte lanes of a word at once (multiply by
    0x01..01, take the top byte) when ``s * tall <= 255``; other splits add the runs between the bins'
    edges (`np.add.reduceat`), then each bin's runs (a bin shares at most one column with the next)."""
    big_w, w = rows.shape[2], len(lo)
    if big_w % w == 0 and rows.dtype == np.uint8 and rows.flags.c_contiguous:
        kw = big_w // w
        for size, word in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
            if kw % size == 0 and size * tall <= 255:
                lanes = rows.view(word)  # rows is this module's own array: updated in place
                lanes *= word(int.from_bytes(b"\x01" * size, "little"))
                lanes >>= word(8 * (size - 1))  # the sum of the word's bytes
                if kw == size:
                    return lanes
                counts = lanes[:, :, 0::kw // size].astype(_uint_for(tall * kw))
                for k in range(1, kw // size):  # strided adds: a reduction over a short last axis is slow
                    counts += lanes[:, :, k::kw // size]
                return counts
    dtype = _uint_for(tall * big_w)
    if big_w >= w:  # lo increases: sums over [lo[j], lo[j + 1]), plus the column a bin shares with the next
        counts = np.add.reduceat(rows, lo, axis=2, dtype=dtype)
        shared = np.flatnonzero(hi[:-1] > lo[1:])  # hi[j] - lo[j + 1] is 0 or 1
        counts[:, :, shared] += rows[:, :, lo[shared + 1]]
        return counts
    edges = np.unique(np.concatenate([lo, hi]))
    edges = edges[edges < big_w]  # runs [edges[k], edges[k + 1]) of columns: each in the same bins
    runs = np.add.reduceat(rows, edges, axis=2, dtype=dtype)
    first, stop = np.searchsorted(edges, lo), np.searchsorted(np.append(edges, big_w), hi)
    counts = runs[:, :, first]
    for extra in range(1, int((stop - first).max())):  # bins of several runs (1 or 2 when W >= w)
        more = np.flatnonzero(stop - first > extra)
        counts[:, :, more] += runs[:, :, first[more] + extra]
    return counts


def _cpu_area_fraction(batch: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(N, H, W)`` bool -> ``(N, h, w)`` float32 area fractions, bit-identical to `adaptive_avg_pool2d`
    on the float masks (tested) without building them: exact integer counts of each bin (the bool
    bytes added as uint8 over the row bins, then over the column bins), divided as that kernel does
    (``count / kh / kw`` in float32; ``count / (H W)`` for a 1 x 1 grid, its mean). Memory: the ``(N, h, W)``
    row-bin counts, about 1/kh of the masks' bytes."""
    n, big_h, big_w = batch.shape
    if n == 0:
        return np.zeros((0, h, w), np.float32)
    rlo, rhi = _bins(big_h, h)
    clo, chi = _bins(big_w, w)
    rows = _row_bin_sums(batch.view(np.uint8), rlo, rhi)
    counts = _col_bin_sums(rows, clo, chi, int((rhi - rlo).max()))
    if (h, w) == (1, 1):  # adaptive_avg_pool2d takes the mean here: count / (H W)
        return counts.astype(np.float32) / np.float32(big_h * big_w)
    kh, kw = (rhi - rlo).astype(np.float32), (chi - clo).astype(np.float32)
    return counts.astype(np.float32) / kh[:, None] / kw[None, :]


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """The input index `F.interpolate` (mode ``"nearest"``, float32) reads for each of ``n_out`` outputs
    along one axis, taken from the kernel itself (its float32 scale rounds differently from float64)."""
    src = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, n_in, 1)
    return F.interpolate(src, size=(n_out, 1), mode="nearest").reshape(n_out).long().numpy()


def _bin_matrix(n_in: int, n_out: int, device) -> torch.Tensor:
    """``(n_out, n_in)``: row i averages adaptive pooling's bin ``[floor(i n_in / n_out), ceil((i + 1) n_in / n_out))``."""
    i = torch.arange(n_out, device=device)
    lo, hi = (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out
    x = torch.arange(n_in, device=device)
    r = ((x[None] >= lo[:, None]) & (x[None] < hi[:, None])).float()
    return r / r.sum(1, keepdim=True)


def _area_fraction(masks: torch.Tensor, h: int, w: int, chunk: int = 32) -> torch.Tensor:
    """``(N, H, W)`` bool tensor -> ``(N, h, w)`` float32 on its device: ``R M C^T`` with adaptive average
    pooling's bin matrices (equal to `adaptive_avg_pool2d`, tested), ``chunk`` masks at a time."""
    n, big_h, big_w = masks.shape
    rows, cols = _bin_matrix(big_h, h, masks.device), _bin_matrix(big_w, w, masks.device).T
    out = torch.empty((n, h, w), dtype=torch.float32, device=masks.device)
    for k in range(0, n, chunk):
        out[k: k + chunk] = rows @ (masks[k: k + chunk].float() @ cols)
    return out


def resize_masks(masks, size: tuple[int, int], *, mode: str = "area", name: str = "masks") -> torch.Tensor:
    """Resize ``(N, H, W)`` masks to a ``size = (h, w)`` grid -> ``(N, h, w)`` float32 tensor.

    ``mode="area"``: each cell holds the fraction of its pixels inside the mask (adaptive
    average pooling; soft weights for mask pooling). ``mode="nearest"``: 0/1 values. Bool tensors on
    an accelerator stay there (separable bin-average matmuls, the result on that device); numpy masks
    and CPU tensors take the CPU path, which reads the bool bytes once and builds no float copy of the
    masks: exact integer bin counts (any grid), or the nearest pixels gathered. Its values are
    bit-identical to `adaptive_avg_pool2d` / nearest `F.interpolate` on the float32 masks (tested).
    """
    if mode not in ("area", "nearest"):
        raise InvalidMaskError(f"mode must be 'area' or 'nearest', got {mode!r}")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise InvalidMaskError(f"size must be (h, w), two integers, got {size!r}") from exc
    if h <= 0 or w <= 0:
        raise InvalidMaskError(f"size must be positive (h, w), got {size!r}")
    if isinstance(masks, torch.Tensor) and masks.dtype == torch.bool and masks.device.type != "cpu":
        t = masks[None] if masks.ndim == 2 else masks
        if t.ndim != 3:
            raise InvalidMaskError(f"{name} must have shape (N, H, W), got {tuple(masks.shape)}")
        if mode == "area":  # on the masks' own device, exact: separable bin averages (matmuls)
            return _area_fraction(t, h, w)
        return F.interpolate(t.float()[:, None], size=(h, w), mode="nearest")[:, 0]
    if isinstance(masks, torch.Tensor) and masks.dtype == torch.bool:
        masks = masks.numpy()  # on the CPU: the integer bin counts below read it in place (zero-copy view)
    batch = as_mask_batch(masks, name, allow_empty=True)
    if 0 < batch.shape[1] * batch.shape[2] and max(batch.shape[1:]) < 2**24:  # exact in float32
        if mode == "area":
            return torch.from_numpy(_cpu_area_fraction(batch, h, w))
        rows, cols = _nearest_index(batch.shape[1], h), _nearest_index(batch.shape[2], w)
        return torch.from_numpy(batch[:, rows[:, None], cols[None, :]].astype(np.float32))
    t = torch.from_numpy(batch.astype(np.float32))
    if mode == "area":
        return F.adaptive_avg_pool2d(t[:, None], (h, w))[:, 0]
    return F.interpolate(t[:, None], size=(h, w), mode="nearest")[:, 0]


def union_masks(masks, name: str = "masks", *, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Union of ``(N, H, W)`` masks -> ``(H, W)`` bool (all False for N = 0 with ``image_size``)."""
    if image_size is not None and len(masks) == 0:
        return np.zeros(tuple(image_size), dtype=bool)
    return as_mask_batch(masks, name, allow_empty=True, image_size=image_size).any(axis=0)


def iter_decoded(rles: Iterable[dict], name: str = "rles") -> Iterable[np.ndarray]:
    """Decode RLEs one at a time (``(H, W)`` bool each), for streaming over large sets."""
    for i, r in enumerate(rles):
        yield decode_rle([r], f"{name}[{i}]")[0]
