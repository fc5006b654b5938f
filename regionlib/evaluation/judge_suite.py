"""The judged evaluations run together: DLC-Bench, AMBER-style yes/no (seed 001) and CLAIR.

`JudgeBenchmark` holds what the judges need about the evaluated regions — DLC-Bench question
records, reference captions, class names and which regions share an image — and
`regionworld_benchmark` builds one from RegionWorld samples (its regions carry all of it).
`run_judge_suite` scores region descriptions with any ``judge`` (``ask(prompts) -> replies``:
a `Judge` or `regionlib.evaluation.judges.pool.JudgePool` over endpoints):

* ``dlc``   — `evaluate_dlc_bench` (REFERENCE §3);
* ``amber`` — per image, seed 001's yes/no prompt from the image's predicted region captions for
  every present class (truth "yes"), every absent class of the vocabulary (truth "no",
  existence) and each present object with a wrong colour (truth "no", attribute); AMBER's
  metrics (REFERENCE §9);
* ``clair`` — CLAIR per image, predicted vs. reference captions (REFERENCE §10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import DataFormatError
from .amber import amber_scores, yes_no_prompt
from .clair import clair_scores
from .dlc_bench import evaluate_dlc_bench

__all__ = ["SUITE_TASKS", "JudgeBenchmark", "regionworld_benchmark", "run_judge_suite"]

SUITE_TASKS = ("dlc", "amber", "clair")


@dataclass
class JudgeBenchmark:
    """questions: region id -> DLC-Bench record; references: region id -> [captions];
    class_names: region id -> class; images: image id -> [region ids];
    attributes: region id -> {"color": ..., ...} (for AMBER's attribute questions)."""

    questions: dict
    references: dict[str, list[str]] = field(default_factory=dict)
    class_names: dict[str, str] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)
    attributes: dict[str, dict] = field(default_factory=dict)


def regionworld_benchmark(samples: Sequence) -> JudgeBenchmark:
    """A `JudgeBenchmark` of every region of RegionWorld ``samples``."""
    bench = JudgeBenchmark(questions={})
    for s in samples:
        r = s.regions
        ids = [str(i) for i in r.ids]
        bench.images[str(s.image_id)] = ids
        for k, rid in enumerate(ids):
            bench.questions[rid] = r.data["questions"][k]
            bench.references[rid] = [r.captions[k]]
            bench.class_names[rid] = r.labels[k]
            bench.attributes[rid] = dict(r.data["attributes"][k])
    return bench


def _amber_items(predictions: Mapping[str, str], bench: JudgeBenchmark, vocabulary: Mapping[str, Sequence[str]]):
    shapes, colors = list(vocabulary.get("shape", [])), list(vocabulary.get("color", []))
    prompts, truths, types = [], [], []
    for image_id, rids in bench.images.items():
        captions = [predictions[r] for r in rids if predictions.get(r, "").strip()]
        if not captions:
            continue
        present = {bench.class_names[r] for r in rids}
        for shape in sorted(present):
            prompts.append(yes_no_prompt(captions, shape, verb="Is"))
            truths.append("yes"), types.append("existence")
        for shape in [s for s in shapes if s not in present]:
            prompts.append(yes_no_prompt(captions, shape, verb="Is"))
            truths.append("no"), types.append("existence")
        for r in rids:
            attrs = bench.attributes.get(r, {})
            wrong = [c for c in colors if c != attrs.get("color")]
            if attrs and wrong:
                colours_here = {bench.attributes[o].get("color") for o in rids if bench.class_names[o] == attrs["shape"]}
                choice = [c for c in wrong if c not in colours_here]
                if choice:  # a colour no object of this shape has in the image
                    prompts.append(yes_no_prompt(captions, f"{choice[0]} {attrs['shape']}", verb="Is"))
                    truths.append("no"), types.append("attribute")
    return prompts, truths, types


def run_judge_suite(predictions: Mapping[str, str], bench: JudgeBenchmark, judge, *,
                    tasks: Sequence[str] = SUITE_TASKS, vocabulary: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Scores of ``predictions`` (region id -> description) for each task in ``tasks``.

    Returns ``{"dlc": DLC-Bench scores dict, "amber": {type: metrics}, "clair": {"mean", "unparsed"}}``
    (tasks without their inputs — AMBER without ``vocabulary`` or image groups, CLAIR without
    references — are reported under ``"skipped"`` with the reason).
    """
    unknown = [t for t in tasks if t not in SUITE_TASKS]
    if unknown:
        raise DataFormatError(f"tasks must be among {SUITE_TASKS}, got {unknown}")
    missing = [r for r in bench.questions if r not in predictions]
    if missing:
        raise DataFormatError(f"no prediction for {len(missing)} benchmark regions, e.g. {missing[:5]}")
    out: dict = {"skipped": {}}
    if "dlc" in tasks:
        preds = {r: predictions[r] for r in bench.questions}
        scores, results = evaluate_dlc_bench(preds, bench.questions, judge, class_names=bench.class_names or None)
        out["dlc"] = scores.as_dict()
        out["dlc_per_region"] = {str(r.region_id): r.score for r in results}
        # per region (pos + neg) / 2: its mean over regions is the table's Avg (when every region has negatives)
        out["dlc_avg_per_region"] = {str(r.region_id): r.pos if r.neg is None else (r.pos + r.neg) / 2 for r in results}
    if "amber" in tasks:
        if not vocabulary or not bench.images:
            out["skipped"]["amber"] = "needs a closed vocabulary and image groups"
        else:
            prompts, truths, types = _amber_items(predictions, bench, vocabulary)
            out["amber"] = amber_scores(truths, judge.ask(prompts), types)
    if "clair" in tasks:
        if not bench.references or not bench.images:
            out["skipped"]["clair"] = "needs reference captions and image groups"
        else:
            groups = [rids for rids in bench.images.values() if all(r in bench.references for r in rids)]
            cands = [[predictions[r] if predictions[r].strip() else "nothing" for r in rids] for rids in groups]
            refs = [[c for r in rids for c in bench.references[r]] for rids in groups]
            result = clair_scores(cands, refs, judge)
            out["clair"] = {"mean": result.mean, "unparsed": result.unparsed, "images": len(groups)}
    return out
