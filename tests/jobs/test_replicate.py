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
    from regionlib import replication as replicate

    results = replicate.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "report.html").stat().st_size > 10_000  # tables + two embedded figures
    assert json.loads((tmp_path / "results.json").read_text()) == results
    tables = results["tables"]
    assert set(tables) == {"Prompting ablation (seed 003 Tab. 8 shape)", "Self-labeling (seed 003 Tab. 9 shape)",
                           "SCA-style prompt types (seed 000 Tab. 7 shape)", "The papers' orderings"}
    assert len(tables["Prompting ablation (seed 003 Tab. 8 shape)"]) == 6
    assert len(tables["Self-labeling (seed 003 Tab. 9 shape)"]) == 2
    assert len(tables["SCA-style prompt types (seed 000 Tab. 7 shape)"]) == 4
    assert len(tables["The papers' orderings"]) == len(replicate.CLAIMS)
    for name, rows in tables.items():
        for row in rows:
            assert all(v not in ("", None, "nan") for v in row.values()), (name, row)
    scores = results["scores"]
    assert {"full", "local-crop", "focal-crop", "full+local-concat", "dam", "sca", "sca:cpb", "sca:rpb", "sca:rpm",
            "labeled-only", "self-labeled"} <= set(scores)
    finite = [v for v in _numbers(scores) if not math.isnan(v)]
    assert finite and all(math.isfinite(v) for v in finite)
    assert all(-1 <= scores[k]["0"]["Avg"] <= 1 for k in scores)
    assert all(c["verdict"] in ("reproduced", "not reproduced", "mixed") or c["verdict"].startswith("not measurable")
               for c in results["claims"])


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
    assert right["acc: color"] == 1.0 and right["per_sample"]["ids"] == ids
    with pytest.raises(DataFormatError, match="no prediction for 1 test regions"):
        replication.score_predictions(dict(zip(ids[1:], caps[1:])), test, judge)
