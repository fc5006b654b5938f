"""Judge backends: the persistent cache, the rule judge, and the HTTP client against a real local
OpenAI-compatible server (127.0.0.1) with injected HTTP 500s, delays, trickled bodies, broken bodies,
garbage replies and an API-key check."""

import json
import logging
import socket
import threading
import time

import pytest

from regionlib.errors import JudgeError
from regionlib.evaluation.amber import amber_scores, yes_no_prompt
from regionlib.evaluation.clair import clair_prompt, parse_clair
from regionlib.evaluation.dlc_bench import evaluate_dlc_bench, recognition_question
from regionlib.evaluation.judges import AnswerCache, OpenAICompatibleJudge, RuleJudge, TransformersJudge
from regionlib.evaluation.judges.rule import UNANSWERABLE
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
    judge = RuleJudge(VOCAB, cache=tmp_path / "c")
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
    judge = RuleJudge(VOCABULARY, cache=tmp_path / "rw")
    truth, _ = evaluate_dlc_bench({str(i): c for i, c in zip(regions.ids, regions.captions)}, questions, judge)
    assert (truth.pos, truth.neg, truth.unparsed_replies) == (1.0, 1.0, 0)
    bare, _ = evaluate_dlc_bench({str(i): f"A {s}." for i, s in zip(regions.ids, regions.labels)}, questions, judge)
    assert (bare.pos, bare.neg) == (0.5, 1.0)  # the object without attributes: "not mentioned, but" everywhere


def test_cache_persists_across_objects_and_a_rerun_makes_zero_calls(tmp_path):
    path = tmp_path / "answers"
    first = RuleJudge(VOCAB, cache=path)
    a, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, first)
    assert first.calls == N_PROMPTS and len(AnswerCache(path)) == N_PROMPTS
    again = RuleJudge(VOCAB, cache=path)
    b, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, again)
    assert again.calls == 0 and a == b
    other_vocab = RuleJudge({**VOCAB, "size": ["big"]}, cache=path)  # other settings: other cache keys
    other_vocab.ask([yes_no_prompt(["a cat"], "cat")])
    assert other_vocab.calls == 1
    records = [json.loads(line) for f in path.glob("*.jsonl") for line in f.read_text().splitlines()]
    keys = {r["judge"] for r in records}
    assert len(keys) == 2 and all(k.startswith("rule:regionworld-rules@") for k in keys)
    assert len(list(path.glob("*.jsonl"))) == 2  # one file per writer: nothing is ever written by two


def test_default_cache_location_comes_from_the_environment(tmp_path):
    judge = RuleJudge(VOCAB)
    assert judge.cache.path == tmp_path / "default_judge_cache.sqlite"  # set by conftest via REGIONLIB_JUDGE_CACHE
    assert judge.cache.path.is_dir()
    with pytest.raises(JudgeError, match="cache must be"):
        RuleJudge(VOCAB, cache=3)


def test_http_client_retries_injected_500s_and_matches_the_direct_judge(tmp_path):
    rule = RuleJudge(VOCAB, cache=tmp_path / "server")
    with serve_judge(rule, faults=Faults(fail_every=3)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        # 8 attempts a prompt: with 4 concurrent requests, a prompt's retries can land on failing slots (every
        # third request) several times in a row under load; 4 attempts all did once (a flaky failure)
        client = OpenAICompatibleJudge(base_url=server.url, model="rules", cache=tmp_path / "client",
                                       backoff=0.01, max_retries=7, concurrency=4)
        via_http, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client)
        assert client.calls == N_PROMPTS and client.failures >= N_PROMPTS // 3 - 1
        assert server.requests == N_PROMPTS + client.failures  # every failure was retried once more
        direct, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, RuleJudge(VOCAB, cache=tmp_path / "d"))
        assert via_http == direct
        before = server.requests
        rerun = OpenAICompatibleJudge(base_url=server.url, model="rules", cache=tmp_path / "client")
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


def test_a_failed_prompt_does_not_stop_the_others_and_is_asked_again(tmp_path):
    """Bug: one prompt exhausting its retries raised out of `ask` and cancelled every other prompt."""
    prompts = [yes_no_prompt([f"a red circle number {i}"], "circle") for i in range(8)]
    with serve_judge(RuleJudge(VOCAB), faults=Faults(fail_every=5)) as server:
        flaky = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "r", backoff=0.01,
                                      max_retries=0, concurrency=1)
        answers = flaky.answer(prompts)  # the 5th request fails and is not retried; the rest go on
        assert [a.status for a in answers] == ["ok"] * 4 + ["failed"] + ["ok"] * 3
        assert "HTTP 500" in answers[4].error and answers[4].reply == "" and flaky.calls == 7
        resumed = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "r", backoff=0.01,
                                        max_retries=2, concurrency=1)
        assert resumed.ask(prompts) == ["Yes"] * 8 and resumed.calls == 1  # only the failed one: it was not cached
        assert server.requests == 9


