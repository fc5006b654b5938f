"""RegionWorld: the embedded default dataset — procedurally generated, deterministic by seed.

Grammar (closed vocabulary, `VOCABULARY`):

* object = shape ∈ {circle, square, triangle, diamond} (the class name and keyword), colour
  ∈ 8 named colours, size ∈ {tiny (10-14 px), small (18-26), medium (30-44), large (50-72)} at a
  256-px image (sizes scale with the image), pattern ∈ {solid, striped, dotted, checkered} with a
  period of `PATTERN_PERIOD` = 6 px at 256 px, optional dark outline;
* position = vertical {top, middle, bottom} x horizontal {left, center, right} thirds of the image;
* relation to the nearest other object: {to the left of, to the right of, above, below};
* 2-6 objects per image on a photograph (scikit-image's bundled pictures, dimmed and blurred)
  or a plain / gradient background; later objects occlude earlier ones and every mask is the
  *visible* part (objects with under 40% visible are redrawn elsewhere).

Per region: keyword ``"{shape}"``; phrase ``"{colour} {pattern} {shape}"``; caption
``"A {size} {colour} {pattern} {shape}[ with a dark outline] in the {position} of the image,
{relation} the {colour'} {shape'}."``; DLC-Bench-style positive questions (colour, pattern, size,
position; 4 scored choices 0 / 0.5 / -1 / 1) and negative questions (a wrong colour and a wrong
pattern; 4 choices -1 / 1 / 1 / 0) in the released evaluator's format; the attribute ground truth.

Why it makes the seeds' claims testable: a 6-px pattern on a tiny object is averaged away when
the 256-px image is resized to a small encoder (64 px: period 1.5 px) but survives in DAM's
focal crop (>= 144 px crop -> period >= 2.7 px); position and relation words need the whole
image; identical distractors (same colour, pattern and shape) occur and differ only by location.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, RegionLibError
from ..regions import Regions

__all__ = ["VOCABULARY", "COLORS", "PATTERN_PERIOD", "RegionWorldSample", "generate_sample", "generate_regionworld",
           "split_ids", "save_regionworld", "load_regionworld", "attribute_accuracy"]

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
          "purple": (140, 60, 180), "orange": (240, 140, 30), "white": (240, 240, 240), "black": (25, 25, 25)}
SIZES = {"tiny": (10, 14), "small": (18, 26), "medium": (30, 44), "large": (50, 72)}
VOCABULARY = {
    "shape": ["circle", "square", "triangle", "diamond"],
    "color": list(COLORS),
    "pattern": ["solid", "striped", "dotted", "checkered"],
    "size": list(SIZES),
    "position": [f"{v} {h}" for v in ("top", "middle", "bottom") for h in ("left", "center", "right")],
}
PATTERN_PERIOD = 6  # pixels at a 256-px image
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry", "hubble_deep_field", "grass", "brick")


@dataclass
class RegionWorldSample:
    """One image: ``image`` (H, W, 3) uint8 and its ``regions`` (masks, captions, labels = shape,
    ids, ``data["attributes"]`` dicts, ``data["phrase"]``, ``data["keyword"]``, ``data["questions"]``)."""

    image_id: str
    image: np.ndarray
    regions: Regions


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.choice(["photo", "plain", "gradient"], p=[0.5, 0.2, 0.3])
    if kind == "photo":
        from PIL import Image, ImageFilter

        name = PHOTOS[int(rng.integers(len(PHOTOS)))]
        img = np.asarray(_photo(name))
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3]
        h, w = img.shape[:2]
        side = min(h, w)
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        pil = Image.fromarray(img[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        pil = pil.filter(ImageFilter.GaussianBlur(radius=size / 128))
        return (np.asarray(pil).astype(np.float32) * 0.55 + 40).clip(0, 255).astype(np.uint8)
    c0 = rng.integers(60, 200, 3)
    if kind == "plain":
        return np.broadcast_to(c0.astype(np.uint8), (size, size, 3)).copy()
    c1 = rng.integers(60, 200, 3)
    t = np.linspace(0, 1, size)[:, None, None] if rng.random() < 0.5 else np.linspace(0, 1, size)[None, :, None]
    return (c0 * (1 - t) + c1 * t + np.zeros((size, size, 1))).astype(np.uint8)


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= r * 0.9) & (np.abs(dy) <= r * 0.9)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r * 1.15
    # triangle pointing up
    return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.62)


def _pattern(pattern: str, size: int, period: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (size, size) map of the pattern's secondary colour."""
    ys, xs = np.mgrid[0:size, 0:size]
    half = max(1, period // 2)
    if pattern == "solid":
        return np.zeros((size, size), bool)
    if pattern == "striped":
        return ((xs + ys) // half) % 2 == 1
    if pattern == "checkered":
        return ((xs // half) + (ys // half)) % 2 == 1
    return ((xs % period) < half) & ((ys % period) < half)  # dotted


def _position(cx: float, cy: float, size: int) -> str:
    v = ("top", "middle", "bottom")[min(2, int(3 * cy / size))]
    h = ("left", "center", "right")[min(2, int(3 * cx / size))]
    return f"{v} {h}"


def _relation(a: tuple[float, float], b: tuple[float, float]) -> str:
    dx, dy = a[0] - b[0], a[1] - b[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def _positive(obj: str, attr: str, value: str) -> dict:
    return {"question": "Which of the following is applicable to the description?", "type": "positive",
            "attribute": attr, "choices": [
                [f"The {obj} is not mentioned in the description.", 0],
                [f"The {attr} of the {obj} is not mentioned, but the {obj} is mentioned.", 0.5],
                [f"The {attr} of the {obj} is mentioned in the description but is not {value}.", -1],
                [f"The {attr} of the {obj} is mentioned in the description and is {value}.", 1]]}


def _negative(obj: str, attr: str, wrong: str) -> dict:
    return {"question": "Which of the following is applicable to the description?", "type": "negative",
            "attribute": attr, "choices": [
                [f"The {attr} of the {obj} is mentioned in the description and is {wrong}.", -1],
                [f"The {attr} of the {obj} is mentioned in the description but is not {wrong}.", 1],
                [f"The {attr} of the {obj} is not mentioned, but the {obj} is mentioned.", 1],
                [f"The {obj} is not mentioned in the description.", 0]]}


def generate_sample(seed: int, *, image_size: int = 256, n_objects: tuple[int, int] = (2, 6),
                    distractor_p: float = 0.3) -> RegionWorldSample:
    """One deterministic RegionWorld image (same seed and arguments -> identical bytes)."""
    if image_size < 64:
        raise RegionLibError(f"image_size must be >= 64, got {image_size}")
    rng = np.random.default_rng(seed)
    scale = image_size / 256
    image = _background(rng, image_size).astype(np.float32)
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    period = max(2, round(PATTERN_PERIOD * scale))
    objects, full_masks = [], []
    for k in range(n):
        if k and rng.random() < distractor_p:  # an identical distractor: same attributes, another place
            attrs = {key: objects[-1][key] for key in ("shape", "color", "pattern", "size", "outline")}
        else:
            attrs = {"shape": str(rng.choice(VOCABULARY["shape"])), "color": str(rng.choice(VOCABULARY["color"])),
                     "pattern": str(rng.choice(VOCABULARY["pattern"])),
                     "size": str(rng.choice(VOCABULARY["size"], p=[0.3, 0.25, 0.25, 0.2])),
                     "outline": bool(rng.random() < 0.3)}
        lo, hi = SIZES[attrs["size"]]
        r = rng.uniform(lo, hi) * scale / 2
        for _ in range(30):
            cx, cy = rng.uniform(r + 1, image_size - r - 1, 2)
            m = _shape_mask(attrs["shape"], cx, cy, r, image_size)
            visible_before = [fm & ~m for fm in full_masks]
            if all(v.sum() >= 0.4 * fm.sum() for v, fm in zip(visible_before, full_masks)) and m.any():
                break
        else:
            continue
        objects.append({**attrs, "cx": float(cx), "cy": float(cy)})
        full_masks.append(m)
    visible = []
    for k, m in enumerate(full_masks):
        v = m.copy()
        for later in full_masks[k + 1 :]:
            v &= ~later
        visible.append(v)
    for obj, m in zip(objects, full_masks):
        base = np.array(COLORS[obj["color"]], dtype=np.float32)
        second = base * 0.35 + 255 * 0.65 if obj["color"] != "white" else base * 0.4
        pat = _pattern(obj["pattern"], image_size, period, rng)
        image[m] = base
        image[m & pat] = second
        if obj["outline"]:
            from scipy import ndimage

            image[m & ~ndimage.binary_erosion(m, iterations=max(1, round(scale)))] = 15
    image = image.clip(0, 255).astype(np.uint8)
    keep = [k for k, v in enumerate(visible) if v.sum() >= 8]
    objects = [objects[k] for k in keep]
    masks = np.stack([visible[k] for k in keep])
    captions, phrases, questions, attrs_out = [], [], [], []
    centers = [(o["cx"], o["cy"]) for o in objects]
    for k, o in enumerate(objects):
        o["position"] = _position(o["cx"], o["cy"], image_size)
        if len(objects) > 1:
            d = [np.hypot(o["cx"] - c[0], o["cy"] - c[1]) if j != k else np.inf for j, c in enumerate(centers)]
            j = int(np.argmin(d))
            o["relation"] = f"{_relation(centers[k], centers[j])} the {objects[j]['color']} {objects[j]['shape']}"
        else:
            o["relation"] = ""
        outline = " with a dark outline" if o["outline"] else ""
        rel = f", {o['relation']}" if o["relation"] else ""
        captions.append(f"A {o['size']} {o['color']} {o['pattern']} {o['shape']}{outline} in the {o['position']} of the image{rel}.")
        phrases.append(f"{o['color']} {o['pattern']} {o['shape']}")
        wrong_color = str(rng.choice([c for c in VOCABULARY["color"] if c != o["color"]]))
        wrong_pattern = str(rng.choice([p for p in VOCABULARY["pattern"] if p != o["pattern"]]))
        from ..evaluation.dlc_bench import recognition_question

        questions.append({
            "details_recognition": [recognition_question(o["shape"])],
            "details_positives": [_positive(o["shape"], a, o[a]) for a in ("color", "pattern", "size", "position")],
            "details_negatives": [_negative(o["shape"], "color", wrong_color), _negative(o["shape"], "pattern", wrong_pattern)],
        })
        attrs_out.append({key: o[key] for key in ("shape", "color", "pattern", "size", "outline", "position", "relation")})
    image_id = f"rw{seed:08d}"
    regions = Regions.from_masks(
        masks, captions=captions, labels=[o["shape"] for o in objects], ids=[f"{image_id}_{k}" for k in range(len(objects))],
        data={"attributes": attrs_out, "phrase": phrases, "keyword": [o["shape"] for o in objects], "questions": questions},
    )
    return RegionWorldSample(image_id=image_id, image=image, regions=regions)


def generate_regionworld(n_images: int, *, seed: int = 0, image_size: int = 256, **kwargs) -> list[RegionWorldSample]:
    """``n_images`` samples with seeds ``seed * 1_000_003 + i`` (each image reproducible on its own)."""
    if n_images < 0:
        raise RegionLibError(f"n_images must be >= 0, got {n_images}")
    return [generate_sample(seed * 1_000_003 + i, image_size=image_size, **kwargs) for i in range(n_images)]


def split_ids(n_images: int, *, fractions=(0.8, 0.1, 0.1)) -> dict[str, range]:
    """Deterministic train / val / test index ranges."""
    n_train = int(round(fractions[0] * n_images))
    n_val = int(round(fractions[1] * n_images))
    return {"train": range(0, n_train), "val": range(n_train, n_train + n_val), "test": range(n_train + n_val, n_images)}


def save_regionworld(samples: list[RegionWorldSample], path: str | Path):
    """Save as an HF `datasets` dataset: one row per image (PNG image, regions as JSON rows with RLE)."""
    import datasets

    rows = {"image_id": [s.image_id for s in samples], "image": [s.image for s in samples],
            "regions": [json.dumps(s.regions.to_rows()) for s in samples]}
    features = datasets.Features({"image_id": datasets.Value("string"), "image": datasets.Image(),
                                  "regions": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(rows, features=features)
    ds.save_to_disk(str(path))
    return ds


def load_regionworld(path: str | Path) -> list[RegionWorldSample]:
    """Inverse of `save_regionworld` (masks stay RLE until used)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataFormatError(f"{path}: not a saved RegionWorld dataset ({exc})") from exc
    out = []
    for row in ds:
        regions = Regions.from_rows(json.loads(row["regions"]))
        out.append(RegionWorldSample(row["image_id"], np.asarray(row["image"].convert("RGB")), regions))
    return out


def attribute_accuracy(captions: list[str], attributes: list[dict], keys=("shape", "color", "pattern", "size", "position")) -> dict:
    """Share of regions whose caption names the true value of each attribute (word match)."""
    if len(captions) != len(attributes) or not captions:
        raise DataFormatError(f"need equally many captions and attribute dicts (> 0), got {len(captions)}, {len(attributes)}")
    out = {}
    for key in keys:
        hits = []
        for c, a in zip(captions, attributes):
            words = set(c.lower().replace(".", " ").replace(",", " ").split())
            hits.append(set(str(a[key]).split()) <= words)
        out[key] = float(np.mean(hits))
    return out
