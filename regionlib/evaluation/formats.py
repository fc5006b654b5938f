"""The JSON file formats that `regionlib.evaluation` reads (ids are always turned into str).

Predictions (`load_predictions`), either

* ``{"<id>": "caption", ...}`` — also DLC-Bench's prediction files (``{ann_id: description}``), or
* COCO results: ``[{"image_id": <id>, "caption": "..."}, ...]`` (one record per id).

References (`load_references`), either

* ``{"<id>": ["caption", ...], ...}`` (a single str is taken as a one-element list), or
* COCO captions: ``{"annotations": [{"image_id": <id>, "caption": "..."}, ...], ...}``.

DLC-Bench questions (`load_question_file`): the released evaluator's cache (``*_eval.json``:
``{"<id>": {"details_recognition", "details_positives", "details_negatives", ...}, "avg_pos": ...}``;
the aggregate numbers are skipped) or the annotation file ``qa.json`` (``{"<id>": [question, ...]}``,
with ``class_names.json`` ``{"<id>": "class"}`` for the recognition questions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..data.readers.base import read_json
from ..errors import DataFormatError

__all__ = ["load_predictions", "load_references", "load_question_file"]


def _coco_records(path, records, what: str):
    if not isinstance(records, list):
        raise DataFormatError(f"{path}: {what} must be a list of {{'image_id', 'caption'}} records")
    for k, rec in enumerate(records):
        if not isinstance(rec, Mapping) or "image_id" not in rec or "caption" not in rec:
            raise DataFormatError(f"{path}: {what}[{k}] lacks 'image_id' / 'caption' (COCO format)")
        yield str(rec["image_id"]), rec["caption"]


def load_predictions(path: str | Path) -> dict[str, str]:
    """``{id: caption}`` from either predictions format (see the module docstring)."""
    data = read_json(path, "predictions file")
    if isinstance(data, list):
        out: dict[str, str] = {}
        for key, caption in _coco_records(path, data, "record"):
            if key in out:
                raise DataFormatError(f"{path}: more than one caption for image_id {key}")
            out[key] = caption
        return out
    if isinstance(data, Mapping):
        return {str(k): v for k, v in data.items()}
    raise DataFormatError(f"{path}: expected {{id: caption}} or a list of COCO results, got {type(data).__name__}")


def load_references(path: str | Path) -> dict[str, list[str]]:
    """``{id: [caption, ...]}`` from either references format (see the module docstring)."""
    data = read_json(path, "references file")
    if isinstance(data, Mapping) and "annotations" in data:
        out: dict[str, list[str]] = {}
        for key, caption in _coco_records(path, data["annotations"], "annotations"):
            out.setdefault(key, []).append(caption)
        return out
    if isinstance(data, Mapping):
        return {str(k): [v] if isinstance(v, str) else v for k, v in data.items()}
    raise DataFormatError(f"{path}: expected {{id: [captions]}} or COCO captions with 'annotations'")


def load_question_file(path: str | Path) -> dict:
    """``{id: question record}`` from one file: a released ``*_eval.json`` cache or a ``qa.json`` (a whole
    DLC-Bench release directory: `regionlib.data.readers.dlc_bench.load_dlc_questions`)."""
    data = read_json(path, "DLC-Bench question file")
    if not isinstance(data, Mapping):
        raise DataFormatError(f"{path}: expected a JSON object id -> questions")
    out = {str(k): v for k, v in data.items() if isinstance(v, (Mapping, list))}
    if not out:
        raise DataFormatError(f"{path}: no question records")
    return out
