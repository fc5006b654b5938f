"""Region-caption expressiveness through a text-only LLM (seed 001, Fig. 1; AMBER's metrics; REFERENCE §9).

`yes_no_prompt` builds seed 001's question from a set of region captions and a target;
`parse_yes_no` accepts exactly "Yes" / "No" (case-insensitive, surrounding whitespace ignored),
anything else is invalid and counted. `amber_scores` computes precision / recall / F1 per
question type with "No" as the positive class (hallucination detection), AMBER's
denominators starting at 0.001 and F1's epsilon 1e-4; `cover` is the share of ground-truth
objects that the captions mention (lemmatised nouns, safe words removed).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

from ..errors import DataFormatError

__all__ = ["yes_no_prompt", "parse_yes_no", "amber_scores", "cover"]


def _verb(target: str) -> str:
    words = target.strip().split()
    plural = bool(words) and words[-1].endswith("s") and not words[-1].endswith("ss")
    return "Are" if plural else "Is"


def yes_no_prompt(captions: Sequence[str], target: str, *, verb: str | None = None) -> str:
    """``If an image contains [cap1], [cap2]... [capk]. Are/Is the [target] in this image? ...``"""
    caps = [c.strip().rstrip(".") for c in captions if c and c.strip()]
    if not caps:
        raise DataFormatError("yes_no_prompt needs at least one non-empty caption")
    if not target or not target.strip():
        raise DataFormatError("yes_no_prompt needs a non-empty target")
    return (f"If an image contains {', '.join(caps)}. {verb or _verb(target)} the {target.strip()} in this image? "
            "Answer the Yes-No question with only the single word with nothing else.")


def parse_yes_no(reply: str) -> str | None:
    """"yes" / "no" for an exact Yes / No reply, None otherwise."""
    text = str(reply).strip().lower()
    return text if text in ("yes", "no") else None


def amber_scores(truths: Sequence[str], replies: Sequence[str], types: Sequence[str] | None = None) -> dict:
    """Per type (and ``"all"``): precision, recall, F1 for "No" as positive; accuracy; invalid count.

    ``truths`` are "yes"/"no" ground-truth answers; invalid replies count as wrong answers.
    """
    if len(truths) != len(replies):
        raise DataFormatError(f"truths ({len(truths)}) and replies ({len(replies)}) differ in length")
    types = list(types) if types is not None else ["all"] * len(truths)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(types):
        groups[t].append(i)
        if t != "all":
            groups["all"].append(i)
    out = {}
    for name, idx in groups.items():
        tp = fp = fn = correct = invalid = 0
        for i in idx:
            truth = str(truths[i]).strip().lower()
            if truth not in ("yes", "no"):
                raise DataFormatError(f"truths[{i}] must be 'yes' or 'no', got {truths[i]!r}")
            pred = parse_yes_no(replies[i])
            invalid += pred is None
            correct += pred == truth
            tp += pred == "no" and truth == "no"
            fp += pred == "no" and truth == "yes"
            fn += pred != "no" and truth == "no"
        precision = tp / (0.001 + tp + fp)
        recall = tp / (0.001 + tp + fn)
        out[name] = {"precision": precision, "recall": recall,
                     "f1": 2 * precision * recall / (precision + recall + 1e-4),
                     "accuracy": correct / len(idx), "invalid": invalid, "n": len(idx)}
    return out


def cover(captions: Iterable[str], objects: Sequence[str], nlp, *, safe_words: Iterable[str] = ()) -> float:
    """Share of ground-truth ``objects`` whose lemma appears among the captions' noun lemmas."""
    safe = {w.lower() for w in safe_words}
    mentioned = set()
    for doc in nlp.pipe(list(captions)):
        mentioned |= {t.lemma_.lower() for t in doc if t.pos_ in ("NOUN", "PROPN")}
    gt = [o for o in {o.lower() for o in objects} if o not in safe]
    if not gt:
        raise DataFormatError("cover needs at least one ground-truth object outside the safe words")
    gt_lemmas = {o: " ".join(t.lemma_.lower() for t in nlp(o)) for o in gt}
    return sum(gt_lemmas[o] in mentioned or o in mentioned for o in gt) / len(gt)
