"""Verdicts on the papers' claims from per-region, per-seed scores: paired differences with a
cluster-bootstrap CI over seeds and test images, a positive control for attribute claims, and the
reference lines every table carries (issue 13, item 3).

A claim reads "row ``a`` beats row ``b`` on ``metric``" (the main job's ``CLAIMS`` tuples
``(claim, source, a, b, metric)``). The unit is one region of one seed: for seed ``s`` and region
``i`` the paired difference is ``d[s, i] = a[s, i] - b[s, i]`` (same test regions, same training
seeds), and the statistic is the mean of ``d`` over every (seed, region) cell where it is finite
(NaN marks a region a metric does not score, e.g. the fine pattern of medium and large objects).

Its uncertainty comes from a two-way bootstrap (`bootstrap_mean`): each replicate draws the seeds
with replacement *and* the test images with replacement (a cluster bootstrap: the regions of one
image share its background, its clutter and its neighbours, so they are not independent draws), and
recomputes the pooled mean; the 95 % CI is the 2.5 / 97.5 percentiles of ``n_boot`` replicates.

Verdicts (`evaluate_claims`), checked in this order:

1. ``"not measurable (collapsed: <row>)"`` — a side's share of distinct captions is below
   `COLLAPSED` in some seed: that seed scores one caption repeated, not a model.
2. ``"not measurable (no variant learned <attribute>)"`` — for an attribute metric (`ATTRIBUTE_METRICS`),
   no model row of the table (the reference lines excluded) has a per-region accuracy whose CI lower
   bound exceeds the attribute's *majority-class rate* on the test regions (`majority_rates`). The
   majority rate, not ``1 / |values|`` (`uniform_chance`), is the bar: a model that names the most
   frequent colour everywhere scores the majority rate without looking at a pixel, so only
   accuracy above it shows the attribute was read from the image. Below the bar, a difference
   between two rows compares how two blind models guess.
3. ``"reproduced"`` — the CI lies above 0 (the paper's direction); ``"contradicted"`` — it lies below
   0; ``"not reproduced (within noise)"`` — it contains 0.

Wiring (the job's ``per_seed[row][seed]`` results)::

    scores = {row: RowScores.from_seeds({s: {"Avg": dlc_per_region, "CIDEr": cider_per_region,
                                             **attribute_correctness(captions, attributes)} for s in seeds},
                                        region_ids=ids, distinct={s: distinct_share for s in seeds})
              for row in rows}
    verdicts = evaluate_claims(scores, CLAIMS, image_of_region=region_images(test),
                               chance=majority_rates(test))
    markdown = verdict_table_markdown(verdicts)

Reference lines (`reference_captions`) are caption rows the job scores like any model:
``"ref: majority caption"`` and ``"ref: bare shape"``; `uniform_chance` and `majority_rates` are
the per-attribute chance numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from ..data.grammar import VOCABULARY, caption
from ..data.regionworld import attribute_accuracy
from ..errors import ConfigError, DataFormatError

__all__ = [
    "ATTRIBUTE_METRICS", "COLLAPSED", "REFERENCE_ROWS", "REPRODUCED", "CONTRADICTED", "WITHIN_NOISE", "RowScores",
    "Interval", "Verdict", "bootstrap_mean", "evaluate_claims", "verdict_table_markdown", "attribute_correctness",
    "region_images", "uniform_chance", "majority_rates", "majority_values", "reference_captions",
]

#: attribute metric -> the RegionWorld attribute it checks (names as in the main job's tables)
ATTRIBUTE_METRICS = {"acc: shape": "shape", "acc: color": "color", "acc: pattern (small objects)": "pattern",
                     "acc: size": "size", "acc: position": "position", "acc: relation": "relation"}
COLLAPSED = 0.05  # share of distinct captions below which a seed's row is one caption repeated
SMALL_SIZES = ("tiny", "small")  # the fine-pattern metric scores only these
REFERENCE_ROWS = ("ref: majority caption", "ref: bare shape")
REPRODUCED, CONTRADICTED, WITHIN_NOISE = "reproduced", "contradicted", "not reproduced (within noise)"


# ------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class RowScores:
    """Per-region scores of one table row (one model, or one prompt kind of a model) over its seeds.

    Attributes:
        region_ids: (n_regions,) str, the test regions, unique; ``metrics`` columns follow this order.
        seeds: (n_seeds,) int, the training seeds, unique; ``metrics`` rows follow this order.
        metrics: ``{metric: (n_seeds, n_regions) float64}`` — e.g. ``"Avg"`` (per-region DLC-Bench
            score; ``(pos + neg) / 2`` per region averages to the table's Avg when every region has
            negatives, as in RegionWorld, while `RegionResult.score`, the job's ``dlc_per_region``,
            weights each question alike and averages to ``mean_region_score``), ``"CIDEr"`` (per-region
            CIDEr-D), the 0/1 attribute hits of `ATTRIBUTE_METRICS` (`attribute_correctness`);
            NaN where a metric does not score a region (fine pattern: small objects only; relation:
            regions with a neighbour). Other values must be finite.
        distinct: (n_seeds,) float, each seed's share of distinct captions over the test regions
            (``len(set(captions)) / len(captions)``; near 0: the row says one thing everywhere).
    """

    region_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    metrics: Mapping[str, np.ndarray]
    distinct: np.ndarray

    def __post_init__(self):
        ids, seeds = tuple(str(i) for i in self.region_ids), tuple(int(s) for s in self.seeds)
        if not ids or len(set(ids)) != len(ids):
            raise DataFormatError(f"region_ids must be non-empty and unique, got {len(ids)} ids "
                                  f"({len(ids) - len(set(ids))} duplicates)")
        if not seeds or len(set(seeds)) != len(seeds):
            raise DataFormatError(f"seeds must be non-empty and unique, got {list(seeds)}")
        metrics = {}
        for name, values in self.metrics.items():
            v = np.array(values, dtype=np.float64)
            if v.shape != (len(seeds), len(ids)):
                raise DataFormatError(f"metric {name!r}: expected shape (n_seeds, n_regions) = "
                                      f"({len(seeds)}, {len(ids)}), got {v.shape}")
            if np.isinf(v).any():
                raise DataFormatError(f"metric {name!r}: values must be finite or NaN, got ±inf")
            v.flags.writeable = False
            metrics[str(name)] = v
        distinct = np.array(self.distinct, dtype=np.float64)
        if distinct.shape != (len(seeds),) or not ((distinct >= 0) & (distinct <= 1)).all():
            raise DataFormatError(f"distinct must be (n_seeds,) = ({len(seeds)},) shares in [0, 1], got {distinct!r}")
        distinct.flags.writeable = False
        object.__setattr__(self, "region_ids", ids)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "distinct", distinct)

    @classmethod
    def from_seeds(cls, by_seed: Mapping[int, Mapping[str, Sequence[float]]], *, region_ids: Sequence[str],
                   distinct: Mapping[int, float]) -> "RowScores":
        """From the job's layout ``{seed: {metric: (n_regions,) values in region_ids order}}`` and
        ``{seed: distinct-caption share}``; every seed must have the same metrics."""
        seeds = list(by_seed)
        if not seeds:
            raise DataFormatError("by_seed is empty: a row needs at least one seed")
        names = set(by_seed[seeds[0]])
        for s in seeds:
            if set(by_seed[s]) != names:
                raise DataFormatError(f"seed {s} has metrics {sorted(by_seed[s])}, seed {seeds[0]} has {sorted(names)}")
        if set(distinct) != set(seeds):
            raise DataFormatError(f"distinct has seeds {sorted(distinct)}, the scores have {sorted(seeds)}")
        metrics = {}
        for m in names:
            rows = [np.asarray(by_seed[s][m], dtype=np.float64) for s in seeds]
            bad = [s for s, r in zip(seeds, rows) if r.shape != (len(region_ids),)]
            if bad:
                raise DataFormatError(f"metric {m!r}: seeds {bad} do not have one value per region ({len(region_ids)})")
            metrics[m] = np.stack(rows)
        return cls(region_ids=tuple(region_ids), seeds=tuple(seeds), metrics=metrics,
                   distinct=np.array([distinct[s] for s in seeds]))


def attribute_correctness(captions: Sequence[str], attributes: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Per-region 0/1 hits for each of `ATTRIBUTE_METRICS`, by the rules of the job's accuracies.

    Shape, colour, pattern, size, position: `regionlib.data.regionworld.attribute_accuracy` of each
    region alone (the caption's first clause names the true value); pattern only for tiny and small
    objects, NaN elsewhere; relation: the true relation phrase occurs in the lower-cased caption, NaN
    for a region without a neighbour. The NaN-mean of each array is the job's ``acc: <attribute>``.

    Args:
        captions: (n_regions,) predicted captions; attributes: (n_regions,) RegionWorld attribute dicts.
    Returns:
        ``{metric: (n_regions,) float64 in {0, 1, NaN}}``.
    """
    if len(captions) != len(attributes) or not captions:
        raise DataFormatError(f"need equally many captions and attribute dicts (> 0), got {len(captions)}, "
                              f"{len(attributes)}")
    keys = ("shape", "color", "pattern", "size", "position")
    hits = [attribute_accuracy([c], [a], keys=keys) for c, a in zip(captions, attributes)]
    out = {m: np.array([h[k] for h in hits]) for m, k in ATTRIBUTE_METRICS.items() if k in keys}
    small = np.array([a["size"] in SMALL_SIZES for a in attributes])
    out["acc: pattern (small objects)"][~small] = np.nan
    out["acc: relation"] = np.array([float(a["relation"] in c.lower()) if a.get("relation") else np.nan
                                     for c, a in zip(captions, attributes)])
    return {m: out[m] for m in ATTRIBUTE_METRICS}


