"""CLAIR: an LLM's 0-100 judgement of whether two caption sets describe the same image (REFERENCE §10)."""

from __future__ import annotations

import json
import re
from typing import Sequence

from ..errors import DataFormatError

__all__ = ["clair_prompt", "parse_clair"]


def clair_prompt(candidates: Sequence[str], references: Sequence[str]) -> str:
    if not candidates or not references:
        raise DataFormatError("CLAIR needs at least one candidate and one reference caption")
    cand = "\n".join(f"- {c}" for c in candidates)
    ref = "\n".join(f"- {r}" for r in references)
    return ("You are trying to tell if a candidate set of captions is describing the same image as a reference set "
            f"of captions.\nCandidate set:\n{cand}\n\nReference set:\n{ref}\n\n"
            "On a precise scale from 0 to 100, how likely is it that the candidate set is describing the same image "
            "as the reference set? (JSON format, with a key \"score\", value between 0 and 100, and a key \"reason\" "
            "with a string value.)")


def parse_clair(reply: str) -> float | None:
    """Score in [0, 1]: the first ``{...}`` parsed as JSON (``score``); else the first number in the
    reply (values below 1 taken as fractions, i.e. multiplied by 100); None if there is none."""
    text = str(reply)
    m = re.search(r"\{.*?\}", text, re.S)
    if m:
        try:
            score = float(json.loads(m.group(0))["score"])
            return min(max(score, 0.0), 100.0) / 100.0
        except (ValueError, KeyError, TypeError):
            pass
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    if not m:
        return None
    value = float(m.group(0))
    if value < 1:
        value *= 100
    return min(max(value, 0.0), 100.0) / 100.0
