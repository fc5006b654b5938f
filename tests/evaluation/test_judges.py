"""Judge backends against a real OpenAI-compatible server on 127.0.0.1, with injected faults."""

import json

import pytest

from regionlib.errors import JudgeError
from regionlib.evaluation.amber import amber_scores, parse_yes_no, yes_no_prompt
from regionlib.evaluation.clair import clair_prompt, parse_clair
from regionlib.evaluation.dlc_bench import evaluate_dlc_bench, recognition_question
from regionlib.evaluation.judges import AnswerCache, OpenAIJudge, RuleJudge, TransformersJudge
from regionlib.evaluation.serve import Faults, serve_judge

VOCAB = {"color": ["red", "green", "blue"], "pattern": ["striped", "dotted", "solid"]}


def attribute_question(obj, attr, value):
    return {"question": "Which of the following is applicable to the description?", "type": "positive", "choices": [
        [f"The {obj} or its {attr} is not mentioned.", 0],
        [f"The {attr} of the {obj} is mentioned in the description but is not {value}.", -1],
        [f"The {attr} of the {obj} is mentioned in the description and is {value}.", 1]]}


QUESTIONS = {
    str(i): {"details_recognition": [recognition_question("circle")],
             "details_positives": [attribute_question("circle", "color", "red"), attribute_question("circle", "pattern", "striped")],
             "details_negatives": []}
    for i in range(6)
}
DESCRIPTIONS = {"0": "A red striped circle.", "1": "A blue circle.", "2": "A red square.", "3": "A dotted circle.",
                "4": "A circle.", "5": "A red circle with a striped pattern."}


def test_rule_judge_dlc_amber_clair(tmp_path):
    judge = RuleJudge(VOCAB, cache=tmp_path / "c.sqlite")
    agg, res = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, judge.ask)
    by_id = {r.region_id: r.pos_scores for r in res}
    assert by_id["0"] == [1, 1] and by_id["1"] == [-1, 0] and by_id["3"] == [0, -1] and by_id["4"] == [0, 0]
    assert by_id["2"] == [0, 0]  # "square" is not a circle: recognition No clamps the +1 to 0
    assert agg["pos"] == pytest.approx((2 - 1 + 0 - 1 + 0 + 2) / 12)
    calls = judge.calls
    assert judge.ask([yes_no_prompt(["a red circle", "a blue square"], "square")]) == ["Yes"]
    assert judge.ask([yes_no_prompt(["a red circle"], "dogs")]) == ["No"]
    assert parse_clair(judge.ask([clair_prompt(["a red circle"], ["a red circle"])])[0]) == 1.0
    judge.ask(evaluate_prompts := [yes_no_prompt(["a red circle"], "circle")])
    again = RuleJudge(VOCAB, cache=tmp_path / "c.sqlite")
    evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, again.ask)
    again.ask(evaluate_prompts)
    assert again.calls == 0 and calls > 0  # everything came from the persistent cache


def test_openai_client_retries_and_resumes(tmp_path):
    rule = RuleJudge(VOCAB)
    with serve_judge(rule, faults=Faults(fail_every=3)) as server:
        client = OpenAIJudge(base_url=server.url, model="rule", cache=AnswerCache(tmp_path / "a.sqlite"),
                             backoff=0.01, max_retries=3, concurrency=4)
        agg, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client.ask)
        n_prompts = 18
        assert client.calls == n_prompts and client.failures >= 1  # some requests got HTTP 500 and were retried
        assert server.requests == n_prompts + client.failures
        direct, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, rule.ask)
        assert agg == direct
        rerun = OpenAIJudge(base_url=server.url, model="rule", cache=AnswerCache(tmp_path / "a.sqlite"))
        before = server.requests
        evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, rerun.ask)
        assert rerun.calls == 0 and server.requests == before  # the rerun makes zero calls
    assert "key" not in repr(OpenAIJudge(base_url="http://127.0.0.1:9", model="m", api_key="sk-secret")).split("key=")[0]
    assert "sk-secret" not in repr(OpenAIJudge(base_url="http://127.0.0.1:9", model="m", api_key="sk-secret"))


