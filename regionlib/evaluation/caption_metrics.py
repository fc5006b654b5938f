"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE (pycocoevalcap 1.2 is the reference).

`caption_scores` validates predictions against references, tokenises with the Stanford
PTBTokenizer (Java, lower-cased, punctuation removed — pycocoevalcap's), and scores with either
backend on the *same tokens*:

* ``backend="reference"`` — pycocoevalcap's own scorers;
* ``backend="fast"`` (default) — `fast_captions` for BLEU / ROUGE-L / CIDEr-D (parity-tested),
  pycocoevalcap for METEOR (Java) and SPICE.

SPICE runs only when its Stanford CoreNLP jars are present; otherwise asking for it raises
`SpiceUnavailable` with install instructions — and asking for SPICE never prevents the other
metrics (unlike `COCOEvalCap.evaluate`, which always builds SPICE). A corpus of a single image
gives CIDEr-D 0 by construction (idf = log 1 - log df = 0); the result says so in ``notes``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataFormatError, RegionLibError
from . import fast_captions

__all__ = ["CAPTION_METRICS", "CaptionScores", "SpiceUnavailable", "JavaUnavailable", "check_captions",
           "ptb_tokenize", "caption_scores"]

CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")


class JavaUnavailable(RegionLibError):
    """Java is needed for the PTB tokenizer, METEOR and SPICE."""


class SpiceUnavailable(RegionLibError):
    """SPICE's Stanford CoreNLP jars are missing (they are downloaded on first use, offline impossible)."""


@dataclass
class CaptionScores:
    """corpus: metric -> float; per_sample: metric -> (I,) array in ``ids`` order; notes: caveats."""

    ids: list
    corpus: dict[str, float]
    per_sample: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)


def check_captions(predictions: Mapping, references: Mapping) -> list:
    """Validate ``{id: str}`` predictions against ``{id: [str, ...]}`` references; return sorted ids."""
    if not isinstance(predictions, Mapping) or not isinstance(references, Mapping):
        raise DataFormatError("predictions and references must be mappings id -> caption(s)")
    missing = sorted(set(references) - set(predictions), key=str)
    extra = sorted(set(predictions) - set(references), key=str)
    if missing or extra:
        raise DataFormatError(f"ids differ: no prediction for {missing[:5]} ({len(missing)}), "
                              f"no references for {extra[:5]} ({len(extra)})")
    if not predictions:
        raise DataFormatError("no captions to score")
    for k, v in predictions.items():
        if not isinstance(v, str):
            raise DataFormatError(f"prediction {k!r} must be str, got {type(v).__name__}")
        if not v.strip():
            raise DataFormatError(f"prediction {k!r} is empty")
    for k, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise DataFormatError(f"references {k!r} must be a non-empty list of str")
        for r in refs:
            if not isinstance(r, str) or not r.strip():
                raise DataFormatError(f"references {k!r} contain an empty or non-str caption: {r!r}")
    return sorted(predictions, key=str)


def _require_java() -> None:
    if shutil.which("java") is None:
        raise JavaUnavailable("java was not found on PATH: the PTB tokenizer, METEOR and SPICE need Java "
                              "(e.g. apt-get install openjdk-17-jre-headless, or conda install openjdk)")


