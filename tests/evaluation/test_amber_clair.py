"""Seed 001's yes/no prompts with AMBER's metrics, and CLAIR, against hand-computed values."""

import pytest

from regionlib.errors import DataFormatError
from regionlib.evaluation.amber import amber_scores, cover, yes_no_prompt
from regionlib.evaluation.clair import clair_prompt, clair_scores, parse_clair
from regionlib.evaluation.judges import RuleJudge


def test_yes_no_prompt_follows_seed_001():
    prompt = yes_no_prompt(["a cat on a mat.", "a brown dog"], "dogs")
    assert prompt == ("If an image contains a cat on a mat, a brown dog. Are the dogs in this image? "
                      "Answer the Yes-No question with only the single word with nothing else.")
    assert " Is the grass in this image?" in yes_no_prompt(["a lawn"], "grass")
    assert " Does the dog run in this image?" in yes_no_prompt(["a lawn"], "dog run", verb="Does")
    with pytest.raises(DataFormatError):
        yes_no_prompt(["", " "], "dog")
    with pytest.raises(DataFormatError):
        yes_no_prompt(["a dog"], "dog", verb="Was")


def test_amber_scores_hand_computed():
    truths = ["no", "no", "yes", "yes", "no", "no"]
    replies = ["No", "Yes", "No", "Yes", "no", "No"]  # "no" is not exactly "No": wrong for both classes
    types = ["existence", "existence", "existence", "attribute", "attribute", "attribute"]
    s = amber_scores(truths, replies, types)
    hit, reply_no, truth_no = 2, 3, 4
    p, r = hit / (0.001 + reply_no), hit / (0.001 + truth_no)
    assert s["all"]["precision"] == pytest.approx(p, abs=1e-12) and s["all"]["recall"] == pytest.approx(r, abs=1e-12)
    assert s["all"]["f1"] == pytest.approx(2 * p * r / (p + r + 1e-4), abs=1e-12)
    assert s["all"]["accuracy"] == pytest.approx(3 / 6.001) and s["all"]["invalid"] == 1
    assert s["existence"]["n"] == 3 and s["existence"]["accuracy"] == pytest.approx(1 / 3.001)
    assert s["attribute"]["recall"] == pytest.approx(1 / 2.001)
    empty = amber_scores(["yes"], ["Yes"])["all"]
    assert (empty["precision"], empty["recall"], empty["f1"]) == (0.0, 0.0, 0.0)  # 0.001 starts: no division by 0
    with pytest.raises(DataFormatError, match="'yes' or 'no'"):
        amber_scores(["maybe"], ["Yes"])


def test_cover_counts_lemmatised_nouns_and_associations():
    captions = [["Two dogs are sleeping on a sofa.", "A picture hangs on the wall."], ["A car."]]
    objects = [["dog", "sofa", "lamp", "couch"], ["car", "road"]]
    assert cover(captions, objects) == pytest.approx(3 / 6.001, abs=1e-12)  # dog (from "dogs"), sofa, car
    assert cover(captions, objects, safe_words=["sofa"]) == pytest.approx(2 / 6.001, abs=1e-12)
    assert cover([["A lamp."]], [[]]) == 0.0  # AMBER's counter starts at 0.001: no division by zero


def test_cover_credits_the_first_association_only_as_amber():
    """AMBER's inference.py searches [association words of each truth object..., truth objects...] and
    credits the object of the first equal entry, once: "sofa", associated with "couch", credits "couch"
    only, though "sofa" is a ground-truth object too."""
    objects = [["couch", "sofa"]]
    assert cover([["A sofa."]], objects, associations={"couch": ["sofa"]}) == pytest.approx(1 / 2.001, abs=1e-12)
    assert cover([["A sofa and a couch."]], objects, associations={"couch": ["sofa"]}) == pytest.approx(
        1 / 2.001, abs=1e-12)  # "couch" itself also maps to couch: sofa stays uncovered
    # associations of two objects: the earlier object wins
    assert cover([["A seat."]], [["chair", "bench"]], associations={"chair": ["seat"], "bench": ["seat"]}) == \
        pytest.approx(1 / 2.001, abs=1e-12)


def test_attribute_split_pools_three_sub_counters_as_amber():
    types = ["discriminative-attribute-state", "discriminative-attribute-number", "discriminative-attribute-state",
             "discriminative-hallucination"]
    s = amber_scores(["no", "no", "yes", "no"], ["No", "Yes", "Yes", "No"], types)
    a = s["discriminative-attribute"]
    # AMBER: (as + an + aa scores) / (as + an + aa counters), each counter starting at 0.001
    assert a["accuracy"] == pytest.approx(2 / (3 + 0.003), abs=1e-12)
    assert a["precision"] == pytest.approx(1 / (1 + 0.003), abs=1e-12)
    assert a["recall"] == pytest.approx(1 / (2 + 0.003), abs=1e-12)
    assert a["n"] == 3 and s["discriminative-attribute-state"]["accuracy"] == pytest.approx(2 / 2.001)
    assert s["discriminative-hallucination"]["recall"] == pytest.approx(1 / 1.001)
    assert "discriminative-attribute" not in amber_scores(["no"], ["No"], ["existence"])


def test_clair_prompt_and_parser_follow_the_official_code():
    prompt = clair_prompt(["a red ball"], ["a ball", "a red toy"])
    assert "Candidate set:\n- a red ball\n\nReference set:\n- a ball\n- a red toy\n\nOn a precise scale" in prompt
    assert parse_clair('Sure! {"score": 85, "reason": "close"} done') == (0.85, "close")
    assert parse_clair("I would say 0.7") == (pytest.approx(0.7), "Unknown")  # below 1: already normalised
    assert parse_clair("score: 42/100. Reason: similar objects") == (0.42, "similar objects")
    assert parse_clair('{"score": "high"} but 30') == (0.3, "Unknown")  # bad JSON value: first number
    assert parse_clair("no idea") == (None, None)


def test_clair_scores_with_a_judge(tmp_path):
    judge = RuleJudge({}, cache=tmp_path / "c.sqlite")
    result = clair_scores([["a red ball"], ["a cat"]], [["a red ball"], ["a blue car"]], judge)
    assert result.scores[0] == 1.0 and result.scores[1] == pytest.approx(round(100 * 2 / 5) / 100)  # "a" shared
    assert result.unparsed == 0 and result.mean == pytest.approx((1.0 + 0.4) / 2)
