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

The options are `JudgeEvalSettings`' (``--help`` lists them with their defaults); a wrong value, a
missing input file or directory is a `ConfigError` naming the option before Ray starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.config import Settings, add_options, from_args, setting  # noqa: E402
from regionlib.errors import ConfigError  # noqa: E402
from regionlib.evaluation.judge_suite import SUITE_TASKS  # noqa: E402
from regionlib.evaluation.judges.pool import JUDGE_KINDS, JudgeSpec, run_judge_eval  # noqa: E402
from regionlib.runtime import distributed  # noqa: E402

INCOMPLETE_EXIT_STATUS = 3


@dataclass(frozen=True)
class JudgeEvalSettings(Settings):
    """The judge job's settings: one of ``regionworld`` / ``dlc_bench``; the judge (`JudgeSpec`'s)."""

    predictions: str = setting(exists="file", help="{id: caption} predictions JSON")
    out: str = setting(help="output directory")
    regionworld: int | None = setting(None, min=1, help="the regions of N RegionWorld test images")
    dlc_bench: str | None = setting(None, exists="dir", help="a DLC-Bench release directory")
    world_seed: int = setting(0, min=0)
    tasks: tuple[str, ...] = setting(SUITE_TASKS, choices=SUITE_TASKS, help="comma-separated")
    judge: str = setting("rule", choices=JUDGE_KINDS)
    model: str | None = setting(None, help="judge model name (openai) or path (transformers); "
                                           "default $REGIONLIB_JUDGE_MODEL")
    endpoints: str | None = setting(None, help="comma-separated OpenAI-compatible base URLs "
                                               "(default: $REGIONLIB_JUDGE_BASE_URL)")
    api_key_file: str | None = setting(None, exists="file", help="a file holding the endpoints' API key "
                                                                 "(default: $REGIONLIB_JUDGE_API_KEY, $OPENAI_API_KEY)")
    concurrency: int = setting(8, min=1, help="requests in flight per endpoint")
    max_retries: int = setting(4, min=0)
    backoff: float = setting(1.0, min=0, help="seconds before the first retry")
    timeout: float = setting(60.0, gt=0, help="seconds per request, the whole request")
    temperature: float = setting(0.0, min=0)
    max_tokens: int = setting(300, min=1)
    retry_unparsed: bool = setting(False, help="ask cached replies that matched nothing again")
    workers: int = setting(1, min=1, help="actors for the rule / transformers judges")
    chunk_size: int = setting(64, min=1)
    cache: str | None = setting(None, help="answer-cache directory (default: <out>/answers)")
    address: str | None = setting(None, help="Ray address (default: $RAY_ADDRESS or a local instance)")

    def __post_init__(self):
        super().__post_init__()
        if (self.regionworld is None) == (self.dlc_bench is None):
            raise ConfigError("give one of --regionworld N or --dlc-bench DIR")


def parse_settings(argv=None) -> JudgeEvalSettings:
    """The job's settings from the command line (and the environment's judge model / endpoints)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p, JudgeEvalSettings)
    env = {"model": os.environ.get("REGIONLIB_JUDGE_MODEL"), "endpoints": os.environ.get("REGIONLIB_JUDGE_BASE_URL")}
    return from_args(JudgeEvalSettings, p.parse_args(argv), defaults=env)


def load_benchmark(s: JudgeEvalSettings):
    """``(JudgeBenchmark, vocabulary or None)`` of ``--regionworld`` / ``--dlc-bench``."""
    from regionlib.evaluation.judge_suite import JudgeBenchmark, regionworld_benchmark

    if s.regionworld:
        from regionlib.data.regionworld import VOCABULARY, generate_regionworld

        return regionworld_benchmark(generate_regionworld(s.regionworld, seed=s.world_seed, split="test")), VOCABULARY
    from regionlib.data.readers.dlc_bench import load_dlc_questions

    return JudgeBenchmark(questions=load_dlc_questions(s.dlc_bench)), None


def main(argv=None) -> dict:
    from regionlib.evaluation.formats import load_predictions
    from regionlib.evaluation.judges import ApiKey

    s = parse_settings(argv)
    out = Path(s.out)
    endpoints = tuple(u.strip() for u in (s.endpoints or "").split(",") if u.strip()) if s.judge == "openai" else ()
    spec = JudgeSpec(judge=s.judge, model=s.model, endpoints=endpoints,
                     cache=str(Path(s.cache or out / "answers").resolve()), concurrency=s.concurrency,
                     max_retries=s.max_retries, backoff=s.backoff, timeout=s.timeout,
                     temperature=s.temperature, max_tokens=s.max_tokens, workers=s.workers,
                     retry_unparsed=s.retry_unparsed)
    api_key = ApiKey.resolve(s.api_key_file) if s.judge == "openai" else None
    bench, vocabulary = load_benchmark(s)
    predictions = load_predictions(s.predictions)
    distributed.init_ray(s.address)
    result = run_judge_eval(predictions, bench, spec, out=out, api_key=api_key, vocabulary=vocabulary,
                            tasks=list(s.tasks), chunk_size=s.chunk_size)
    print(json.dumps({"scores": {k: v for k, v in result["scores"].items() if k != "dlc_per_region"},
                      "judge_calls": result["judge_calls"], "complete": result["complete"]}, default=float))
    if not result["complete"]:
        print(f"judge_eval: {result['judge_calls']['failed_prompts']} prompts failed after their retries (scored as "
              f"unparsed, see {out / 'report.html'}); rerun the same command to ask them again", file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["complete"] else INCOMPLETE_EXIT_STATUS)
