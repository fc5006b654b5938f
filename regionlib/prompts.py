"""Region prompts for SAM: points, boxes, scribbles and mask prompts; SCA's pseudo-points.

A `Prompt` is one region request: any combination of positive/negative points, one box and
one mask. Coordinates are absolute pixels of the original image, XY order. Out-of-image
policy: points and boxes outside the image raise `InvalidPromptError` (use
`boxes.clip_boxes` first to clip deliberately).

Pseudo-point prompts (SCA, seed 000 Tab. 7; REFERENCE §4), all seeded:
CPB = centre of the box, RPB = uniform random point in the box, RPM = uniform random pixel
of the (highest-confidence) mask, taken at the pixel centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import validate_boxes
from .errors import InvalidPromptError, RegionLibError
from .masks import as_mask_batch

__all__ = ["Prompt", "prompt_chunks", "sample_scribble", "cpb_points", "rpb_points", "rpm_points"]


@dataclass(frozen=True)
class Prompt:
    """One region prompt.

    Attributes:
        points_xy: ``(K, 2)`` float XY pixel coordinates, or None.
        point_labels: ``(K,)`` int, 1 = positive (foreground), 0 = negative, or None.
        box_xyxy: ``(4,)`` float XYXY, or None.
        mask: ``(H, W)`` bool mask prompt at image resolution, or None.
    """

    points_xy: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box_xyxy: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        if self.points_xy is None and self.box_xyxy is None and self.mask is None:
            raise InvalidPromptError("a Prompt needs at least one of points_xy, box_xyxy or mask")
        if self.points_xy is not None:
            try:
                pts = np.asarray(self.points_xy, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidPromptError(f"points_xy must be numeric (K, 2): {exc}") from exc
            if pts.ndim == 1 and pts.shape[0] == 2:
                pts = pts[None]
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
                raise InvalidPromptError(f"points_xy must have shape (K, 2) with K >= 1, got {pts.shape}")
            if not np.isfinite(pts).all():
                raise InvalidPromptError("points_xy contains NaN or infinite coordinates")
            labels = np.ones(len(pts), dtype=np.int64) if self.point_labels is None else np.asarray(self.point_labels)
            if labels.shape != (len(pts),) or not np.isin(labels, (0, 1)).all():
                raise InvalidPromptError(f"point_labels must be K = {len(pts)} values in {{0, 1}}, got {labels!r}")
            set_(self, "points_xy", pts)
            set_(self, "point_labels", labels.astype(np.int64))
        elif self.point_labels is not None:
            raise InvalidPromptError("point_labels given without points_xy")
        if self.box_xyxy is not None:
            try:
                set_(self, "box_xyxy", validate_boxes(self.box_xyxy, "box_xyxy")[0])
            except RegionLibError as exc:
                raise InvalidPromptError(str(exc)) from exc
        if self.mask is not None:
            try:
                set_(self, "mask", as_mask_batch(self.mask, "mask")[0])
            except RegionLibError as exc:
                raise InvalidPromptError(str(exc)) from exc

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_points(cls, points_xy, labels=None) -> "Prompt":
        return cls(points_xy=points_xy, point_labels=labels)

    @classmethod
    def from_box(cls, box_xyxy) -> "Prompt":
        return cls(box_xyxy=box_xyxy)

    @classmethod
    def from_scribble(cls, stroke_xy, *, num_points: int = 8, negative: bool = False) -> "Prompt":
        """Points sampled at equal arc length along a polyline stroke ``(M, 2)``."""
        pts = sample_scribble(stroke_xy, num_points=num_points)
        return cls(points_xy=pts, point_labels=np.full(len(pts), 0 if negative else 1))

    @classmethod
    def from_mask(cls, mask) -> "Prompt":
        return cls(mask=mask)

    # ---------------------------------------------------------------- checks
    @property
    def signature(self) -> tuple[int, bool, bool]:
        """``(n_points, has_box, has_mask)``: prompts with one signature batch together."""
        return (0 if self.points_xy is None else len(self.points_xy), self.box_xyxy is not None, self.mask is not None)

    def check_inside(self, image_size: tuple[int, int], name: str = "prompt") -> None:
        """Raise `InvalidPromptError` if a point, the box or the mask disagrees with the image."""
        h, w = image_size
        if self.points_xy is not None:
            p = self.points_xy
            out = (p[:, 0] < 0) | (p[:, 0] > w) | (p[:, 1] < 0) | (p[:, 1] > h)
            if out.any():
                raise InvalidPromptError(f"{name}: point {p[out][0].tolist()} lies outside the image (H, W) = {(h, w)}")
        if self.box_xyxy is not None:
            try:
                validate_boxes(self.box_xyxy, f"{name}.box_xyxy", image_size=image_size)
            except RegionLibError as exc:
                raise InvalidPromptError(str(exc)) from exc
        if self.mask is not None and self.mask.shape != (h, w):
            raise InvalidPromptError(f"{name}.mask has shape {self.mask.shape}, expected the image shape {(h, w)}")



def prompt_chunks(prompts, batch_size: int):
    """Indices of ``prompts`` in chunks of at most ``batch_size`` that share a `Prompt.signature` (one
    model call each), signature groups in order of first appearance: ``[[i, ...], ...]``; each `Prompt`
    is checked (`InvalidPromptError` naming the first that is not one)."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prompts):
        if not isinstance(p, Prompt):
            raise InvalidPromptError(f"prompts[{i}] must be a Prompt, got {type(p).__name__}")
        groups.setdefault(p.signature, []).append(i)
    return [members[s: s + batch_size] for members in groups.values() for s in range(0, len(members), batch_size)]

