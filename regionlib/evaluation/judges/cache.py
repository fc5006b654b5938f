"""A persistent answer cache for judges: SQLite, keyed by backend, model and the prompt's hash.

Every answer is committed as soon as it arrives, so an interrupted evaluation resumes where it
stopped and a rerun makes no judge call at all. Safe to share between threads of one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

from ...errors import JudgeError

__all__ = ["AnswerCache", "default_cache_path", "as_cache", "fingerprint"]


def default_cache_path() -> Path:
    """``$REGIONLIB_JUDGE_CACHE``, else ``~/.cache/regionlib/judge_answers.sqlite``."""
    env = os.environ.get("REGIONLIB_JUDGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "regionlib" / "judge_answers.sqlite"


class AnswerCache:
    """``(backend, model, sha256(prompt)) -> reply`` in the SQLite file ``path``.

    ``len(cache)`` counts the stored answers; `get` / `put` take the three key parts.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (backend TEXT, model TEXT, prompt_sha256 TEXT, "
                             "reply TEXT, PRIMARY KEY (backend, model, prompt_sha256))")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise JudgeError(f"answer cache {self.path} is not a usable SQLite file: {exc}") from exc
        self._lock = threading.Lock()

    @staticmethod
    def prompt_hash(prompt: str) -> str:
        return hashlib.sha256(prompt.encode("utf-8")).hexdigest()

    def get(self, backend: str, model: str, prompt: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM answers WHERE backend = ? AND model = ? AND prompt_sha256 = ?",
                                   (backend, model, self.prompt_hash(prompt))).fetchone()
        return None if row is None else row[0]

    def put(self, backend: str, model: str, prompt: str, reply: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                             (backend, model, self.prompt_hash(prompt), reply))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"AnswerCache({str(self.path)!r})"

    def __reduce__(self):  # picklable for Ray tasks: reopen the same file
        return (AnswerCache, (str(self.path),))


def as_cache(cache) -> AnswerCache:
    """An `AnswerCache` from an instance, a path, or None (the default path)."""
    if isinstance(cache, AnswerCache):
        return cache
    if cache is None:
        return AnswerCache(default_cache_path())
    if isinstance(cache, (str, os.PathLike)):
        return AnswerCache(cache)
    raise JudgeError(f"cache must be an AnswerCache, a path or None, got {type(cache).__name__}")


def fingerprint(settings: dict) -> str:
    """A short stable hash of judge settings that change answers (part of the cache's model key)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