def ptb_tokenize(captions: Mapping[object, Sequence[str]]) -> dict:
    """pycocoevalcap's PTBTokenizer on ``{id: [caption, ...]}`` -> ``{id: [tokenised, ...]}``."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    _require_java()
    keyed = {str(k): [{"caption": c} for c in v] for k, v in captions.items()}
    out = PTBTokenizer().tokenize(keyed)
    return {k: out[str(k)] for k in captions}


def _spice_jars_present() -> bool:
    import pycocoevalcap.spice as spice

    lib = Path(spice.__file__).parent / "lib"
    return any(lib.glob("stanford-corenlp-3.6.0*.jar"))


def caption_scores(predictions: Mapping, references: Mapping, *, metrics: Sequence[str] = CAPTION_METRICS[:-1],
                   backend: str = "fast", tokenize: bool = True) -> CaptionScores:
    """Score captions. ``metrics`` ⊆ `CAPTION_METRICS`; ``tokenize=False`` takes pre-tokenised text."""
    unknown = [m for m in metrics if m not in CAPTION_METRICS]
    if unknown:
        raise RegionLibError(f"unknown caption metrics {unknown}; choose from {CAPTION_METRICS}")
    if backend not in ("fast", "reference"):
        raise RegionLibError(f"backend must be 'fast' or 'reference', got {backend!r}")
    if "SPICE" in metrics and not _spice_jars_present():
        raise SpiceUnavailable(
            "SPICE needs Stanford CoreNLP 3.6.0 jars in pycocoevalcap/spice/lib (fetched by "
            "pycocoevalcap/spice/get_stanford_models.py on a machine with network access); "
            "drop 'SPICE' from metrics to compute the others")
    ids = check_captions(predictions, references)
    if tokenize:
        toks = ptb_tokenize({**{("p", k): [predictions[k]] for k in ids}, **{("r", k): list(references[k]) for k in ids}})
        preds = [toks[("p", k)][0] for k in ids]
        refs = [toks[("r", k)] for k in ids]
    else:
        preds = [predictions[k] for k in ids]
        refs = [list(references[k]) for k in ids]
    empty = [k for k, p in zip(ids, preds) if not p.strip()]
    if empty:
        raise DataFormatError(f"predictions {empty[:5]} are empty after tokenisation (punctuation only)")
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    corpus, per, notes = {}, {}, []
    bleu_wanted = [m for m in metrics if m.startswith("BLEU")]
    if bleu_wanted:
        if backend == "fast":
            c, s = fast_captions.bleu(preds, refs)
        else:
            from pycocoevalcap.bleu.bleu import Bleu

            c, s = Bleu(4).compute_score(gts, res, verbose=0)
        for k in range(4):
            if f"BLEU-{k + 1}" in metrics:
                corpus[f"BLEU-{k + 1}"], per[f"BLEU-{k + 1}"] = float(c[k]), np.asarray(s[k], dtype=np.float64)
    if "ROUGE-L" in metrics:
        if backend == "fast":
            corpus["ROUGE-L"], per["ROUGE-L"] = fast_captions.rouge_l(preds, refs)
        else:
            from pycocoevalcap.rouge.rouge import Rouge

            c, s = Rouge().compute_score(gts, res)
            corpus["ROUGE-L"], per["ROUGE-L"] = float(c), np.asarray(s, dtype=np.float64)
    if "CIDEr" in metrics:
        if backend == "fast":
            corpus["CIDEr"], per["CIDEr"] = fast_captions.cider_d(preds, refs)
        else:
            from pycocoevalcap.cider.cider import Cider

            c, s = Cider().compute_score(gts, res)
            corpus["CIDEr"], per["CIDEr"] = float(c), np.asarray(s, dtype=np.float64)
        if len(ids) == 1:
            notes.append("CIDEr-D is 0 for a single-image corpus: its idf is log(N) - log(df) = log 1 - log 1 = 0")
    if "METEOR" in metrics:
        _require_java()
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        try:
            c, s = meteor.compute_score(gts, res)
        finally:
            del meteor
        corpus["METEOR"], per["METEOR"] = float(c), np.asarray(s, dtype=np.float64)
    if "SPICE" in metrics:
        from pycocoevalcap.spice.spice import Spice

        c, s = Spice().compute_score(gts, res)
        corpus["SPICE"] = float(c)
        per["SPICE"] = np.asarray([x["All"]["f"] for x in s], dtype=np.float64)
    return CaptionScores(ids=ids, corpus=corpus, per_sample=per, notes=notes)
