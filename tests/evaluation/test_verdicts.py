"""Verdicts on constructed per-region results (`regionlib.evaluation.verdicts`): each test names,
in a comment, the plausible bug it catches."""

from collections import Counter

import numpy as np
import pytest

from regionlib.data.regionworld import attribute_accuracy, generate_regionworld
from regionlib.errors import ConfigError, DataFormatError
from regionlib.evaluation.verdicts import (
    ATTRIBUTE_METRICS, CONTRADICTED, REPRODUCED, WITHIN_NOISE, RowScores, bootstrap_mean, evaluate_claims,
    attribute_correctness, majority_rates, majority_values, reference_captions, uniform_chance, verdict_table_markdown,
)

SEEDS = (0, 1, 2)
N_IMAGES, PER_IMAGE = 40, 5
IDS = [f"img{g}_{k}" for g in range(N_IMAGES) for k in range(PER_IMAGE)]
IMAGES = {i: i.split("_")[0] for i in IDS}


def row(metrics: dict, *, distinct=0.8, ids=IDS, seeds=SEEDS) -> RowScores:
    """A row from ``{metric: (n_seeds, n_regions)}``."""
    return RowScores(region_ids=tuple(ids), seeds=seeds, metrics=metrics, distinct=np.full(len(seeds), distinct))


def noisy(mean: float, sd: float, rng, shape=(len(SEEDS), len(IDS))) -> np.ndarray:
    return mean + sd * rng.standard_normal(shape)


def claim(a="a", b="b", metric="Avg"):
    return (f"{a} beats {b}", "test", a, b, metric)


def one(scores, metric="Avg", chance=None, **kw):
    return evaluate_claims(scores, [claim(metric=metric)], image_of_region=IMAGES, chance=chance or {}, **kw)[0]


def test_effect_inside_the_noise_is_not_reproduced():
    # Bug: a verdict from the sign of the mean (or "held in every seed", today's check) calls a
    # +0.01 difference in ±0.5 noise reproduced.
    rng = np.random.default_rng(1)
    b = noisy(0.3, 0.5, rng)
    v = one({"a": row({"Avg": b + 0.01 + 0.5 * rng.standard_normal(b.shape)}), "b": row({"Avg": b})})
    assert v.ci_low < 0 < v.ci_high
    assert v.verdict == WITHIN_NOISE, v.why


def test_clear_effect_is_reproduced_and_reversed_is_contradicted():
    # Bug: the direction swapped (b - a), or "contradicted" never produced (any CI off 0 called reproduced).
    rng = np.random.default_rng(2)
    b = noisy(0.3, 0.1, rng)
    a = b + 0.2 + 0.05 * rng.standard_normal(b.shape)
    v = one({"a": row({"Avg": a}), "b": row({"Avg": b})})
    assert v.verdict == REPRODUCED and v.ci_low > 0, v.why
    assert v.mean_diff == pytest.approx(np.mean(a - b))
    assert v.a_mean - v.b_mean == pytest.approx(v.mean_diff)
    assert (v.n_seeds, v.n_regions, v.n_images) == (3, len(IDS), N_IMAGES)
    r = one({"a": row({"Avg": b}), "b": row({"Avg": a})})
    assert r.verdict == CONTRADICTED and r.ci_high < 0, r.why


def test_a_collapsed_side_is_not_measurable():
    # Bug: today's check declares "not measurable" only when *both* sides collapsed; one side saying
    # one caption everywhere (here in one seed) already makes the difference meaningless.
    rng = np.random.default_rng(3)
    b = noisy(0.0, 0.1, rng)
    scores = {"a": row({"Avg": b + 0.3}), "b": RowScores(region_ids=tuple(IDS), seeds=SEEDS, metrics={"Avg": b},
                                                         distinct=np.array([0.6, 0.01, 0.6]))}
    v = one(scores)
    assert v.verdict == "not measurable (collapsed: b)", v.why
    assert "seed(s) 1" in v.why


def attribute_rows(rng, acc: dict[str, float]) -> dict:
    """Rows with 0/1 colour hits at the given accuracies (independent per region and seed)."""
    return {name: row({"acc: color": (rng.random((len(SEEDS), len(IDS))) < p).astype(float)})
            for name, p in acc.items()}


