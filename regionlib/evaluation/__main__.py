"""Command line: score prediction files and write ``scores.json``, the tidy ``scores.csv`` (id, method,
metric, value) and ``report.html``.

    python -m regionlib.evaluation --predictions P.json --references R.json \\
        [--metrics BLEU-4 METEOR ROUGE-L CIDEr ...] [--out DIR]
    python -m regionlib.evaluation --predictions dam_3b_v1.json --dlc-questions qa.json \\
        --class-names class_names.json --judge openai --metrics DLC-Bench

File formats: `regionlib.evaluation.formats` (``{id: caption}``, DLC-Bench's ``{ann_id:
description}``, COCO results; references ``{id: [captions]}`` or COCO captions). Judges:
``--judge openai`` reads REGIONLIB_JUDGE_BASE_URL / REGIONLIB_JUDGE_MODEL / OPENAI_API_KEY;
``--judge rule --rule-vocabulary V.json`` is the deterministic RegionWorld judge. Judge answers
are cached in ``--cache`` (default REGIONLIB_JUDGE_CACHE or ~/.cache/regionlib), so a rerun
makes no calls and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .api import DEFAULT_METRICS, METRICS, evaluate
from ..data.readers.base import read_json
from .formats import load_predictions, load_question_file, load_references


def build_parser() -> argparse.ArgumentParser:
    from . import formats

    parser = argparse.ArgumentParser(prog="python -m regionlib.evaluation",
                                     description=__doc__ + "\n" + formats.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, help="{id: caption} or COCO results JSON")
    parser.add_argument("--references", help="{id: [captions]} or COCO captions JSON")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=METRICS, metavar="METRIC",
                        help=f"any of {', '.join(METRICS)}")
    parser.add_argument("--backend", choices=["fast", "reference"], default="fast")
    parser.add_argument("--dlc-questions", help="DLC-Bench questions: a released *_eval.json or qa.json")
    parser.add_argument("--class-names", help="DLC-Bench class_names.json (for qa.json questions)")
    parser.add_argument("--judge", choices=["openai", "rule"], default="openai")
    parser.add_argument("--rule-vocabulary", help="JSON {attribute: [values]} for --judge rule")
    parser.add_argument("--concurrency", type=int, default=8, help="judge requests in flight (--judge openai)")
    parser.add_argument("--cache", help="judge answer cache directory (JSON-lines files, one per writer)")
    parser.add_argument("--out", type=Path, default=Path("outputs/evaluation"))
    parser.add_argument("--method", default="predictions", help="the method column of scores.csv")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    predictions = load_predictions(args.predictions)
    references = load_references(args.references) if args.references else None
    judge = questions = class_names = None
    if "DLC-Bench" in args.metrics or "CLAIR" in args.metrics:
        from .judges import OpenAICompatibleJudge, RuleJudge

        if args.judge == "rule":
            if not args.rule_vocabulary:
                raise SystemExit("--judge rule needs --rule-vocabulary")
            judge = RuleJudge(read_json(args.rule_vocabulary, "rule-judge vocabulary file", expect=dict), cache=args.cache)
        else:
            judge = OpenAICompatibleJudge(cache=args.cache, concurrency=args.concurrency)
    if "DLC-Bench" in args.metrics:
        if not args.dlc_questions:
            raise SystemExit("DLC-Bench needs --dlc-questions")
        questions = load_question_file(args.dlc_questions)
        class_names = read_json(args.class_names, "class-name file", expect=dict) if args.class_names else None
    result = evaluate(predictions, references, args.metrics, questions=questions, class_names=class_names,
                      judge=judge, backend=args.backend)
    from .report import write_report
    from .table import score_rows

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps(result, indent=2))
    rows = score_rows(args.method, result["corpus"], result["per_sample"])
    write_report(args.out, "regionlib evaluation", scores=rows,
                 tables={"counts": [{"what": k, "n": v} for k, v in result["counts"].items()]}, notes=result["notes"])
    print(json.dumps(result["corpus"], indent=2))
    return result


if __name__ == "__main__":
    main()
