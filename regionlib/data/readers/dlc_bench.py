"""DLC-Bench (DAM seed 003 §5, NVlabs/describe-anything's release) -> `ImageRecord`s with questions.

Expected layout: the release as downloaded, its files flat at the root::

    <root>/annotations.json   # COCO format, RLE masks; one annotation per region
    <root>/images/<file_name>
    <root>/qa.json            # {"<annotation id>": [question, ...]} positives and
                              #   negatives: {"question", "choices": [[text, score], ...],
                              #   "type": "positive" | "negative"[, "subtype"]}
    <root>/class_names.json   # {"<annotation id>": class name}

The same four entries one level down, under ``<root>/annotations/`` (the layout of the evaluation
scripts' data folder, written by `regionlib.data.regionworld.to_dlc_bench`), are read too
(`dlc_bench_dir`); a root with neither raises `DataFormatError`.

Each region gets ``data["questions"]``: the evaluator's record ``{"details_recognition":
[recognition question of the class], "details_positives": [...], "details_negatives": [...]}``
(the recognition question is built as the released evaluator does, plural class names by
``inflect``), ready for `regionlib.evaluation.dlc_bench.evaluate_dlc_bench`, and
``data["class_name"]``. Region ids are the annotation ids as strings (the evaluator's keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import DataFormatError
from .base import ErrorPolicy, ImageRecord, ReadReport, read_json
from .coco import read_coco

__all__ = ["read_dlc_bench", "load_dlc_questions", "dlc_bench_dir"]

_FILES = ("annotations.json", "qa.json", "class_names.json")


def dlc_bench_dir(root: str | Path) -> Path:
    """The folder of a DLC-Bench root that holds ``annotations.json``, ``qa.json``,
    ``class_names.json`` and ``images/``: the root itself (the release) or ``root/annotations``."""
    root = Path(root)
    for folder in (root, root / "annotations"):
        if all((folder / f).is_file() for f in _FILES):
            return folder
    raise DataFormatError(f"DLC-Bench folder {root} holds neither {', '.join(_FILES)} (the released layout) nor "
                          f"annotations/{{{','.join(_FILES)}}}: nothing to read")


def _question_record(items, class_name: str) -> dict:
    from ...evaluation.dlc_bench import is_plural, recognition_question

    return {"details_recognition": [recognition_question(class_name, plural=is_plural(class_name))],
            "details_positives": [q for q in items if q.get("type") == "positive"],
            "details_negatives": [q for q in items if q.get("type") == "negative"]}


def _check_questions(items) -> str | None:
    if not isinstance(items, list) or not items:
        return "needs a non-empty list of questions"
    for i, q in enumerate(items):
        if not isinstance(q, dict) or q.get("type") not in ("positive", "negative"):
            return f"question {i} needs type 'positive' or 'negative'"
        choices = q.get("choices")
        if not isinstance(q.get("question"), str) or not isinstance(choices, list) or not 1 <= len(choices) <= 5:
            return f"question {i} needs a 'question' text and 1-5 choices"
        allowed = {1, 0.5, 0, -1} if q["type"] == "positive" else {1, 0, -1}
        for c in choices:
            if not (isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and c[1] in allowed):
                return f"question {i}: choice {c!r} must be [text, score] with score in {sorted(allowed)}"
    return None


def load_dlc_questions(root: str | Path, *, on_error: str = "raise", report: ReadReport | None = None) -> dict:
    """``{annotation id (str): question record}`` for `evaluate_dlc_bench` (see module docstring)."""
    return _load(root, ErrorPolicy(on_error, report))[0]


def _load(root, policy: ErrorPolicy) -> tuple[dict, dict]:
    ann_dir = dlc_bench_dir(root)
    qa_path, names_path = ann_dir / "qa.json", ann_dir / "class_names.json"
    qa = read_json(qa_path, "DLC-Bench qa file", expect=dict)
    names = read_json(names_path, "DLC-Bench class-name file", expect=dict)
    out = {}
    for key, items in qa.items():
        if key not in names:
            policy.fail(names_path, f"key={key!r}", "no class name for this annotation")
            continue
        bad = _check_questions(items) or (None if isinstance(names[key], str) else
                                          f"class name must be a string, got {names[key]!r:.60}")
        if bad:
            policy.fail(qa_path, f"key={key!r}", bad)
            continue
        out[str(key)] = _question_record(items, str(names[key]))
    return out, {str(k): str(v) for k, v in names.items()}


def read_dlc_bench(root: str | Path, *, on_error: str = "raise", report: ReadReport | None = None,
                   check_images: bool = True, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """One record per image; only annotations with questions (others are reported)."""
    policy = ErrorPolicy(on_error, report)
    ann_dir = dlc_bench_dir(root)
    questions, names = _load(root, policy)
    coco = read_coco(ann_dir / "annotations.json", ann_dir / "images", on_error=on_error, report=policy.report,
                     check_images=check_images, max_pixels=max_pixels)
    return _records(coco, questions, names, ann_dir, policy)


def _records(coco, questions, names, ann_dir, policy):
    known: set = set()
    for rec in coco:
        keys = [str(i) for i in rec.regions.ids or []]
        known.update(keys)
        has = [k in questions for k in keys]
        for k, ok in zip(keys, has):
            if not ok:
                policy.fail(ann_dir / "qa.json", f"annotation id={k}", "no questions for this annotation")
        regions = rec.regions[np.flatnonzero(has)] if len(rec.regions) else rec.regions
        if len(regions):
            ids = [str(i) for i in regions.ids]
            regions = regions.with_fields(ids=ids, data={"questions": [questions[k] for k in ids],
                                                         "class_name": [names[k] for k in ids]})
        rec.regions = regions
        yield rec
    stray = sorted(set(questions) - known)
    if stray:
        policy.fail(ann_dir / "qa.json", f"keys={stray[:5]}", "questions for annotation ids that are not in annotations.json")