def test_openai_client_gives_up_after_bounded_retries_and_timeouts():
    with serve_judge(RuleJudge(VOCAB), faults=Faults(fail_every=1)) as server:
        client = OpenAIJudge(base_url=server.url, model="rule", backoff=0.01, max_retries=2)
        with pytest.raises(JudgeError, match="after 3 attempts: HTTP 500"):
            client.ask(["hello"])
        assert server.requests == 3
    with serve_judge(RuleJudge(VOCAB), faults=Faults(delay=1.0)) as server:
        client = OpenAIJudge(base_url=server.url, model="rule", backoff=0.01, max_retries=1, timeout=0.2)
        with pytest.raises(JudgeError, match="after 2 attempts"):
            client.ask(["hello"])
    client = OpenAIJudge(base_url="http://127.0.0.1:9", model="rule", backoff=0.01, max_retries=1, timeout=1)
    with pytest.raises(JudgeError, match="failed after 2 attempts"):
        client.ask(["endpoint down"])


def test_malformed_replies_are_counted_and_scored_zero():
    with serve_judge(RuleJudge(VOCAB), faults=Faults(malformed_every=2)) as server:
        client = OpenAIJudge(base_url=server.url, model="rule", concurrency=1)
        agg, res = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client.ask)
    assert agg["unparsed_replies"] == 9  # every second of the 18 replies is "###"
    assert all(s in (-1, 0, 0.5, 1) for r in res for s in r.pos_scores)


@pytest.fixture(scope="module")
def tiny_lm():
    """A real (random-init) GPT-2 with a tokenizer trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [json.dumps(q) for q in QUESTIONS.values()] + list(DESCRIPTIONS.values()) + ["Yes No A B C"]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", pad_token="[EOS]")
    import torch

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_embd=32, n_layer=1, n_head=2, n_positions=512))
    return model, fast


def test_transformers_judge_served_over_http(tiny_lm, tmp_path):
    model, tok = tiny_lm
    local = TransformersJudge(model, tok, name="tiny-gpt2", max_new_tokens=4)
    with serve_judge(local) as server:
        client = OpenAIJudge(base_url=server.url, model="tiny-gpt2", cache=AnswerCache(tmp_path / "t.sqlite"))
        truths = ["yes", "no"]
        prompts = [yes_no_prompt(["A red circle"], "circle"), yes_no_prompt(["A red circle"], "square")]
        replies = client.ask(prompts)
    assert replies == local.ask(prompts)  # the same greedy model behind HTTP
    scores = amber_scores(truths, replies)["all"]
    assert scores["n"] == 2 and scores["invalid"] == sum(parse_yes_no(r) is None for r in replies)


def test_amber_hand_computed():
    truths = ["no", "no", "yes", "yes", "no"]
    replies = ["No", "Yes", "No", "Yes", "maybe"]
    s = amber_scores(truths, replies, types=["existence", "existence", "existence", "attribute", "attribute"])
    tp, fp, fn = 1, 1, 2  # "No" is the positive class; the invalid reply misses a "no"
    p, r = tp / (0.001 + tp + fp), tp / (0.001 + tp + fn)
    assert s["all"]["precision"] == pytest.approx(p) and s["all"]["recall"] == pytest.approx(r)
    assert s["all"]["f1"] == pytest.approx(2 * p * r / (p + r + 1e-4))
    assert s["all"]["invalid"] == 1 and s["attribute"]["n"] == 2 and s["existence"]["accuracy"] == pytest.approx(1 / 3)
    assert yes_no_prompt(["a cat", "a dog."], "dogs").startswith("If an image contains a cat, a dog. Are the dogs in")


def test_clair_parsing():
    assert parse_clair('Sure! {"score": 85, "reason": "close"} done') == 0.85
    assert parse_clair("I would say 0.7") == pytest.approx(0.7)
    assert parse_clair("score: 42/100") == pytest.approx(0.42)
    assert parse_clair("no idea") is None
