"""Figures render to PNG (Agg) and the HTML report bundles tables and figures."""

import json

import numpy as np
import pytest

from regionlib.errors import RegionLibError
from regionlib.evaluation.figures import failure_gallery, metric_distributions, worst_k
from regionlib.evaluation.report import figure_png, html_report, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def test_metric_distributions_marks_zeros_mean_and_median(tmp_path):
    rng = np.random.default_rng(0)
    scores = {"full image": np.r_[np.zeros(20), rng.gamma(1, 0.5, 80)], "focal crop": rng.gamma(2, 0.5, 100)}
    fig = metric_distributions(scores, path=tmp_path / "dist.png")
    hist_axes = [ax for ax in fig.axes if ax.get_ylabel() != "empirical CDF"]
    assert [ax.get_title().split("\n")[0] for ax in hist_axes] == ["full image", "focal crop"]
    assert "20.0% exactly zero" in hist_axes[0].get_title() and "0.0% exactly zero" in hist_axes[1].get_title()
    assert len(hist_axes[0].patches) == 100  # a 100-bin histogram
    labels = [t.get_text() for t in hist_axes[1].get_legend().get_texts()]
    assert labels == [f"mean {scores['focal crop'].mean():.3f}", f"median {np.median(scores['focal crop']):.3f}"]
    cdf = [ax for ax in fig.axes if ax.get_ylabel() == "empirical CDF"][0].lines[0].get_ydata()
    assert cdf[-1] == 1.0 and np.all(np.diff(cdf) >= 0)
    assert (tmp_path / "dist.png").read_bytes()[:8] == PNG
    with pytest.raises(RegionLibError, match="finite"):
        metric_distributions({"bad": [1.0, float("nan")]})


def test_worst_k():
    assert worst_k([0.5, 0.1, None, 0.9, 0.1], 2).tolist() == [1, 4]
    assert worst_k([0.5, 0.1, float("nan"), 0.9], 2, higher_is_worse=True).tolist() == [3, 0]


def test_failure_gallery_and_report(tmp_path, photo):
    mask = np.zeros(photo.shape[:2], bool)
    mask[30:60, 40:80] = True
    masks = [mask, np.zeros_like(mask), mask[::-1].copy()]
    scores = {"CIDEr": [0.0, 2.5, 0.7], "judge penalty": [1, 0, 2]}
    args = ([photo] * 3, masks, ["a red ball", "x", "a face"], ["a face", "y", "a face"], scores)
    fig = failure_gallery(*args, by="CIDEr", k=2, path=tmp_path / "gallery.png")
    assert fig._suptitle.get_text() == "2 worst by CIDEr" and len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[::3]] == ["sample 0", "sample 2"]  # lowest CIDEr first
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert shown.shape == photo.shape and not np.array_equal(shown, photo)  # the region is drawn
    assert fig.axes[1].images[0].get_array().shape[:2] != photo.shape[:2]  # a crop around the region
    text = fig.axes[2].texts[0].get_text()
    assert "prediction: a red ball" in text and "CIDEr 0" in text and "judge penalty 1" in text
    assert (tmp_path / "gallery.png").read_bytes()[:8] == PNG
    by_penalty = failure_gallery(*args, by="judge penalty", k=1, higher_is_worse=True)
    assert by_penalty.axes[0].get_title() == "sample 2"
    gallery_png = figure_png(fig)
    dist_png = figure_png(metric_distributions({"m": [0.0, 1.0, 2.0]}))
    path = write_report(tmp_path / "report", "evaluation <run>", tables={"scores": [{"method": "full", "CIDEr": 0.5}]},
                        figures={"distribution": dist_png, "gallery": gallery_png}, notes=["a & b"],
                        numbers={"CIDEr": 0.5})
    html = path.read_text()
    assert "<td>full</td>" in html and html.count("data:image/png;base64") == 2
    assert "evaluation &lt;run&gt;" in html and "a &amp; b" in html
    assert json.loads((tmp_path / "report" / "report.json").read_text())["numbers"] == {"CIDEr": 0.5}
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == ["figure_00.png", "figure_01.png"]
    with pytest.raises(RegionLibError, match="not one of the scores"):
        failure_gallery(*args, by="SPICE")
    with pytest.raises(RegionLibError, match="bool"):
        failure_gallery([photo], [mask.astype(np.uint8)], ["a"], ["b"], {"CIDEr": [0.0]}, by="CIDEr")
    assert "(empty)" in html_report("t", tables={"nothing": []})


def test_tidy_score_table_feeds_figures_and_report(tmp_path):
    from regionlib.evaluation.table import corpus_values, per_sample_values, read_csv, score_rows

    rows = (score_rows("focal", {"CIDEr": 0.5, "BLEU-4": 0.2}, {"CIDEr": {"a": 0.0, "b": 1.0}, "BLEU-4": {"a": 0.2,
                                                                                                     "b": None}})
            + score_rows("crop", {"CIDEr": 0.25}, {"CIDEr": {"a": 0.5, "b": 0.0}}))
    assert rows[0] == {"id": "a", "method": "focal", "metric": "CIDEr", "value": 0.0}
    assert per_sample_values(rows, "BLEU-4")["focal"].tolist() == [0.2]  # None skipped
    assert corpus_values(rows) == {"focal": {"CIDEr": 0.5, "BLEU-4": 0.2}, "crop": {"CIDEr": 0.25}}
    fig = metric_distributions(rows, metric="CIDEr")
    titles = [ax.get_title() for ax in fig.axes if ax.get_ylabel() != "empirical CDF"]
    assert titles[0].startswith("focal\n50.0% exactly zero") and titles[1].startswith("crop\n50.0% exactly zero")
    page = write_report(tmp_path / "r", "scores", scores=rows)
    assert read_csv(tmp_path / "r" / "scores.csv") == rows
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["tables"]["corpus scores"][0] == {"method": "focal", "CIDEr": 0.5, "BLEU-4": 0.2}
    assert report["numbers"]["crop"] == {"CIDEr": 0.25} and "<td>focal</td>" in page.read_text()
