"""The judge interface: ``judge.ask(prompts) -> replies``, every call through the answer cache.

A backend implements `Judge._complete` (one prompt -> one reply). `Judge.answer` looks every
prompt up in the `AnswerCache` first, sends only the missing ones to the backend (at most
``concurrency`` at a time, in threads), stores each reply the moment it arrives — with the
status ``"ok"`` or, when `replies.reply_parses` rejects it, ``"unparsed"`` — and returns one
`Answer` per prompt in prompt order. A prompt whose call fails for good (its retries exhausted)
does not stop the others: it comes back with the status ``"failed"`` and its error, is not
cached, and is asked again by the next call. `Judge.ask` returns the replies and raises
`JudgeError` if any prompt failed (after all the others are answered and cached).

``judge.calls`` counts backend calls made by this object, so a rerun over a filled cache shows
``calls == 0``. With ``retry_unparsed=True`` cached ``"unparsed"`` replies are asked again.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from tqdm.auto import tqdm

from ...errors import JudgeError
from .cache import Answer, as_cache, fingerprint
from .replies import reply_parses

__all__ = ["Judge"]


class Judge(ABC):
    """Base class of the judge backends.

    Args:
        model: the model's name; with ``settings`` it keys the cache (`cache_key`).
        settings: everything else that changes replies (endpoint, sampling settings, ...), hashed
            into the cache key. Never a secret.
        cache: an `AnswerCache`, a directory path for one, or None for `default_cache_path()`.
        concurrency: backend calls in flight at once (threads).
        retry_unparsed: ask cached replies whose status is ``"unparsed"`` again.
        check: ``check(prompt, reply) -> bool``, whether a reply parses (default `reply_parses`).
    """

    backend = "judge"

    def __init__(self, *, model: str, settings: dict | None = None, cache=None, concurrency: int = 1,
                 retry_unparsed: bool = False, check: Callable[[str, str], bool] = reply_parses):
        if not isinstance(model, str) or not model:
            raise JudgeError(f"model must be a non-empty str, got {model!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise JudgeError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self.model = model
        self.cache_key = f"{self.backend}:{model}@{fingerprint(settings or {})}"
        self.cache = as_cache(cache)
        self.concurrency = concurrency
        self.retry_unparsed = bool(retry_unparsed)
        self.check = check
        self.calls = 0
        self._count_lock = threading.Lock()

    @abstractmethod
    def _complete(self, prompt: str) -> str:
        """One backend call: the reply to ``prompt`` (raises `JudgeError` when it fails for good)."""

    def _call(self, prompt: str) -> Answer:
        try:
            reply = self._complete(prompt)
        except JudgeError as exc:
            return Answer(reply="", status="failed", error=str(exc))
        if not isinstance(reply, str):
            return Answer(reply="", status="failed",
                          error=f"{self.backend} judge returned {type(reply).__name__}, expected str")
        with self._count_lock:
            self.calls += 1
        status = "ok" if self.check(prompt, reply) else "unparsed"
        self.cache.put(self.cache_key, prompt, reply, status, model=self.model)
        return Answer(reply=reply, status=status)

    def answer(self, prompts: Sequence[str]) -> list[Answer]:
        """One `Answer` per prompt, in order; cached answers are reused, the rest asked and stored."""
        if isinstance(prompts, str):
            raise JudgeError("prompts must be a sequence of str, not one str")
        answers: list[Answer | None] = []
        todo: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise JudgeError(f"prompts[{i}] must be str, got {type(p).__name__}")
            hit = self.cache.get(self.cache_key, p)
            if hit is not None and hit.status == "unparsed" and self.retry_unparsed:
                hit = None
            answers.append(hit)
            if hit is None:
                todo.setdefault(p, []).append(i)  # identical prompts are asked once
        with tqdm(total=len(todo), desc=f"{self.backend} judge", disable=len(todo) < 50, leave=False) as bar:
            with ThreadPoolExecutor(min(self.concurrency, max(1, len(todo)))) as pool:
                for slots, result in zip(todo.values(), pool.map(self._call, todo)):
                    for i in slots:
                        answers[i] = result
                    bar.update()
        return answers  # type: ignore[return-value]

    def ask(self, prompts: Sequence[str]) -> list[str]:
        """Replies to ``prompts``, in order (see `answer`).

        Raises `JudgeError` when a prompt failed for good; every other answer is in the cache by
        then, so calling again asks only the failed prompts.
        """
        answers = self.answer(prompts)
        failed = [a for a in answers if a.status == "failed"]
        if failed:
            raise JudgeError(f"{len(failed)} of {len(answers)} prompts failed (the others are cached); "
                             f"first error: {failed[0].error}")
        return [a.reply for a in answers]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, cache={self.cache!r})"
