import pytest

from regionlib.errors import DataFormatError
from regionlib.evaluation.dlc_bench import (
    evaluate_dlc_bench,
    format_question,
    parse_reply,
    recognition_question,
    replay_cached_replies,
)

from .conftest import load_reference


@pytest.mark.parametrize("name,pos,neg,avg", [
    ("dam_3b_v1_eval.json", 0.5101666666666668, 0.8299999999999998, 0.6700833333333334),
    ("dam_3b_joint_v1_eval.json", 0.568, 0.848, 0.708),
])
def test_replaying_released_replies_gives_published_numbers(name, pos, neg, avg):
    cache = load_reference(name)
    agg, results = replay_cached_replies(cache)
    assert agg["pos"] == pytest.approx(pos, abs=5e-4) and agg["neg"] == pytest.approx(neg, abs=5e-4)
    assert agg["avg"] == pytest.approx(avg, abs=5e-4)
    assert (round(agg["pos"], 3), round(agg["neg"], 3), round(agg["avg"], 3)) == (round(pos, 3), round(neg, 3), round(avg, 3))
    # and every parsed answer equals the released evaluator's parsed index
    for r in results:
        e = cache[r.region_id]
        released = [q["pred_index"] for q in e["details_recognition"] + e["details_positives"] + e["details_negatives"]]
        assert r.answers == released


def test_full_precision_numbers():
    agg, _ = replay_cached_replies(load_reference("dam_3b_v1_eval.json"))
    assert agg["pos"] == pytest.approx(0.5101666666, abs=1e-9)
    assert agg["neg"] == pytest.approx(0.8299999999, abs=1e-9)
    assert agg["avg"] == pytest.approx(0.6700833333, abs=1e-9)


def test_parser_order():
    choices = ["The wing is not mentioned.", "The wing is mentioned and is red.", "Red"]
    assert parse_reply("B", choices) == 1
    assert parse_reply("b. the wing is mentioned and is red.", choices) == 1
    assert parse_reply("I think: The wing is not mentioned. Really.", choices) == 0  # unique contained
    assert parse_reply("C. something else entirely", choices) == 2  # starts with "<letter>."
    # several contained: the one occurring last
    assert parse_reply("red? no - the wing is not mentioned.", ["red", "the wing is not mentioned."]) == 1
    assert parse_reply("wing", choices) == 1  # reply inside choices: the longest
    assert parse_reply("(a)", choices) == 0
    assert parse_reply("###", choices) is None


def test_questions_and_scoring_with_a_judge():
    q = recognition_question("apple")
    assert "an apple or an object of a similar type" in q["question"]
    assert "objects in the description are apples" in recognition_question("apples", plural=True)["question"]
    question = {"details_recognition": [q],
                "details_positives": [{"question": "Which?", "choices": [["not mentioned", 0], ["red", 1], ["blue", -1]]}],
                "details_negatives": [{"question": "Which?", "choices": [["no stem", 1], ["stem", -1]]}]}
    prompt = format_question("A red apple.", question["details_positives"][0])
    assert prompt.endswith("Which?\nA. not mentioned\nB. red\nC. blue\n") and "A red apple." in prompt
    answers = {"Yes": "A. Yes", "No": "B. No"}

    def judge(prompts, recognised="Yes"):
        out = []
        for p in prompts:
            out.append(answers[recognised] if "similar type" in p else ("B" if "B. red" in p else "A"))
        return out

    agg, res = evaluate_dlc_bench({"1": "A red apple."}, {"1": question}, judge)
    assert (agg["pos"], agg["neg"]) == (1.0, 1.0)
    agg, res = evaluate_dlc_bench({"1": "A red apple."}, {"1": question}, lambda p: judge(p, "No"))
    assert (agg["pos"], agg["neg"], agg["not_recognized"]) == (0.0, 0.0, 1)  # clamped to min(0, s)
    with pytest.raises(DataFormatError, match="ids differ"):
        evaluate_dlc_bench({"2": "x"}, {"1": question}, judge)
