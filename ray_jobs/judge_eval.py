"""Judge evaluation on Ray: DLC-Bench, AMBER-style yes/no and CLAIR over a pool of judge endpoints.

Local (RegionWorld test regions, the rule-based judge):
    python ray_jobs/judge_eval.py --predictions preds.json --regionworld 50 --judge rule --out outputs/judge
A vLLM (or any OpenAI-compatible) server per GPU node, 8 requests in flight per endpoint; the API
key is read here, on the driver, from --api-key-file or $REGIONLIB_JUDGE_API_KEY, and handed to
the actors (never logged):
    ray job submit --working-dir . -- python ray_jobs/judge_eval.py --predictions preds.json \\
        --dlc-bench /data/DLC-Bench --judge openai --model meta-llama/Llama-3.1-8B-Instruct \\
        --endpoints http://10.0.0.5:8000/v1,http://10.0.0.6:8000/v1 --api-key-file /shared/judge.key \\
        --concurrency 8 --out /shared/judge

The pool, its retries, failure accounting and the answer cache are
`regionlib.evaluation.judges.pool` (see there). Prompts that fail after their retries are
reported in ``scores.json`` / ``report.html`` and the job exits with status 3; the same command
asks them again. ``--retry-unparsed`` also asks cached replies that matched no choice again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.runtime.distributed import init_ray  # noqa: E402
from regionlib.errors import ConfigError  # noqa: E402
from regionlib.evaluation.judges.pool import JUDGE_KINDS, JudgeSpec, run_judge_eval  # noqa: E402

INCOMPLETE_EXIT_STATUS = 3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--predictions", type=Path, required=True)
    bench = p.add_mutually_exclusive_group(required=True)
    bench.add_argument("--regionworld", type=int, metavar="N", help="the regions of N RegionWorld test images")
    bench.add_argument("--dlc-bench", type=Path, help="a DLC-Bench release directory")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--tasks", default="dlc,amber,clair")
    p.add_argument("--judge", choices=JUDGE_KINDS, default="rule")
    p.add_argument("--model", default=os.environ.get("REGIONLIB_JUDGE_MODEL"),
                   help="judge model name (openai) or path (transformers); default $REGIONLIB_JUDGE_MODEL")
    p.add_argument("--endpoints", default=os.environ.get("REGIONLIB_JUDGE_BASE_URL"),
                   help="comma-separated OpenAI-compatible base URLs (default: $REGIONLIB_JUDGE_BASE_URL)")
    p.add_argument("--api-key-file", type=Path, default=None,
                   help="a file holding the endpoints' API key (default: $REGIONLIB_JUDGE_API_KEY, $OPENAI_API_KEY)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight per endpoint")
    p.add_argument("--max-retries", type=int, default=4)
    p.add_argument("--backoff", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request, the whole request")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=300)
    p.add_argument("--retry-unparsed", action="store_true", help="ask cached replies that matched nothing again")
    p.add_argument("--workers", type=int, default=1, help="actors for the rule / transformers judges")
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--cache", type=Path, default=None, help="answer-cache directory (default: <out>/answers)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--address", default=None)
    return p.parse_args(argv)


def load_benchmark(args):
    """``(JudgeBenchmark, vocabulary or None)`` of ``--regionworld`` / ``--dlc-bench``."""
    from regionlib.evaluation.judge_suite import JudgeBenchmark, regionworld_benchmark

    if args.regionworld:
        from regionlib.data.regionworld import VOCABULARY, generate_regionworld

        return regionworld_benchmark(generate_regionworld(args.regionworld, seed=args.world_seed, split="test")), VOCABULARY
    from regionlib.data.readers.dlc_bench import load_dlc_questions

    return JudgeBenchmark(questions=load_dlc_questions(args.dlc_bench)), None


def main(argv=None) -> dict:
    from regionlib.evaluation.formats import load_predictions
    from regionlib.evaluation.judges import ApiKey

    args = parse_args(argv)
    if args.chunk_size < 1:
        raise ConfigError("--chunk-size must be positive")
    endpoints = tuple(u.strip() for u in (args.endpoints or "").split(",") if u.strip()) if args.judge == "openai" else ()
    spec = JudgeSpec(judge=args.judge, model=args.model, endpoints=endpoints,
                     cache=str((args.cache or args.out / "answers").resolve()), concurrency=args.concurrency,
                     max_retries=args.max_retries, backoff=args.backoff, timeout=args.timeout,
                     temperature=args.temperature, max_tokens=args.max_tokens, workers=args.workers,
                     retry_unparsed=args.retry_unparsed)
    api_key = ApiKey.resolve(args.api_key_file) if args.judge == "openai" else None
    bench, vocabulary = load_benchmark(args)
    predictions = load_predictions(args.predictions)
    init_ray(args.address)
    result = run_judge_eval(predictions, bench, spec, out=args.out, api_key=api_key, vocabulary=vocabulary,
                            tasks=[t for t in args.tasks.split(",") if t], chunk_size=args.chunk_size)
    print(json.dumps({"scores": {k: v for k, v in result["scores"].items() if k != "dlc_per_region"},
                      "judge_calls": result["judge_calls"], "complete": result["complete"]}, default=float))
    if not result["complete"]:
        print(f"judge_eval: {result['judge_calls']['failed_prompts']} prompts failed after their retries (scored as "
              f"unparsed, see {args.out / 'report.html'}); rerun the same command to ask them again", file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["complete"] else INCOMPLETE_EXIT_STATUS)
