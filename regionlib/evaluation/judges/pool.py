"""A pool of judges on Ray: one actor per endpoint, requests in flight per actor, failures recorded.

`JudgeSpec` says which judge to build (the rule judge, an OpenAI-compatible endpoint, a local
transformers LM) and with which settings; `JudgePool` builds one `JudgeWorker` actor per
endpoint (or ``workers`` actors for the local judges) and answers ``ask(prompts)`` through them,
so it can stand in for a `Judge` wherever the evaluations take one (`run_judge_suite`,
`evaluate_dlc_bench`, `clair_scores`). `run_judge_eval` runs the judged evaluations with a pool
and writes ``scores.json`` and ``report.html``.

* **Dealing.** Distinct prompts are dealt to actors by a hash of the prompt, so a rerun with the
  same endpoints sends every prompt to the endpoint that answered it before and finds it in the
  cache (whose key names the endpoint, the model and the sampling settings); each actor sends
  at most ``concurrency`` requests at a time.
* **Failures.** A prompt whose retries are exhausted (or whose actor died more often than Ray
  restarts it) does not stop the rest: its reply is ``""`` (scored as unparsed), it is counted in
  ``stats()["failed_prompts"]`` with its error, and, never cached, it is asked again by the next run.
* **Cache.** Each actor writes its own file of the answer-cache directory (`cache.AnswerCache`),
  so ``cache`` may lie on a shared network filesystem. Unparsed replies are cached with that
  status; ``retry_unparsed`` asks them again.
* **Secrets.** The API key is read on the driver (`ApiKey.resolve`) and handed to each actor as a
  constructor argument: a worker on a cluster never sees the driver's environment, and Ray writes
  a ``runtime_env``'s variables into its agent's log. It appears in no repr, result or cache key.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ...errors import ConfigError
from .base import Judge
from .cache import Answer, default_cache_path
from .openai_compatible import ApiKey

__all__ = ["JUDGE_KINDS", "JudgeSpec", "JudgeWorker", "JudgePool", "run_judge_eval"]

JUDGE_KINDS = ("rule", "openai", "transformers")


@dataclass(frozen=True)
class JudgeSpec:
    """Which judge each actor builds, and how it is driven (no secret: the API key travels apart).

    Args:
        judge: ``"rule"`` (RegionWorld's vocabulary), ``"openai"`` (an endpoint per actor) or
            ``"transformers"`` (a causal-LM directory, ``model``).
        model: the served model's name (openai) or the LM's directory (transformers).
        endpoints: OpenAI-compatible base URLs, one actor each (openai only).
        cache: the answer-cache directory shared by the actors (each writes its own file).
        concurrency: requests in flight per endpoint.
        max_retries, backoff, timeout: per request (``timeout`` bounds a whole attempt, seconds).
        temperature, max_tokens: the judge's sampling settings (part of the cache key).
        workers: actors for the rule / transformers judges.
        retry_unparsed: ask cached unparsed replies again.
        cpus_per_worker: Ray CPUs per actor (fractional: the actors mostly wait on the network).
    """

    judge: str = "rule"
    model: str | None = None
    endpoints: tuple[str, ...] = ()
    cache: str = field(default_factory=lambda: str(default_cache_path()))
    concurrency: int = 8
    max_retries: int = 4
    backoff: float = 1.0
    timeout: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 300
    workers: int = 1
    retry_unparsed: bool = False
    cpus_per_worker: float = 0.25

    def __post_init__(self):
        if self.judge not in JUDGE_KINDS:
            raise ConfigError(f"judge must be one of {JUDGE_KINDS}, got {self.judge!r}")
        for name in ("concurrency", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if not self.timeout > 0 or self.max_retries < 0 or self.backoff < 0 or self.cpus_per_worker < 0:
            raise ConfigError("timeout must be > 0 and max_retries, backoff, cpus_per_worker >= 0, got "
                              f"{self.timeout}, {self.max_retries}, {self.backoff}, {self.cpus_per_worker}")
        if self.judge == "openai" and (not self.endpoints or not self.model):
            raise ConfigError("the openai judge needs endpoints and model")
        if self.judge == "transformers" and not self.model:
            raise ConfigError("the transformers judge needs model (a causal-LM directory)")
        if isinstance(self.endpoints, str):
            raise ConfigError("endpoints must be a sequence of URLs, not one str")

    @property
    def targets(self) -> list[str | None]:
        """One entry per actor: its endpoint (openai) or None."""
        return list(self.endpoints) if self.judge == "openai" else [None] * self.workers

    def build(self, endpoint: str | None = None, api_key: ApiKey | None = None) -> Judge:
        """The judge one actor holds (``endpoint``: its base URL, openai only)."""
        from .local import TransformersJudge
        from .openai_compatible import OpenAICompatibleJudge
        from .rule import RuleJudge

        if self.judge == "rule":
            from ...data.regionworld import VOCABULARY

            return RuleJudge(VOCABULARY, cache=self.cache, retry_unparsed=self.retry_unparsed)
        if self.judge == "openai":
            return OpenAICompatibleJudge(base_url=endpoint, model=self.model, api_key=api_key, cache=self.cache,
                                         concurrency=self.concurrency, max_retries=self.max_retries,
                                         backoff=self.backoff, timeout=self.timeout, temperature=self.temperature,
                                         max_tokens=self.max_tokens, retry_unparsed=self.retry_unparsed)
        return TransformersJudge.from_pretrained(self.model, max_new_tokens=self.max_tokens, cache=self.cache,
                                                 retry_unparsed=self.retry_unparsed)


class JudgeWorker:
    """A Ray actor holding one endpoint's judge (its threads are the endpoint's concurrency limit)."""

    def __init__(self, spec: JudgeSpec, endpoint: str | None, api_key: ApiKey | None):
        self.judge = spec.build(endpoint, api_key)

    def answer(self, prompts: list[str]) -> list[Answer]:
        return self.judge.answer(prompts)

    def stats(self) -> dict:
        return {"endpoint": getattr(self.judge, "base_url", None), "calls": self.judge.calls,
                "failures": getattr(self.judge, "failures", 0)}


def _deal(prompt: str, n: int) -> int:
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12], 16) % n


class JudgePool:
    """``ask(prompts) -> replies`` over `JudgeWorker` actors (see the module docstring).

    Args:
        spec: the `JudgeSpec`.
        api_key: the endpoints' `ApiKey` (read on the driver), or None.
        chunk_size: prompts per actor call.

    Actors whose process dies are restarted (twice) and their chunk retried; answers already in
    the cache are not asked again. Needs Ray initialised (`regionlib.runtime.distributed.init_ray`).
    """

    def __init__(self, spec: JudgeSpec, *, api_key: ApiKey | None = None, chunk_size: int = 64):
        import ray

        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        if api_key is not None and not isinstance(api_key, ApiKey):
            raise ConfigError(f"api_key must be an ApiKey (never a bare str), got {type(api_key).__name__}")
        worker = ray.remote(num_cpus=spec.cpus_per_worker, max_restarts=2, max_task_retries=2)(JudgeWorker)
        self.spec, self.chunk_size = spec, chunk_size
        self.workers = [worker.remote(spec, endpoint, api_key) for endpoint in spec.targets]
        self._failed: dict[str, str] = {}  # prompt -> its last error, over this pool's calls
        self._unparsed: set[str] = set()
        self._cached = 0

    def answer(self, prompts: Sequence[str]) -> list[Answer]:
        """One `Answer` per prompt, in order (failed ones included)."""
        import ray
        from ray.exceptions import RayError

        dealt: list[list[str]] = [[] for _ in self.workers]
        for p in dict.fromkeys(prompts):
            dealt[_deal(p, len(self.workers))].append(p)
        calls = [(chunk, self.workers[k].answer.remote(chunk)) for k, part in enumerate(dealt)
                 for chunk in (part[i:i + self.chunk_size] for i in range(0, len(part), self.chunk_size))]
        by_prompt: dict[str, Answer] = {}
        for chunk, ref in calls:
            try:
                got = ray.get(ref)
            except RayError as exc:  # the actor died more often than it is restarted
                got = [Answer(reply="", status="failed", error=f"judge worker lost: {type(exc).__name__}")] * len(chunk)
            by_prompt.update(zip(chunk, got))
        for p, a in by_prompt.items():
            self._cached += a.cached
            if a.status == "failed":
                self._failed[p] = a.error or "failed"
            else:
                self._failed.pop(p, None)
                (self._unparsed.add if a.status == "unparsed" else self._unparsed.discard)(p)
        return [by_prompt[p] for p in prompts]

    def ask(self, prompts: Sequence[str]) -> list[str]:
        """Replies in prompt order; a failed prompt's reply is ``""`` (see ``stats()["failed_prompts"]``)."""
        return [a.reply for a in self.answer(prompts)]

    def stats(self) -> dict:
        """Backend calls and failed attempts (per endpoint too), cached answers, failed and unparsed prompts."""
        import ray

        per = ray.get([w.stats.remote() for w in self.workers])
        errors = sorted(set(self._failed.values()))
        return {"calls": sum(p["calls"] for p in per), "failures": sum(p["failures"] for p in per),
                "cached": self._cached, "failed_prompts": len(self._failed), "errors": errors[:5],
                "unparsed_prompts": len(self._unparsed), "per_endpoint": per}

    def close(self) -> None:
        """End the actors (their cache files stay)."""
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []

    def __repr__(self) -> str:
        return f"JudgePool({self.spec.judge}, model={self.spec.model!r}, actors={len(self.workers)})"


