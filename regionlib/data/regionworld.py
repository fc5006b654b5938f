"""RegionWorld: the embedded default dataset — procedurally generated, deterministic by seed.

Each image (``image_size`` px, square) holds 2-6 objects on a photograph (scikit-image's
bundled pictures, blurred and dimmed), a plain colour or a linear gradient. An object has a
shape, a named colour, a size class (tiny objects are ~10 px at 256 px), a fine pattern
(solid / striped / dotted / checkered), an optional dark outline, a position in the image's
3 x 3 grid and a relation to its nearest neighbour; objects drawn later occlude earlier
ones and every mask is the *visible* part (an earlier object keeps >= ``min_visible`` of its
area). The text grammar (keyword, phrase, caption, DLC-Bench questions) lives in
`regionlib.data.grammar`; ``regionlib/data/REGIONWORLD.md`` documents both.

Why the seeds' claims are testable on it (numbers for the defaults: 256-px images, a 64-px
encoder, DAM's focal crop with ``alpha = 3`` and a 48-px minimum, REFERENCE §1):

* Pattern periods are chosen per size class from the encoder size ``E`` (`RegionWorldConfig`):
  tiny and small objects get the *fine* period ``p_f = max(2, ceil(R * C / E))`` where
  ``C = min(S, alpha * max(48, d_small))`` is the largest focal crop of a small object and
  ``R = 2.5`` px the smallest period the resized crop should still carry (Nyquist is 2 px);
  medium and large objects get the *coarse* period ``p_c = max(p_f + 1, ceil(R * S / E))``.
  Defaults: ``p_f = ceil(2.5 * 144 / 64) = 6`` px and ``p_c = 10`` px. The whole 256-px image
  resized to 64 px shrinks a fine pattern to 6 / 4 = 1.5 px, beyond Nyquist, so an
  antialiased resize averages it away; the focal crop (144 px -> 64 px) keeps it at 2.7 px.
  The config refuses encoder sizes where ``p_f * E / S > 1.5``: between 1.5 px and the
  2-px Nyquist limit aliasing keeps a good part of the pattern's contrast (measured: a 2-px
  pattern seen by a 224-px encoder at 256 px keeps ~40 %). `RegionWorldConfig.for_encoder(224)`
  therefore picks 320-px images (``p_f = 2`` -> 1.4 px in the full view, 3.1 px in the crop).
  `pattern_visibility` measures the retention; ``benchmarks/bench_data.py`` prints it.
* Position words (3 x 3 grid) and relations need the whole image; a crop does not show them.
* Identical distractors (same shape, colour, pattern, size, outline; ``distractor_p``)
  differ only by location, so only the mask says which one is meant.

Per image the random stream is ``numpy.random.SeedSequence([seed, split_code, index])``;
drawing and question wording use separate child streams, so the same seed gives identical
bytes, and turning patterns off (``draw_patterns=False``) gives the exact solid twin.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError, RegionLibError
from ..images import encode_png
from ..regions import Regions
from . import grammar
from .grammar import COLORS, PATTERNS, SHAPES, SIZES, VOCABULARY

__all__ = [
    "VOCABULARY", "COLORS", "SPLITS", "PHOTOS", "RegionWorldConfig", "RegionWorldSample", "generate_sample",
    "generate_regionworld", "generate_splits", "regionworld_to_hf", "save_regionworld", "load_regionworld",
    "to_dlc_bench", "pattern_visibility", "attribute_accuracy",
]

SPLITS = {"train": 0, "val": 1, "test": 2, "unlabeled": 3}  # "unlabeled": the self-labeling pool
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "camera", "immunohistochemistry",
          "hubble_deep_field", "grass", "brick", "gravel", "colorwheel")
MAX_FULL_VIEW_PERIOD = 1.5  # encoder pixels: the fine period may shrink to at most this in the full view
_OUTLINE_RGB = np.array([15, 15, 15], np.uint8)


@dataclass(frozen=True, kw_only=True)
class RegionWorldConfig:
    """Generation parameters (all sizes in pixels of the ``image_size`` image).

    Attributes:
        image_size: side S of the square images.
        encoder_size: side E of the vision encoder the world is built for (sets the periods).
        min_objects, max_objects: objects per image (uniform).
        distractor_p: chance that an object copies an earlier one's attributes (identical distractor).
        outline_p: chance of a dark outline. size_p: chances of tiny / small / medium / large.
        background_p: chances of photo / plain / gradient backgrounds.
        min_visible: smallest visible share of an occluded object (else it is placed elsewhere).
        draw_patterns: False renders every pattern as solid (the twin used by `pattern_visibility`).
        resolve_px: R, the smallest period (encoder pixels) a resized crop should still carry.
        crop_min_size, crop_expansion: DAM's focal crop (48 px, alpha = 3).
        fine_period, coarse_period: override the derived periods (pixels at S).
    """

    image_size: int = 256
    encoder_size: int = 64
    min_objects: int = 2
    max_objects: int = 6
    distractor_p: float = 0.3
    outline_p: float = 0.3
    size_p: tuple[float, float, float, float] = (0.3, 0.25, 0.25, 0.2)
    background_p: tuple[float, float, float] = (0.5, 0.2, 0.3)
    min_visible: float = 0.4
    draw_patterns: bool = True
    resolve_px: float = 2.5
    crop_min_size: int = 48
    crop_expansion: float = 3.0
    fine_period: int | None = None
    coarse_period: int | None = None

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 64:
            raise ConfigError(f"image_size must be an int >= 64, got {self.image_size!r}")
        if not isinstance(self.encoder_size, int) or self.encoder_size < 8:
            raise ConfigError(f"encoder_size must be an int >= 8, got {self.encoder_size!r}")
        if not 1 <= self.min_objects <= self.max_objects <= 12:
            raise ConfigError(f"need 1 <= min_objects <= max_objects <= 12, got {self.min_objects}, {self.max_objects}")
        for name in ("distractor_p", "outline_p", "min_visible"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name, n in (("size_p", 4), ("background_p", 3)):
            p = np.asarray(getattr(self, name), dtype=float)
            if p.shape != (n,) or (p < 0).any() or not math.isclose(p.sum(), 1.0, abs_tol=1e-9):
                raise ConfigError(f"{name} must be {n} non-negative probabilities summing to 1, got {getattr(self, name)!r}")
        fine = self.periods["tiny"]
        if fine * self.encoder_size / self.image_size > MAX_FULL_VIEW_PERIOD:
            raise ConfigError(
                f"encoder_size={self.encoder_size}: the fine pattern (period {fine} px at {self.image_size} px) would keep "
                f"a period of {fine * self.encoder_size / self.image_size:.2f} px > {MAX_FULL_VIEW_PERIOD} px in the full "
                "image view, close enough to Nyquist to survive partly (aliasing); use a smaller encoder_size or a larger "
                "image_size (RegionWorldConfig.for_encoder picks one)")

    @classmethod
    def for_encoder(cls, encoder_size: int, *, image_size: int | None = None, **kwargs) -> "RegionWorldConfig":
        """The config for an encoder of ``encoder_size`` px; without ``image_size``, the smallest
        multiple of 32 (>= 256) at which fine patterns vanish from the full view (224 -> 320)."""
        if image_size is not None:
            return cls(encoder_size=encoder_size, image_size=image_size, **kwargs)
        for size in range(256, 32 * encoder_size + 1, 32):
            try:
                return cls(encoder_size=encoder_size, image_size=size, **kwargs)
            except ConfigError as exc:
                last = exc
        raise last

    @property
    def scale(self) -> float:
        return self.image_size / 256

    @property
    def periods(self) -> dict[str, int]:
        """Pattern period (pixels at ``image_size``) of each size class (module docstring)."""
        s, e, r = self.image_size, self.encoder_size, self.resolve_px
        small_max = SIZES["small"][1] * self.scale
        crop = min(s, self.crop_expansion * max(self.crop_min_size, small_max))
        fine = self.fine_period or max(2, math.ceil(r * crop / e))
        coarse = self.coarse_period or max(fine + 1, math.ceil(r * s / e))
        return {"tiny": fine, "small": fine, "medium": coarse, "large": coarse}


@dataclass
class RegionWorldSample:
    """One image: ``image`` (H, W, 3) uint8 and its ``regions``.

    ``regions``: masks (visible parts, RLE), ``captions`` (detailed), ``labels`` (class name =
    shape), ``ids`` (``"{image_id}_{k}"``) and ``data`` with ``keyword``, ``phrase``,
    ``attributes`` (dict per region) and ``questions`` (DLC-Bench record per region).
    """

    image_id: str
    image: np.ndarray
    regions: Regions
    seed: tuple[int, ...] = ()
    split: str = "train"
    config: RegionWorldConfig = field(default_factory=RegionWorldConfig)


# ---------------------------------------------------------------------------------- drawing
@functools.lru_cache(maxsize=64)
def _photo(name: str, size: int) -> np.ndarray:
    """A bundled photograph, RGB, short side ``ceil(1.25 * size)``, blurred and dimmed (cached)."""
    from PIL import Image, ImageFilter
    from skimage import data

    img = getattr(data, name)()
    img = img[0] if isinstance(img, tuple) else img
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3])
    h, w = img.shape[:2]
    short = math.ceil(1.25 * size)
    new = (max(short, round(w * short / min(h, w))), max(short, round(h * short / min(h, w))))
    pil = Image.fromarray(img).resize(new, Image.BILINEAR).filter(ImageFilter.GaussianBlur(radius=size / 160))
    return (np.asarray(pil, dtype=np.float32) * 0.55 + 40).clip(0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, cfg: RegionWorldConfig) -> tuple[np.ndarray, str]:
    s = cfg.image_size
    kind = int(rng.choice(3, p=cfg.background_p))
    if kind == 0:
        name = PHOTOS[int(rng.integers(len(PHOTOS)))]
        photo = _photo(name, s)
        y = int(rng.integers(photo.shape[0] - s + 1))
        x = int(rng.integers(photo.shape[1] - s + 1))
        crop = photo[y : y + s, x : x + s]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop), f"photo:{name}"
    c0 = rng.integers(60, 200, 3).astype(np.float32)
    if kind == 1:
        return np.broadcast_to(c0.astype(np.uint8), (s, s, 3)).copy(), "plain"
    c1 = rng.integers(60, 200, 3).astype(np.float32)
    ramp = np.linspace(0.0, 1.0, s, dtype=np.float32)
    direction = int(rng.integers(3))
    t = {0: ramp[:, None], 1: ramp[None, :], 2: (ramp[:, None] + ramp[None, :]) / 2}[direction]
    t = np.broadcast_to(t, (s, s))
    return (c0 + (c1 - c0) * t[..., None]).astype(np.uint8), "gradient"


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` of radius ``r`` at offsets ``(dx, dy)`` from its centre (broadcast)."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= r * 0.85
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r * 1.1
    if shape == "triangle":  # pointing up
        return (dy <= r * 0.75) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.62)
    if shape == "hexagon":
        ax, ay = np.abs(dx), np.abs(dy)
        return np.maximum(ax * 0.866 + ay * 0.5, ay) <= r * 0.92
    # five-pointed star: radius alternates between the tips (r) and the notches (0.45 r)
    theta = np.arctan2(dx, -dy)
    phase = (theta * 5 / (2 * np.pi)) % 1.0
    radius = r * (0.45 + 0.55 * np.abs(2 * phase - 1))
    return dx * dx + dy * dy <= radius * radius


def _pattern_map(pattern: str, xs: np.ndarray, ys: np.ndarray, period: int) -> np.ndarray:
    """Boolean map of the pattern's second tone at integer image coordinates (broadcast)."""
    if pattern == "striped":  # vertical stripes, half a period wide
        return np.broadcast_to((xs % period) * 2 < period, np.broadcast_shapes(xs.shape, ys.shape))
    if pattern == "checkered":
        return ((np.floor(xs * 2 / period) + np.floor(ys * 2 / period)) % 2) == 1
    if pattern == "dotted":
        return ((xs % period) * 2 < period) & ((ys % period) * 2 < period)
    return np.zeros(np.broadcast_shapes(xs.shape, ys.shape), bool)


