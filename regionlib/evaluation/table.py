"""Scores as one tidy table: a list of rows ``{"id", "method", "metric", "value"}`` (pandas-friendly:
``pandas.DataFrame(rows)``), per-sample rows with the sample's id and corpus rows with ``id`` None.

`score_rows` builds the rows of one method from its corpus and per-sample scores (`evaluate`'s
result, `CaptionScores.rows`); `per_sample_values` and `corpus_values` read them back for the
figures (`figures.metric_distributions`) and the report (`report.write_report`); `write_csv` /
`read_csv` store them (``id`` empty for corpus rows, ``value`` empty for None).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataFormatError

__all__ = ["COLUMNS", "score_rows", "per_sample_values", "corpus_values", "write_csv", "read_csv"]

COLUMNS = ("id", "method", "metric", "value")


def score_rows(method: str, corpus: Mapping[str, float], per_sample: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Rows of ``method``: one per (sample, metric) of ``per_sample`` (metric -> {id: value or None}),
    then one corpus row (``id`` None) per metric of ``corpus``."""
    rows = [{"id": sid, "method": method, "metric": metric, "value": None if v is None else float(v)}
            for metric, values in (per_sample or {}).items() for sid, v in values.items()]
    rows += [{"id": None, "method": method, "metric": metric, "value": float(v)} for metric, v in corpus.items()]
    return rows


def _check(rows: Iterable[Mapping]) -> list[Mapping]:
    rows = list(rows)
    for k, r in enumerate(rows):
        if not isinstance(r, Mapping) or any(c not in r for c in COLUMNS):
            raise DataFormatError(f"rows[{k}] must be a mapping with keys {COLUMNS}, got {r!r}")
    return rows


def per_sample_values(rows: Iterable[Mapping], metric: str) -> dict[str, np.ndarray]:
    """method -> the (N,) per-sample values of ``metric`` in row order (None rows skipped)."""
    out: dict[str, list] = {}
    for r in _check(rows):
        if r["metric"] == metric and r["id"] is not None and r["value"] is not None:
            out.setdefault(r["method"], []).append(r["value"])
    if not out:
        raise DataFormatError(f"no per-sample rows of metric {metric!r}")
    return {m: np.asarray(v, dtype=np.float64) for m, v in out.items()}


def corpus_values(rows: Iterable[Mapping]) -> dict[str, dict[str, float]]:
    """method -> {metric: corpus value} from the corpus rows."""
    out: dict[str, dict[str, float]] = {}
    for r in _check(rows):
        if r["id"] is None:
            out.setdefault(r["method"], {})[r["metric"]] = r["value"]
    return out


def write_csv(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Write ``rows`` as CSV with the `COLUMNS` header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in _check(rows):
            v = r["value"]
            writer.writerow(["" if r["id"] is None else r["id"], r["method"], r["metric"],
                             "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))])
    return path


def read_csv(path: str | Path) -> list[dict]:
    """The rows of a `write_csv` file (ids as str, values as float or None)."""
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DataFormatError(f"{path}: expected the columns {COLUMNS}, got {reader.fieldnames}")
        return [{"id": r["id"] or None, "method": r["method"], "metric": r["metric"],
                 "value": float(r["value"]) if r["value"] else None} for r in reader]
