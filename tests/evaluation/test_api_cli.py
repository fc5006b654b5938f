"""The `evaluate` entry point and ``python -m regionlib.evaluation`` over the documented file formats."""

import json

import pytest

from regionlib.errors import ConfigError, DataFormatError, RegionLibError
from regionlib.evaluation import evaluate, load_predictions, load_references
from regionlib.evaluation.__main__ import main
from regionlib.evaluation.judges import RuleJudge


def test_cli_accepts_coco_and_dlc_prediction_formats(tmp_path, dam_descriptions):
    a, b = dam_descriptions
    ids = sorted(set(a) & set(b))[:12]
    (tmp_path / "coco_results.json").write_text(json.dumps([{"image_id": int(i), "caption": a[i]} for i in ids]))
    (tmp_path / "dlc.json").write_text(json.dumps({i: a[i] for i in ids}))
    (tmp_path / "refs.json").write_text(json.dumps({"annotations": [{"image_id": int(i), "caption": b[i]}
                                                                    for i in ids], "images": []}))
    args = ["--references", str(tmp_path / "refs.json"), "--metrics", "CIDEr", "BLEU-4", "ROUGE-L"]
    coco = main(["--predictions", str(tmp_path / "coco_results.json"), *args, "--out", str(tmp_path / "o1")])
    dlc = main(["--predictions", str(tmp_path / "dlc.json"), *args, "--out", str(tmp_path / "o2")])
    assert coco["corpus"] == dlc["corpus"] and coco["corpus"]["CIDEr"] > 0.05
    assert set(coco["per_sample"]["CIDEr"]) == set(ids)
    assert json.loads((tmp_path / "o1" / "scores.json").read_text())["corpus"] == coco["corpus"]
    assert "CIDEr" in (tmp_path / "o1" / "report.html").read_text()


def test_cli_runs_dlc_bench_with_the_rule_judge_and_resumes_from_its_cache(tmp_path):
    from regionlib.data.regionworld import VOCABULARY, generate_sample

    regions = generate_sample(5).regions
    (tmp_path / "preds.json").write_text(json.dumps(dict(zip(regions.ids, regions.captions))))
    (tmp_path / "questions.json").write_text(json.dumps(dict(zip(regions.ids, regions.data["questions"]))))
    (tmp_path / "vocab.json").write_text(json.dumps(VOCABULARY))
    args = ["--predictions", str(tmp_path / "preds.json"), "--metrics", "DLC-Bench", "--dlc-questions",
            str(tmp_path / "questions.json"), "--judge", "rule", "--rule-vocabulary", str(tmp_path / "vocab.json"),
            "--cache", str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "o")]
    first = main(args)
    assert first["corpus"]["DLC-Bench Pos"] == 1.0 and first["corpus"]["DLC-Bench Neg"] == 1.0
    assert first["counts"]["DLC-Bench regions"] == len(regions.ids)
    assert main(args)["corpus"] == first["corpus"]


@pytest.mark.parametrize("argv, message", [
    (["--metrics", "CIDEr", "BLEU-5"], "--metrics.1: must be one of"),
    (["--metrics", "CIDEr", "--backend", "refernce"], "did you mean 'reference'?"),
    (["--metrics", "CLAIR", "--concurrency", "0"], "--concurrency: must be >= 1, got 0"),
    (["--metrics", "CLAIR", "--judge", "rule"], "--judge rule needs --rule-vocabulary"),
    (["--metrics", "DLC-Bench", "--judge", "rule", "--rule-vocabulary", "{p}"], "DLC-Bench needs --dlc-questions"),
    (["--metrics", "DLC-Bench", "--dlc-questions", "{d}"], "--dlc-questions: {d} is a directory, not a file"),
    (["--references", "{d}/refs.json"], "--references: {d}/refs.json does not exist"),
])
def test_cli_refuses_a_wrong_setting_before_reading_anything(tmp_path, monkeypatch, argv, message):
    """Bugs caught: a missing ``--rule-vocabulary`` / ``--dlc-questions`` or a missing references file found
    after the predictions were read (``SystemExit`` with no type), ``--concurrency 0`` reaching the judge."""
    from regionlib.evaluation import __main__ as cli

    read = []
    monkeypatch.setattr(cli, "load_predictions", lambda path: read.append(path))
    (tmp_path / "preds.json").write_text(json.dumps({"1": "a red ball"}))
    fill = {"{p}": str(tmp_path / "preds.json"), "{d}": str(tmp_path)}

    def filled(text):
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    with pytest.raises(ConfigError) as info:
        main(["--predictions", fill["{p}"], "--out", str(tmp_path / "out"), *map(filled, argv)])
    assert filled(message) in str(info.value)
    assert not read and not (tmp_path / "out").exists()


def test_evaluate_text_metrics_and_judged_metrics(tmp_path):
    preds = {"1": "a man rides a horse", "2": "a red ball on grass"}
    refs = {"1": ["a man riding a brown horse"], "2": ["a red ball lies on the grass"]}
    out = evaluate(preds, refs, ["ROUGE-L", "noun-verb", "CLAIR"], judge=RuleJudge({}, cache=tmp_path / "c.sqlite"))
    assert set(out["per_sample"]["ROUGE-L"]) == {"1", "2"}
    assert out["corpus"]["noun_exact"] == pytest.approx((2 / 2 + 2 / 2) / 2)
    assert 0 < out["corpus"]["CLAIR"] < 1 and out["counts"]["CLAIR unparsed replies"] == 0
    with pytest.raises(RegionLibError, match="need a judge"):
        evaluate(preds, refs, ["CLAIR"])
    with pytest.raises(RegionLibError, match="unknown"):
        evaluate(preds, refs, ["BLEU-5"])
    with pytest.raises(DataFormatError, match="ids differ"):
        evaluate({"1": "x"}, refs, ["ROUGE-L"])


def test_file_format_errors_name_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="bad.json: not valid JSON"):
        load_predictions(tmp_path / "bad.json")
    with pytest.raises(DataFormatError, match="missing.json does not exist"):
        load_references(tmp_path / "missing.json")
    (tmp_path / "dup.json").write_text(json.dumps([{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}]))
    with pytest.raises(DataFormatError, match="more than one caption for image_id 1"):
        load_predictions(tmp_path / "dup.json")
    (tmp_path / "norec.json").write_text(json.dumps([{"id": 1, "caption": "a"}]))
    with pytest.raises(DataFormatError, match=r"record\[0\] lacks 'image_id'"):
        load_predictions(tmp_path / "norec.json")
    (tmp_path / "refs.json").write_text(json.dumps({"7": "one reference", "8": ["a", "b"]}))
    assert load_references(tmp_path / "refs.json") == {"7": ["one reference"], "8": ["a", "b"]}


def test_released_dlc_cache_loads_as_questions(reference_data):
    from regionlib.evaluation import load_question_file

    questions = load_question_file(reference_data / "dlc_bench" / "dam_3b_v1_eval.json")
    assert len(questions) == 100 and "avg_pos" not in questions
