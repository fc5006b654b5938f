"""Self-labeling logic: DLC-SDP (DAM seed 003 §4, App. H.1; REFERENCE §2) and seed 001's
parse-and-filter of image-text data. Pure functions; ``ray_jobs/self_label.py`` distributes them.

DLC-SDP stage 1 (keyword expansion) asks a VLM to describe an annotated region given a
*cropped* image (coarse localisation, high token density) and a *segmented* image (which
instance), with the category in the text prompt (`KEYWORD_EXPANSION_PROMPT`, seed 003 Tab. A.7).

Stage 2 (self-training) keeps a proposal only if every available confidence passes its
threshold — detector score, SAM's predicted IoU, caption log-probability per token,
image-text similarity — then keeps at most two regions per image, of different classes
(`select_per_image`).

Seed 001 §2: noun phrases are parsed from captions with spaCy; each phrase gets the maximum
text-region similarity over the image's proposals; across the whole dataset the lowest
fraction ``R`` of phrases is dropped (`drop_lowest_fraction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .errors import RegionLibError
from .focal import crop_boxes
from .images import to_rgb_uint8
from .masks import as_mask_batch

__all__ = [
    "KEYWORD_EXPANSION_PROMPT",
    "keyword_expansion_prompt",
    "stage1_images",
    "Proposal",
    "ConfidenceThresholds",
    "passes_thresholds",
    "select_per_image",
    "noun_phrases",
    "drop_lowest_fraction",
]

KEYWORD_EXPANSION_PROMPT = (
    "You are responsible to write a very descriptive caption to describe the {category} in the provided SEGMENTED "
    "image. You may leverage the surrounding context of the SEGMENTED image provided in the CROPPED image.\n"
    "You must not mention any background in the caption and only describe the {category} in the SEGMENTED image! "
    "The caption must ONLY contain sufficient details to reconstruct the same {category} in the SEGMENTED image but "
    "nothing else!\n"
    "Here are some additional rules you need to follow when describing the {category} in the SEGMENTED image:\n"
    "1. If there are multiple {category} in the CROPPED image, focus on the {category} in the SEGMENTED image.\n"
    "2. If the {category} in the SEGMENTED image is occluded by other objects, only describe the visible part. DO NOT "
    "mention anything that is not directly related to the visible part of {category}, such as \"A segment of\", which "
    "part is invisible, etc. For objects with text written on it, describe the object instead of just outputting the "
    "text written on it.\n"
    "Here is the SEGMENTED image that needs caption:"
)


def keyword_expansion_prompt(category: str) -> str:
    """Seed 003 Tab. A.7 with ``category`` filled in."""
    if not isinstance(category, str) or not category.strip():
        raise RegionLibError(f"category must be a non-empty str, got {category!r}")
    return KEYWORD_EXPANSION_PROMPT.format(category=category.strip())


def stage1_images(image, mask, *, min_size: int = 48, dim: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The two images of stage 1 for one region.

    Returns ``(cropped, segmented)``, both ``(h, w, 3)`` uint8 over DAM's focal crop box: the
    plain crop, and the same crop with pixels outside the mask dimmed to ``dim`` brightness.
    """
    rgb = to_rgb_uint8(image)
    m = as_mask_batch(mask, "mask", image_size=rgb.shape[:2])
    x0, y0, x1, y1 = crop_boxes(m, "focal_crop", min_size=min_size)[0]
    cropped = rgb[y0:y1, x0:x1].copy()
    inside = m[0, y0:y1, x0:x1]
    segmented = cropped.copy()
    segmented[~inside] = (segmented[~inside] * dim).astype(np.uint8)
    return cropped, segmented


@dataclass
class Proposal:
    """One candidate region of an unlabeled image, with the confidences gathered for it."""

    image_id: str
    region_id: str
    class_name: str | None
    caption: str
    scores: dict[str, float] = field(default_factory=dict)  # e.g. detector, predicted_iou, logprob, similarity


@dataclass(frozen=True)
class ConfidenceThresholds:
    """Minimum value per confidence; a confidence absent from a proposal is not checked."""

    detector: float | None = None
    predicted_iou: float | None = 0.5
    logprob: float | None = None  # mean log-probability per caption token
    similarity: float | None = None

    def items(self):
        return ((k, v) for k, v in self.__dict__.items() if v is not None)


def passes_thresholds(proposal: Proposal, thresholds: ConfidenceThresholds) -> bool:
    for key, minimum in thresholds.items():
        value = proposal.scores.get(key)
        if value is not None and not (np.isfinite(value) and value >= minimum):
            return False
    return True


def select_per_image(proposals: Sequence[Proposal], *, max_per_image: int = 2, rank_by: str = "predicted_iou") -> list[Proposal]:
    """At most ``max_per_image`` proposals per image, all of different classes, best ``rank_by`` first.

    A proposal without a class name (``class_name=None``, e.g. class-agnostic SAM proposals)
    counts as its own class. Ties break by region id so the result is deterministic.
    """
    by_image: dict[str, list[Proposal]] = {}
    for p in proposals:
        by_image.setdefault(p.image_id, []).append(p)
    kept = []
    for image_id in sorted(by_image):
        ranked = sorted(by_image[image_id], key=lambda p: (-p.scores.get(rank_by, 0.0), p.region_id))
        classes: set[str] = set()
        n_kept = 0
        for p in ranked:
            if n_kept == max_per_image:
                break
            if p.class_name is None or p.class_name not in classes:
                classes.add(p.class_name)
                kept.append(p)
                n_kept += 1
    return kept


def noun_phrases(captions: Iterable[str], nlp) -> list[list[str]]:
    """spaCy noun chunks of each caption (lower-cased, determiners stripped)."""
    out = []
    for doc in nlp.pipe(list(captions)):
        phrases = []
        for chunk in doc.noun_chunks:
            words = [t.text.lower() for t in chunk if t.pos_ != "DET" and not t.is_punct]
            if words:
                phrases.append(" ".join(words))
        out.append(phrases)
    return out


def drop_lowest_fraction(scores: Sequence[float], fraction: float) -> np.ndarray:
    """Keep-mask dropping the ``fraction`` R in [0, 1] of entries with the lowest scores (seed 001 §2).

    Exactly ``floor(R * n)`` entries are dropped; ties at the cut go by position (stable sort).
    """
    if not 0.0 <= fraction <= 1.0:
        raise RegionLibError(f"fraction must lie in [0, 1], got {fraction}")
    s = np.asarray(scores, dtype=np.float64)
    n_drop = int(np.floor(fraction * len(s)))
    keep = np.ones(len(s), dtype=bool)
    keep[np.argsort(s, kind="stable")[:n_drop]] = False
    return keep