def region_images(samples) -> dict[str, str]:
    """``{region id: image id}`` of RegionWorld samples (the clusters of the bootstrap)."""
    return {str(r): s.image_id for s in samples for r in s.regions.ids}


# ------------------------------------------------------------------------------------ bootstrap
@dataclass(frozen=True)
class Interval:
    """A pooled mean and its bootstrap percentile CI; ``n_*`` count the cells that entered it."""

    mean: float
    low: float
    high: float
    n_seeds: int
    n_regions: int
    n_images: int


def _draw_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) float: per replicate, how often each of ``n`` items is drawn in ``n`` draws with replacement."""
    idx = rng.integers(n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def bootstrap_mean(values: np.ndarray, clusters: Sequence, *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> Interval:
    """Mean of ``values`` over its finite cells with a seed x cluster bootstrap percentile CI.

    Each replicate draws ``n_seeds`` seeds and ``n_clusters`` clusters (test images) with replacement
    and takes the pooled mean over the drawn cells, counted with their multiplicity: with draw counts
    ``w_seed`` (n_boot, S) and ``w_image`` (n_boot, G), and per-(seed, cluster) ``sums`` and finite-cell
    ``counts`` (S, G), replicate ``r`` is ``(w_seed @ sums)[r] . w_image[r] / (w_seed @ counts)[r] . w_image[r]``
    (a ratio: images hold different numbers of scored regions).
    Clusters without a finite cell are left out before drawing. The generator is
    ``np.random.default_rng(seed)``, fresh per call, so a result does not depend on what else was computed.

    Args:
        values: (n_seeds, n_regions) float, NaN = not scored.
        clusters: (n_regions,) hashable cluster key (image id) of each region; one key per region
            gives the naive region bootstrap.
    Returns:
        `Interval`; NaN mean and bounds when no cell is finite.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or len(clusters) != v.shape[1]:
        raise DataFormatError(f"values must be (n_seeds, n_regions) with one cluster per region, got shape "
                              f"{v.shape} and {len(clusters)} clusters")
    if not 0 < level < 1 or n_boot < 1:
        raise ConfigError(f"need 0 < level < 1 and n_boot >= 1, got level={level}, n_boot={n_boot}")
    finite = np.isfinite(v)
    _, g = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    n_clusters = int(g.max()) + 1
    sums = np.zeros((v.shape[0], n_clusters))
    counts = np.zeros((v.shape[0], n_clusters))
    for s in range(v.shape[0]):  # (S, G): per seed, the sum and count of finite cells of each image
        sums[s] = np.bincount(g, weights=np.where(finite[s], v[s], 0.0), minlength=n_clusters)
        counts[s] = np.bincount(g, weights=finite[s].astype(np.float64), minlength=n_clusters)
    keep = counts.sum(0) > 0
    sums, counts = sums[:, keep], counts[:, keep]
    n_seeds, n_images = v.shape[0], int(keep.sum())
    if n_images == 0:
        return Interval(np.nan, np.nan, np.nan, n_seeds, 0, 0)
    rng = np.random.default_rng(seed)
    w_seed = _draw_counts(rng, n_seeds, n_boot)  # (B, S) how often each seed is drawn
    w_image = _draw_counts(rng, n_images, n_boot)  # (B, G) how often each image is drawn
    # (B,): sum_s w_seed[:, s] * (w_image @ sums[s]); one matrix-vector product per seed (S is small)
    num = (w_seed * np.stack([w_image @ t for t in sums], 1)).sum(1)
    den = (w_seed * np.stack([w_image @ n for n in counts], 1)).sum(1)  # 0 only if the drawn cells are all NaN
    with np.errstate(invalid="ignore"):
        reps = num / den
    low, high = np.nanpercentile(reps, [50 * (1 - level), 50 * (1 + level)])
    return Interval(float(sums.sum() / counts.sum()), float(low), float(high), n_seeds,
                    int(finite.any(0).sum()), n_images)


