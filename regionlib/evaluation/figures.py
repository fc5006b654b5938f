"""Figures: per-sample metric distributions (SCA, seed 000 Fig. 2) and failure galleries.

Every function returns a matplotlib `Figure` and saves it as a PNG when ``path`` is given;
nothing is shown. Use the Agg backend (``MPLBACKEND=Agg``) on machines without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import RegionLibError

__all__ = ["metric_distributions", "worst_k", "failure_gallery"]


def _save(fig, path) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def metric_distributions(scores: Mapping[str, Sequence[float]] | Sequence[Mapping], *, metric: str = "CIDEr",
                         bins: int = 100, path: str | Path | None = None):
    """Per-sample score distributions of several methods, one panel each, on shared bins.

    Each panel: a ``bins``-bin density histogram, the empirical CDF on a twin axis, the mean and
    the median as vertical lines, and the share of exactly-zero scores in the title (seed 000,
    Fig. 2). ``scores`` maps a method name to its (N,) per-sample values (finite), or is the tidy
    score table (`table.score_rows` rows), whose per-sample rows of ``metric`` are drawn.
    """
    import matplotlib.pyplot as plt

    if not isinstance(scores, Mapping):
        from .table import per_sample_values

        scores = per_sample_values(scores, metric)
    if not scores:
        raise RegionLibError("scores must map at least one method to its per-sample values")
    arrays = {name: np.asarray(v, dtype=np.float64).ravel() for name, v in scores.items()}
    for name, v in arrays.items():
        if v.size == 0 or not np.isfinite(v).all():
            raise RegionLibError(f"scores[{name!r}] must be a non-empty sequence of finite numbers")
    lo = min(0.0, min(float(v.min()) for v in arrays.values()))
    hi = max(float(v.max()) for v in arrays.values())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig, axes = plt.subplots(1, len(arrays), figsize=(4.2 * len(arrays), 3.4), sharey=True, squeeze=False)
    for ax, (name, v) in zip(axes[0], arrays.items()):
        ax.hist(v, bins=edges, density=True, color="#4C72B0", alpha=0.8)
        ax.axvline(v.mean(), color="#C44E52", lw=1.5, label=f"mean {v.mean():.3f}")
        ax.axvline(np.median(v), color="#55A868", lw=1.5, ls="--", label=f"median {np.median(v):.3f}")
        cdf = ax.twinx()
        xs = np.sort(v)
        cdf.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", color="black", lw=1)
        cdf.set_ylim(0, 1.02)
        cdf.set_ylabel("empirical CDF")
        ax.set_title(f"{name}\n{100 * np.mean(v == 0):.1f}% exactly zero (n={len(v)})", fontsize=9)
        ax.set_xlabel(metric)
        ax.legend(fontsize=7, loc="center right")
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    _save(fig, path)
    return fig


def worst_k(values: Sequence[float | None], k: int, *, higher_is_worse: bool = False) -> np.ndarray:
    """Indices of the ``k`` worst values: the lowest scores, or the highest penalties with
    ``higher_is_worse`` (e.g. a judge's penalty); None / NaN are skipped, ties keep input order."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(v))
    key = -v[valid] if higher_is_worse else v[valid]
    return valid[np.argsort(key, kind="stable")[:k]]


def failure_gallery(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], predictions: Sequence[str],
                    references: Sequence[str], scores: Mapping[str, Sequence[float | None]], *, by: str, k: int = 8,
                    higher_is_worse: bool = False, title: str | None = None, max_chars: int = 300,
                    path: str | Path | None = None):
    """The ``k`` worst samples by ``scores[by]``, one row each: the region drawn on its image, DAM's
    focal crop around it, the prediction, the reference and every score of the sample.

    Args:
        images: per sample, its image (H, W, 3) uint8 (samples of one image may share the array).
        masks: per sample, the region's (H, W) bool mask.
        predictions, references: per sample, the predicted and the reference text.
        scores: name -> per-sample values (a metric, or a judge's penalty with ``higher_is_worse``).
        by: the score that ranks the samples; ``k``: how many rows.

    Overlays come from `regionlib.overlays.draw_masks`; an empty mask shows the whole image.
    """
    import textwrap

    import matplotlib.pyplot as plt

    from ..focal import crop_boxes
    from ..overlays import draw_masks

    n = len(images)
    if not n or not (len(masks) == len(predictions) == len(references) == n):
        raise RegionLibError(f"need equally many images, masks, predictions and references (> 0), got {n}, "
                             f"{len(masks)}, {len(predictions)}, {len(references)}")
    if by not in scores:
        raise RegionLibError(f"by={by!r} is not one of the scores {sorted(scores)}")
    for name, values in scores.items():
        if len(values) != n:
            raise RegionLibError(f"scores[{name!r}] has {len(values)} values for {n} samples")
    rows = worst_k(scores[by], k, higher_is_worse=higher_is_worse)
    if not len(rows):
        raise RegionLibError(f"scores[{by!r}] has no finite value to rank")
    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 2.8 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 2.4]})
    for ax_row, i in zip(axes, rows):
        mask = np.asarray(masks[i])
        if mask.dtype != bool or mask.ndim != 2:
            raise RegionLibError(f"masks[{i}] must be a (H, W) bool array, got {mask.dtype} {mask.shape}")
        overlay = draw_masks(images[i], mask[None], colors=[[255, 64, 0]])
        x0, y0, x1, y1 = crop_boxes(mask[None], "focal_crop")[0] if mask.any() else (0, 0, mask.shape[1], mask.shape[0])
        ax_row[0].imshow(overlay)
        ax_row[0].set_title(f"sample {i}", fontsize=8)
        ax_row[1].imshow(overlay[y0:y1, x0:x1])
        ax_row[1].set_title("focal crop", fontsize=8)
        values = ", ".join(f"{name} {_fmt(v[i])}" for name, v in scores.items())
        text = "\n".join(textwrap.fill(f"{label}: {str(t)[:max_chars]}", 90)
                         for label, t in (("prediction", predictions[i]), ("reference", references[i])))
        ax_row[2].text(0, 1, f"{text}\n\n{values}", va="top", ha="left", fontsize=7.5, transform=ax_row[2].transAxes)
        for ax in ax_row:
            ax.axis("off")
    fig.suptitle(title or f"{len(rows)} worst by {by}")
    fig.tight_layout()
    _save(fig, path)
    return fig


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float, np.number)) else str(value)