_COVERAGE = {"striped": 0.5, "checkered": 0.5, "dotted": 0.25, "solid": 0.0}


def _pattern_tones(rgb: tuple[int, int, int], coverage: float, contrast: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """Ground and second tone of a pattern whose area-weighted mean is exactly the named colour.

    With coverage q of the second tone: ``ground = c + q * d``, ``second = c - (1 - q) * d``, so
    ``(1 - q) * ground + q * second = c``: a resize that averages the pattern away leaves the
    plain named colour, and the mean colour tells nothing about the pattern. ``d`` is a grey
    offset of at most ``contrast`` levels, signed and shrunk to stay inside [0, 255].
    """
    c = np.asarray(rgb, np.float64)
    if coverage <= 0:
        return c.astype(np.uint8), c.astype(np.uint8)
    up = min(((255 - c) / coverage).min(), (c / (1 - coverage)).min())  # d > 0: ground lighter
    down = min((c / coverage).min(), ((255 - c) / (1 - coverage)).min())  # d < 0: ground darker
    d = min(contrast, up) if up >= down else -min(contrast, down)
    return np.round(c + coverage * d).astype(np.uint8), np.round(c - (1 - coverage) * d).astype(np.uint8)


def _erode(m: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (pixels outside the array count as background)."""
    p = np.pad(m, 1)
    return m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _sample_attributes(rng: np.random.Generator, cfg: RegionWorldConfig) -> dict:
    size = list(SIZES)[int(rng.choice(4, p=cfg.size_p))]
    lo, hi = SIZES[size]
    return {"shape": SHAPES[int(rng.integers(len(SHAPES)))], "color": list(COLORS)[int(rng.integers(len(COLORS)))],
            "pattern": PATTERNS[int(rng.integers(len(PATTERNS)))], "size": size,
            "size_px": float(rng.uniform(lo, hi) * cfg.scale), "outline": bool(rng.random() < cfg.outline_p)}


def generate_sample(seed: int | Sequence[int], *, config: RegionWorldConfig | None = None, split: str = "train",
                    image_id: str | None = None) -> RegionWorldSample:
    """One deterministic RegionWorld image (same seed and config -> identical bytes).

    Args:
        seed: int or a sequence of ints (entropy of a `numpy.random.SeedSequence`).
        config: generation parameters (`RegionWorldConfig()` by default).
    """
    cfg = config or RegionWorldConfig()
    entropy = tuple(int(v) for v in (seed if isinstance(seed, (tuple, list)) else (seed,)))
    if any(v < 0 for v in entropy):
        raise RegionLibError(f"seed must be non-negative, got {seed!r}")
    draw_ss, text_ss = np.random.SeedSequence(entropy).spawn(2)
    rng = np.random.default_rng(draw_ss)
    s = cfg.image_size
    image, background = _background(rng, cfg)
    periods = cfg.periods
    n_target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    owner = np.full((s, s), -1, np.int16)
    objects: list[dict] = []
    full_masks: list[np.ndarray] = []
    visible_px: list[int] = []
    for k in range(n_target):
        if objects and rng.random() < cfg.distractor_p:
            src = objects[int(rng.integers(len(objects)))]
            attrs = {key: src[key] for key in ("shape", "color", "pattern", "size", "size_px", "outline")}
        else:
            attrs = _sample_attributes(rng, cfg)
        r = attrs["size_px"] / 2
        period = periods[attrs["size"]]
        phase = rng.integers(period, size=2)
        placed = None
        for _ in range(30):
            cx, cy = rng.uniform(r + 1, s - r - 1, 2)
            x0, y0 = max(0, int(cx - r - 2)), max(0, int(cy - r - 2))
            x1, y1 = min(s, int(cx + r + 3)), min(s, int(cy + r + 3))
            xs = np.arange(x0, x1)[None, :]
            ys = np.arange(y0, y1)[:, None]
            m = _shape_mask(attrs["shape"], xs + 0.5 - cx, ys + 0.5 - cy, r)
            if not m.any():
                continue
            covered = np.bincount(owner[y0:y1, x0:x1][m].astype(np.int64) + 1, minlength=len(objects) + 1)[1:]
            if all(visible_px[j] - covered[j] >= cfg.min_visible * full_masks[j].sum() for j in range(len(objects))):
                placed = (cx, cy, x0, y0, x1, y1, xs, ys, m, covered)
                break
        if placed is None:
            continue
        cx, cy, x0, y0, x1, y1, xs, ys, m, covered = placed
        for j in range(len(objects)):
            visible_px[j] -= int(covered[j])
        k = len(objects)
        owner[y0:y1, x0:x1][m] = k
        full = np.zeros((s, s), bool)
        full[y0:y1, x0:x1] = m
        full_masks.append(full)
        visible_px.append(int(m.sum()))
        sub = image[y0:y1, x0:x1]
        if cfg.draw_patterns and attrs["pattern"] != "solid":
            ground, second = _pattern_tones(COLORS[attrs["color"]], _COVERAGE[attrs["pattern"]])
            sub[m] = ground
            sub[m & _pattern_map(attrs["pattern"], xs + int(phase[0]), ys + int(phase[1]), period)] = second
        else:
            sub[m] = COLORS[attrs["color"]]
        if attrs["outline"]:
            edge = m
            for _ in range(max(1, round(cfg.scale))):
                edge = _erode(edge)
            sub[m & ~edge] = _OUTLINE_RGB
        objects.append({**attrs, "pattern_period": period, "center_xy": [float(cx), float(cy)]})
    masks = np.stack([owner == k for k in range(len(objects))]) if objects else np.zeros((0, s, s), bool)
    text_rng = np.random.default_rng(text_ss)
    for k, o in enumerate(objects):
        o["position"] = grammar.position_name(*o["center_xy"], s)
        o["occluded_fraction"] = float(1 - masks[k].sum() / full_masks[k].sum())
        o["background"] = background
        o["draw_order"] = k
        if len(objects) > 1:
            dist = [math.dist(o["center_xy"], p["center_xy"]) if j != k else math.inf for j, p in enumerate(objects)]
            j = int(np.argmin(dist))
            overlap = bool((full_masks[k] & full_masks[j]).any())
            o["relation"] = grammar.relation_name(o["center_xy"], objects[j]["center_xy"], overlap=overlap, in_front=k > j)
            o["relation_target"] = f"{objects[j]['color']} {objects[j]['shape']}"
            o["relation_target_index"] = j
        else:
            o["relation"], o["relation_target"], o["relation_target_index"] = "", "", -1
    image_id = image_id or "rw-" + "-".join(f"{v:06d}" for v in entropy)
    regions = Regions.from_masks(
        masks, image_size=(s, s),
        captions=[grammar.caption(o) for o in objects],
        labels=[grammar.keyword(o) for o in objects],
        ids=[f"{image_id}_{k}" for k in range(len(objects))],
        data={"keyword": [grammar.keyword(o) for o in objects], "phrase": [grammar.phrase(o) for o in objects],
              "attributes": objects, "questions": [grammar.dlc_questions(o, text_rng) for o in objects]},
    ) if objects else Regions.empty((s, s))
    return RegionWorldSample(image_id=image_id, image=image, regions=regions, seed=entropy, split=split, config=cfg)


def _config(config: RegionWorldConfig | None, image_size: int | None, overrides: Mapping) -> RegionWorldConfig:
    cfg = config or RegionWorldConfig()
    changes = dict(overrides)
    if image_size is not None:
        changes["image_size"] = image_size
    unknown = set(changes) - set(RegionWorldConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown RegionWorldConfig fields {sorted(unknown)}")
    return replace(cfg, **changes) if changes else cfg


def generate_regionworld(n_images: int, *, seed: int = 0, image_size: int | None = None, split: str = "train",
                         config: RegionWorldConfig | None = None, progress: bool = False,
                         **overrides) -> list[RegionWorldSample]:
    """``n_images`` samples of ``split``; image ``i`` uses the seed entropy ``(seed, split_code, i)``.

    ``image_size`` and ``overrides`` replace fields of ``config``. Splits never share an image.
    """
    if not isinstance(n_images, (int, np.integer)) or n_images < 0:
        raise RegionLibError(f"n_images must be a non-negative int, got {n_images!r}")
    if split not in SPLITS:
        raise RegionLibError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    cfg = _config(config, image_size, overrides)
    indices = range(int(n_images))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"RegionWorld {split}")
    return [generate_sample((seed, SPLITS[split], i), config=cfg, split=split) for i in indices]


def generate_splits(*, n_train: int, n_val: int, n_test: int, seed: int = 0, config: RegionWorldConfig | None = None,
                    **overrides) -> dict[str, list[RegionWorldSample]]:
    """Train / val / test splits (disjoint seed streams)."""
    counts = {"train": n_train, "val": n_val, "test": n_test}
    return {name: generate_regionworld(n, seed=seed, split=name, config=config, **overrides) for name, n in counts.items()}


# ---------------------------------------------------------------------------------- measurement
def pattern_visibility(sample: RegionWorldSample, *, encoder_size: int | None = None, min_size: int | None = None,
                       expansion: float | None = None) -> dict[str, np.ndarray]:
    """How much of each region's pattern survives DAM's two encoder views (`regionlib.focal.focal_prompt`).

    The sample is re-rendered with ``draw_patterns=False`` (the exact solid twin), so
    ``image - twin`` is the pattern signal alone. Both images go through `focal_prompt` at the
    encoder size; per region the retention is the standard deviation of the (resized) pattern
    signal inside the mask's interior (eroded by one pixel) divided by the same at full resolution.

    Returns:
        ``{"full": (N,), "focal": (N,)}`` float64 retention in [0, ~1] (NaN for solid regions; 0
        where the object shrinks to nothing).
    """
    import torch
    import torch.nn.functional as F

    from ..focal import focal_prompt

    cfg = sample.config
    e = encoder_size or cfg.encoder_size
    min_size = cfg.crop_min_size if min_size is None else min_size
    expansion = cfg.crop_expansion if expansion is None else expansion
    n = len(sample.regions)
    if n == 0:
        return {"full": np.zeros(0), "focal": np.zeros(0)}
    twin = generate_sample(sample.seed, config=replace(cfg, draw_patterns=False), split=sample.split,
                           image_id=sample.image_id)
    masks = sample.regions.masks
    kw = dict(size=(e, e), min_size=min_size, expansion=expansion)
    fp, fp0 = focal_prompt(sample.image, masks, **kw), focal_prompt(twin.image, masks, **kw)

    def interior(m: torch.Tensor) -> torch.Tensor:  # (N, 1, h, w) bool -> eroded, or m if that empties
        er = -F.max_pool2d(-m.float(), 3, stride=1, padding=1) > 0.5
        keep = er.flatten(1).any(1)
        return torch.where(keep[:, None, None, None], er, m)

    def spread(diff: torch.Tensor, m: torch.Tensor) -> torch.Tensor:  # (N, 3, h, w), (N, 1, h, w) -> (N,)
        w = m.float()
        cnt = w.flatten(1).sum(1).clamp(min=1)
        mean = (diff * w).flatten(2).sum(2) / cnt[:, None]
        var = (((diff - mean[..., None, None]) ** 2) * w).flatten(2).sum(2) / cnt[:, None]
        out = var.mean(1).sqrt()
        return torch.where(w.flatten(1).sum(1) > 0, out, torch.zeros_like(out))

    native = (torch.from_numpy(sample.image.astype(np.float32) - twin.image.astype(np.float32)) * (2 / 255))
    native = native.permute(2, 0, 1)[None].expand(n, -1, -1, -1)
    ref = spread(native, interior(torch.from_numpy(masks)[:, None]))
    full = spread((fp.full_image_tensor - fp0.full_image_tensor).expand(n, -1, -1, -1), interior(fp.full_mask_tensor > 0))
    focal = spread(fp.image_tensor - fp0.image_tensor, interior(fp.mask_tensor > 0))
    solid = np.array([a["pattern"] == "solid" for a in sample.regions.data["attributes"]])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"full": (full / ref).numpy().astype(np.float64), "focal": (focal / ref).numpy().astype(np.float64)}
    for v in out.values():
        v[solid | (ref.numpy() == 0)] = np.nan
    return out


def attribute_accuracy(captions: Sequence[str], attributes: Sequence[Mapping],
                       keys=("shape", "color", "pattern", "size", "position")) -> dict[str, float]:
    """Share of regions whose caption's first clause names the true value of each attribute."""
    if len(captions) != len(attributes) or not captions:
        raise DataFormatError(f"need equally many captions and attribute dicts (> 0), got {len(captions)}, {len(attributes)}")
    out = {}
    for key in keys:
        hits = []
        for c, a in zip(captions, attributes):
            words = set(c.lower().split(",", 1)[0].replace(".", " ").split())
            hits.append(set(str(a[key]).split()) <= words)
        out[key] = float(np.mean(hits))
    return out


# ---------------------------------------------------------------------------------- storage
def _sample_row(s: RegionWorldSample) -> dict:
    from .readers.hf import regions_to_struct

    return {"image_id": s.image_id, "split": s.split, "seed": list(s.seed), "image": {"bytes": encode_png(s.image), "path": None},
            "config": json.dumps(asdict(s.config)), "image_height": s.image.shape[0], "image_width": s.image.shape[1],
            "regions": regions_to_struct(s.regions)}


def _features():
    import datasets

    from .readers.hf import REGION_FEATURES

    return datasets.Features({
        "image_id": datasets.Value("string"), "split": datasets.Value("string"),
        "seed": datasets.Sequence(datasets.Value("int64")), "image": datasets.Image(),
        "config": datasets.Value("string"), "image_height": datasets.Value("int64"),
        "image_width": datasets.Value("int64"), "regions": REGION_FEATURES,
    })


def regionworld_to_hf(samples: Sequence[RegionWorldSample]):
    """An HF `datasets.Dataset`, one row per image: PNG image, seed, config, regions (RLE masks)."""
    import datasets

    return datasets.Dataset.from_list([_sample_row(s) for s in samples], features=_features())


def save_regionworld(samples: Sequence[RegionWorldSample] | Mapping[str, Sequence[RegionWorldSample]], path: str | Path):
    """Save samples (or a ``{split: samples}`` dict, as a `DatasetDict`) with ``save_to_disk``."""
    import datasets

    if isinstance(samples, Mapping):
        ds = datasets.DatasetDict({name: regionworld_to_hf(v) for name, v in samples.items()})
    else:
        ds = regionworld_to_hf(samples)
    ds.save_to_disk(str(path))
    return ds


def _row_sample(row: Mapping) -> RegionWorldSample:
    from .readers.hf import regions_from_struct

    cfg = RegionWorldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(row["config"]).items()})
    size = (int(row["image_height"]), int(row["image_width"]))
    return RegionWorldSample(image_id=row["image_id"], image=np.asarray(row["image"].convert("RGB")),
                             regions=regions_from_struct(row["regions"], image_size=size), seed=tuple(row["seed"]),
                             split=row["split"], config=cfg)


