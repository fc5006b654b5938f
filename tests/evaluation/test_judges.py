"""Judge backends: the persistent cache, the rule judge, and the HTTP client against a real local
OpenAI-compatible server (127.0.0.1) with injected HTTP 500s, delays, broken bodies and garbage replies."""

import json
import logging
import socket
import sqlite3

import pytest

from regionlib.errors import JudgeError
from regionlib.evaluation.amber import amber_scores, yes_no_prompt
from regionlib.evaluation.clair import clair_prompt, parse_clair
from regionlib.evaluation.dlc_bench import evaluate_dlc_bench, recognition_question
from regionlib.evaluation.judges import AnswerCache, OpenAICompatibleJudge, RuleJudge, TransformersJudge
from regionlib.evaluation.judges.serve import Faults, serve_judge

VOCAB = {"color": ["red", "green", "blue"], "pattern": ["striped", "dotted", "solid"]}


def attribute_question(obj, attr, value, kind="positive"):
    return {"question": "Which of the following is applicable to the description?", "type": kind, "choices": [
        [f"The {obj} is not mentioned in the description.", 0],
        [f"The {attr} of the {obj} is not mentioned, but the {obj} is mentioned.", 0.5],
        [f"The {attr} of the {obj} is mentioned in the description but is not {value}.", -1],
        [f"The {attr} of the {obj} is mentioned in the description and is {value}.", 1]]}


QUESTIONS = {
    str(i): {"details_recognition": [recognition_question("circle")],
             "details_positives": [attribute_question("circle", "color", "red"),
                                   attribute_question("circle", "pattern", "striped")],
             "details_negatives": [attribute_question("circle", "color", "green", "negative")]}
    for i in range(6)
}
DESCRIPTIONS = {"0": "A red striped circle.", "1": "A blue circle.", "2": "A red square.", "3": "A dotted circle.",
                "4": "A circle, next to a red square.", "5": "A red circle with a striped pattern."}
N_PROMPTS = 24


def test_rule_judge_reads_the_description_like_a_careful_reader(tmp_path):
    judge = RuleJudge(VOCAB, cache=tmp_path / "c.sqlite")
    scores, results = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, judge)
    pos = {r.region_id: r.pos_scores for r in results}
    assert pos == {"0": [1, 1], "1": [-1, 0.5], "2": [0, 0], "3": [0.5, -1], "4": [0.5, 0.5], "5": [1, 1]}
    # "2": a red square is not a circle -> recognition "No" clamps the +1 colour score to 0;
    # "4": only the first clause is read (the red square is a neighbour)
    neg = {r.region_id: r.neg_scores for r in results}
    assert neg["0"] == [-1] and neg["1"] == [-1] and neg["4"] == [0.5]
    assert judge.calls == scores.regions * 4
    assert judge.ask([yes_no_prompt(["a red circle", "a blue square"], "square")]) == ["Yes"]
    assert judge.ask([yes_no_prompt(["a red circle"], "dogs")]) == ["No"]
    assert parse_clair(judge.ask([clair_prompt(["a red circle"], ["a red circle"])])[0]) == (1.0, "word overlap of "
                                                                                           "the two caption sets")
    assert judge.ask(["What is the meaning of life?"]) == ["I cannot answer this question."]


def test_rule_judge_on_regionworld_ground_truth_scores_perfectly(tmp_path):
    from regionlib.data.regionworld import VOCABULARY, generate_sample

    regions = generate_sample(3).regions
    questions = {str(i): q for i, q in zip(regions.ids, regions.data["questions"])}
    judge = RuleJudge(VOCABULARY, cache=tmp_path / "rw.sqlite")
    truth, _ = evaluate_dlc_bench({str(i): c for i, c in zip(regions.ids, regions.captions)}, questions, judge)
    assert (truth.pos, truth.neg, truth.unparsed_replies) == (1.0, 1.0, 0)
    bare, _ = evaluate_dlc_bench({str(i): f"A {s}." for i, s in zip(regions.ids, regions.labels)}, questions, judge)
    assert (bare.pos, bare.neg) == (0.5, 1.0)  # the object without attributes: "not mentioned, but" everywhere


