"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE (pycocoevalcap 1.2 is the reference).

`caption_scores` validates predictions against references, tokenises with the Stanford
PTBTokenizer (Java, lower-cased, punctuation removed — pycocoevalcap's), and scores with either
backend on the *same tokens*:

* ``backend="reference"`` — pycocoevalcap's own scorers;
* ``backend="fast"`` (default) — `fast_captions` for BLEU / ROUGE-L / CIDEr-D (parity-tested),
  pycocoevalcap for METEOR (Java) and SPICE.

SPICE runs only when its Stanford CoreNLP jars are present; otherwise asking for it raises
`SpiceUnavailable` with install instructions before any work is done (nothing is downloaded,
nothing hangs), and metric lists without SPICE never touch it — unlike `COCOEvalCap.evaluate`,
which always builds SPICE. A corpus of a single image gives CIDEr-D 0 by construction
(idf = log 1 - log df = 0); the result says so in ``notes`` and with a warning.
"""

from __future__ import annotations

import shutil
import warnings
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
    """Validate ``{id: str}`` predictions against ``{id: [str, ...]}`` references; return the ids in
    ``references`` order. Raises `DataFormatError` naming missing / extra ids, empty or non-str captions."""
    if not isinstance(predictions, Mapping) or not isinstance(references, Mapping):
        raise DataFormatError("predictions and references must be mappings: id -> caption, id -> [captions]")
    missing = [k for k in references if k not in predictions]
    extra = [k for k in predictions if k not in references]
    if missing or extra:
        raise DataFormatError(f"ids differ: no prediction for {missing[:5]} ({len(missing)} ids), "
                              f"no references for {extra[:5]} ({len(extra)} ids)")
    if not references:
        raise DataFormatError("no captions to score")
    for k, v in predictions.items():
        if not isinstance(v, str):
            raise DataFormatError(f"prediction {k!r} must be str, got {type(v).__name__}")
        if not v.strip():
            raise DataFormatError(f"prediction {k!r} is empty")
    for k, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise DataFormatError(f"references {k!r} must be a non-empty list of str, got {refs!r}")
        for r in refs:
            if not isinstance(r, str) or not r.strip():
                raise DataFormatError(f"references {k!r} contain an empty or non-str caption: {r!r}")
    return list(references)


def _require_java() -> None:
    if shutil.which("java") is None:
        raise JavaUnavailable("java was not found on PATH: the PTB tokenizer, METEOR and SPICE need Java "
                              "(e.g. apt-get install openjdk-17-jre-headless, or conda install openjdk)")


def ptb_tokenize(captions: Sequence[Sequence[str]]) -> list[list[str]]:
    """pycocoevalcap's PTBTokenizer (Stanford CoreNLP in Java: lower-cased, punctuation removed), one
    Java call for all captions: ``[[caption, ...], ...]`` -> the same nesting of tokenised strings."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    _require_java()
    out = PTBTokenizer().tokenize({i: [{"caption": c} for c in caps] for i, caps in enumerate(captions)})
    return [out[i] for i in range(len(captions))]


def _spice_jars_present() -> bool:
    import pycocoevalcap.spice as spice

    lib = Path(spice.__file__).parent / "lib"
    return all((lib / name).exists() for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"))


def _in_process_scorers():
    """``(metric names, fast function, pycocoevalcap function)`` for BLEU, ROUGE-L and CIDEr-D; both
    functions return ``(corpus value(s), per-sample values)`` in pycocoevalcap's layout."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    return [(("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"), fast_captions.bleu,
             lambda gts, res: Bleu(4).compute_score(gts, res, verbose=0)),
            (("ROUGE-L",), fast_captions.rouge_l, lambda gts, res: Rouge().compute_score(gts, res)),
            (("CIDEr",), fast_captions.cider_d, lambda gts, res: Cider().compute_score(gts, res))]


def caption_scores(predictions: Mapping, references: Mapping, *, metrics: Sequence[str] = CAPTION_METRICS[:-1],
                   backend: str = "fast", tokenize: bool = True) -> CaptionScores:
    """Corpus and per-sample caption metrics (pycocoevalcap 1.2 definitions).

    Args:
        predictions: id -> the predicted caption (one non-empty str per id).
        references: id -> non-empty list of reference captions; ids must equal ``predictions``'.
        metrics: a subset of `CAPTION_METRICS` (SPICE only when its jars are installed).
        backend: ``"fast"`` (in-process BLEU / ROUGE-L / CIDEr-D) or ``"reference"`` (pycocoevalcap's
            scorers for all); METEOR and SPICE always run pycocoevalcap's Java programs.
        tokenize: run the PTB tokenizer (Java); False takes already tokenised, space-separated text.

    Returns `CaptionScores` with ``per_sample[metric]`` an (I,) array in ``ids`` order (the
    references' order).
    """
    unknown = [m for m in metrics if m not in CAPTION_METRICS]
    if unknown:
        raise RegionLibError(f"unknown caption metrics {unknown}; choose from {CAPTION_METRICS}")
    if backend not in ("fast", "reference"):
        raise RegionLibError(f"backend must be 'fast' or 'reference', got {backend!r}")
    if "SPICE" in metrics and not _spice_jars_present():
        import pycocoevalcap.spice as spice

        raise SpiceUnavailable(
            "SPICE needs stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar in "
            f"{Path(spice.__file__).parent / 'lib'}: on a machine with network access run "
            "`python -c 'from pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'` "
            "(or copy both jars from stanford-corenlp-full-2015-12-09.zip); drop 'SPICE' from metrics to "
            "compute the others")
    ids = check_captions(predictions, references)
    if tokenize:
        toks = ptb_tokenize([[predictions[k]] for k in ids] + [list(references[k]) for k in ids])
        preds = [t[0] for t in toks[: len(ids)]]
        refs = toks[len(ids):]
    else:
        preds = [predictions[k] for k in ids]
        refs = [list(references[k]) for k in ids]
    empty = [k for k, p in zip(ids, preds) if not p.strip()]
    if empty:
        raise DataFormatError(f"predictions {empty[:5]} are empty after tokenisation (punctuation only)")
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    corpus, per, notes = {}, {}, []
    for names, fast, reference in _in_process_scorers():
        if not any(m in metrics for m in names):
            continue
        c, s = fast(preds, refs) if backend == "fast" else reference(gts, res)
        c, s = np.atleast_1d(np.asarray(c, dtype=np.float64)), np.asarray(s, dtype=np.float64).reshape(len(names), -1)
        for k, name in enumerate(names):
            if name in metrics:
                corpus[name], per[name] = float(c[k]), s[k]
    if "CIDEr" in metrics and len(ids) == 1:
        note = "CIDEr-D is 0 for a single-image corpus: its idf is log(N) - log(df) = log 1 - log 1 = 0"
        notes.append(note)
        warnings.warn(note, stacklevel=2)
    if "METEOR" in metrics:
        _require_java()
        from pycocoevalcap.meteor.meteor import Meteor

        c, s = Meteor().compute_score(gts, res)
        corpus["METEOR"], per["METEOR"] = float(c), np.asarray(s, dtype=np.float64)
    if "SPICE" in metrics:
        _require_java()
        from pycocoevalcap.spice.spice import Spice

        c, s = Spice().compute_score(gts, res)
        corpus["SPICE"] = float(c)
        per["SPICE"] = np.asarray([x["All"]["f"] for x in s], dtype=np.float64)
    return CaptionScores(ids=ids, corpus=corpus, per_sample=per, notes=notes)