def load_regionworld(path: str | Path, *, split: str | None = None):
    """Inverse of `save_regionworld`: a list of samples, or ``{split: samples}`` for a saved dict
    (``split`` picks one). Masks stay RLE until used."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataFormatError(f"{path}: not a saved RegionWorld dataset ({exc})") from exc
    if isinstance(ds, datasets.DatasetDict):
        if split is not None:
            if split not in ds:
                raise DataFormatError(f"{path}: no split {split!r} (has {sorted(ds)})")
            return [_row_sample(r) for r in ds[split]]
        return {name: [_row_sample(r) for r in d] for name, d in ds.items()}
    samples = [_row_sample(r) for r in ds]
    return [s for s in samples if s.split == split] if split is not None else samples


def to_dlc_bench(samples: Sequence[RegionWorldSample], root: str | Path) -> Path:
    """Write samples in DLC-Bench's release layout (read back by `readers.dlc_bench.read_dlc_bench`).

    ``root/annotations/annotations.json`` (COCO, RLE masks, categories = shapes),
    ``root/annotations/images/<image_id>.png``, ``root/annotations/qa.json`` (annotation id ->
    positive and negative questions) and ``root/annotations/class_names.json`` (id -> class).
    """
    from PIL import Image

    from .readers.base import safe_file_name

    root = Path(root)
    img_dir = root / "annotations" / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    cats = {name: i + 1 for i, name in enumerate(SHAPES)}
    images, anns, qa, class_names = [], [], {}, {}
    for img_id, s in enumerate(samples, start=1):
        file_name = f"{img_id:06d}_{safe_file_name(s.image_id)}.png"  # ids never name paths outside the root
        Image.fromarray(s.image).save(img_dir / file_name)
        h, w = s.image.shape[:2]
        images.append({"id": img_id, "file_name": file_name, "height": h, "width": w})
        for k in range(len(s.regions)):
            ann_id = len(anns) + 1
            x0, y0, x1, y1 = (float(v) for v in s.regions.boxes_xyxy[k])
            rle = s.regions.masks_rle[k]
            anns.append({"id": ann_id, "image_id": img_id, "category_id": cats[s.regions.labels[k]],
                         "segmentation": {"size": list(rle["size"]), "counts": rle["counts"]},
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(s.regions.masks[k].sum()), "iscrowd": 0,
                         "region_id": s.regions.ids[k]})
            q = s.regions.data["questions"][k]
            qa[str(ann_id)] = [*q["details_positives"], *q["details_negatives"]]
            class_names[str(ann_id)] = s.regions.labels[k]
    coco = {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for n, i in cats.items()]}
    for name, obj in (("annotations.json", coco), ("qa.json", qa), ("class_names.json", class_names)):
        (root / "annotations" / name).write_text(json.dumps(obj))
    return root
