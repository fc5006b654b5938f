"""Self-labeling logic: DLC-SDP (DAM seed 003 §4, App. H.1; REFERENCE §2) and seed 001's
parse-and-filter of image-text data. Pure functions; `regionlib.selflabel.stages` runs them on Ray.

DLC-SDP stage 1 (keyword expansion) asks a VLM to describe an annotated region given a
*cropped* image (coarse localisation, high token density) and a *segmented* image (which
instance), with the category in the text prompt (`KEYWORD_EXPANSION_PROMPT`, seed 003 Tab. A.7).

Stage 2 (self-training) keeps a proposal only if every available confidence passes its
threshold — detector score, SAM's predicted IoU, caption log-probability per token,
image-text similarity — then keeps at most two regions per image, of different classes
(`select_per_image`).

Seed 001 §2: noun phrases are parsed from captions with spaCy (`spacy_pipeline`); each phrase
gets the maximum text-region similarity over the image's proposals (`ground_phrases`, with a
pluggable similarity: `CLIPSimilarity` for CLIP / SigLIP through transformers,
`CaptionerSimilarity` for a trained region captioner's phrase log-probability, or any callable
``(image, masks, phrases) -> (P, R)``); across the whole dataset the lowest fraction ``R`` of
phrases is dropped (`drop_lowest_fraction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..errors import RegionLibError
from ..evaluation.content import spacy_pipeline  # the one spaCy loader (re-exported)
from ..focal import crop_boxes
from ..images import to_rgb_uint8
from ..masks import as_mask_batch

__all__ = [
    "KEYWORD_EXPANSION_PROMPT",
    "keyword_expansion_prompt",
    "stage1_images",
    "Proposal",
    "ConfidenceThresholds",
    "passes_thresholds",
    "filter_proposals",
    "select_per_image",
    "noun_phrases",
    "spacy_pipeline",
    "CaptionerSimilarity",
    "CLIPSimilarity",
    "ground_phrases",
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


def filter_proposals(proposals: Sequence[Proposal], thresholds: ConfidenceThresholds) -> tuple[list[Proposal], dict]:
    """``(kept, dropped)``: the proposals passing every threshold, and per confidence the number of
    proposals it dropped (each counted under the first threshold it fails, in field order:
    detector, predicted_iou, logprob, similarity)."""
    kept, dropped = [], {key: 0 for key, _ in thresholds.items()}
    for p in proposals:
        for key, minimum in thresholds.items():
            value = p.scores.get(key)
            if value is not None and not (np.isfinite(value) and value >= minimum):
                dropped[key] += 1
                break
        else:
            kept.append(p)
    return kept, dropped


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


class CaptionerSimilarity:
    """Text-region score from a trained region captioner (DAM / SCA): the mean log-probability per
    token of the phrase given the region, ``(1/T) sum_t log p(phrase_t | phrase_<t, region)``,
    through `RegionPredictor.score` (the image encoded once for all phrases and regions)."""

    def __init__(self, model, *, batch_size: int = 16):
        from ..predictor import RegionPredictor

        self.predictor = RegionPredictor(model, batch_size=batch_size)

    def __call__(self, image, masks, phrases: Sequence[str]) -> np.ndarray:
        from ..regions import Regions

        regions = Regions.from_masks(as_mask_batch(masks, "masks"))
        self.predictor.set_image(image)
        return np.stack([self.predictor.score(regions, [phrase] * len(regions)) for phrase in phrases])


class CLIPSimilarity:
    """Cosine similarity of CLIP / SigLIP (transformers) text and image embeddings, seed 001's score.

    Each region is shown as its focal crop with the outside dimmed (`stage1_images`' SEGMENTED
    view), resized to the model's input size and normalised as its processor does.

    Args:
        model: a ``CLIPModel`` or ``SiglipModel`` (anything with ``get_text_features`` /
            ``get_image_features``); tokenizer: its tokenizer.
    """

    def __init__(self, model, tokenizer, *, mean=None, std=None, max_length: int = 64):
        self.model, self.tokenizer, self.max_length = model.eval(), tokenizer, max_length
        family = "siglip" if "siglip" in type(model).__name__.lower() else "clip"
        from ..models.vision import NORMALISATION

        default_mean, default_std = NORMALISATION[family]
        self.mean, self.std = mean or default_mean, std or default_std
        self.size = int(model.config.vision_config.image_size)
        limit = getattr(getattr(model.config, "text_config", None), "max_position_embeddings", None)
        self.max_length = min(max_length, int(limit)) if limit else max_length

    @classmethod
    def from_pretrained(cls, path: str, *, device: str = "cpu", **kwargs) -> "CLIPSimilarity":
        """A CLIP / SigLIP checkpoint directory (``AutoModel`` + ``AutoTokenizer``; the normalisation from
        its ``AutoImageProcessor`` when it has one)."""
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        try:
            model, tokenizer = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise RegionLibError(f"--clip {path}: cannot load a CLIP / SigLIP model and tokenizer ({exc})") from exc
        try:
            proc = AutoImageProcessor.from_pretrained(path)
            kwargs.setdefault("mean", list(proc.image_mean))
            kwargs.setdefault("std", list(proc.image_std))
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # no preprocessor config: the family's normalisation
        return cls(model.to(device), tokenizer, **kwargs)

    def paired(self, image, masks, texts: Sequence[str]) -> np.ndarray:
        """``(N,)`` similarity of region i's crop and ``texts[i]`` (DLC-SDP stage 2's image-text filter)."""
        batch = as_mask_batch(masks, "masks")
        if isinstance(texts, str) or len(texts) != len(batch):
            raise RegionLibError(f"texts must hold one string per mask ({len(batch)})")
        img, txt = self._embed(image, batch, texts)
        return (img * txt).sum(-1).cpu().numpy()

    def _features(self, out):
        return out if hasattr(out, "norm") else out.pooler_output  # transformers 5 may return model outputs

    def __call__(self, image, masks, phrases: Sequence[str]) -> np.ndarray:
        img, txt = self._embed(image, as_mask_batch(masks, "masks"), phrases)
        return (txt @ img.T).cpu().numpy()

    def _embed(self, image, batch, phrases):
        """Unit-norm image embeddings of the masks' crops ``(R, E)`` and text embeddings ``(P, E)``."""
        import torch
        import torch.nn.functional as F

        crops = []
        for m in batch:
            seg = stage1_images(image, m)[1]
            t = torch.as_tensor(seg).permute(2, 0, 1)[None].float() / 255
            crops.append(F.interpolate(t, size=(self.size, self.size), mode="bicubic", align_corners=False)[0])
        pixels = (torch.stack(crops).clamp(0, 1) - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        text = self.tokenizer(list(phrases), padding="max_length" if "siglip" in type(self.model).__name__.lower()
                              else True, truncation=True, max_length=self.max_length, return_tensors="pt")
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            img = self._features(self.model.get_image_features(pixel_values=pixels.to(dev)))
            txt = self._features(self.model.get_text_features(**{k: v.to(dev) for k, v in text.items()}))
        return F.normalize(img, dim=-1), F.normalize(txt, dim=-1)


def ground_phrases(phrases: Sequence[str], image, masks, similarity) -> tuple[np.ndarray, np.ndarray]:
    """Each phrase's best region and score: ``(argmax_r S[p, r], max_r S[p, r])`` for ``S = similarity(image, masks, phrases)``."""
    batch = as_mask_batch(masks, "masks")
    if len(phrases) == 0 or len(batch) == 0:
        raise RegionLibError(f"need at least one phrase and one mask, got {len(phrases)} and {len(batch)}")
    scores = np.asarray(similarity(image, batch, list(phrases)), dtype=np.float64)
    if scores.shape != (len(phrases), len(batch)):
        raise RegionLibError(f"similarity must return ({len(phrases)}, {len(batch)}) scores, got {scores.shape}")
    best = scores.argmax(axis=1)
    return best, scores[np.arange(len(phrases)), best]


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