def test_broken_bodies_are_retried_and_garbage_replies_are_counted(tmp_path):
    with serve_judge(RuleJudge(VOCAB), faults=Faults(bad_json_every=4)) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "a", backoff=0.01,
                                       concurrency=1)
        scores, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client)
        assert client.failures >= 4 and scores.unparsed_replies == 0
    with serve_judge(RuleJudge(VOCAB), faults=Faults(garbage_every=2)) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "b", concurrency=1)
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
        client = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "k", backoff=0.01)
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
    local = TransformersJudge(model, tok, name="tiny-gpt2", max_new_tokens=4, cache=tmp_path / "local")
    prompts = [yes_no_prompt(["A red circle"], "circle"), yes_no_prompt(["A red circle"], "square")]
    with serve_judge(local) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="tiny-gpt2", cache=tmp_path / "http")
        replies = client.ask(prompts)
        scores, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, client)  # long prompts: truncated to the context
    assert local.calls == 2 + N_PROMPTS and all(isinstance(r, str) for r in replies)
    assert replies == TransformersJudge(model, tok, name="tiny-gpt2", max_new_tokens=4,
                                        cache=tmp_path / "again").ask(prompts)  # greedy: deterministic
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
                             "--port", str(port), "--cache", str(tmp_path / "srv")],
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
        client = OpenAICompatibleJudge(base_url=f"http://127.0.0.1:{port}", model="lm", cache=tmp_path / "c")
        assert len(client.ask(["Is the circle red?"])) == 1 and client.calls == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_garbage_replies_are_cached_as_unparsed_and_retried_on_request(tmp_path):
    """Bug: a garbage reply was cached forever as an answer; now it is cached with the status
    "unparsed" (so a rerun is free) and `retry_unparsed` asks it again."""
    cache = tmp_path / "answers"
    with serve_judge(RuleJudge(VOCAB), faults=Faults(garbage_every=2)) as server:
        first = OpenAICompatibleJudge(base_url=server.url, model="m", cache=cache, concurrency=1)
        garbled, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, first)
        assert garbled.unparsed_replies == N_PROMPTS // 2
        statuses = [json.loads(line)["status"] for f in cache.glob("*.jsonl") for line in f.read_text().splitlines()]
        assert statuses.count("unparsed") == N_PROMPTS // 2 and statuses.count("ok") == N_PROMPTS // 2
        again = OpenAICompatibleJudge(base_url=server.url, model="m", cache=cache, concurrency=1)
        assert evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, again)[0] == garbled and again.calls == 0
    with serve_judge(RuleJudge(VOCAB), port=server.port) as server:  # the same endpoint, now answering well
        retry = OpenAICompatibleJudge(base_url=server.url, model="m", cache=cache, concurrency=1, retry_unparsed=True)
        fixed, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, retry)
        assert retry.calls == N_PROMPTS // 2 and server.requests == N_PROMPTS // 2  # only the unparsed ones
        direct, _ = evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, RuleJudge(VOCAB, cache=tmp_path / "direct"))
        assert fixed == direct and fixed.unparsed_replies == 0
        settled = OpenAICompatibleJudge(base_url=server.url, model="m", cache=cache, retry_unparsed=True)
        assert evaluate_dlc_bench(DESCRIPTIONS, QUESTIONS, settled)[0] == direct and settled.calls == 0


def test_timeout_bounds_the_whole_request_not_each_read(tmp_path):
    """Bug: --timeout bounded each socket read, so a server trickling one byte every 0.5 s held a
    2 s request for 41.6 s; the timeout now bounds the request as a whole."""
    with serve_judge(RuleJudge(VOCAB), faults=Faults(trickle=0.5)) as server:
        client = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "t", timeout=2.0,
                                       max_retries=0)
        client.answer(["warm-up"])  # the client's first request also starts its event loop and HTTP client
        # per-read timeouts let the trickling reply through (after ~40 s); a whole-request bound refuses it
        with pytest.raises(JudgeError, match="timed out after 2 s"):
            client.ask(["hello"])
        client.close()


