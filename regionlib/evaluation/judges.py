"""LLM judges behind one interface, with a persistent answer cache.

``judge.ask(prompts) -> replies``: every prompt first goes to the `AnswerCache` (SQLite, keyed
by backend, model and the prompt), so a rerun makes no call and an interrupted evaluation
resumes where it stopped. Backends:

* `OpenAIJudge` — any OpenAI-compatible chat endpoint (vLLM, ...). Base URL, model and key come
  from the environment (``REGIONLIB_JUDGE_BASE_URL``, ``REGIONLIB_JUDGE_MODEL``,
  ``REGIONLIB_JUDGE_API_KEY`` or ``OPENAI_API_KEY``); the key is never logged or shown in
  ``repr``. Temperature 0, max 300 tokens (DLC-Bench's settings), per-request timeout, bounded
  retries with exponential backoff, at most ``concurrency`` requests in flight.
* `TransformersJudge` — a local transformers causal LM, greedy decoding.
* `RuleJudge` — a deterministic judge for RegionWorld's closed vocabulary: it reads the
  prompts regionlib itself writes (DLC-Bench questions, AMBER yes/no questions, CLAIR) and
  answers by matching words of the description.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import json
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import JudgeError

__all__ = ["AnswerCache", "Judge", "OpenAIJudge", "TransformersJudge", "RuleJudge"]


class AnswerCache:
    """SQLite answer store: ``(backend, model, sha256(prompt)) -> reply``. Thread-safe, durable."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, backend TEXT, model TEXT, reply TEXT)")
        self._db.commit()

    @staticmethod
    def key(backend: str, model: str, prompt: str) -> str:
        return hashlib.sha256(json.dumps([backend, model, prompt]).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, backend: str, model: str, reply: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", (key, backend, model, reply))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


class Judge(ABC):
    """Base class: caching and call accounting around a backend's `_complete`.

    Args:
        cache: an `AnswerCache` (or a path for one); None disables caching.
        concurrency: backend calls in flight at once.
    """

    backend = "base"

    def __init__(self, *, model: str, cache: AnswerCache | str | Path | None = None, concurrency: int = 1):
        self.model = model
        self.cache = AnswerCache(cache) if isinstance(cache, (str, Path)) else cache
        self.concurrency = max(1, int(concurrency))
        self.calls = 0
        self._count_lock = threading.Lock()

    @abstractmethod
    def _complete(self, prompt: str) -> str:
        """One backend call: the reply to ``prompt``."""

    def _call(self, prompt: str) -> str:
        reply = self._complete(prompt)
        with self._count_lock:
            self.calls += 1
        if self.cache is not None:
            self.cache.put(AnswerCache.key(self.backend, self.model, prompt), self.backend, self.model, reply)
        return reply

    def ask(self, prompts: Sequence[str]) -> list[str]:
        """Replies to ``prompts`` in order; cached answers are reused, the rest are computed."""
        replies: list[str | None] = [None] * len(prompts)
        todo = []
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise JudgeError(f"prompts[{i}] must be str, got {type(p).__name__}")
            hit = self.cache.get(AnswerCache.key(self.backend, self.model, p)) if self.cache is not None else None
            if hit is None:
                todo.append(i)
            else:
                replies[i] = hit
        if self.concurrency == 1 or len(todo) <= 1:
            for i in todo:
                replies[i] = self._call(prompts[i])
        else:
            with ThreadPoolExecutor(self.concurrency) as pool:
                for i, reply in zip(todo, pool.map(lambda j: self._call(prompts[j]), todo)):
                    replies[i] = reply
        return replies  # type: ignore[return-value]


class OpenAIJudge(Judge):
    """OpenAI-compatible chat-completions client (stdlib HTTP; see the module docstring)."""

    backend = "openai"

    def __init__(self, *, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, max_tokens: int = 300,
                 cache=None, concurrency: int = 8):
        base_url = base_url or os.environ.get("REGIONLIB_JUDGE_BASE_URL")
        model = model or os.environ.get("REGIONLIB_JUDGE_MODEL")
        if not base_url or not model:
            raise JudgeError("OpenAIJudge needs base_url and model (or REGIONLIB_JUDGE_BASE_URL / REGIONLIB_JUDGE_MODEL)")
        super().__init__(model=model, cache=cache, concurrency=concurrency)
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or os.environ.get("REGIONLIB_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
        self.timeout, self.max_retries, self.backoff, self.max_tokens = timeout, max_retries, backoff, max_tokens
        self.failures = 0

    def __repr__(self) -> str:
        return f"OpenAIJudge(base_url={self.base_url!r}, model={self.model!r}, key={'set' if self._api_key else 'unset'})"

    def _complete(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0, "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        url = self.base_url + ("/chat/completions" if self.base_url.endswith("/v1") else "/v1/chat/completions")
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode())
                return str(payload["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    raise JudgeError(f"judge endpoint {self.base_url} refused the request: {last}") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
                last = f"malformed response ({exc})"
            with self._count_lock:
                self.failures += 1
        raise JudgeError(f"judge endpoint {self.base_url} failed after {self.max_retries + 1} attempts: {last}")


class TransformersJudge(Judge):
    """A local transformers causal LM as a judge (greedy decoding, chat template when present)."""

    backend = "transformers"

    def __init__(self, model, tokenizer, *, name: str | None = None, max_new_tokens: int = 32, cache=None):
        super().__init__(model=name or getattr(model.config, "_name_or_path", type(model).__name__), cache=cache)
        self.lm, self.tokenizer, self.max_new_tokens = model.eval(), tokenizer, max_new_tokens

    def _complete(self, prompt: str) -> str:
        import torch

        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        else:
            text = prompt
        enc = self.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            out = self.lm.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                   pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class RuleJudge(Judge):
    """Deterministic judge for RegionWorld's closed vocabulary.

    Args:
        vocabulary: attribute -> its closed set of values (e.g. ``{"color": ["red", ...]}``).
        synonyms: class name -> words that count as naming it.

    DLC-Bench questions: the recognition question is answered "Yes" when the class (or a
    synonym) appears in the description. A choice "The <attr> of the <obj> is mentioned in the
    description and is <v>." is chosen when the description names <v>; "... but is not <v>."
    when it names another value of <attr>; "... not mentioned, but the <obj> is mentioned" when
    it names only the object; the "<obj> is not mentioned" choice otherwise. Only the first clause
    of the description (up to the first comma) is read, since relations name other objects. AMBER: "Yes"
    when every word of the target appears among the captions. CLAIR: word-overlap F1 as JSON.
    """

    backend = "rule"

    def __init__(self, vocabulary: Mapping[str, Sequence[str]], *, synonyms: Mapping[str, Sequence[str]] | None = None,
                 cache=None):
        super().__init__(model="regionworld-rules", cache=cache)
        self.vocabulary = {k: [v.lower() for v in vs] for k, vs in vocabulary.items()}
        self.synonyms = {k.lower(): [s.lower() for s in v] for k, v in (synonyms or {}).items()}

    def _complete(self, prompt: str) -> str:
        if "The description is:\n" in prompt:
            return self._dlc(prompt)
        m = re.match(r"If an image contains (.*)\. (?:Are|Is|Does|Do) (?:the )?(.*?) in this image\?", prompt, re.S)
        if m:
            return "Yes" if _words(m.group(2)) <= _words(m.group(1)) else "No"
        m = re.search(r"Candidate set:\n(.*?)\n\nReference set:\n(.*?)\n\n", prompt, re.S)
        if m:
            cand, ref = _words(m.group(1)), _words(m.group(2))
            overlap = len(cand & ref)
            f1 = 0.0 if not overlap else 2 * overlap / (len(cand) + len(ref))
            return json.dumps({"score": round(100 * f1), "reason": "word overlap"})
        return "I cannot answer this question."

    def _dlc(self, prompt: str) -> str:
        description = prompt.split("The description is:\n", 1)[1].split("\n\nFrom the description above", 1)[0]
        words = _words(description.split(",", 1)[0])  # the first clause: relations name other objects
        body = prompt.split("with one of the choices:\n", 1)[1]
        lines = [l for l in body.splitlines() if l.strip()]
        question, choices = lines[0], [re.sub(r"^[A-E]\. ", "", l) for l in lines[1:]]
        letters = "ABCDE"
        if question.startswith("Is it likely that the object"):
            m = re.search(r"(?:is an?|are) (.+?) or (?:an )?objects? of a similar type", question)
            name = m.group(1).lower() if m else ""
            names = [name, *self.synonyms.get(name, [])]
            hit = any(_words(n) and _words(n) <= words for n in names)
            return "A. Yes" if hit else "B. No"
        target = None
        for i, c in enumerate(choices):
            m = re.match(r"The (\w+) of the (.+?) is mentioned in the description and is (.+)\.$", c)
            if m:
                target = (i, m.group(1).lower(), m.group(2).lower(), m.group(3).lower())
        if target is None:
            return "I cannot answer this question."
        i_yes, attr, obj, value = target
        values = self.vocabulary.get(attr, [])
        named = [v for v in values if _words(v) <= words]
        if value in named:
            pick = i_yes
        elif named:
            pick = next((i for i, c in enumerate(choices) if "but is not" in c), None)
        elif _words(obj) <= words or any(_words(s) <= words for s in self.synonyms.get(obj, [])):
            pick = next((i for i, c in enumerate(choices) if "not mentioned, but" in c),
                        next((i for i, c in enumerate(choices) if "not mentioned" in c), None))
        else:
            pick = next((i for i, c in enumerate(choices) if "not mentioned" in c and "but" not in c), None)
        if pick is not None:
            return f"{letters[pick]}. {choices[pick]}"
        return "I cannot answer this question."
        i_yes, attr, value = target
        values = self.vocabulary.get(attr, [])
        if _words(value) <= words:
            return f"{letters[i_yes]}. {choices[i_yes]}"
        if any(_words(v) <= words for v in values if v != value):
            for i, c in enumerate(choices):
                if "but is not" in c:
                    return f"{letters[i]}. {c}"
        for i, c in enumerate(choices):
            if "not mentioned" in c:
                return f"{letters[i]}. {c}"
        return "I cannot answer this question."
