"""DLC-Bench: attribute questions answered by a text-only judge (DAM, seed 003 §5 and App. D; REFERENCE §3).

Per region: a *recognition* question first (is the described object the annotated class or
something similar?), then the positive and negative multiple-choice questions in their
annotated order. Every question is one judge call (`format_question`, byte-identical to the
released evaluator's prompt); the reply is mapped to a choice by `parse_reply` in the released
evaluator's order; a question scores its chosen choice's value (positives 1 / 0.5 / 0 / -1,
negatives 1 / 0 / -1; a reply that matches no choice scores 0), clamped to ``min(0, s)`` for every
question of a region whose recognition answer is "No". Per region, Pos and Neg are the means of
its positive and negative scores (Neg is None without negatives); the benchmark's Pos is the mean
over regions, Neg the mean over regions with negatives, Avg = (Pos + Neg) / 2.

Question records come in either layout of the released code:

* the evaluator's cache (``*_eval.json``, also RegionWorld's): ``{"details_recognition": [q],
  "details_positives": [q, ...], "details_negatives": [q, ...]}`` (order restored from each
  question's ``question_index`` when present);
* the annotation file ``qa.json``: a list of questions ``{"question", "choices": [[text, score],
  ...], "type": "positive" | "negative"}``, with the class name given separately (the recognition
  question is built by `recognition_question`).

Deviations, where the released evaluator crashes instead of scoring: an empty reply, a letter
beyond the choices, or a recognition reply that matches neither "Yes" nor "No" is counted as
unparsed; an unparsed recognition answer counts as "No" (the region's scores are clamped).
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import DataFormatError, JudgeError

__all__ = [
    "JUDGE_PROMPT",
    "recognition_question",
    "region_questions",
    "format_question",
    "parse_reply",
    "RegionResult",
    "DLCBenchScores",
    "score_region",
    "aggregate",
    "evaluate_dlc_bench",
    "replay_released_cache",
]

JUDGE_PROMPT = (
    "Answer the multiple-choice question based on the text description of an object in an image. You need to follow "
    "these rules:\n1. Do not output any reasoning. Do not perform correction. Please output exactly one answer from "
    "the choices for each question. Do not repeat the question.\n2. There is no need for exact matching. Please choose "
    "the closest option based on the description.\n\nThe description is:\n{description}\n\nFrom the description "
    "above, please answer the following question with one of the choices:\n{question}\n"
)
LETTERS = "abcde"
QUESTION_TYPES = ("recognition", "positive", "negative")


@functools.lru_cache(maxsize=1)
def _inflect_engine():
    import inflect

    return inflect.engine()


def is_plural(class_name: str) -> bool:
    """The released evaluator's number decision: `inflect`'s ``singular_noun`` is not False, except "bus".

    The released caches were made with an `inflect` before 7.6, whose ``singular_noun`` strips the
    final "s" of every noun ending in "ss" ("wine glass" -> "wine glas", so the caches ask about
    "the objects ... are wine glass"); `inflect` 7.6 calls such nouns singular. A class name whose
    last word ends in "ss" is therefore plural here too, whatever `inflect` is installed
    (tested on every class of the released caches).
    """
    if class_name == "bus":
        return False
    return class_name.rstrip().lower().endswith("ss") or _inflect_engine().singular_noun(class_name) is not False


def recognition_question(class_name: str, *, plural: bool | None = None) -> dict:
    """The recognition question for ``class_name`` in the released evaluator's wording.

    ``plural=None`` decides by the released evaluator's rule (`is_plural`); pass it to override.
    The singular form's article is `inflect`'s ``a()``, as in the released evaluator ("a utensil",
    "an hour glass").
    """
    if not isinstance(class_name, str) or not class_name.strip():
        raise DataFormatError(f"class_name must be a non-empty str, got {class_name!r}")
    if plural if plural is not None else is_plural(class_name):
        text = (f"Is it likely that the objects in the description are {class_name} or objects of a similar type? "
                "Again, It does not have to be an exact match.")
    else:
        text = (f"Is it likely that the object in the description is {_inflect_engine().a(class_name)} or an "
                "object of a similar type? Again, It does not have to be an exact match.")
    return {"question": text, "choices": [["Yes", "correct"], ["No", "incorrect"]], "type": "recognition"}


def _check_question(q, where: str) -> dict:
    if not isinstance(q, Mapping) or not isinstance(q.get("question"), str) or "choices" not in q:
        raise DataFormatError(f"{where}: a question needs 'question' (str) and 'choices'")
    choices = q["choices"]
    if not isinstance(choices, Sequence) or not 2 <= len(choices) <= len(LETTERS):
        raise DataFormatError(f"{where}: needs 2-{len(LETTERS)} choices, got {choices!r}")
    for c in choices:
        if not (isinstance(c, Sequence) and len(c) == 2 and isinstance(c[0], str)):
            raise DataFormatError(f"{where}: each choice must be [text, score], got {c!r}")
    if q.get("type") not in QUESTION_TYPES:
        raise DataFormatError(f"{where}: 'type' must be one of {QUESTION_TYPES}, got {q.get('type')!r}")
    return dict(q)


def region_questions(record, *, class_name: str | None = None, region_id="?") -> list[dict]:
    """The questions of one region in judge order: the recognition question, then the rest.

    ``record`` is a cache-layout mapping or a ``qa.json`` list (see the module docstring);
    ``class_name`` builds the recognition question when the record has none.
    """
    where = f"region {region_id}"
    if isinstance(record, Mapping):
        rec = [_check_question({"type": "recognition", **q}, where) for q in record.get("details_recognition") or []]
        rest = [_check_question({"type": kind, **q}, where)
                for key, kind in (("details_positives", "positive"), ("details_negatives", "negative"))
                for q in record.get(key) or []]
        if rest and all("question_index" in q for q in rest):
            rest.sort(key=lambda q: q["question_index"])
    elif isinstance(record, Sequence) and not isinstance(record, str):
        rec, rest = [], [_check_question(q, where) for q in record]
    else:
        raise DataFormatError(f"{where}: questions must be a details_* mapping or a list, got {type(record).__name__}")
    if not rec and class_name is not None:
        rec = [recognition_question(class_name)]
    if len(rec) != 1 or any(q["type"] == "recognition" for q in rest):
        raise DataFormatError(f"{where}: needs exactly one recognition question (or a class name), got {len(rec)}")
    if not any(q["type"] == "positive" for q in rest):
        raise DataFormatError(f"{where}: has no positive question")
    return rec + rest


def format_question(description: str, question: Mapping) -> str:
    """The judge prompt: instruction, description, question and choices lettered ``A.``-``E.``."""
    text = question["question"] + "\n" + "".join(
        f"{LETTERS[i].upper()}. {choice}\n" for i, (choice, _) in enumerate(question["choices"]))
    return JUDGE_PROMPT.format(description=description, question=text.strip())


def parse_reply(reply: str, choices: Sequence[str]) -> int | None:
    """Index of the chosen choice, or None when the reply matches none (the question scores 0).

    The released evaluator's order, on the lower-cased, stripped reply: the exact choice text,
    ``"x. choice"`` or the bare letter; the only choice contained in the reply; a reply starting
    with ``"<letter>."``; among several contained choices the one whose first occurrence starts
    last (ties: the longest); the longest choice containing the reply; a lone letter (alone or
    followed by a newline). A one-letter reply of ``a``-``e`` is a letter, never a substring of a
    choice's text: beyond the choices it is unparsed (the released code fails there with IndexError).
    """
    pred = str(reply).strip().lower()
    opts = [c.strip().lower() for c in choices]
    contained = []
    for i, choice in enumerate(opts):
        if pred in (choice, f"{LETTERS[i]}. {choice}", LETTERS[i]):
            return i
        if choice in pred:
            contained.append((i, pred.index(choice), len(choice)))
    if len(contained) == 1:
        return contained[0][0]
    if len(pred) >= 2 and pred[0] in LETTERS and pred[1] == ".":
        return _letter(pred[0], len(opts))
    if contained:
        last = max(pos for _, pos, _ in contained)
        return max((c for c in contained if c[1] == last), key=lambda c: c[2])[0]
    if len(pred) == 1 and pred in LETTERS:  # a letter, never a substring of a choice's text
        return _letter(pred, len(opts))
    if pred:
        inside = [(i, len(c)) for i, c in enumerate(opts) if pred in c]
        if inside:
            return max(inside, key=lambda c: c[1])[0]
        if pred[0] in LETTERS and (len(pred) == 1 or pred[1] == "\n"):
            return _letter(pred[0], len(opts))
    return None


def _letter(letter: str, n_choices: int) -> int | None:
    index = LETTERS.index(letter)
    return index if index < n_choices else None


@dataclass
class RegionResult:
    """One region: per-question chosen indices (None: unparsed) and the (clamped) scores.

    ``pos`` / ``neg``: means of ``pos_scores`` / ``neg_scores`` (``neg`` None without negatives);
    ``score``: the mean over all its positive and negative scores (the evaluator's ``score``).
    """

    region_id: str
    recognized: bool
    pos_scores: list[float]
    neg_scores: list[float]
    answers: list[int | None] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    @property
    def pos(self) -> float:
        return sum(self.pos_scores) / len(self.pos_scores)

    @property
    def neg(self) -> float | None:
        return sum(self.neg_scores) / len(self.neg_scores) if self.neg_scores else None

    @property
    def score(self) -> float:
        return (sum(self.pos_scores) + sum(self.neg_scores)) / (len(self.pos_scores) + len(self.neg_scores))

    @property
    def unparsed(self) -> int:
        return sum(a is None for a in self.answers)


@dataclass
class DLCBenchScores:
    """Benchmark numbers: ``pos``, ``neg``, ``avg`` = (pos + neg) / 2 (``neg`` and ``avg`` NaN when no
    region has negative questions), ``mean_region_score`` (the released cache's ``avg``) and counts;
    ``unparsed_replies`` replies matched no choice."""

    pos: float
    neg: float
    avg: float
    mean_region_score: float
    regions: int
    regions_with_negatives: int
    not_recognized: int
    unparsed_replies: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def score_region(region_id, questions: Sequence[Mapping], replies: Sequence[str]) -> RegionResult:
    """Score one region from its judge ``replies``, one per question of `region_questions` order."""
    if len(replies) != len(questions):
        raise DataFormatError(f"region {region_id}: {len(questions)} questions but {len(replies)} judge replies")
    answers = [parse_reply(r, [c[0] for c in q["choices"]]) for q, r in zip(questions, replies)]
    first = answers[0]
    recognized = first is not None and questions[0]["choices"][first][1] == "correct"
    pos, neg = [], []
    for q, a in zip(questions[1:], answers[1:]):
        s = 0 if a is None else q["choices"][a][1]
        if not isinstance(s, (int, float)):
            raise DataFormatError(f"region {region_id}: choice scores must be numbers, got {s!r}")
        (pos if q["type"] == "positive" else neg).append(s if recognized else min(0, s))
    return RegionResult(str(region_id), recognized, pos, neg, answers, [str(r) for r in replies])


def aggregate(results: Sequence[RegionResult]) -> DLCBenchScores:
    """Benchmark scores over regions (summed in the given order, as the released evaluator does)."""
    if not results:
        raise DataFormatError("no regions to aggregate")
    pos = sum(r.pos for r in results) / len(results)
    negs = [r.neg for r in results if r.neg is not None]
    neg = sum(negs) / len(negs) if negs else math.nan
    return DLCBenchScores(pos=pos, neg=neg, avg=(pos + neg) / 2,
                          mean_region_score=sum(r.score for r in results) / len(results), regions=len(results),
                          regions_with_negatives=len(negs), not_recognized=sum(not r.recognized for r in results),
                          unparsed_replies=sum(r.unparsed for r in results))


def evaluate_dlc_bench(descriptions: Mapping[str, str], questions: Mapping, judge, *,
                       class_names: Mapping[str, str] | None = None) -> tuple[DLCBenchScores, list[RegionResult]]:
    """Run the benchmark with ``judge`` (anything with ``ask(prompts) -> replies``, e.g. a `Judge`).

    Args:
        descriptions: region id -> description (DLC-Bench's prediction file, ``{ann_id: text}``).
        questions: region id -> question record (either layout, see the module docstring);
            regions are scored in this mapping's order.
        class_names: region id -> class name, for records without a recognition question.

    All prompts go to ``judge.ask`` in one call (so a cached judge resumes where it stopped).
    Ids of ``descriptions`` and ``questions`` must agree exactly.
    """
    missing = [k for k in questions if k not in descriptions]
    extra = [k for k in descriptions if k not in questions]
    if missing or extra:
        raise DataFormatError(f"ids differ: no description for {missing[:5]} ({len(missing)}), "
                              f"no questions for {extra[:5]} ({len(extra)})")
    prompts, spans = [], []
    for rid, record in questions.items():
        description = descriptions[rid]
        if not isinstance(description, str):  # an empty description is asked as the released evaluator asks it
            raise DataFormatError(f"description of region {rid} must be a str, got {type(description).__name__}")
        qs = region_questions(record, class_name=None if class_names is None else class_names.get(rid), region_id=rid)
        spans.append((rid, qs, len(prompts)))
        prompts += [format_question(description, q) for q in qs]
    replies = judge.ask(prompts)
    if len(replies) != len(prompts):
        raise JudgeError(f"judge returned {len(replies)} replies for {len(prompts)} prompts")
    results = [score_region(rid, qs, replies[start:start + len(qs)]) for rid, qs, start in spans]
    return aggregate(results), results


def replay_released_cache(cache: Mapping[str, Mapping]) -> tuple[DLCBenchScores, list[RegionResult]]:
    """Re-score a released evaluator cache (``*_eval.json``) from its raw judge replies (``response``)."""
    results = []
    for rid, entry in cache.items():
        if not isinstance(entry, Mapping):
            continue  # the cache also holds the aggregate numbers (avg, avg_pos, avg_neg)
        if not isinstance(entry.get("response"), list):
            raise DataFormatError(f"region {rid}: no 'response' list in the cache")
        results.append(score_region(rid, region_questions(entry, region_id=rid), entry["response"]))
    return aggregate(results), results
