"""RegionWorld's closed grammar: vocabulary, keyword / phrase / caption and DLC-Bench questions.

Every text RegionWorld emits comes from the productions below (``{x}`` is an attribute of the
region, ``{x'}`` one of its nearest neighbour; ``[...]`` is optional):

    keyword  := {shape}
    phrase   := {color} {pattern} {shape}
    caption  := "A {size} {color} {pattern} {shape}[ with a dark outline] in the {position} of
                 the image[, {relation} the {color'} {shape'}]."
    position := {top | middle | bottom} {left | center | right}       (3 x 3 grid of the image)
    relation := "to the left of" | "to the right of" | "above" | "below" | "next to"
                | "in front of" | "behind"

``relation`` names the nearest other object (by centre distance): "in front of" / "behind"
when the two full shapes overlap (the later-drawn object is in front), "next to" when the
centre offset is diagonal (|dx| and |dy| within a factor 4/3 of each other), otherwise the
dominant axis (image y grows downward, so "above" means a smaller y). The first clause (up
to the first comma) describes only the region itself; the relation clause needs the context.

DLC-Bench questions (REFERENCE §3) use the released evaluator's wording and format
(``{"question", "choices": [[text, score], ...], "type"[, "subtype"]}``, choices shuffled):

* recognition: `regionlib.evaluation.dlc_bench.recognition_question` of the class (shape);
* positives (one per attribute color, pattern, size, position, and outline when outlined):
  "The {attr} of the {shape} is mentioned in the description and is {value}." (1) /
  "The {attr} of the {shape} is not mentioned, but the {shape} is mentioned." (0.5) /
  "The {shape} is not mentioned in the description." (0) /
  "The {attr} of the {shape} is mentioned in the description but is not {value}." (-1);
* negatives (wrong color, wrong pattern, wrong position; subtype "negative attribute"):
  "The {attr} of the {shape} is mentioned in the description and is {wrong}." (-1) /
  "The {attr} of the {shape} is mentioned in the description but is not {wrong}." (1) /
  "The {attr} of the {shape} is not mentioned, but the {shape} is mentioned." (1) /
  "The {shape} is not mentioned in the description." (0).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = [
    "COLORS", "SHAPES", "PATTERNS", "SIZES", "POSITIONS", "RELATIONS", "VOCABULARY",
    "position_name", "relation_name", "keyword", "phrase", "caption", "dlc_questions", "caption_words",
]

# named colour -> RGB
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "orange": (240, 135, 25), "yellow": (240, 215, 40), "green": (40, 165, 60),
    "cyan": (40, 200, 215), "blue": (35, 70, 215), "purple": (135, 55, 180), "pink": (240, 120, 185),
    "brown": (120, 70, 30), "white": (228, 228, 228), "black": (40, 40, 40), "gray": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
PATTERNS = ("solid", "striped", "dotted", "checkered")
# size word -> (min, max) object diameter in pixels at a 256-px image (scaled with the image)
SIZES: dict[str, tuple[int, int]] = {"tiny": (10, 14), "small": (18, 26), "medium": (30, 44), "large": (50, 72)}
POSITIONS = tuple(f"{v} {h}" for v in ("top", "middle", "bottom") for h in ("left", "center", "right"))
RELATIONS = ("to the left of", "to the right of", "above", "below", "next to", "in front of", "behind")
VOCABULARY: dict[str, list[str]] = {
    "shape": list(SHAPES),
    "color": list(COLORS),
    "pattern": list(PATTERNS),
    "size": list(SIZES),
    "position": list(POSITIONS),
    "outline": ["dark"],
    "relation": list(RELATIONS),
}


def position_name(cx: float, cy: float, image_size: int) -> str:
    """Cell of the 3 x 3 grid holding the point ``(cx, cy)`` (pixels) of a square image."""
    v = ("top", "middle", "bottom")[min(2, max(0, int(3 * cy / image_size)))]
    h = ("left", "center", "right")[min(2, max(0, int(3 * cx / image_size)))]
    return f"{v} {h}"


def relation_name(center: tuple[float, float], other: tuple[float, float], *, overlap: bool, in_front: bool) -> str:
    """Relation of an object at ``center`` to its neighbour at ``other`` (see module docstring)."""
    if overlap:
        return "in front of" if in_front else "behind"
    dx, dy = center[0] - other[0], center[1] - other[1]
    ax, ay = abs(dx), abs(dy)
    if min(ax, ay) > 0 and max(ax, ay) / min(ax, ay) <= 4 / 3:
        return "next to"
    if ax >= ay:
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def keyword(attrs: Mapping) -> str:
    return str(attrs["shape"])


def phrase(attrs: Mapping) -> str:
    return f"{attrs['color']} {attrs['pattern']} {attrs['shape']}"


def caption(attrs: Mapping) -> str:
    """The detailed caption of one region from its attribute dict."""
    outline = " with a dark outline" if attrs.get("outline") else ""
    text = f"A {attrs['size']} {attrs['color']} {attrs['pattern']} {attrs['shape']}{outline} in the {attrs['position']} of the image"
    if attrs.get("relation"):
        text += f", {attrs['relation']} the {attrs['relation_target']}"
    return text + "."


def _positive(obj: str, attr: str, value: str) -> list[list]:
    return [[f"The {attr} of the {obj} is mentioned in the description and is {value}.", 1],
            [f"The {attr} of the {obj} is not mentioned, but the {obj} is mentioned.", 0.5],
            [f"The {obj} is not mentioned in the description.", 0],
            [f"The {attr} of the {obj} is mentioned in the description but is not {value}.", -1]]


def _negative(obj: str, attr: str, wrong: str) -> list[list]:
    return [[f"The {attr} of the {obj} is mentioned in the description and is {wrong}.", -1],
            [f"The {attr} of the {obj} is mentioned in the description but is not {wrong}.", 1],
            [f"The {attr} of the {obj} is not mentioned, but the {obj} is mentioned.", 1],
            [f"The {obj} is not mentioned in the description.", 0]]


def _shuffled(choices: list[list], rng: np.random.Generator) -> list[list]:
    return [choices[i] for i in rng.permutation(len(choices))]


def dlc_questions(attrs: Mapping, rng: np.random.Generator) -> dict:
    """The DLC-Bench question record of one region (recognition + positives + negatives)."""
    from ..evaluation.dlc_bench import recognition_question

    obj = attrs["shape"]
    positives = []
    for attr in ("color", "pattern", "size", "position"):
        positives.append({"question": "Which of the following is applicable to the description?",
                          "choices": _shuffled(_positive(obj, attr, attrs[attr]), rng), "type": "positive"})
    if attrs.get("outline"):
        positives.append({"question": "Which of the following is applicable to the description?",
                          "choices": _shuffled(_positive(obj, "outline", "dark"), rng), "type": "positive"})
    negatives = []
    for attr in ("color", "pattern", "position"):
        others = [v for v in VOCABULARY[attr] if v != attrs[attr]]
        wrong = others[int(rng.integers(len(others)))]
        negatives.append({"question": "Which of the following is applicable to the description?",
                          "choices": _shuffled(_negative(obj, attr, wrong), rng), "type": "negative",
                          "subtype": "negative attribute"})
    return {"details_recognition": [recognition_question(obj)], "details_positives": positives,
            "details_negatives": negatives}


def caption_words() -> list[str]:
    """Every lower-cased word (and the punctuation ``,`` ``.``) the caption grammar can emit."""
    words = {w for values in VOCABULARY.values() for v in values for w in v.split()}
    words |= set("a with dark outline in the of image".split()) | {",", "."}
    return sorted(words)
