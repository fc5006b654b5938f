"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE (pycocoevalcap 1.2 is the reference).

`caption_scores` validates predictions against references, tokenises them as pycocoevalcap's
PTBTokenizer does (`ptb.tokenize`: in process — probed rules, then CoreNLP's own lexer run in
Python — Java only for the rare token the lexer refuses; predictions and references in two
calls, as ``COCOEvalCap`` does; line ends normalised first so that no caption shifts the
others), and scores with either backend on the *same tokens*:

* ``backend="fast"`` (default) — `fast_captions` for BLEU / ROUGE-L / CIDEr-D (n-grams counted
  once for BLEU and CIDEr-D, their token numbers reused by ROUGE-L), METEOR in parallel worker
  processes (`meteor.meteor_scores`);
* ``backend="reference"`` — pycocoevalcap's own scorers, METEOR included.

Empty predictions (or predictions that tokenise to nothing) are scored as pycocoevalcap scores
them (0 for CIDEr-D, ROUGE-L and METEOR, BLEU's smoothed tiny values). SPICE runs only when its
Stanford CoreNLP jars are present; otherwise it is left out with a note and a warning (nothing
is downloaded, nothing hangs) and the other metrics are computed — unlike ``COCOEvalCap.evaluate``,
which always builds SPICE. A corpus of a single image gives CIDEr-D 0 by construction
(idf = log 1 - log df = 0); the result says so in ``notes`` and with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataFormatError, RegionLibError
from . import fast_captions, ptb
from .ptb import JavaUnavailable, require_java

__all__ = ["CAPTION_METRICS", "CaptionScores", "JavaUnavailable", "check_captions", "ptb_tokenize", "caption_scores",
           "spice_missing_message"]

CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")


@dataclass
class CaptionScores:
    """corpus: metric -> float; per_sample: metric -> (I,) array in ``ids`` order; notes: caveats."""

    ids: list
    corpus: dict[str, float]
    per_sample: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)

    def rows(self, method: str) -> list[dict]:
        """The scores as tidy rows ``{"id", "method", "metric", "value"}`` (`table.score_rows`)."""
        from .table import score_rows

        return score_rows(method, self.corpus, {m: dict(zip(self.ids, v.tolist())) for m, v in self.per_sample.items()})


def check_captions(predictions: Mapping, references: Mapping) -> list:
    """Validate ``{id: str}`` predictions against ``{id: [str, ...]}`` references; return the ids in
    ``references`` order. Raises `DataFormatError` naming missing / extra ids, non-str predictions and
    empty or non-str references; an empty prediction is valid (pycocoevalcap scores it)."""
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
    for k, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise DataFormatError(f"references {k!r} must be a non-empty list of str, got {refs!r}")
        for r in refs:
            if not isinstance(r, str) or not r.strip():
                raise DataFormatError(f"references {k!r} contain an empty or non-str caption: {r!r}")
    return list(references)


def ptb_tokenize(captions: Sequence[Sequence[str]]) -> list[list[str]]:
    """`ptb.tokenize` over nested captions, one tokenizer pass: ``[[caption, ...], ...]`` -> the same nesting."""
    flat = ptb.tokenize([c for caps in captions for c in caps])
    out, start = [], 0
    for caps in captions:
        out.append(flat[start:start + len(caps)])
        start += len(caps)
    return out


