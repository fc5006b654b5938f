"""CLAIR (Chan et al. 2023): an LLM's 0-100 judgement of whether two caption sets describe the same image.

Used by DAM (seed 003, Tab. 4) on detailed captions; REFERENCE §10. The prompt is the official
one (captions one per line as ``- caption``); `parse_clair` follows the official parser: the
first ``{...}`` read as JSON (its ``score``), else the first number in the reply (values below 1
taken as already normalised and multiplied by 100); the score is returned divided by 100. A reply
with neither scores 0 and is counted as unparsed (the official code retries, then sets 0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import DataFormatError, JudgeError

__all__ = ["clair_prompt", "parse_clair", "ClairResult", "clair_scores"]

CLAIR_PROMPT = (
    "You are trying to tell if a candidate set of captions is describing the same image as a reference set of "
    "captions.\nCandidate set:\n{candidates}\nReference set:\n{references}\nOn a precise scale from 0 to 100, how "
    "likely is it that the candidate set is describing the same image as the reference set? (JSON format, with a key "
    "\"score\", value between 0 and 100, and a key \"reason\" with a string value.)\n"
)


def _statements(captions: Sequence[str], name: str) -> str:
    if isinstance(captions, str) or not captions or not all(isinstance(c, str) and c.strip() for c in captions):
        raise DataFormatError(f"{name} must be a non-empty list of non-empty str, got {captions!r}")
    return "".join(f"- {c}\n" for c in captions)


def clair_prompt(candidates: Sequence[str], references: Sequence[str]) -> str:
    """The official CLAIR prompt for a candidate caption set and a reference caption set."""
    return CLAIR_PROMPT.format(candidates=_statements(candidates, "candidates"),
                               references=_statements(references, "references"))


def parse_clair(reply: str) -> tuple[float | None, str | None]:
    """``(score in [0, 1] or None, reason or None)`` from a judge reply (see the module docstring)."""
    text = str(reply)
    try:
        data = json.loads("{" + text.split("{")[1].split("}")[0] + "}")
        return float(data["score"]) / 100, str(data.get("reason", "Unknown"))
    except (ValueError, KeyError, IndexError, TypeError):  # ValueError includes JSONDecodeError
        numbers = re.findall(r"\d*\.?\d+", text)
        if not numbers:
            return None, None
        score = float(numbers[0])
        if score < 1:
            score *= 100
        reason = re.findall(r"(?i)reason.*", text)
        return score / 100, reason[0].strip()[len("reason"):].replace(":", "").strip() if reason else "Unknown"


@dataclass
class ClairResult:
    """Per-sample CLAIR ``scores`` (unparsed replies score 0), their mean, ``reasons`` and ``unparsed``."""

    scores: list[float]
    reasons: list[str | None]
    unparsed: int

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


def clair_scores(candidates: Sequence[Sequence[str]], references: Sequence[Sequence[str]], judge) -> ClairResult:
    """CLAIR of each candidate caption set against its reference set, with ``judge.ask`` (one call)."""
    if len(candidates) != len(references) or not candidates:
        raise DataFormatError(f"need equally many candidate and reference sets (> 0), got {len(candidates)} and "
                              f"{len(references)}")
    prompts = [clair_prompt(c, r) for c, r in zip(candidates, references)]
    replies = judge.ask(prompts)
    if len(replies) != len(prompts):
        raise JudgeError(f"judge returned {len(replies)} replies for {len(prompts)} prompts")
    parsed = [parse_clair(r) for r in replies]
    return ClairResult(scores=[0.0 if s is None else s for s, _ in parsed], reasons=[r for _, r in parsed],
                       unparsed=sum(s is None for s, _ in parsed))