# ------------------------------------------------------------------------------------ verdicts
@dataclass(frozen=True)
class Verdict:
    """One claim "a beats b on metric": the paired difference, its CI, the verdict and why.

    ``mean_diff``, ``ci_low``, ``ci_high``: pooled mean of ``a - b`` over finite (seed, region) cells and
    its percentile CI (NaN when not computed); ``a_mean`` / ``b_mean``: each side's pooled mean over the
    same cells; ``n_seeds`` / ``n_regions`` / ``n_images``: what entered the statistic.
    """

    claim: str
    source: str
    a: str
    b: str
    metric: str
    mean_diff: float
    ci_low: float
    ci_high: float
    a_mean: float
    b_mean: float
    n_seeds: int
    n_regions: int
    n_images: int
    verdict: str
    why: str

    def as_dict(self) -> dict:
        return asdict(self)


def _aligned(scores: Mapping[str, RowScores], order: Mapping[str, int]) -> dict[str, RowScores]:
    """Every row with its metric columns in ``order``'s region order (DataFormatError on other regions)."""
    out = {}
    for row, r in scores.items():
        if not isinstance(r, RowScores):
            raise DataFormatError(f"scores[{row!r}] must be RowScores, got {type(r).__name__}")
        have = set(r.region_ids)
        missing = [i for i in order if i not in have]
        extra = [i for i in r.region_ids if i not in order]
        if missing or extra:
            raise DataFormatError(f"row {row!r} has {len(r.region_ids)} regions, image_of_region {len(order)}: "
                                  f"{len(missing)} missing (e.g. {missing[:3]}), "
                                  f"{len(extra)} unknown (e.g. {extra[:3]})")
        perm = np.argsort([order[i] for i in r.region_ids])
        out[row] = RowScores(region_ids=tuple(r.region_ids[k] for k in perm), seeds=r.seeds,
                             metrics={m: v[:, perm] for m, v in r.metrics.items()}, distinct=r.distinct)
    return out


