"""DLC-Bench: replaying the released judge replies gives the published numbers exactly; prompts,
parsing order, clamping and aggregation follow the released evaluator."""

import re

import pytest

from regionlib.errors import DataFormatError, JudgeError
from regionlib.evaluation.dlc_bench import (
    evaluate_dlc_bench,
    format_question,
    parse_reply,
    recognition_question,
    region_questions,
    replay_released_cache,
    score_region,
)
from regionlib.evaluation.judges import Judge

PUBLISHED = {  # REFERENCE §3: Pos, Neg, Avg at full precision (the released cache's avg_pos / avg_neg)
    "dam_3b_v1_eval.json": (0.5101666666666668, 0.8299999999999998, 0.6700833333333334),
    "dam_3b_joint_v1_eval.json": (0.5676666666666668, 0.848, 0.7078333333333333),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_replaying_released_replies_gives_published_numbers_exactly(name, load_reference):
    cache = load_reference(name)
    scores, results = replay_released_cache(cache)
    assert (scores.pos, scores.neg, scores.avg) == PUBLISHED[name]
    assert (scores.pos, scores.neg, scores.mean_region_score) == (cache["avg_pos"], cache["avg_neg"], cache["avg"])
    assert (round(scores.pos, 3), round(scores.neg, 3)) in {(0.510, 0.830), (0.568, 0.848)}
    assert scores.regions == 100 and scores.unparsed_replies == 0 and scores.not_recognized == 8
    for r in results:  # every parsed answer and clamped score equals the released evaluator's
        questions = region_questions(cache[r.region_id])
        assert r.answers == [q["pred_index"] for q in questions]
        assert r.pos_scores + r.neg_scores == [q["eval_result"] for q in questions[1:]]
        assert r.recognized == cache[r.region_id]["recognition_result"]


def test_prompts_are_byte_identical_to_the_released_ones(load_reference):
    cache = load_reference("dam_3b_v1_eval.json")
    for rid, entry in cache.items():
        if isinstance(entry, dict):
            assert [format_question(entry["pred"], q) for q in region_questions(entry)] == entry["prompt"], rid


def test_recognition_question_wording_matches_the_released_questions(load_reference):
    cache = load_reference("dam_3b_joint_v1_eval.json")
    for entry in (e for e in cache.values() if isinstance(e, dict)):
        text = entry["details_recognition"][0]["question"]
        m = re.search(r"is an? (.+?) or an object", text) or re.search(r"are (.+?) or objects", text)
        plural = text.startswith("Is it likely that the objects")
        assert recognition_question(m.group(1), plural=plural)["question"] == text
    assert "objects in the description are sneakers" in recognition_question("sneakers")["question"]
    assert "is a bus or" in recognition_question("bus")["question"]
    assert "is an apple or" in recognition_question("apple")["question"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_number_decisions_equal_the_released_caches_without_override(name, load_reference):
    """Every class of the released caches: `recognition_question(class)` with the default decision is the
    cached question, "wine glass" (plural there, though inflect 7.6 calls it singular) included."""
    cache = load_reference(name)
    for entry in (e for e in cache.values() if isinstance(e, dict)):
        text = entry["details_recognition"][0]["question"]
        m = re.search(r"is an? (.+?) or an object", text) or re.search(r"are (.+?) or objects", text)
        assert recognition_question(m.group(1))["question"] == text, m.group(1)
    assert "objects in the description are wine glass or" in recognition_question("wine glass")["question"]


@pytest.mark.parametrize("name,article", [("utensil", "a"), ("hour glass", "an"), ("umbrella", "an"),
                                          ("one-way sign", "a"), ("honest broker", "an"), ("European car", "a")])
def test_recognition_article_is_inflects(name, article):
    # inflect's a() (the released evaluator's p.a): the vowel-letter rule gives "an utensil", "a hour glass"
    assert f" is {article} {name} or an object" in recognition_question(name, plural=False)["question"]


@pytest.mark.parametrize("reply", ["E", "e", " E ", "E.", "e. none", "E\nbecause"])
def test_a_lone_letter_beyond_the_choices_is_unparsed(reply):
    # the released evaluator indexes choices[4] of four choices (IndexError); unparsed here, scored 0
    choices = ["cat", "dog", "fox", "pig"]
    assert parse_reply(reply, choices) is None
    assert parse_reply(reply.replace("E", "D").replace("e", "d"), choices) == 3  # within the choices: an answer
    # choices whose text contains the letter: still a letter, not a substring of "the wing is red"
    assert parse_reply(reply, ["the wing is red", "the wing is blue", "not mentioned"]) is None


CHOICES = ["The wing is not mentioned.", "The color of the wing is mentioned and is red.", "Red"]


@pytest.mark.parametrize("reply,expected", [
    ("B", 1),                                                   # bare letter
    ("b. the color of the wing is mentioned and is red.", 1),   # "x. choice"
    ("  The wing is not mentioned.  ", 0),                      # exact text
    ("I think: the wing is not mentioned. ok", 0),                # the only contained choice
    ("C. something else", 2),                                   # starts with "<letter>."
    ("red, or rather the color of the wing is mentioned and is red.", 1),  # several: first occurrence starts last
    ("wing", 1),                                                # reply inside choices: the longest
    ("a\nbecause", 0),                                          # a letter followed by a newline
    ("(a)", None),                                              # the released parser matches nothing here
    ("###", None),
    ("", None),                                                 # the released parser crashes; unparsed here
    ("e. nothing", None),                                       # a letter beyond the choices
])
def test_parser_follows_the_released_order(reply, expected):
    assert parse_reply(reply, CHOICES) == expected


def test_tie_between_contained_choices_at_the_same_place_takes_the_longest():
    assert parse_reply("x the cat sat", ["the cat", "the cat sat", "dog"]) == 1


QUESTION = {
    "details_recognition": [recognition_question("apple")],
    "details_positives": [{"question": "Which?", "choices": [["The color is not mentioned.", 0],
                                                            ["The color is mentioned and is red.", 1],
                                                            ["The color is mentioned but is not red.", -1]],
                           "type": "positive"}],
    "details_negatives": [{"question": "Which?", "choices": [["The stem is not mentioned.", 1],
                                                            ["The stem is mentioned.", -1]], "type": "negative"}],
}


class ScriptedJudge(Judge):
    """A real `Judge` whose backend answers from a function of the prompt."""

    backend = "scripted"

    def __init__(self, script, cache):
        super().__init__(model="scripted", cache=cache)
        self.script = script

    def _complete(self, prompt):
        return self.script(prompt)


def test_scoring_clamping_and_unparsed_replies(tmp_path):
    def answer(recognised):
        return lambda p: (recognised if "similar type" in p else "B" if "is red" in p else "The stem is mentioned.")

    scores, [r] = evaluate_dlc_bench({"1": "A red apple with a stem."}, {"1": QUESTION},
                                     ScriptedJudge(answer("A. Yes"), tmp_path / "a.sqlite"))
    assert (scores.pos, scores.neg, scores.avg, r.recognized) == (1.0, -1.0, 0.0, True)
    scores, [r] = evaluate_dlc_bench({"1": "A red apple with a stem."}, {"1": QUESTION},
                                     ScriptedJudge(answer("B. No"), tmp_path / "b.sqlite"))
    assert (scores.pos, scores.neg, scores.not_recognized) == (0.0, -1.0, 1)  # min(0, s) clamps the +1 only
    scores, [r] = evaluate_dlc_bench({"1": "A red apple."}, {"1": QUESTION},
                                     ScriptedJudge(lambda p: "I refuse", tmp_path / "c.sqlite"))
    assert scores.unparsed_replies == 3 and not r.recognized and (scores.pos, scores.neg) == (0.0, 0.0)


def test_qa_json_layout_with_class_names_and_interleaved_order(tmp_path):
    qa = [QUESTION["details_negatives"][0], QUESTION["details_positives"][0]]  # negative first, as annotated
    seen = []

    def answer(prompt):
        seen.append(prompt)
        return "A"

    scores, [r] = evaluate_dlc_bench({"7": "An apple."}, {"7": qa}, ScriptedJudge(answer, tmp_path / "q.sqlite"),
                                     class_names={"7": "apple"})
    assert "an apple or an object" in seen[0] and "The stem is not mentioned." in seen[1]
    assert (r.pos_scores, r.neg_scores) == ([0], [1])
    with pytest.raises(DataFormatError, match="recognition question"):
        evaluate_dlc_bench({"7": "An apple."}, {"7": qa}, ScriptedJudge(answer, tmp_path / "r.sqlite"))


def test_bad_inputs_raise_clear_errors(tmp_path):
    judge = ScriptedJudge(lambda p: "A", tmp_path / "e.sqlite")
    with pytest.raises(DataFormatError, match="ids differ"):
        evaluate_dlc_bench({"2": "x"}, {"1": QUESTION}, judge)
    with pytest.raises(DataFormatError, match="must be a str"):
        evaluate_dlc_bench({"1": None}, {"1": QUESTION}, judge)
    # an empty description (a model that generated nothing) is asked like any other, as the released
    # evaluator does: it is scored, not refused (the main job used to substitute "nothing")
    scores, _ = evaluate_dlc_bench({"1": ""}, {"1": QUESTION}, judge)
    assert scores.regions == 1
    with pytest.raises(DataFormatError, match="2 judge replies"):
        score_region("1", region_questions(QUESTION), ["A", "B"])
    bad = {**QUESTION, "details_positives": [{"question": "Which?", "choices": [["only one", 1]], "type": "positive"}]}
    with pytest.raises(DataFormatError, match="2-5 choices"):
        region_questions(bad)

    class Short(ScriptedJudge):
        def ask(self, prompts):
            return ["A"]

    with pytest.raises(JudgeError, match="1 replies for 3 prompts"):
        evaluate_dlc_bench({"1": "x"}, {"1": QUESTION}, Short(lambda p: "A", tmp_path / "s.sqlite"))