def run_judge_eval(predictions: Mapping[str, str], bench, spec: JudgeSpec, *, out: str | Path,
                   api_key: ApiKey | None = None, tasks: Sequence[str] = ("dlc", "amber", "clair"),
                   vocabulary: Mapping[str, Sequence[str]] | None = None, chunk_size: int = 64) -> dict:
    """Score ``predictions`` on ``bench`` (a `JudgeBenchmark`) with a `JudgePool`; write ``out``.

    Returns ``{"scores": run_judge_suite's scores, "judge_calls": JudgePool.stats() + seconds,
    "complete": no prompt failed}`` and writes it (with the spec) to ``out/scores.json`` and
    ``out/report.html``. An incomplete run is reported, not raised: rerun it to ask the failed prompts.
    """
    from ..judge_suite import run_judge_suite

    t0 = time.perf_counter()
    pool = JudgePool(spec, api_key=api_key, chunk_size=chunk_size)
    try:
        scores = run_judge_suite(predictions, bench, pool, tasks=tasks, vocabulary=vocabulary)
        stats = pool.stats()
    finally:
        pool.close()
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    result = {"scores": scores, "judge_calls": stats, "complete": stats["failed_prompts"] == 0}
    _write_outputs(Path(out), result, spec)
    return result


def _write_outputs(out: Path, result: dict, spec: JudgeSpec) -> None:
    from ...runtime.shards import atomic_write_bytes
    from ..report import write_report

    out.mkdir(parents=True, exist_ok=True)
    scores, stats, config = result["scores"], result["judge_calls"], asdict(spec)
    atomic_write_bytes(out / "scores.json", json.dumps({**result, "config": config}, indent=1, default=float).encode())
    tables = {}
    if "dlc" in scores:
        d = scores["dlc"]
        tables["DLC-Bench"] = [{"Pos (%)": 100 * d["pos"], "Neg (%)": 100 * d["neg"], "Avg (%)": 100 * d["avg"],
                                "regions": d["regions"], "unparsed replies": d["unparsed_replies"]}]
    if "amber" in scores:
        tables["AMBER-style yes/no (seed 001)"] = [{"type": t, **m} for t, m in scores["amber"].items()]
    if "clair" in scores:
        tables["CLAIR"] = [scores["clair"]]
    tables["Judge calls"] = [{"calls": stats["calls"], "failed attempts": stats["failures"], "cached": stats["cached"],
                              "failed prompts": stats["failed_prompts"], "unparsed prompts": stats["unparsed_prompts"]}]
    notes = [f"judge: {spec.judge} {spec.model or ''}", *[f"skipped {k}: {v}" for k, v in scores["skipped"].items()]]
    if not result["complete"]:
        notes.insert(0, f"INCOMPLETE: {stats['failed_prompts']} prompts failed after their retries and are scored "
                        f"as unparsed; rerun the same command to ask them again. Errors: {'; '.join(stats['errors'])}")
    write_report(out, "Judge evaluation", tables=tables, notes=notes)
