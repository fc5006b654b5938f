"""``python -m regionlib.evaluation --predictions P.json --references R.json [--metrics ...] [--out DIR]``.

Formats: see `regionlib.evaluation.api`. With ``--dlc-questions Q.json`` (the released
``*_eval.json`` layout or ``{id: question record}``) DLC-Bench is scored with the judge chosen
by ``--judge openai`` (REGIONLIB_JUDGE_* environment) or ``--judge rule --rule-vocabulary V.json``;
answers are cached in ``--cache``. Writes ``scores.json`` and ``report.html`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .api import _read_json, evaluate, load_predictions, load_references


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m regionlib.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--references", required=True)
    parser.add_argument("--metrics", nargs="+", default=["BLEU-4", "METEOR", "ROUGE-L", "CIDEr"])
    parser.add_argument("--backend", choices=["fast", "reference"], default="fast")
    parser.add_argument("--dlc-questions")
    parser.add_argument("--judge", choices=["openai", "rule"], default="openai")
    parser.add_argument("--rule-vocabulary")
    parser.add_argument("--cache", default="outputs/judge_cache.sqlite")
    parser.add_argument("--out", type=Path, default=Path("outputs/evaluation"))
    args = parser.parse_args(argv)
    preds, refs = load_predictions(args.predictions), load_references(args.references)
    questions = judge = None
    metrics = list(args.metrics)
    if args.dlc_questions:
        from .judges import OpenAIJudge, RuleJudge

        questions = {str(k): v for k, v in _read_json(args.dlc_questions).items() if isinstance(v, dict)}
        judge = (RuleJudge(json.loads(Path(args.rule_vocabulary).read_text()), cache=args.cache) if args.judge == "rule"
                 else OpenAIJudge(cache=args.cache))
        metrics.append("DLC-Bench")
    result = evaluate(preds, refs, metrics, questions=questions, judge=judge, backend=args.backend)
    from .report import write_report

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps(result, indent=2, default=float))
    write_report(args.out, "regionlib evaluation", tables={"corpus scores": [{"metric": k, "value": v} for k, v in
                                                                           result["corpus"].items()]},
                 notes=result["notes"], numbers=result["corpus"])
    print(json.dumps(result["corpus"], indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