def test_cache_persists_across_objects_and_a_rerun_makes_zero_calls(tmp_path):
    path = tmp_path / "answers.sqlite"
    first = RuleJudge(VOCAB, cache=path)
    a, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, first)
    assert first.calls == N_PROMPTS and len(AnswerCache(path)) == N_PROMPTS
    again = RuleJudge(VOCAB, cache=path)
    b, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, again)
    assert again.calls == 0 and a == b
    other_vocab = RuleJudge({**VOCAB, "size": ["big"]}, cache=path)  # other settings: other cache keys
    other_vocab.ask([yes_no_prompt(["a cat"], "cat")])
    assert other_vocab.calls == 1
    rows = sqlite3.connect(path).execute("SELECT DISTINCT backend, model FROM answers").fetchall()
    assert len(rows) == 2 and all(b == "rule" and m.startswith("regionworld-rules@") for b, m in rows)


def test_default_cache_location_comes_from_the_environment(tmp_path):
    judge = RuleJudge(VOCAB)
    assert judge.cache.path == tmp_path / "default_judge_cache.sqlite"  # set by conftest via REGIONLIB_JUDGE_CACHE
    with pytest.raises(JudgeError, match="cache must be"):
        RuleJudge(VOCAB, cache=3)


def test_http_client_retries_injected_500s_and_matches_the_direct_judge(tmp_path):
    rule = RuleJudge(VOCAB, cache=tmp_path / "server.sqlite")
    with serve_judge(rule, faults=Faults(fail_every=3)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        client = OpenAICompatibleJudge(base_url=server.url, model="rules", cache=tmp_path / "client.sqlite",
                                       backoff=0.01, max_retries=3, concurrency=4)
        via_http, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client)
        assert client.calls == N_PROMPTS and client.failures >= N_PROMPTS // 3 - 1
        assert server.requests == N_PROMPTS + client.failures  # every failure was retried once more
        direct, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, RuleJudge(VOCAB, cache=tmp_path / "d.sqlite"))
        assert via_http == direct
        before = server.requests
        rerun = OpenAICompatibleJudge(base_url=server.url, model="rules", cache=tmp_path / "client.sqlite")
        assert evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, rerun)[0] == via_http
        assert rerun.calls == 0 and server.requests == before  # the rerun made zero HTTP requests


def test_bounded_retries_timeouts_and_refused_connections():
    with serve_judge(RuleJudge(VOCAB), faults=Faults(fail_every=1)) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="m", backoff=0.01, max_retries=2)
        with pytest.raises(JudgeError, match="failed after 3 attempts: HTTP 500"):
            client.ask(["hello"])
        assert server.requests == 3 and client.calls == 0
    with serve_judge(RuleJudge(VOCAB), faults=Faults(delay=1.0)) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="m", backoff=0.01, max_retries=1, timeout=0.2)
        with pytest.raises(JudgeError, match="after 2 attempts: .*timed out"):
            client.ask(["hello"])
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAICompatibleJudge(base_url=f"http://127.0.0.1:{port}/v1", model="m", backoff=0.01, max_retries=1)
    with pytest.raises(JudgeError, match="failed after 2 attempts"):
        client.ask(["endpoint down"])


def test_interrupted_run_resumes_from_the_cache(tmp_path):
    prompts = [yes_no_prompt([f"a red circle number {i}"], "circle") for i in range(8)]
    with serve_judge(RuleJudge(VOCAB), faults=Faults(fail_every=5)) as server:
        flaky = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "r.sqlite", backoff=0.01,
                                      max_retries=0, concurrency=1)
        with pytest.raises(JudgeError):
            flaky.ask(prompts)  # the 5th request fails and is not retried
        assert flaky.calls == 4
        resumed = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "r.sqlite", backoff=0.01,
                                        max_retries=2, concurrency=1)
        assert resumed.ask(prompts) == ["Yes"] * 8 and resumed.calls == 4


