"""A persistent answer cache for judges, safe on a shared network filesystem.

The cache is a directory of JSON-lines files, one per writer: every `AnswerCache` object writes
only to its own file (named after its host, process and a random token, created on its first
answer), and reads merge every file of the directory. No two processes ever write to one file
and nothing relies on file locks, so the cache works on NFS (where SQLite's locking, and WAL
mode's shared memory above all, are unsafe) as well as on a local disk. Each answer is one
``write`` of one line followed by ``fsync`` the moment it arrives, so an interrupted evaluation
resumes where it stopped; a line torn by a killed writer is skipped on reading.

An answer is stored with a status: ``"ok"`` (the reply parsed) or ``"unparsed"`` (a reply that
matched no choice, kept so that reruns are free and ``retry_unparsed`` can ask it again). When
two files hold the same key, an ``"ok"`` answer wins over an ``"unparsed"`` one; a failed call
is never stored (it is asked again on the next run).

A cache object reads the directory once, on its first lookup; answers other processes write
later are seen by cache objects opened after them (each run of a job opens new ones).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...errors import JudgeError

__all__ = ["Answer", "AnswerCache", "default_cache_path", "as_cache", "fingerprint", "STATUSES"]

log = logging.getLogger(__name__)

#: ``ok``: a reply that parses; ``unparsed``: a reply that matched nothing; ``failed``: no reply
#: (retries exhausted; never cached).
STATUSES = ("ok", "unparsed", "failed")


@dataclass(frozen=True)
class Answer:
    """A judge's answer to one prompt: ``reply`` ("" when ``status == "failed"``), ``status`` (one of
    `STATUSES`), ``error`` (why it failed, else None) and ``cached`` (True when it came from the cache)."""

    reply: str
    status: str
    error: str | None = None
    cached: bool = False


def default_cache_path() -> Path:
    """``$REGIONLIB_JUDGE_CACHE``, else ``~/.cache/regionlib/judge_answers`` (a directory)."""
    env = os.environ.get("REGIONLIB_JUDGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "regionlib" / "judge_answers"


def _prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class AnswerCache:
    """``(judge key, sha256(prompt)) -> Answer`` in the directory ``path`` (see the module docstring).

    ``judge key`` is `Judge.cache_key` (backend, model, endpoint and generation settings).
    ``len(cache)`` counts the distinct stored keys. Safe to share between threads of one process;
    pickling it (e.g. into a Ray actor) gives a new writer on the same directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_file():
            raise JudgeError(f"answer cache {self.path} is a file; the cache is a directory of JSON-lines files "
                             "(give a directory path)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JudgeError(f"answer cache directory {self.path} cannot be created: {exc}") from exc
        self._lock = threading.Lock()
        self._index: dict[tuple[str, str], tuple[str, str]] | None = None  # key -> (status, reply)
        self._fd: int | None = None
        self.file: Path | None = None  # this writer's file, once it has written an answer

    def _load(self) -> dict[tuple[str, str], tuple[str, str]]:
        if self._index is None:
            index: dict[tuple[str, str], tuple[str, str]] = {}
            for file in sorted(self.path.glob("*.jsonl")):
                try:
                    text = file.read_text(encoding="utf-8", errors="replace")
                except OSError as exc:
                    raise JudgeError(f"answer cache file {file} cannot be read: {exc}") from exc
                lines = text.split("\n")
                if lines and lines[-1]:
                    lines[-1] = ""  # a torn last line (its writer was killed mid-write)
                for n, line in enumerate(lines, 1):
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                        key, status, reply = (rec["judge"], rec["prompt_sha256"]), rec["status"], rec["reply"]
                        if status not in ("ok", "unparsed") or not isinstance(reply, str):
                            raise ValueError(f"status {status!r}")
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("answer cache %s line %d skipped: %s", file, n, exc)
                        continue
                    if not (status == "unparsed" and index.get(key, ("",))[0] == "ok"):
                        index[key] = (status, reply)
            self._index = index
        return self._index

    def get(self, judge_key: str, prompt: str) -> Answer | None:
        """The stored answer to ``prompt`` by the judge ``judge_key``, or None."""
        with self._lock:
            hit = self._load().get((judge_key, _prompt_hash(prompt)))
        return None if hit is None else Answer(reply=hit[1], status=hit[0], cached=True)

    def put(self, judge_key: str, prompt: str, reply: str, status: str, *, model: str = "") -> None:
        """Store one answer (``status`` ``"ok"`` or ``"unparsed"``) in this writer's file, durably."""
        if status not in ("ok", "unparsed"):
            raise JudgeError(f"only ok / unparsed answers are cached, got status {status!r}")
        key = (judge_key, _prompt_hash(prompt))
        line = json.dumps({"judge": judge_key, "model": model, "prompt_sha256": key[1], "status": status,
                           "reply": reply, "time": round(time.time(), 3)}, ensure_ascii=False) + "\n"
        with self._lock:
            index = self._load()
            if self._fd is None:
                self.file = self.path / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
                self._fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            os.write(self._fd, line.encode("utf-8"))
            os.fsync(self._fd)
            if not (status == "unparsed" and index.get(key, ("",))[0] == "ok"):
                index[key] = (status, reply)

    def __len__(self) -> int:
        with self._lock:
            return len(self._load())

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"AnswerCache({str(self.path)!r})"

    def __reduce__(self):  # picklable for Ray: a new writer (own file) on the same directory
        return (AnswerCache, (str(self.path),))


def as_cache(cache) -> AnswerCache:
    """An `AnswerCache` from an instance, a directory path, or None (the default path)."""
    if isinstance(cache, AnswerCache):
        return cache
    if cache is None:
        return AnswerCache(default_cache_path())
    if isinstance(cache, (str, os.PathLike)):
        return AnswerCache(cache)
    raise JudgeError(f"cache must be an AnswerCache, a path or None, got {type(cache).__name__}")


def fingerprint(settings: dict) -> str:
    """A short stable hash of judge settings that change answers (part of the cache key)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
