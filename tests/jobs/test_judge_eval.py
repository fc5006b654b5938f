"""Judge evaluation job against local OpenAI-compatible servers that fail some calls or are down."""

import json

import pytest

pytestmark = pytest.mark.slow


def regionworld_predictions(tmp_path, n):
    from regionlib.data.regionworld import generate_regionworld

    preds = {str(i): c for s in generate_regionworld(n, split="test") for i, c in zip(s.regions.ids, s.regions.captions)}
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    return preds


def test_judge_eval_survives_failing_endpoints_and_reruns_for_free(local_ray, tmp_path):
    from ray_jobs import judge_eval

    from regionlib.data.regionworld import VOCABULARY
    from regionlib.evaluation.judges import RuleJudge
    from regionlib.evaluation.judges.serve import Faults, serve_judge

    preds = regionworld_predictions(tmp_path, 3)
    served = RuleJudge(VOCABULARY, cache=tmp_path / "server")
    # each endpoint fails its every 4th request; 8 attempts per prompt, so no prompt can land on a failing
    # request every time however the concurrent requests interleave (4 attempts could, under load)
    with serve_judge(served, faults=Faults(fail_every=4, garbage_every=9)) as a, \
            serve_judge(served, faults=Faults(fail_every=4, garbage_every=9)) as b:
        argv = ["--predictions", str(tmp_path / "preds.json"), "--regionworld", "3", "--judge", "openai",
                "--model", "rule", "--endpoints", f"{a.url},{b.url}", "--concurrency", "2", "--max-retries", "7",
                "--backoff", "0.01", "--chunk-size", "16", "--out", str(tmp_path / "out")]
        first = judge_eval.main(argv)
        requests = a.requests + b.requests
        calls = first["judge_calls"]
        assert first["complete"] and a.requests > 0 and b.requests > 0  # both endpoints used
        assert calls["failures"] > 0 and requests == calls["calls"] + calls["failures"]  # every failure retried
        dlc = first["scores"]["dlc"]
        assert dlc["unparsed_replies"] > 0 and calls["unparsed_prompts"] > 0  # garbage replies counted, as the reference
        assert 0 < dlc["pos"] <= 1 and first["scores"]["amber"]["all"]["n"] > 0 and first["scores"]["clair"]["mean"] > 0
        again = judge_eval.main(argv)
        assert again["judge_calls"]["calls"] == 0 and a.requests + b.requests == requests  # the rerun asks nothing
        assert again["scores"]["dlc"] == dlc
    assert (tmp_path / "out" / "report.html").exists()
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert "api_key" not in json.dumps(saved) and saved["scores"]["dlc"]["regions"] == len(preds)
    assert len(list((tmp_path / "out" / "answers").glob("*.jsonl"))) >= 2  # one cache file per actor, no SQLite


def test_judge_eval_records_failed_prompts_finishes_and_retries_them_next_run(local_ray, tmp_path, free_port):
    """Bug: one prompt that exhausted its retries aborted the whole job. Now every failure is
    recorded and reported (scores.json, report.html, exit status), the rest is finished, and the
    same command asks only the failed prompts again."""
    from ray_jobs import judge_eval

    from regionlib.data.regionworld import VOCABULARY
    from regionlib.evaluation.judges import RuleJudge
    from regionlib.evaluation.judges.serve import Faults, serve_judge

    regionworld_predictions(tmp_path, 1)
    port = free_port()
    argv = ["--predictions", str(tmp_path / "preds.json"), "--regionworld", "1", "--judge", "openai", "--model", "m",
            "--endpoints", f"http://127.0.0.1:{port}/v1", "--max-retries", "0", "--concurrency", "1", "--timeout", "2",
            "--tasks", "dlc", "--out", str(tmp_path / "o")]
    with serve_judge(RuleJudge(VOCABULARY, cache=tmp_path / "s"), port=port, faults=Faults(fail_every=3)):
        partial = judge_eval.main(argv)  # every third request fails, and is not retried
    stats = partial["judge_calls"]
    prompts = stats["calls"] + stats["failed_prompts"]
    assert not partial["complete"] and stats["failed_prompts"] == prompts // 3 > 0
    assert stats["errors"] == [f"judge endpoint http://127.0.0.1:{port}/v1/chat/completions failed after 1 attempts: "
                               "HTTP 500"]
    saved = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert saved["complete"] is False and saved["judge_calls"]["failed_prompts"] == stats["failed_prompts"]
    assert "INCOMPLETE" in (tmp_path / "o" / "report.html").read_text()
    down = judge_eval.main(argv)  # the endpoint is down now: nothing new is answered, nothing is lost
    assert down["judge_calls"]["failed_prompts"] == stats["failed_prompts"] and down["judge_calls"]["calls"] == 0
    with serve_judge(RuleJudge(VOCABULARY, cache=tmp_path / "s2"), port=port) as server:
        rerun = judge_eval.main(argv)
    assert rerun["complete"] and rerun["judge_calls"]["calls"] == stats["failed_prompts"] == server.requests
    assert rerun["judge_calls"]["cached"] == stats["calls"]