def sample_scribble(stroke_xy, *, num_points: int = 8) -> np.ndarray:
    """Sample ``num_points`` points at equal arc length along a polyline ``(M, 2)`` -> ``(num_points, 2)``.

    Endpoints included; a single-point stroke (or zero length) returns that point once.
    """
    s = np.asarray(stroke_xy, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or len(s) == 0:
        raise InvalidPromptError(f"stroke_xy must have shape (M, 2) with M >= 1, got {s.shape}")
    if not np.isfinite(s).all():
        raise InvalidPromptError("stroke_xy contains NaN or infinite coordinates")
    if num_points < 1:
        raise InvalidPromptError(f"num_points must be >= 1, got {num_points}")
    seg = np.linalg.norm(np.diff(s, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] == 0:
        return s[:1].copy()
    t = np.linspace(0.0, cum[-1], num_points)
    return np.stack([np.interp(t, cum, s[:, 0]), np.interp(t, cum, s[:, 1])], axis=1)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def cpb_points(boxes_xyxy) -> np.ndarray:
    """CPB: box centres ``(N, 4) -> (N, 2)``."""
    b = validate_boxes(boxes_xyxy, "boxes_xyxy")
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)


def rpb_points(boxes_xyxy, *, seed=0) -> np.ndarray:
    """RPB: one uniform random point inside each box ``(N, 4) -> (N, 2)``."""
    b = validate_boxes(boxes_xyxy, "boxes_xyxy")
    u = _rng(seed).random((len(b), 2))
    return np.stack([b[:, 0] + u[:, 0] * (b[:, 2] - b[:, 0]), b[:, 1] + u[:, 1] * (b[:, 3] - b[:, 1])], axis=1)


def rpm_points(masks, *, seed=0) -> np.ndarray:
    """RPM: one uniform random mask pixel per mask, at the pixel centre ``(N, H, W) -> (N, 2)``."""
    batch = as_mask_batch(masks, "masks")
    rng = _rng(seed)
    out = np.empty((len(batch), 2))
    for i, m in enumerate(batch):
        ys, xs = np.nonzero(m)
        k = rng.integers(len(xs))
        out[i] = (xs[k] + 0.5, ys[k] + 0.5)
    return out