def test_cache_key_names_the_endpoint_and_the_sampling_settings(tmp_path):
    """Bug: the answer cache key ignored the endpoint, so a cache filled by one server answered for
    another; it now holds the endpoint, the model and temperature / max_tokens."""
    cache = tmp_path / "answers"
    prompt = [yes_no_prompt(["a red circle"], "circle")]
    with serve_judge(RuleJudge(VOCAB)) as a, serve_judge(RuleJudge(VOCAB)) as b:
        def judge(url, **kw):
            j = OpenAICompatibleJudge(base_url=url, model="m", cache=cache, **kw)
            assert j.ask(prompt) == ["Yes"]
            return j.calls

        assert judge(a.url) == 1 and judge(a.url) == 0
        assert judge(b.url) == 1  # another endpoint
        assert judge(a.url, temperature=0.7) == 1 and judge(a.url, max_tokens=5) == 1
        assert judge(a.url.removesuffix("/v1")) == 0  # the same endpoint written without /v1
    key = OpenAICompatibleJudge(base_url=a.url, model="m", cache=cache, api_key="sk-not-in-keys").cache_key
    assert "sk-not" not in key and key == OpenAICompatibleJudge(base_url=a.url, model="m", cache=cache).cache_key


def test_cache_is_one_file_per_writer_merged_on_read(tmp_path):
    """Bug: the answer cache was SQLite in WAL mode, unsafe on the shared network filesystem the
    jobs write to; now every writer appends to its own file and readers merge them."""
    from regionlib.evaluation.judges.cache import AnswerCache

    root = tmp_path / "shared"
    writers = [AnswerCache(root) for _ in range(3)]

    def write(k, cache):
        for i in range(20):
            cache.put("j", f"prompt {k}-{i}", f"reply {k}-{i}", "ok")

    threads = [threading.Thread(target=write, args=(k, c)) for k, c in enumerate(writers)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    files = sorted(root.iterdir())
    assert len(files) == 3 and all(f.suffix == ".jsonl" for f in files)  # no database, no -wal / -shm files
    writers[0].put("j", "prompt 0-0", "garbage", "unparsed")  # an ok answer elsewhere is never overridden
    with open(files[1], "a") as fh:
        fh.write('{"judge": "j", "prompt_sha')  # a writer killed mid-line
    reader = AnswerCache(root)
    assert len(reader) == 60 and reader.get("j", "prompt 2-7").reply == "reply 2-7"
    assert reader.get("j", "prompt 0-0").status == "ok" and reader.get("other", "prompt 0-0") is None
    import pickle

    assert pickle.loads(pickle.dumps(reader)).get("j", "prompt 1-3").reply == "reply 1-3"
    (tmp_path / "old.sqlite").write_bytes(b"SQLite format 3\x00")
    with pytest.raises(JudgeError, match="is a file"):
        AnswerCache(tmp_path / "old.sqlite")


def test_api_key_from_a_file_or_the_environment_never_shown(tmp_path, monkeypatch):
    """Bug: the key was only ever read from the environment of the process making the requests;
    it is now resolved on the driver (file or environment) into a value that never shows itself,
    and a server that checks it refuses a request without it at once (no retries)."""
    import pickle

    from regionlib.evaluation.judges import ApiKey

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("REGIONLIB_JUDGE_API_KEY", raising=False)
    assert ApiKey.resolve() is None
    monkeypatch.setenv("REGIONLIB_JUDGE_API_KEY", "sk-from-env")
    assert ApiKey.resolve().reveal() == "sk-from-env"
    (tmp_path / "key").write_text("sk-from-file\n")
    key = ApiKey.resolve(tmp_path / "key")
    assert key.reveal() == "sk-from-file" and "sk-" not in repr(key) + str(key) + f"{key}"
    assert pickle.loads(pickle.dumps(key)).reveal() == "sk-from-file"
    with pytest.raises(JudgeError, match="cannot be read"):
        ApiKey.resolve(tmp_path / "missing")
    monkeypatch.delenv("REGIONLIB_JUDGE_API_KEY")
    with serve_judge(RuleJudge(VOCAB), api_key="sk-from-file") as server:
        good = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "c", api_key=key)
        assert good.ask(["hi"]) == [UNANSWERABLE]
        bad = OpenAICompatibleJudge(base_url=server.url, model="m", cache=tmp_path / "c2", backoff=0.01)
        [answer] = bad.answer(["hi"])
        assert answer.status == "failed" and "HTTP 401" in answer.error and "sk-" not in answer.error
        assert server.unauthorized == 1 and server.requests == 2
