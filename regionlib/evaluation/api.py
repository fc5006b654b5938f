"""One entry point over the metrics, and the file formats the command line accepts.

``evaluate(predictions, references, metrics=[...])`` with ``predictions = {id: caption}`` and
``references = {id: [caption, ...]}``. Metric names: the caption metrics (``BLEU-1`` .. ``BLEU-4``,
``METEOR``, ``ROUGE-L``, ``CIDEr``, ``SPICE``), ``noun-verb`` (SCA's content recall), ``osprey``
(semantic similarity / IoU against ``references[id][0]`` taken as the class name), ``CAPTURE``,
and ``DLC-Bench`` (needs ``questions`` and a ``judge``).

File formats (`load_predictions` / `load_references`):

* predictions: ``{"<id>": "caption"}`` (also DLC-Bench's prediction files), or COCO results
  ``[{"image_id": ..., "caption": ...}]``;
* references: ``{"<id>": ["caption", ...]}``, or COCO captions ``{"annotations": [{"image_id",
  "caption"}]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import DataFormatError, RegionLibError
from .caption_metrics import CAPTION_METRICS, caption_scores

__all__ = ["METRICS", "evaluate", "load_predictions", "load_references"]

METRICS = (*CAPTION_METRICS, "noun-verb", "osprey", "CAPTURE", "DLC-Bench")


def evaluate(predictions: Mapping, references: Mapping, metrics: Sequence[str] = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr"),
             *, questions: Mapping | None = None, judge=None, backend: str = "fast") -> dict:
    """Score predictions; returns ``{"corpus": {metric: value}, "per_sample": {metric: {id: value}}, "notes": [...]}``."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise RegionLibError(f"unknown metrics {unknown}; choose from {METRICS}")
    corpus, per_sample, notes = {}, {}, []
    caption = [m for m in metrics if m in CAPTION_METRICS]
    if caption:
        s = caption_scores(predictions, references, metrics=caption, backend=backend)
        corpus.update(s.corpus)
        per_sample.update({m: dict(zip(s.ids, map(float, v))) for m, v in s.per_sample.items()})
        notes += s.notes
    ids = sorted(predictions, key=str)
    if "noun-verb" in metrics or "osprey" in metrics or "CAPTURE" in metrics:
        from .caption_metrics import check_captions

        ids = check_captions(predictions, references)
    if "noun-verb" in metrics:
        from .content import content_recall

        cr = content_recall([predictions[i] for i in ids], [references[i] for i in ids])
        for k, v in cr.items():
            corpus[k] = float(v.mean())
            per_sample[k] = dict(zip(ids, map(float, v)))
    if "osprey" in metrics:
        from .content import osprey_keyword_scores

        corpus.update(osprey_keyword_scores([predictions[i] for i in ids], [references[i][0] for i in ids]))
    if "CAPTURE" in metrics:
        from .content import capture_score

        corpus["CAPTURE"] = capture_score([predictions[i] for i in ids], [references[i] for i in ids])
    if "DLC-Bench" in metrics:
        if questions is None or judge is None:
            raise RegionLibError("DLC-Bench needs questions (region id -> question record) and a judge")
        from .dlc_bench import evaluate_dlc_bench

        agg, results = evaluate_dlc_bench(predictions, questions, judge.ask)
        corpus.update({f"DLC-{k}": v for k, v in agg.items()})
        per_sample["DLC-pos"] = {r.region_id: r.pos for r in results}
        per_sample["DLC-neg"] = {r.region_id: r.neg for r in results}
        if agg["unparsed_replies"]:
            notes.append(f"{agg['unparsed_replies']} judge replies matched no choice and were scored 0")
    return {"corpus": corpus, "per_sample": per_sample, "notes": notes}


def _read_json(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from exc


def load_predictions(path: str | Path) -> dict[str, str]:
    """``{id: caption}`` from either predictions format (ids as strings)."""
    data = _read_json(path)
    if isinstance(data, list):
        out = {}
        for k, rec in enumerate(data):
            if not isinstance(rec, Mapping) or "image_id" not in rec or "caption" not in rec:
                raise DataFormatError(f"{path}: record {k} lacks 'image_id' / 'caption' (COCO results format)")
            key = str(rec["image_id"])
            if key in out:
                raise DataFormatError(f"{path}: duplicate image_id {key}")
            out[key] = rec["caption"]
        return out
    if isinstance(data, Mapping):
        return {str(k): v for k, v in data.items()}
    raise DataFormatError(f"{path}: expected a JSON object or a list of COCO results")


def load_references(path: str | Path) -> dict[str, list[str]]:
    """``{id: [caption, ...]}`` from either references format (ids as strings)."""
    data = _read_json(path)
    if isinstance(data, Mapping) and "annotations" in data:
        out: dict[str, list[str]] = {}
        for k, rec in enumerate(data["annotations"]):
            if "image_id" not in rec or "caption" not in rec:
                raise DataFormatError(f"{path}: annotation {k} lacks 'image_id' / 'caption'")
            out.setdefault(str(rec["image_id"]), []).append(rec["caption"])
        return out
    if isinstance(data, Mapping):
        return {str(k): [v] if isinstance(v, str) else list(v) for k, v in data.items()}
    raise DataFormatError(f"{path}: expected {{id: [captions]}} or COCO captions with 'annotations'")
