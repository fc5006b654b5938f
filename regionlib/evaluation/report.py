"""Reports: a self-contained HTML page (tables, notes, PNG figures embedded as base64) written next to
the figures as PNG files and the numbers as JSON."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["figure_png", "html_report", "write_report"]


def figure_png(fig, *, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _cell(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def html_report(title: str, *, tables: Mapping[str, Sequence[Mapping]] | None = None,
                figures: Mapping[str, bytes] | None = None, notes: Sequence[str] = ()) -> str:
    """A self-contained HTML page: ``notes`` as a list, ``tables`` (name -> rows, each row a dict
    column -> value) as tables, ``figures`` (caption -> PNG bytes, see `figure_png`) embedded base64."""
    tables, figures = tables or {}, figures or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for name, rows in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if not rows:
            parts.append("<p>(empty)</p>")
            continue
        cols = list(dict.fromkeys(k for r in rows for k in r))
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in cols) + "</tr>")
        parts.append("</table>")
    for caption, png in figures.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<h2>{html.escape(caption)}</h2>"
                     f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(directory: str | Path, title: str, *, tables=None, figures=None, notes=(), numbers=None,
                 scores: Sequence[Mapping] | None = None) -> Path:
    """Write ``report.html``, one PNG per figure and ``report.json`` (tables + numbers) into ``directory``.

    ``scores``: the tidy score table (`table.score_rows` rows), written as ``scores.csv``; its
    corpus rows become the first table (one row per method, one column per metric) and the
    ``numbers`` (method -> metric -> value) unless given.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    figures = figures or {}
    if scores is not None:
        from .table import corpus_values, write_csv

        write_csv(scores, d / "scores.csv")
        corpus = corpus_values(scores)
        tables = {"corpus scores": [{"method": m, **values} for m, values in corpus.items()], **(tables or {})}
        numbers = corpus if numbers is None else numbers
    for i, (caption, png) in enumerate(figures.items()):
        (d / f"figure_{i:02d}.png").write_bytes(png)
    (d / "report.html").write_text(html_report(title, tables=tables or {}, figures=figures, notes=notes))
    (d / "report.json").write_text(json.dumps({"title": title, "tables": tables or {}, "numbers": numbers or {},
                                               "notes": list(notes)}, indent=2, default=float))
    return d / "report.html"
