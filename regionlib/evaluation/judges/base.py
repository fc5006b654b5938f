"""The judge interface: ``judge.ask(prompts) -> replies``, every call through the answer cache.

A backend implements `Judge._complete` (one prompt -> one reply); `Judge.ask` looks every
prompt up in the `AnswerCache` first, sends only the missing ones to the backend (at most
``concurrency`` at a time, in threads), stores each reply the moment it arrives and returns
the replies in prompt order. ``judge.calls`` counts backend calls made by this object, so a
rerun over a filled cache shows ``calls == 0``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Sequence

from tqdm.auto import tqdm

from ...errors import JudgeError
from .cache import as_cache, fingerprint

__all__ = ["Judge"]


class Judge(ABC):
    """Base class of the judge backends.

    Args:
        model: the model's name; with ``settings`` it keys the cache.
        settings: generation settings that change replies (hashed into the cache key).
        cache: an `AnswerCache`, a path to one, or None for `default_cache_path()`.
        concurrency: backend calls in flight at once (threads).
    """

    backend = "judge"

    def __init__(self, *, model: str, settings: dict | None = None, cache=None, concurrency: int = 1):
        if not isinstance(model, str) or not model:
            raise JudgeError(f"model must be a non-empty str, got {model!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise JudgeError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self.model = model
        self.cache_model = f"{model}@{fingerprint(settings or {})}"
        self.cache = as_cache(cache)
        self.concurrency = concurrency
        self.calls = 0
        self._count_lock = threading.Lock()

    @abstractmethod
    def _complete(self, prompt: str) -> str:
        """One backend call: the reply to ``prompt``."""

    def _call(self, prompt: str) -> str:
        reply = self._complete(prompt)
        if not isinstance(reply, str):
            raise JudgeError(f"{self.backend} judge returned {type(reply).__name__}, expected str")
        with self._count_lock:
            self.calls += 1
        self.cache.put(self.backend, self.cache_model, prompt, reply)
        return reply

    def ask(self, prompts: Sequence[str]) -> list[str]:
        """Replies to ``prompts``, in order; cached answers are reused, the rest computed and stored.

        Raises `JudgeError` when a backend call fails for good; answers received before the
        failure stay in the cache, so calling again resumes.
        """
        if isinstance(prompts, str):
            raise JudgeError("prompts must be a sequence of str, not one str")
        replies: list[str | None] = []
        todo: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise JudgeError(f"prompts[{i}] must be str, got {type(p).__name__}")
            hit = self.cache.get(self.backend, self.cache_model, p)
            replies.append(hit)
            if hit is None:
                todo.setdefault(p, []).append(i)  # identical prompts are asked once
        with tqdm(total=len(todo), desc=f"{self.backend} judge", disable=len(todo) < 50, leave=False) as bar:
            if self.concurrency == 1:
                for p, slots in todo.items():
                    reply = self._call(p)
                    for i in slots:
                        replies[i] = reply
                    bar.update()
            else:
                with ThreadPoolExecutor(self.concurrency) as pool:
                    futures = {pool.submit(self._call, p): slots for p, slots in todo.items()}
                    pending = set(futures)
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                        for fut in done:
                            if fut.exception() is not None:
                                for other in pending:
                                    other.cancel()
                                raise fut.exception()
                            for i in futures[fut]:
                                replies[i] = fut.result()
                            bar.update()
        return replies  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, cache={self.cache!r})"