def test_broken_bodies_are_retried_and_garbage_replies_are_counted(tmp_path):
    with serve_judge(RuleJudge(VOCAB), faults=Faults(bad_json_every=4)) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "a.sqlite", backoff=0.01,
                                       concurrency=1)
        scores, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client)
        assert client.failures >= 4 and scores.unparsed_replies == 0
    with serve_judge(RuleJudge(VOCAB), faults=Faults(garbage_every=2)) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "b.sqlite", concurrency=1)
        scores, results = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client)
    assert scores.unparsed_replies == N_PROMPTS // 2  # every second reply is "###": no choice, scored 0
    assert sum(r.unparsed for r in results) == N_PROMPTS // 2


def test_api_key_is_sent_but_never_shown_or_logged(tmp_path, monkeypatch, caplog):
    seen = {}
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    with serve_judge(RuleJudge(VOCAB), faults=Faults(fail_every=2)) as server:
        handler = server.httpd.RequestHandlerClass
        original = handler.do_POST

        def spy(self):
            seen["auth"] = self.headers.get("Authorization")
            original(self)

        handler.do_POST = spy
        client = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "k.sqlite", backoff=0.01)
        with caplog.at_level(logging.DEBUG):
            client.ask(["one", "two", "three"])
    assert seen["auth"] == "Bearer sk-test-secret-123"
    assert "sk-test-secret-123" not in repr(client) and "<set>" in repr(client)
    assert caplog.records and all("sk-test-secret" not in r.getMessage() for r in caplog.records)


def test_configuration_from_environment_and_errors(monkeypatch):
    monkeypatch.delenv("REGIONLIB_JUDGE_BASE_URL", raising=False)
    with pytest.raises(JudgeError, match="REGIONLIB_JUDGE_BASE_URL"):
        OpenAICompatibleJudge(model="m")
    monkeypatch.setenv("REGIONLIB_JUDGE_BASE_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("REGIONLIB_JUDGE_MODEL", "llama")
    judge = OpenAICompatibleJudge()
    assert judge.url == "http://127.0.0.1:8000/v1/chat/completions" and judge.model == "llama"
    with pytest.raises(JudgeError, match="http"):
        OpenAICompatibleJudge(base_url="127.0.0.1:8000")
    with pytest.raises(JudgeError, match="sequence of str"):
        judge.ask("one prompt")


@pytest.fixture(scope="module")
def tiny_lm():
    """A real, randomly initialised GPT-2 with a word-level tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [json.dumps(q) for q in QUESTIONS.values()] + list(DESCRIPTIONS.values()) + ["Yes No A B C D"]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", pad_token="[EOS]")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_embd=32, n_layer=1, n_head=2, n_positions=256))
    return model, fast


def test_transformers_judge_served_over_http(tiny_lm, tmp_path):
    model, tok = tiny_lm
    local = TransformersJudge(model, tok, name="tiny-gpt2", max_new_tokens=4, cache=tmp_path / "local.sqlite")
    prompts = [yes_no_prompt(["A red circle"], "circle"), yes_no_prompt(["A red circle"], "square")]
    with serve_judge(local) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="tiny-gpt2", cache=tmp_path / "http.sqlite")
        replies = client.ask(prompts)
        scores, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client)  # long prompts: truncated to the context
    assert local.calls == 2 + N_PROMPTS and all(isinstance(r, str) for r in replies)
    assert replies == TransformersJudge(model, tok, name="tiny-gpt2", max_new_tokens=4,
                                        cache=tmp_path / "again.sqlite").ask(prompts)  # greedy: deterministic
    amber = amber_scores(["yes", "no"], replies)["all"]
    assert amber["n"] == 2 and amber["invalid"] == sum(r not in ("Yes", "No") for r in replies)
    assert scores.regions == 6


def test_serve_command_line_serves_a_saved_model(tiny_lm, tmp_path):
    import subprocess
    import sys
    import time
    import urllib.request

    model, tok = tiny_lm
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "regionlib.evaluation.judges.serve", "--model", str(tmp_path / "lm"),
                             "--port", str(port), "--cache", str(tmp_path / "srv.sqlite")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    listed = json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"server did not start: {proc.stdout.read()}")
                time.sleep(0.5)
        assert listed["data"][0]["id"] == str(tmp_path / "lm")
        client = OpenAICompatibleJudge(base_url=f"http://127.0.0.1:{port}", model="lm", cache=tmp_path / "c.sqlite")
        assert len(client.ask(["Is the circle red?"])) == 1 and client.calls == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