def test_attribute_nobody_learns_above_the_majority_rate_is_not_measurable():
    # Bug: the positive control uses the uniform chance 1/12 (or none at all): rows at the 35 %
    # majority rate, far above 1/12, are blind guessers, and a clear a > b between them is no evidence.
    rng = np.random.default_rng(4)
    chance = {"acc: color": 0.35}
    scores = attribute_rows(rng, {"a": 0.35, "b": 0.05})
    assert uniform_chance()["acc: color"] == pytest.approx(1 / 12)
    v = one(scores, "acc: color", chance)
    assert v.ci_low > 0  # the difference itself is clear ...
    assert v.verdict == "not measurable (no variant learned color)", v.why  # ... but nobody reads colour
    # a third row that does read colour makes the comparison count; a reference line cannot
    # (bug: the bare-shape oracle or another reference row passing the control).
    learner = attribute_rows(rng, {"focal": 0.8})
    oracle = {"ref: majority caption": row({"acc: color": np.ones((len(SEEDS), len(IDS)))})}
    assert one({**scores, **oracle}, "acc: color", chance).verdict.startswith("not measurable")
    v = one({**scores, **learner}, "acc: color", chance)
    assert v.verdict == REPRODUCED and "positive control: focal" in v.why, v.why


def test_cluster_bootstrap_is_wider_than_the_region_bootstrap():
    # Bug: resampling regions independently (ignoring image_of_region): with the regions of an image
    # perfectly correlated, 200 regions carry only 40 images' worth of evidence. The image effect is
    # shared by the seeds (an image hard for a is hard in every seed), so resampling seeds cannot
    # stand in for resampling images.
    rng = np.random.default_rng(5)
    per_image = rng.standard_normal((1, N_IMAGES)).repeat(len(SEEDS), 0)
    d = np.repeat(per_image, PER_IMAGE, axis=1)  # (S, N): every region of an image has its image's value
    clustered = bootstrap_mean(d, [IMAGES[i] for i in IDS])
    naive = bootstrap_mean(d, IDS)  # one cluster per region
    assert clustered.high - clustered.low > 1.8 * (naive.high - naive.low)  # ~sqrt(5) in expectation
    # end to end: a per-image effect that only the naive bootstrap would call reproduced
    noise = rng.standard_normal(N_IMAGES)
    noise = 0.5 * (noise - noise.mean()) / noise.std()  # the realised mean is exactly 0.1: 1.3 cluster SEs,
    d = 0.1 + np.repeat(noise[None], PER_IMAGE, axis=1).repeat(len(SEEDS), 0)  # 2.8 naive region SEs
    scores = {"a": row({"Avg": d}), "b": row({"Avg": np.zeros_like(d)})}
    assert one(scores).verdict == WITHIN_NOISE
    assert evaluate_claims(scores, [claim()], image_of_region={i: i for i in IDS}, chance={})[0].verdict == REPRODUCED


def test_nan_regions_are_excluded():
    # Bug: NaN (pattern of a large object) counted as a miss (0) or propagated into a NaN verdict.
    rng = np.random.default_rng(6)
    a = (rng.random((len(SEEDS), len(IDS))) < 0.9).astype(float)
    b = (rng.random((len(SEEDS), len(IDS))) < 0.3).astype(float)
    large = np.arange(len(IDS)) % 2 == 1
    a[:, large] = np.nan
    b[:, large & (np.arange(len(IDS)) % 4 == 1)] = np.nan  # b NaN on half of those only
    m = "acc: pattern (small objects)"
    v = one({"a": row({m: a}), "b": row({m: b})}, m, {m: 0.3})
    assert v.n_regions == (~large).sum()
    assert v.mean_diff == pytest.approx(np.mean(a[:, ~large] - b[:, ~large]))
    assert v.b_mean == pytest.approx(np.mean(b[:, ~large]))
    assert v.verdict == REPRODUCED, v.why


def test_fixed_seed_is_deterministic():
    # Bug: an unseeded generator (np.random.* or default_rng() without a seed) makes CIs, hence
    # verdicts near the edge, change from run to run.
    rng = np.random.default_rng(7)
    scores = {"a": row({"Avg": noisy(0.1, 0.5, rng)}), "b": row({"Avg": noisy(0.0, 0.5, rng)})}
    first, again = one(scores, seed=3), one(scores, seed=3)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    other = one(scores, seed=4)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.mean_diff == other.mean_diff


def test_region_order_of_a_row_does_not_matter():
    # Bug: pairing by position instead of by region id: a row listing its regions in another order
    # would be compared with the wrong regions.
    rng = np.random.default_rng(8)
    a, b = noisy(0.5, 0.2, rng), noisy(0.2, 0.2, rng)
    perm = rng.permutation(len(IDS))
    shuffled = row({"Avg": b[:, perm]}, ids=[IDS[k] for k in perm])
    assert one({"a": row({"Avg": a}), "b": shuffled}).mean_diff == pytest.approx(np.mean(a - b))