def _spice_jars_present() -> bool:
    import pycocoevalcap.spice as spice

    lib = Path(spice.__file__).parent / "lib"
    return all((lib / name).exists() for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"))


def _reference_scores(names: Sequence[str], preds: list[str], refs: list[list[str]]) -> dict[str, tuple]:
    """pycocoevalcap's scorers -> ``{metric: (corpus, per-sample)}`` for the requested ``names``."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    out = {}
    if any(m.startswith("BLEU") for m in names):
        c, s = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({f"BLEU-{k + 1}": (c[k], s[k]) for k in range(4)})
    if "ROUGE-L" in names:
        out["ROUGE-L"] = Rouge().compute_score(gts, res)
    if "CIDEr" in names:
        out["CIDEr"] = Cider().compute_score(gts, res)
    if "METEOR" in names:
        require_java()
        out["METEOR"] = Meteor().compute_score(gts, res)
    return out


def _fast_scores(names: Sequence[str], preds: list[str], refs: list[list[str]], meteor_workers) -> dict[str, tuple]:
    """`fast_captions` (n-grams counted once for BLEU and CIDEr-D) and parallel METEOR, same layout."""
    out = {}
    want_bleu = any(m.startswith("BLEU") for m in names)
    ngrams = fast_captions.count_ngrams(preds, refs) if want_bleu or "CIDEr" in names else None
    if want_bleu:
        c, s = fast_captions.bleu(preds, refs, ngrams=ngrams)
        out.update({f"BLEU-{k + 1}": (c[k], s[k]) for k in range(4)})
    if "CIDEr" in names:
        out["CIDEr"] = fast_captions.cider_d(preds, refs, ngrams=ngrams)
    if "ROUGE-L" in names:
        out["ROUGE-L"] = fast_captions.rouge_l(preds, refs, ngrams=ngrams)  # its token numbers, where valid
    if "METEOR" in names:
        from .meteor import meteor_scores

        out["METEOR"] = meteor_scores(preds, refs, workers=meteor_workers)
    return out


@fast_captions.gc_paused()
def caption_scores(predictions: Mapping, references: Mapping, *, metrics: Sequence[str] = CAPTION_METRICS[:-1],
                   backend: str = "fast", tokenize: bool = True, meteor_workers: int | None = None) -> CaptionScores:
    """Corpus and per-sample caption metrics (pycocoevalcap 1.2 definitions).

    Args:
        predictions: id -> the predicted caption (one str per id; empty ones score as in pycocoevalcap).
        references: id -> non-empty list of reference captions; ids must equal ``predictions``'.
        metrics: a subset of `CAPTION_METRICS` (SPICE only when its jars are installed, else noted).
        backend: ``"fast"`` (in-process BLEU / ROUGE-L / CIDEr-D, parallel METEOR) or ``"reference"``
            (pycocoevalcap's scorers for all); SPICE always runs pycocoevalcap's Java program.
        tokenize: PTB-tokenise (`ptb.tokenize`); False takes already tokenised, space-separated text.
        meteor_workers: METEOR processes for the fast backend (`meteor.meteor_scores`'s default: CPUs).

    Returns `CaptionScores` with ``per_sample[metric]`` an (I,) array in ``ids`` order (the
    references' order).
    """
    unknown = [m for m in metrics if m not in CAPTION_METRICS]
    if unknown:
        raise RegionLibError(f"unknown caption metrics {unknown}; choose from {CAPTION_METRICS}")
    if backend not in ("fast", "reference"):
        raise RegionLibError(f"backend must be 'fast' or 'reference', got {backend!r}")
    ids = check_captions(predictions, references)
    preds = [predictions[k] for k in ids]
    refs = [list(references[k]) for k in ids]
    if tokenize:  # two tokenizer calls, as COCOEvalCap tokenises its gts and res separately
        preds, flat = ptb.tokenize_groups([preds, [r for rs in refs for r in rs]])
        bounds = np.cumsum([0, *map(len, refs)])
        refs = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    names = [m for m in metrics if m != "SPICE"]
    scored = (_fast_scores(names, preds, refs, meteor_workers) if backend == "fast"
              else _reference_scores(names, preds, refs))
    corpus = {m: float(scored[m][0]) for m in names}
    per = {m: np.asarray(scored[m][1], dtype=np.float64) for m in names}
    notes = []
    if "CIDEr" in metrics and len(ids) == 1:
        note = "CIDEr-D is 0 for a single-image corpus: its idf is log(N) - log(df) = log 1 - log 1 = 0"
        notes.append(note)
        warnings.warn(note, stacklevel=2)
    if "SPICE" in metrics:
        if _spice_jars_present():
            require_java()
            from pycocoevalcap.spice.spice import Spice

            c, s = Spice().compute_score({i: r for i, r in enumerate(refs)}, {i: [p] for i, p in enumerate(preds)})
            corpus["SPICE"] = float(c)
            per["SPICE"] = np.asarray([x["All"]["f"] for x in s], dtype=np.float64)
        else:
            note = spice_missing_message()
            notes.append(note)
            warnings.warn(note, stacklevel=2)
    return CaptionScores(ids=ids, corpus=corpus, per_sample=per, notes=notes)


def spice_missing_message() -> str:
    """Why SPICE was left out and how to install its jars."""
    import pycocoevalcap.spice as spice

    return ("SPICE left out: it needs stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar in "
            f"{Path(spice.__file__).parent / 'lib'}: on a machine with network access run "
            "`python -c 'from pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'` "
            "(or copy both jars from stanford-corenlp-full-2015-12-09.zip)")