def _paired(ra: RowScores, rb: RowScores, a: str, b: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(n_seeds, n_regions) values of a and b on ``metric``, seeds in a's order."""
    for row, r in ((a, ra), (b, rb)):
        if metric not in r.metrics:
            raise DataFormatError(f"row {row!r} has no metric {metric!r} (has {sorted(r.metrics)})")
    if set(ra.seeds) != set(rb.seeds):
        raise DataFormatError(f"a paired claim needs the same seeds: {a!r} has {list(ra.seeds)}, "
                              f"{b!r} has {list(rb.seeds)}")
    idx = [rb.seeds.index(s) for s in ra.seeds]
    return ra.metrics[metric], rb.metrics[metric][idx]


def _pct(x: float, scale: float) -> str:
    return f"{scale * x:+.1f}"


def evaluate_claims(scores: Mapping[str, RowScores], claims: Sequence[Sequence[str]], *,
                    image_of_region: Mapping[str, str], chance: Mapping[str, float],
                    controls: Sequence[str] | None = None, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95, collapsed: float = COLLAPSED, scale: float = 100.0) -> list[Verdict]:
    """The verdict on each claim (module docstring: the statistic, the bootstrap, the verdict order).

    Args:
        scores: ``{row: RowScores}``; every row covers exactly the regions of ``image_of_region``.
        claims: ``(claim, source, a, b, metric)`` each, read "a beats b on metric" (the job's ``CLAIMS``).
        image_of_region: ``{region id: image id}`` of the test regions (`region_images`).
        chance: ``{attribute metric: bar}``, the majority-class rate per attribute (`majority_rates`);
            needed for every attribute metric a claim uses.
        controls: rows that may pass the positive control; default every row of ``scores`` except
            `REFERENCE_ROWS` (the bare-shape caption names the true shape by construction).
        n_boot, seed, level: bootstrap replicates, generator seed, CI level (`bootstrap_mean`).
        collapsed: distinct-caption share below which a seed of a row counts as collapsed.
        scale: factor of the numbers in ``why`` (100: the job's tables are x100).
    Returns:
        One `Verdict` per claim, in order.
    """
    order = {str(i): k for k, i in enumerate(image_of_region)}
    if not order:
        raise DataFormatError("image_of_region is empty")
    clusters = [image_of_region[i] for i in order]
    rows = _aligned(scores, order)
    controls = [r for r in rows if r not in REFERENCE_ROWS] if controls is None else list(controls)
    for row in (*controls, *(x for c in claims for x in c[2:4])):
        if row not in rows:
            raise ConfigError(f"unknown row {row!r}: scores has {sorted(rows)}")
    best: dict[str, tuple[str, Interval] | None] = {}  # attribute metric -> control row of highest CI low

    def control(metric: str) -> tuple[str, Interval] | None:
        if metric not in best:
            found = [(row, bootstrap_mean(rows[row].metrics[metric], clusters, n_boot=n_boot, seed=seed, level=level))
                     for row in controls if metric in rows[row].metrics]
            best[metric] = max((f for f in found if np.isfinite(f[1].low)), key=lambda f: f[1].low, default=None)
        return best[metric]

    out = []
    for c in claims:
        if len(c) != 5:
            raise ConfigError(f"a claim is (claim, source, a, b, metric), got {c!r}")
        claim, source, a, b, metric = c
        if metric in ATTRIBUTE_METRICS and metric not in chance:
            raise ConfigError(f"claim {claim!r}: no chance bar for attribute metric {metric!r} "
                              f"(chance has {sorted(chance)})")
        va, vb = _paired(rows[a], rows[b], a, b, metric)
        d = va - vb
        cells = np.isfinite(d)
        iv = bootstrap_mean(d, clusters, n_boot=n_boot, seed=seed, level=level)
        a_mean = float(va[cells].mean()) if cells.any() else np.nan
        b_mean = float(vb[cells].mean()) if cells.any() else np.nan
        stat = (f"{a} − {b} on {metric}: {_pct(iv.mean, scale)} ({100 * level:.0f} % CI {_pct(iv.low, scale)} to "
                f"{_pct(iv.high, scale)}) over {iv.n_seeds} seeds × {iv.n_regions} regions in "
                f"{iv.n_images} test images")
        flat = {row: [s for s, x in zip(rows[row].seeds, rows[row].distinct) if x < collapsed] for row in (a, b)}
        flat = {row: s for row, s in flat.items() if s}
        attribute = metric.removeprefix("acc: ")
        top = control(metric) if metric in ATTRIBUTE_METRICS and cells.any() else None
        if flat:
            verdict = f"not measurable (collapsed: {', '.join(flat)})"
            why = "; ".join(f"{row} gives one caption for nearly every region in seed(s) {', '.join(map(str, s))} "
                            f"(distinct share < {collapsed:g})" for row, s in flat.items()) + \
                  f": a difference against a repeated caption says nothing about the method ({stat})"
        elif not cells.any():
            verdict = f"not measurable (no region scored on {metric})"
            why = f"{a} and {b} have no region where both are scored on {metric}"
        elif metric in ATTRIBUTE_METRICS and (top is None or top[1].low <= chance[metric]):
            verdict = f"not measurable (no variant learned {attribute})"
            closest = "" if top is None else (f" (closest: {top[0]}, {100 * top[1].mean:.1f} %, "
                                              f"CI low {100 * top[1].low:.1f} %)")
            why = (f"no model row's {attribute} accuracy is above the majority-class rate {100 * chance[metric]:.1f} % "
                   f"with {100 * level:.0f} % confidence{closest}, so {stat} compares guesses")
        else:
            passed = ""
            if top is not None:
                passed = (f"; positive control: {top[0]} reads {attribute} at {100 * top[1].mean:.1f} % "
                          f"(CI low {100 * top[1].low:.1f} % > majority rate {100 * chance[metric]:.1f} %)")
            if iv.low > 0:
                verdict, tail = REPRODUCED, "the CI lies above 0, the paper's direction"
            elif iv.high < 0:
                verdict, tail = CONTRADICTED, f"the CI lies below 0: {b} beats {a}, against the paper"
            else:
                verdict, tail = WITHIN_NOISE, "the CI contains 0: the difference is within seed and test-image noise"
            why = f"{stat}; {tail}{passed}"
        out.append(Verdict(claim=claim, source=source, a=a, b=b, metric=metric, mean_diff=iv.mean, ci_low=iv.low,
                           ci_high=iv.high, a_mean=a_mean, b_mean=b_mean, n_seeds=iv.n_seeds, n_regions=iv.n_regions,
                           n_images=iv.n_images, verdict=verdict, why=why))
    return out


def verdict_table_markdown(verdicts: Sequence[Verdict], *, scale: float = 100.0) -> str:
    """The verdict table as markdown (numbers x ``scale``), one row per claim, and its reading."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    def num(x: float, signed: bool = False) -> str:
        return "n/a" if not np.isfinite(x) else (f"{scale * x:+.1f}" if signed else f"{scale * x:.1f}")

    lines = ["| Claim | Paper | Metric | a | b | a − b | 95 % CI | seeds × regions (images) | Verdict | Why |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        ci = "n/a" if not np.isfinite(v.ci_low) else f"{num(v.ci_low, True)} to {num(v.ci_high, True)}"
        lines.append("| " + " | ".join(cell(x) for x in (
            v.claim, v.source, v.metric, f"{v.a}: {num(v.a_mean)}", f"{v.b}: {num(v.b_mean)}", num(v.mean_diff, True),
            ci, f"{v.n_seeds} × {v.n_regions} ({v.n_images})", f"**{v.verdict}**", v.why)) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ reference lines
def _scored(samples, metric: str) -> list[str]:
    """The true values of ``metric``'s attribute over the regions it scores (its population)."""
    key = ATTRIBUTE_METRICS[metric]
    attrs = [a for s in samples for a in s.regions.data["attributes"]]
    if metric == "acc: pattern (small objects)":
        attrs = [a for a in attrs if a["size"] in SMALL_SIZES]
    if metric == "acc: relation":
        attrs = [a for a in attrs if a.get("relation")]
    return [str(a[key]) for a in attrs]


def uniform_chance() -> dict[str, float]:
    """``{attribute metric: 1 / |values|}`` over RegionWorld's vocabulary (a uniform guess)."""
    return {m: 1 / len(VOCABULARY[k]) for m, k in ATTRIBUTE_METRICS.items()}


def majority_values(samples) -> dict[str, str]:
    """``{attribute metric: most frequent true value}`` over the regions each metric scores (ties:
    the first in RegionWorld's vocabulary order); a metric scoring no region is left out."""
    out = {}
    for m, k in ATTRIBUTE_METRICS.items():
        counts = Counter(_scored(samples, m))
        if counts:
            out[m] = max(VOCABULARY[k], key=lambda value: counts[value])  # max keeps the first of ties
    return out


def majority_rates(samples) -> dict[str, float]:
    """``{attribute metric: share of its scored regions holding the majority value}`` — the accuracy
    of always naming that value, the bar of `evaluate_claims`' positive control (NaN: no region)."""
    top = majority_values(samples)
    out = {}
    for m in ATTRIBUTE_METRICS:
        values = _scored(samples, m)
        out[m] = values.count(top[m]) / len(values) if values else float("nan")
    return out


def reference_captions(test, *, fit=None) -> dict[str, dict[str, str]]:
    """Caption rows of the reference lines, ``{row: {region id: caption}}``, for every region of ``test``.

    * ``"ref: majority caption"`` — one constant caption for every region: RegionWorld's caption
      grammar filled with the majority value of each attribute over all regions of ``fit`` (default
      ``test``): size, colour, pattern, shape, position, no outline (the majority unless more than
      half are outlined), and the majority relation to the majority colour and shape. On ``test``
      itself its accuracy on shape, colour, size, position and relation is `majority_rates`' bar
      (pattern: the majority over all regions, the bar is over small objects).
    * ``"ref: bare shape"`` — ``"A {true shape}."``: names the class and nothing else (an oracle for
      shape, a floor for every other attribute).
    """
    fit = test if fit is None else fit
    attrs = [a for s in fit for a in s.regions.data["attributes"]]
    if not attrs:
        raise DataFormatError("reference_captions: the samples to fit the majority caption have no regions")

    def top(key: str, values) -> str:
        counts = Counter(str(a[key]) for a in values)
        return max(VOCABULARY[key], key=lambda value: counts[value])

    with_rel = [a for a in attrs if a.get("relation")]
    majority = {k: top(k, attrs) for k in ("size", "color", "pattern", "shape", "position")}
    majority["outline"] = 2 * sum(bool(a["outline"]) for a in attrs) > len(attrs)
    if with_rel:
        majority["relation"] = top("relation", with_rel)
        majority["relation_target"] = f"{majority['color']} {majority['shape']}"
    constant = caption(majority)
    return {"ref: majority caption": {str(r): constant for s in test for r in s.regions.ids},
            "ref: bare shape": {str(r): f"A {a['shape']}." for s in test
                                for r, a in zip(s.regions.ids, s.regions.data["attributes"])}}
