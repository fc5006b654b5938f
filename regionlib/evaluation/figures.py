"""Figures: per-sample metric distributions (seed 000 Fig. 2) and failure galleries.

Every function returns a matplotlib `Figure` (save it with ``fig.savefig(path)``); nothing is
shown or kept open by the library.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import RegionLibError

__all__ = ["metric_distributions", "failure_gallery", "worst_k"]


def metric_distributions(scores: Mapping[str, Sequence[float]], *, metric: str = "CIDEr", bins: int = 100):
    """One panel per method: 100-bin density histogram, empirical CDF on a twin axis, share of exact
    zeros, mean and median marked (seed 000 Fig. 2; REFERENCE §4)."""
    import matplotlib.pyplot as plt

    if not scores:
        raise RegionLibError("scores must map at least one method to its per-sample values")
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    for k, v in arrays.items():
        if v.size == 0 or not np.isfinite(v).all():
            raise RegionLibError(f"scores[{k!r}] must be a non-empty array of finite numbers")
    hi = max(float(v.max()) for v in arrays.values())
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
    fig, axes = plt.subplots(1, len(arrays), figsize=(4.2 * len(arrays), 3.4), sharey=True, squeeze=False)
    for ax, (name, v) in zip(axes[0], arrays.items()):
        ax.hist(v, bins=edges, density=True, color="#4C72B0", alpha=0.8)
        ax.axvline(v.mean(), color="#C44E52", lw=1.5, label=f"mean {v.mean():.3f}")
        ax.axvline(np.median(v), color="#55A868", lw=1.5, ls="--", label=f"median {np.median(v):.3f}")
        twin = ax.twinx()
        xs = np.sort(v)
        twin.plot(xs, np.arange(1, len(xs) + 1) / len(xs), color="black", lw=1)
        twin.set_ylim(0, 1.02)
        twin.set_ylabel("empirical CDF")
        ax.set_title(f"{name}\n{100 * np.mean(v == 0):.1f}% exactly zero (n={len(v)})", fontsize=9)
        ax.set_xlabel(metric)
        ax.legend(fontsize=7, loc="center right")
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    return fig


def worst_k(values: Sequence[float], k: int) -> np.ndarray:
    """Indices of the ``k`` lowest values (ties by index)."""
    return np.argsort(np.asarray(values, dtype=np.float64), kind="stable")[:k]


def failure_gallery(items: Sequence[Mapping], *, title: str = "failure cases", max_chars: int = 160):
    """A grid, one row per item: overlay of the region on the image, the crop, and the texts.

    Each item: ``image`` (H, W, 3) uint8, ``mask`` (H, W) bool, ``prediction``, ``reference``
    (str) and ``scores`` (dict of name -> number).
    """
    import matplotlib.pyplot as plt

    from ..focal import crop_boxes
    from ..overlays import draw_masks

    if not items:
        raise RegionLibError("failure_gallery needs at least one item")
    fig, axes = plt.subplots(len(items), 3, figsize=(11, 2.6 * len(items)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 2.2]})
    for row, item in zip(axes, items):
        image, mask = item["image"], np.asarray(item["mask"], dtype=bool)
        overlay = draw_masks(image, mask[None], colors=[[255, 64, 0]])
        x0, y0, x1, y1 = crop_boxes(mask[None], "focal_crop")[0]
        row[0].imshow(overlay)
        row[1].imshow(overlay[y0:y1, x0:x1])
        scores = ", ".join(f"{k} {v:.3g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in item["scores"].items())
        text = (f"pred: {item['prediction'][:max_chars]}\n\nref: {item['reference'][:max_chars]}\n\n{scores}")
        row[2].text(0, 1, text, va="top", ha="left", wrap=True, fontsize=8, transform=row[2].transAxes)
        for ax in row:
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
