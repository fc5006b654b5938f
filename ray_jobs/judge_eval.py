"""Judge evaluation on Ray: DLC-Bench, AMBER-style yes/no and CLAIR over a pool of judge endpoints.

Local (RegionWorld test regions, the rule-based judge):
    python ray_jobs/judge_eval.py --predictions preds.json --regionworld 50 --judge rule --out outputs/judge
A vLLM (or any OpenAI-compatible) server per GPU node, 8 requests in flight per endpoint:
    export REGIONLIB_JUDGE_API_KEY=...    # if the endpoints need one; never logged
    ray job submit --working-dir . -- python ray_jobs/judge_eval.py --predictions preds.json \\
        --dlc-bench /data/DLC-Bench --judge openai --model meta-llama/Llama-3.1-8B-Instruct \\
        --endpoints http://10.0.0.5:8000/v1,http://10.0.0.6:8000/v1 --concurrency 8 --out /shared/judge

Predictions: ``{region id: description}`` (DLC-Bench's prediction format) or COCO results.
Benchmarks: ``--regionworld N`` (the regions of N RegionWorld test images: questions,
references, classes and image groups — all three tasks) or ``--dlc-bench DIR`` (the release's
annotations: DLC-Bench only). Prompts are split into chunks and sent round-robin to one Ray actor
per endpoint; an actor sends at most ``--concurrency`` requests at a time, each with bounded
retries and backoff. Every reply goes into one persistent answer cache (SQLite, ``--cache``), so
a rerun or a resumed run (after an endpoint failure or a dead worker) repeats no call. Writes
``scores.json`` and ``report.html`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.distributed import init_ray  # noqa: E402
from regionlib.errors import ConfigError  # noqa: E402


def make_judge(spec: dict, endpoint: str | None = None):
    """The judge of ``spec`` (``rule`` / ``openai`` at ``endpoint`` / ``transformers``), on the shared cache."""
    from regionlib.evaluation.judges import OpenAICompatibleJudge, RuleJudge, TransformersJudge

    kind = spec["judge"]
    if kind == "rule":
        from regionlib.data.regionworld import VOCABULARY

        return RuleJudge(VOCABULARY, cache=spec["cache"])
    if kind == "openai":
        return OpenAICompatibleJudge(base_url=endpoint, model=spec["model"], cache=spec["cache"],
                                     concurrency=spec["concurrency"], max_retries=spec["max_retries"],
                                     backoff=spec["backoff"], timeout=spec["timeout"])
    if kind == "transformers":
        return TransformersJudge.from_pretrained(spec["model"], cache=spec["cache"])
    raise ConfigError(f"--judge must be rule, openai or transformers, got {kind!r}")


class JudgeWorker:
    """A Ray actor holding one endpoint's judge (its threads are the endpoint's concurrency limit)."""

    def __init__(self, spec: dict, endpoint: str | None):
        self.judge = make_judge(spec, endpoint)

    def ask(self, prompts: list[str]) -> list[str]:
        return self.judge.ask(prompts)

    def stats(self) -> dict:
        return {"calls": self.judge.calls, "failures": getattr(self.judge, "failures", 0)}


class JudgePool:
    """``ask(prompts)`` over one `JudgeWorker` actor per endpoint, chunks dealt round-robin.

    Actors are restarted if their process dies and the chunk is retried; answers already in the
    cache are not asked again.
    """

    def __init__(self, spec: dict, endpoints: list[str | None], *, chunk_size: int = 64):
        import ray

        worker = ray.remote(num_cpus=spec["cpus_per_worker"], max_restarts=2, max_task_retries=2)(JudgeWorker)
        self.workers = [worker.remote(spec, e) for e in endpoints]
        self.chunk_size = chunk_size

    def ask(self, prompts):
        import ray

        chunks = [list(prompts[i: i + self.chunk_size]) for i in range(0, len(prompts), self.chunk_size)]
        refs = [self.workers[k % len(self.workers)].ask.remote(c) for k, c in enumerate(chunks)]
        return [reply for part in ray.get(refs) for reply in part]

    def stats(self) -> dict:
        import ray

        per = ray.get([w.stats.remote() for w in self.workers])
        return {"calls": sum(p["calls"] for p in per), "failures": sum(p["failures"] for p in per),
                "per_endpoint": per}


def load_benchmark(args):
    """``(JudgeBenchmark, vocabulary or None)`` of ``--regionworld`` / ``--dlc-bench``."""
    from regionlib.evaluation.judge_suite import JudgeBenchmark, regionworld_benchmark

    if args.regionworld:
        from regionlib.data.regionworld import VOCABULARY, generate_regionworld

        return regionworld_benchmark(generate_regionworld(args.regionworld, seed=args.world_seed, split="test")), VOCABULARY
    from regionlib.data.readers.dlc_bench import load_dlc_questions

    return JudgeBenchmark(questions=load_dlc_questions(args.dlc_bench)), None


def write_outputs(out: Path, scores: dict, stats: dict, spec: dict) -> None:
    from regionlib.evaluation.report import write_report
    from regionlib.shards import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in spec.items() if k != "cache"}
    atomic_write_bytes(out / "scores.json", json.dumps({"scores": scores, "judge_calls": stats, "config": public},
                                                       indent=1, default=float).encode())
    tables = {}
    if "dlc" in scores:
        d = scores["dlc"]
        tables["DLC-Bench"] = [{"Pos (%)": 100 * d["pos"], "Neg (%)": 100 * d["neg"], "Avg (%)": 100 * d["avg"],
                                "regions": d["regions"], "unparsed replies": d["unparsed_replies"]}]
    if "amber" in scores:
        tables["AMBER-style yes/no (seed 001)"] = [{"type": t, **{k: v for k, v in m.items()}}
                                                    for t, m in scores["amber"].items()]
    if "clair" in scores:
        tables["CLAIR"] = [scores["clair"]]
    tables["Judge calls"] = [{"calls": stats["calls"], "failed attempts": stats["failures"]}]
    write_report(out, "Judge evaluation", tables=tables, notes=[f"judge: {public['judge']} {public.get('model') or ''}",
                                                               *[f"skipped {k}: {v}" for k, v in scores["skipped"].items()]])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--predictions", type=Path, required=True)
    bench = p.add_mutually_exclusive_group(required=True)
    bench.add_argument("--regionworld", type=int, metavar="N", help="the regions of N RegionWorld test images")
    bench.add_argument("--dlc-bench", type=Path, help="a DLC-Bench release directory")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--tasks", default="dlc,amber,clair")
    p.add_argument("--judge", choices=["rule", "openai", "transformers"], default="rule")
    p.add_argument("--model", default=None, help="judge model name (openai) or path (transformers)")
    p.add_argument("--endpoints", default=None,
                   help="comma-separated OpenAI-compatible base URLs (default: $REGIONLIB_JUDGE_BASE_URL)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight per endpoint")
    p.add_argument("--max-retries", type=int, default=4)
    p.add_argument("--backoff", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=1, help="actors for the rule / transformers judges")
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--cache", type=Path, default=None, help="answer cache (default: <out>/answers.sqlite)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--address", default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    import os

    from regionlib.evaluation.formats import load_predictions
    from regionlib.evaluation.judge_suite import run_judge_suite

    args = parse_args(argv)
    if args.concurrency < 1 or args.workers < 1 or args.chunk_size < 1:
        raise ConfigError("--concurrency, --workers and --chunk-size must be positive")
    endpoints: list[str | None] = [None] * args.workers
    if args.judge == "openai":
        urls = args.endpoints or os.environ.get("REGIONLIB_JUDGE_BASE_URL")
        if not urls or not (args.model or os.environ.get("REGIONLIB_JUDGE_MODEL")):
            raise ConfigError("--judge openai needs --endpoints (or $REGIONLIB_JUDGE_BASE_URL) and --model "
                              "(or $REGIONLIB_JUDGE_MODEL)")
        endpoints = [u.strip() for u in urls.split(",") if u.strip()]
    cache = args.cache or args.out / "answers.sqlite"
    cache.parent.mkdir(parents=True, exist_ok=True)
    spec = {"judge": args.judge, "model": args.model or os.environ.get("REGIONLIB_JUDGE_MODEL"),
            "cache": str(cache.resolve()), "concurrency": args.concurrency, "max_retries": args.max_retries,
            "backoff": args.backoff, "timeout": args.timeout, "cpus_per_worker": 0.25}
    bench, vocabulary = load_benchmark(args)
    predictions = load_predictions(args.predictions)
    init_ray(args.address)
    t0 = time.perf_counter()
    pool = JudgePool(spec, endpoints, chunk_size=args.chunk_size)
    scores = run_judge_suite(predictions, bench, pool, tasks=[t for t in args.tasks.split(",") if t],
                             vocabulary=vocabulary)
    stats = pool.stats()
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    write_outputs(args.out, scores, stats, spec)
    summary = {"scores": {k: v for k, v in scores.items() if k != "dlc_per_region"}, "judge_calls": stats}
    print(json.dumps(summary, default=float))
    return {"scores": scores, "judge_calls": stats}


if __name__ == "__main__":
    main()
