"""One entry point over the metrics: ``evaluate(predictions, references, metrics=[...])``.

``predictions = {id: caption}``, ``references = {id: [caption, ...]}`` (see `formats` for the
files). Metric names:

* caption metrics (`caption_metrics`): ``BLEU-1`` .. ``BLEU-4``, ``METEOR``, ``ROUGE-L``,
  ``CIDEr`` (CIDEr-D), ``SPICE``;
* ``noun-verb`` — SCA's Noun / Verb exact and fuzzy recall (`content.content_recall`);
* ``osprey`` — semantic similarity / IoU against ``references[id][0]`` taken as the class name;
* ``CAPTURE`` — when its parser is installed;
* ``CLAIR`` — with a ``judge``;
* ``DLC-Bench`` — with ``questions`` (and ``class_names`` for ``qa.json`` records) and a ``judge``;
  needs no references.

Returns ``{"corpus": {name: float}, "per_sample": {name: {id: float | None}}, "notes": [str],
"counts": {...}}``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import RegionLibError
from .caption_metrics import CAPTION_METRICS, caption_scores, check_captions

__all__ = ["METRICS", "evaluate"]

METRICS = (*CAPTION_METRICS, "noun-verb", "osprey", "CAPTURE", "CLAIR", "DLC-Bench")
DEFAULT_METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def evaluate(predictions: Mapping, references: Mapping | None, metrics: Sequence[str] = DEFAULT_METRICS, *,
             questions: Mapping | None = None, class_names: Mapping | None = None, judge=None,
             backend: str = "fast") -> dict:
    """Score ``predictions`` with ``metrics`` (see the module docstring for names and the result)."""
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise RegionLibError(f"unknown or no metrics {list(unknown)}; choose from {METRICS}")
    corpus, per_sample, notes, counts = {}, {}, [], {}
    text_metrics = [m for m in metrics if m != "DLC-Bench"]
    if text_metrics:
        if references is None:
            raise RegionLibError(f"{text_metrics} need references")
        ids = check_captions(predictions, references)
        preds, refs = [predictions[i] for i in ids], [list(references[i]) for i in ids]
    caption = [m for m in metrics if m in CAPTION_METRICS]
    if caption:
        s = caption_scores(predictions, references, metrics=caption, backend=backend)
        corpus.update(s.corpus)
        per_sample.update({m: dict(zip(s.ids, v.tolist())) for m, v in s.per_sample.items()})
        notes += s.notes
    if "noun-verb" in metrics:
        from .content import content_recall

        for name, values in content_recall(preds, refs).items():
            corpus[name] = float(values.mean())
            per_sample[name] = dict(zip(ids, values.tolist()))
    if "osprey" in metrics:
        from .content import osprey_keyword_scores

        for name, values in osprey_keyword_scores(preds, [r[0] for r in refs]).items():
            corpus[name] = float(values.mean())
            per_sample[name] = dict(zip(ids, values.tolist()))
    if "CAPTURE" in metrics:
        from .content import capture_score

        corpus["CAPTURE"] = capture_score(preds, refs)
    if "CLAIR" in metrics or "DLC-Bench" in metrics:
        if judge is None:
            raise RegionLibError("CLAIR and DLC-Bench need a judge (see regionlib.evaluation.judges)")
    if "CLAIR" in metrics:
        from .clair import clair_scores

        result = clair_scores([[p] for p in preds], refs, judge)
        corpus["CLAIR"] = result.mean
        per_sample["CLAIR"] = dict(zip(ids, result.scores))
        counts["CLAIR unparsed replies"] = result.unparsed
        if result.unparsed:
            notes.append(f"CLAIR: {result.unparsed} judge replies had no score and count as 0")
    if "DLC-Bench" in metrics:
        if questions is None:
            raise RegionLibError("DLC-Bench needs questions (region id -> question record)")
        from .dlc_bench import evaluate_dlc_bench

        scores, results = evaluate_dlc_bench(predictions, questions, judge, class_names=class_names)
        corpus.update({"DLC-Bench Pos": scores.pos, "DLC-Bench Neg": scores.neg, "DLC-Bench Avg": scores.avg})
        per_sample["DLC-Bench Pos"] = {r.region_id: r.pos for r in results}
        per_sample["DLC-Bench Neg"] = {r.region_id: r.neg for r in results}
        counts.update({f"DLC-Bench {k}": v for k, v in scores.as_dict().items() if isinstance(v, int)})
        if scores.unparsed_replies:
            notes.append(f"DLC-Bench: {scores.unparsed_replies} judge replies matched no choice and scored 0")
    return {"corpus": corpus, "per_sample": per_sample, "notes": notes, "counts": counts}