def test_bad_input_is_a_typed_error_naming_the_mismatch():
    # Bug: mismatched rows silently broadcast, truncate, or crash with a bare IndexError / KeyError.
    rng = np.random.default_rng(9)
    good = row({"Avg": noisy(0, 1, rng)})
    fewer = row({"Avg": noisy(0, 1, rng)[:, :-1]}, ids=IDS[:-1])
    with pytest.raises(DataFormatError, match=r"row 'b' has 199 regions.*1 missing.*img39_4"):
        one({"a": good, "b": fewer})
    renamed = row({"Avg": noisy(0, 1, rng)}, ids=[*IDS[:-1], "elsewhere_0"])
    with pytest.raises(DataFormatError, match=r"row 'b'.*unknown.*elsewhere_0"):
        one({"a": good, "b": renamed})
    with pytest.raises(ConfigError, match=r"unknown row 'b'"):
        one({"a": good})
    with pytest.raises(DataFormatError, match=r"same seeds.*'a' has \[0, 1, 2\].*'b' has \[0, 1\]"):
        one({"a": good, "b": row({"Avg": noisy(0, 1, rng, (2, len(IDS)))}, seeds=(0, 1))})
    with pytest.raises(DataFormatError, match=r"row 'b' has no metric 'Avg'"):
        one({"a": good, "b": row({"CIDEr": noisy(0, 1, rng)})})
    with pytest.raises(ConfigError, match=r"no chance bar.*acc: color"):
        one(attribute_rows(rng, {"a": 0.5, "b": 0.5}), "acc: color", {})
    with pytest.raises(DataFormatError, match=r"metric 'Avg': expected shape.*\(3, 200\), got \(3, 199\)"):
        row({"Avg": noisy(0, 1, rng)[:, :-1]})
    with pytest.raises(DataFormatError, match=r"seeds \[1\] do not have one value per region"):
        RowScores.from_seeds({0: {"Avg": [0.0, 1.0]}, 1: {"Avg": [0.0]}}, region_ids=["x", "y"], distinct={0: 1, 1: 1})


def test_verdict_table_markdown():
    # Bug: a "|" in a claim or a why breaks the table's columns.
    rng = np.random.default_rng(10)
    b = noisy(0.3, 0.1, rng)
    scores = {"a": row({"Avg": b + 0.2}), "b": row({"Avg": b})}
    v = evaluate_claims(scores, [("a | b", "Tab. 8", "a", "b", "Avg")], image_of_region=IMAGES, chance={})
    md = verdict_table_markdown(v)
    lines = md.strip().splitlines()
    assert len(lines) == 3 and lines[2].count(" | ") == lines[0].count(" | ")
    assert "a \\| b" in lines[2] and "**reproduced**" in lines[2] and "+20.0" in lines[2]


@pytest.fixture(scope="module")
def test_samples():
    return generate_regionworld(12, seed=0, split="test", background_p=(0.0, 1.0, 0.0))


def test_reference_lines_on_regionworld(test_samples):
    # Bugs: a majority rate computed over a different population than its metric (pattern over all
    # regions instead of small objects), a majority caption not built from the majority values, per-region
    # hits that disagree with the job's `attribute_accuracy`.
    attrs = [a for s in test_samples for a in s.regions.data["attributes"]]
    ids = [str(r) for s in test_samples for r in s.regions.ids]
    refs = reference_captions(test_samples)
    assert set(refs) == {"ref: majority caption", "ref: bare shape"}
    assert list(refs["ref: bare shape"]) == ids
    assert refs["ref: bare shape"][ids[0]] == f"A {attrs[0]['shape']}."
    constant = set(refs["ref: majority caption"].values())
    assert len(constant) == 1
    top_color = Counter(a["color"] for a in attrs).most_common(1)[0][0]
    assert f" {top_color} " in constant.pop()
    small = [a["pattern"] for a in attrs if a["size"] in ("tiny", "small")]
    rates = majority_rates(test_samples)
    assert rates["acc: pattern (small objects)"] == pytest.approx(Counter(small).most_common(1)[0][1] / len(small))
    assert majority_values(test_samples)["acc: color"] in {c for c, n in Counter(a["color"] for a in attrs).items()
                                                          if n == max(Counter(a["color"] for a in attrs).values())}
    hits = attribute_correctness(list(refs["ref: majority caption"].values()), attrs)
    assert set(hits) == set(ATTRIBUTE_METRICS)
    for m in ("acc: shape", "acc: color", "acc: size", "acc: position", "acc: relation"):
        assert np.nanmean(hits[m]) == pytest.approx(rates[m]), m  # the constant caption scores the bar
    texts = [s.regions.captions[0] for s in test_samples for _ in s.regions.ids]  # some right, some wrong
    per_region = attribute_correctness(texts, attrs)
    agg = attribute_accuracy(texts, attrs)
    for key in ("shape", "color", "size", "position"):
        assert np.mean(per_region[f"acc: {key}"]) == pytest.approx(agg[key])
    assert np.isnan(per_region["acc: pattern (small objects)"]).sum() == sum(a["size"] not in ("tiny", "small")
                                                                             for a in attrs)
