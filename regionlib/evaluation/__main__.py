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
makes no calls and an interrupted run resumes. The options are `EvaluationSettings`'; a wrong value or a
missing input file is a `ConfigError` naming the option before anything is read.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings, add_options, from_args, setting
from ..data.readers.base import read_json
from ..errors import ConfigError
from .api import DEFAULT_METRICS, METRICS, evaluate
from .formats import load_predictions, load_question_file, load_references

JUDGED = ("DLC-Bench", "CLAIR")


@dataclass(frozen=True)
class EvaluationSettings(Settings):
    """``python -m regionlib.evaluation``'s settings."""

    predictions: str = setting(exists="file", help="{id: caption} or COCO results JSON")
    references: str | None = setting(None, exists="file", help="{id: [captions]} or COCO captions JSON")
    metrics: tuple[str, ...] = setting(DEFAULT_METRICS, choices=METRICS)
    backend: str = setting("fast", choices=("fast", "reference"))
    dlc_questions: str | None = setting(None, exists="file",
                                        help="DLC-Bench questions: a released *_eval.json or qa.json")
    class_names: str | None = setting(None, exists="file", help="DLC-Bench class_names.json (for qa.json questions)")
    judge: str = setting("openai", choices=("openai", "rule"))
    rule_vocabulary: str | None = setting(None, exists="file", help="JSON {attribute: [values]} for --judge rule")
    concurrency: int = setting(8, min=1, help="judge requests in flight (--judge openai)")
    cache: str | None = setting(None, help="judge answer cache directory (JSON-lines files, one per writer)")
    out: str = "outputs/evaluation"
    method: str = setting("predictions", help="the method column of scores.csv")

    def __post_init__(self):
        super().__post_init__()
        if self.judge == "rule" and set(JUDGED) & set(self.metrics) and not self.rule_vocabulary:
            raise ConfigError("--judge rule needs --rule-vocabulary")
        if "DLC-Bench" in self.metrics and not self.dlc_questions:
            raise ConfigError("DLC-Bench needs --dlc-questions")


def build_parser() -> argparse.ArgumentParser:
    from . import formats

    parser = argparse.ArgumentParser(prog="python -m regionlib.evaluation",
                                     description=__doc__ + "\n" + formats.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, EvaluationSettings)
    return parser


def main(argv=None) -> dict:
    s = from_args(EvaluationSettings, build_parser().parse_args(argv))
    predictions = load_predictions(s.predictions)
    references = load_references(s.references) if s.references else None
    judge = questions = class_names = None
    if set(JUDGED) & set(s.metrics):
        from .judges import OpenAICompatibleJudge, RuleJudge

        if s.judge == "rule":
            judge = RuleJudge(read_json(s.rule_vocabulary, "rule-judge vocabulary file", expect=dict), cache=s.cache)
        else:
            judge = OpenAICompatibleJudge(cache=s.cache, concurrency=s.concurrency)
    if "DLC-Bench" in s.metrics:
        questions = load_question_file(s.dlc_questions)
        class_names = read_json(s.class_names, "class-name file", expect=dict) if s.class_names else None
    result = evaluate(predictions, references, list(s.metrics), questions=questions, class_names=class_names,
                      judge=judge, backend=s.backend)
    from .report import write_report
    from .table import score_rows

    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(result, indent=2))
    rows = score_rows(s.method, result["corpus"], result["per_sample"])
    write_report(out, "regionlib evaluation", scores=rows,
                 tables={"counts": [{"what": k, "n": v} for k, v in result["counts"].items()]}, notes=result["notes"])
    print(json.dumps(result["corpus"], indent=2))
    return result


if __name__ == "__main__":
    main()
