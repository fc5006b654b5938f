"""Judge evaluation job against a local OpenAI-compatible server that fails some calls."""

import json

import pytest

pytestmark = pytest.mark.slow


def test_judge_eval_survives_failing_endpoints_and_reruns_for_free(local_ray, tmp_path):
    from ray_jobs import judge_eval

    from regionlib.data.regionworld import VOCABULARY, generate_regionworld
    from regionlib.evaluation.judges import RuleJudge
    from regionlib.evaluation.judges.serve import Faults, serve_judge

    samples = generate_regionworld(3, split="test")
    preds = {str(i): c for s in samples for i, c in zip(s.regions.ids, s.regions.captions)}
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    served = RuleJudge(VOCABULARY, cache=tmp_path / "server.sqlite")
    faults = Faults(fail_every=4, garbage_every=9)
    with serve_judge(served, faults=faults) as a, serve_judge(served, faults=faults) as b:
        argv = ["--predictions", str(tmp_path / "preds.json"), "--regionworld", "3", "--judge", "openai",
                "--model", "rule", "--endpoints", f"{a.url},{b.url}", "--concurrency", "2", "--max-retries", "3",
                "--backoff", "0.01", "--chunk-size", "16", "--out", str(tmp_path / "out")]
        first = judge_eval.main(argv)
        requests = a.requests + b.requests
        calls = first["judge_calls"]
        assert a.requests > 0 and b.requests > 0  # both endpoints used
        assert calls["failures"] > 0 and requests == calls["calls"] + calls["failures"]  # every failure retried
        dlc = first["scores"]["dlc"]
        assert dlc["unparsed_replies"] > 0  # the garbage replies are counted, scored as the reference does
        assert 0 < dlc["pos"] <= 1 and first["scores"]["amber"]["all"]["n"] > 0 and first["scores"]["clair"]["mean"] > 0
        again = judge_eval.main(argv)
        assert again["judge_calls"]["calls"] == 0 and a.requests + b.requests == requests  # the rerun asks nothing
        assert again["scores"]["dlc"] == dlc
    assert (tmp_path / "out" / "report.html").exists()
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert "api_key" not in json.dumps(saved) and saved["scores"]["dlc"]["regions"] == len(preds)


def test_judge_eval_errors_clearly_when_the_endpoint_is_down(local_ray, tmp_path, free_port):
    from ray_jobs import judge_eval
    from ray.exceptions import RayTaskError

    from regionlib.data.regionworld import generate_regionworld
    from regionlib.errors import JudgeError

    samples = generate_regionworld(1, split="test")
    (tmp_path / "p.json").write_text(json.dumps({str(i): c for s in samples for i, c in zip(s.regions.ids, s.regions.captions)}))
    with pytest.raises((JudgeError, RayTaskError), match="failed after 2 attempts"):
        judge_eval.main(["--predictions", str(tmp_path / "p.json"), "--regionworld", "1", "--judge", "openai",
                         "--model", "m", "--endpoints", f"http://127.0.0.1:{free_port()}/v1", "--max-retries", "1",
                         "--backoff", "0", "--timeout", "2", "--tasks", "dlc", "--out", str(tmp_path / "o")])
