"""DLC-Bench: attribute questions answered by a text-only judge (DAM seed 003 §5, App. D; REFERENCE §3).

Per region: a *recognition* question first (is the described object the annotated class or
something similar?), then positive and negative multiple-choice questions. Every question is
one judge call (`format_question`); the judge's reply is mapped to a choice by `parse_reply`
in the released evaluator's order; scores are the chosen choice's value (positives
1 / 0.5 / 0 / -1, negatives 1 / 0 / -1), clamped to ``min(0, s)`` for every question of a
region whose recognition answer is "No". Per region the positive and negative scores are
averaged; the benchmark's Pos is the mean over regions, Neg the mean over regions that have
negative questions, Avg = (Pos + Neg) / 2.

Question files use the released cache format (``details_recognition``, ``details_positives``,
``details_negatives``, each a list of ``{"question", "choices": [[text, score], ...], "type"}``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ..errors import DataFormatError

__all__ = [
    "JUDGE_INSTRUCTION",
    "recognition_question",
    "format_question",
    "parse_reply",
    "RegionResult",
    "score_region",
    "aggregate",
    "evaluate_dlc_bench",
    "replay_cached_replies",
]

JUDGE_INSTRUCTION = (
    "Answer the multiple-choice question based on the text description of an object in an image. You need to follow "
    "these rules:\n1. Do not output any reasoning. Do not perform correction. Please output exactly one answer from "
    "the choices for each question. Do not repeat the question.\n2. There is no need for exact matching. Please choose "
    "the closest option based on the description.\n\n"
)
LETTERS = string.ascii_uppercase[:5]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def recognition_question(class_name: str, *, plural: bool = False) -> dict:
    """The recognition question for ``class_name`` (singular or plural wording of the evaluator)."""
    if plural:
        text = (f"Is it likely that the objects in the description are {class_name} or objects of a similar type? "
                "Again, It does not have to be an exact match.")
    else:
        text = (f"Is it likely that the object in the description is {_article(class_name)} {class_name} or an object "
                "of a similar type? Again, It does not have to be an exact match.")
    return {"question": text, "choices": [["Yes", "correct"], ["No", "incorrect"]], "type": "recognition"}


def format_question(description: str, question: Mapping) -> str:
    """The judge prompt: instruction, the description, the question and choices lettered ``A.``-``E.``."""
    choices = question["choices"]
    if not 1 <= len(choices) <= len(LETTERS):
        raise DataFormatError(f"a question needs 1-{len(LETTERS)} choices, got {len(choices)}")
    lines = "".join(f"{LETTERS[i]}. {c[0]}\n" for i, c in enumerate(choices))
    return (f"{JUDGE_INSTRUCTION}The description is:\n{description}\n\nFrom the description above, please answer the "
            f"following question with one of the choices:\n{question['question']}\n{lines}")


def parse_reply(reply: str, choices: Sequence[str]) -> int | None:
    """Index of the chosen choice, or None when the reply matches none (scored 0).

    Order (lower-cased, stripped): exact choice text, ``"x. choice"`` or the bare letter;
    the unique choice contained in the reply; a reply starting with ``"<letter>."``; among several
    contained choices the one occurring last (ties: the longest); the reply contained in a choice
    (the longest such choice); a lone letter.
    """
    text = str(reply).strip().lower()
    opts = [c.strip().lower() for c in choices]
    letters = [l.lower() for l in LETTERS[: len(opts)]]
    for i, (c, l) in enumerate(zip(opts, letters)):
        if text in (c, f"{l}. {c}", l):
            return i
    contained = [i for i, c in enumerate(opts) if c and c in text]
    if len(contained) == 1:
        return contained[0]
    for i, l in enumerate(letters):
        if text.startswith(f"{l}."):
            return i
    if len(contained) > 1:
        return max(contained, key=lambda i: (text.rfind(opts[i]), len(opts[i])))
    inside = [i for i, c in enumerate(opts) if text and text in c]
    if inside:
        return max(inside, key=lambda i: len(opts[i]))
    stripped = text.strip(" .:()")
    if stripped in letters:
        return letters.index(stripped)
    return None


@dataclass
class RegionResult:
    """Scores of one region (``neg`` is None when the region has no negative question)."""

    region_id: str
    recognized: bool
    pos_scores: list[float]
    neg_scores: list[float]
    unparsed: int = 0
    answers: list[int | None] = field(default_factory=list)

    @property
    def pos(self) -> float:
        return sum(self.pos_scores) / len(self.pos_scores) if self.pos_scores else 0.0

    @property
    def neg(self) -> float | None:
        return sum(self.neg_scores) / len(self.neg_scores) if self.neg_scores else None


def score_region(region_id: str, questions: Mapping, replies: Sequence[str]) -> RegionResult:
    """Score one region from its judge replies, in order: recognition, positives, negatives."""
    rec = list(questions.get("details_recognition") or [])
    pos = list(questions.get("details_positives") or [])
    neg = list(questions.get("details_negatives") or [])
    ordered = rec + pos + neg
    if len(replies) != len(ordered):
        raise DataFormatError(f"region {region_id}: {len(ordered)} questions but {len(replies)} judge replies")
    answers = [parse_reply(r, [c[0] for c in q["choices"]]) for q, r in zip(ordered, replies)]
    recognized = True
    if rec:
        a = answers[0]
        recognized = a is not None and rec[0]["choices"][a][1] == "correct"

    def scores(qs, ans):
        out = []
        for q, a in zip(qs, ans):
            s = 0.0 if a is None else float(q["choices"][a][1])
            out.append(s if recognized else min(0.0, s))
        return out

    n_rec = len(rec)
    return RegionResult(
        region_id=str(region_id),
        recognized=recognized,
        pos_scores=scores(pos, answers[n_rec : n_rec + len(pos)]),
        neg_scores=scores(neg, answers[n_rec + len(pos) :]),
        unparsed=sum(a is None for a in answers),
        answers=answers,
    )


def aggregate(results: Sequence[RegionResult]) -> dict:
    """Benchmark scores: Pos, Neg, Avg, plus counts (regions, unparsed replies, not recognised)."""
    if not results:
        raise DataFormatError("no regions to aggregate")
    pos = sum(r.pos for r in results) / len(results)
    negs = [r.neg for r in results if r.neg is not None]
    neg = sum(negs) / len(negs) if negs else 0.0
    return {"pos": pos, "neg": neg, "avg": (pos + neg) / 2, "regions": len(results),
            "regions_with_negatives": len(negs), "unparsed_replies": sum(r.unparsed for r in results),
            "not_recognized": sum(not r.recognized for r in results)}


def evaluate_dlc_bench(descriptions: Mapping[str, str], questions: Mapping[str, Mapping],
                       ask: Callable[[list[str]], list[str]]) -> tuple[dict, list[RegionResult]]:
    """Run the benchmark: ``ask(prompts) -> replies`` is a judge (e.g. `CachedJudge.ask`).

    ``descriptions`` maps region id -> description; ``questions`` region id -> question record.
    Ids must agree exactly (missing / extra ids raise `DataFormatError`).
    """
    missing = sorted(set(questions) - set(descriptions))
    extra = sorted(set(descriptions) - set(questions))
    if missing or extra:
        raise DataFormatError(f"ids differ: missing descriptions for {missing[:5]}, no questions for {extra[:5]}")
    prompts, spans = [], []
    for rid in sorted(questions):
        q = questions[rid]
        ordered = list(q.get("details_recognition") or []) + list(q.get("details_positives") or []) + list(
            q.get("details_negatives") or [])
        spans.append((rid, len(prompts), len(ordered)))
        prompts += [format_question(descriptions[rid], item) for item in ordered]
    replies = ask(prompts)
    results = [score_region(rid, questions[rid], replies[s : s + n]) for rid, s, n in spans]
    return aggregate(results), results


def replay_cached_replies(cache: Mapping[str, Mapping]) -> tuple[dict, list[RegionResult]]:
    """Re-score the released evaluator's cache (``response`` lists) with this parser and scorer."""
    results = []
    for rid, entry in cache.items():
        if not isinstance(entry, Mapping):
            continue  # the cache also stores aggregate numbers (avg_pos, avg_neg)
        if "response" not in entry:
            raise DataFormatError(f"region {rid}: no 'response' list in the cache")
        results.append(score_region(rid, entry, entry["response"]))
    return aggregate(results), results
