"""The main job, --quick, end to end on the package's local Ray: report and JSON exist, every table filled."""

import json
import math

import pytest

pytestmark = pytest.mark.slow


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def test_quick_main_job(local_ray, tmp_path):
    """The whole pipeline at a tiny budget: every table filled, verdicts from the statistics, the report
    opening with them, README regenerated. Bugs caught: a dropped table or row, a claim decided
    without its CI, training stats (gates, mask embedding) not traced, self-labels not scored."""
    from regionlib import replication as replicate

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{replicate.README_START}\nstale\n{replicate.README_END}\n\n## after\n")
    out = tmp_path / "run"
    results = replicate.main(["--quick", "--out", str(out), "--readme", str(readme)])
    html = (out / "report.html").read_text()
    assert (out / "report.html").stat().st_size > 10_000  # tables + embedded figures
    assert html.index("claims reproduced") < html.index("<h2>Verdicts</h2>") < html.index("<h2>Prompting ablation")
    assert json.loads((out / "results.json").read_text()) == results
    tables = results["tables"]
    assert list(tables) == ["Verdicts", "Prompting ablation (seed 003 Tab. 8 shape), with reference lines",
                            "SCA-style prompt types (seed 000 Tab. 7 shape)", "Self-labeling (seed 003 Tab. 9 shape)",
                            "Self-label precision against RegionWorld's ground truth",
                            "What training did to DAM's new parts"]
    assert len(tables["Prompting ablation (seed 003 Tab. 8 shape), with reference lines"]) == 6 + 5 + 2 + 2
    assert len(tables["Self-labeling (seed 003 Tab. 9 shape)"]) == 4
    assert len(tables["SCA-style prompt types (seed 000 Tab. 7 shape)"]) == 4
    assert len(tables["Verdicts"]) == len(replicate.CLAIMS)
    for name in ("Self-labeling (seed 003 Tab. 9 shape)", "SCA-style prompt types (seed 000 Tab. 7 shape)"):
        for row in tables[name]:
            assert all(v not in ("", None, "nan") for v in row.values()), (name, row)
    scores = results["scores"]
    assert {"full", "local-crop", "focal-crop", "full+local-concat", "dam", "sca", "sca:cpb", "sca:rpb", "sca:rpm",
            "labeled-only", "self-labeled", "gt-labels", "shuffled-labels"} <= set(scores)
    finite = [v for v in _numbers(scores) if not math.isnan(v)]
    assert finite and all(math.isfinite(v) for v in finite)
    for claim in results["claims"]:
        assert claim["ci_low"] <= claim["mean_diff"] <= claim["ci_high"]
        assert claim["verdict"] in ("reproduced", "contradicted", "not reproduced (within noise)") or \
            claim["verdict"].startswith("not measurable"), claim
    trace = results["traces"]["dam"]["0"]
    assert trace["step"] and len(trace["mask_embed_norm"]) == len(trace["step"])
    assert any(k.startswith("gate_attn_") for k in trace)
    assert all(q["records"] > 0 for q in tables["Self-label precision against RegionWorld's ground truth"])
    text = readme.read_text()
    assert "stale" not in text and "#### Verdicts" in text and text.endswith("## after\n")


def test_ideal_learners_and_reference_rows_score_as_defined(tmp_path):
    """The ideal learner of DAM names every attribute; the local crop's cannot know position (it scores the
    majority rate); a mix-up in the reference rows would break both."""
    import numpy as np

    from regionlib import replication
    from regionlib.data.regionworld import VOCABULARY, generate_regionworld
    from regionlib.evaluation.judges import RuleJudge
    from regionlib.evaluation.verdicts import majority_rates

    test = generate_regionworld(6, seed=0, split="test", image_size=512)
    rows = replication.ideal_captions(test, replication.Settings())
    judge = RuleJudge(VOCABULARY, cache=tmp_path / "answers")
    dam = replication.score_predictions(rows["ideal: dam"], test, judge)
    local = replication.score_predictions(rows["ideal: local-crop"], test, judge)
    assert dam["acc: color"] == dam["acc: position"] == dam["acc: relation"] == 1.0
    assert local["acc: color"] == 1.0 and local["acc: relation"] == 0.0
    assert np.isclose(local["acc: position"], majority_rates(test)["acc: position"])
    assert dam["Avg"] > local["Avg"]


def test_output_directory_not_written_by_the_job_is_refused_not_deleted(tmp_path):
    """Bug caught: ``--out DIR`` deleted DIR/data, DIR/runs, DIR/self_labels whatever they held."""
    from regionlib import replication as replicate
    from regionlib.errors import ConfigError

    precious = tmp_path / "data" / "thesis.txt"
    precious.parent.mkdir()
    precious.write_text("years of work")
    with pytest.raises(ConfigError, match="not written by this job"):
        replicate.prepare_output(tmp_path)
    assert precious.read_text() == "years of work"
    fresh = replicate.prepare_output(tmp_path / "new")  # a new directory: marked, then cleaned on every rerun
    (fresh / "runs").mkdir()
    (fresh / "runs" / "old.json").write_text("{}")
    replicate.prepare_output(fresh)
    assert not (fresh / "runs").exists() and (fresh / replicate.OUTPUT_MARKER).is_file()


def test_scoring_tells_the_right_regions_from_a_mix_up(tmp_path):
    """Bug caught: the main job's scoring pairing captions with the wrong regions (or dropping some): the
    references as predictions must beat the same captions shifted by one region on every measure, and
    a dropped region is an error, not a silently smaller test set."""
    import numpy as np

    from regionlib import replication
    from regionlib.data.regionworld import VOCABULARY, generate_regionworld
    from regionlib.errors import DataFormatError
    from regionlib.evaluation.judges import RuleJudge

    test = generate_regionworld(3, seed=0, split="test")
    ids = [str(i) for s in test for i in s.regions.ids]
    caps = [c for s in test for c in s.regions.captions]
    judge = RuleJudge(VOCABULARY, cache=tmp_path / "answers")
    right = replication.score_predictions(dict(zip(ids, caps)), test, judge)
    shifted = replication.score_predictions(dict(zip(ids, np.roll(caps, 1).tolist())), test, judge)
    for key in ("Avg", "CIDEr", "acc: color", "acc: shape"):
        assert right[key] > shifted[key], key
    assert right["acc: color"] == 1.0 and right["ids"] == ids
    assert right["per_region"]["acc: color"].tolist() == [1.0] * len(ids)
    with pytest.raises(DataFormatError, match="no prediction for 1 test regions"):
        replication.score_predictions(dict(zip(ids[1:], caps[1:])), test, judge)
