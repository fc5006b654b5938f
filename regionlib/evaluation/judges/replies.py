"""Reading the judged prompts back: which evaluation wrote a prompt, and whether a reply to it parses.

`choice_prompt` splits a DLC-Bench prompt (`dlc_bench.format_question`) into its description,
question and choices; `reply_parses` tells whether a reply is usable by the evaluation that
wrote the prompt — a DLC-Bench reply maps to a choice (`dlc_bench.parse_reply`), a yes/no reply
is exactly "Yes" or "No" (`amber.amber_scores`), a CLAIR reply has a score (`clair.parse_clair`);
any other prompt accepts any non-empty reply. Judges store replies that do not parse with the
status ``"unparsed"`` (see `cache`).
"""

from __future__ import annotations

import re

from ..amber import ANSWER_INSTRUCTION
from ..clair import CLAIR_PROMPT, parse_clair
from ..dlc_bench import JUDGE_PROMPT, parse_reply

__all__ = ["choice_prompt", "reply_parses"]

_DLC_HEAD, _DLC_TAIL = JUDGE_PROMPT.split("{description}")
_DLC_MIDDLE = _DLC_TAIL.split("{question}")[0]
_CLAIR_HEAD = CLAIR_PROMPT.split("{candidates}")[0]
_LETTER = re.compile(r"^[A-E]\. ")


def choice_prompt(prompt: str) -> tuple[str, str, list[str]] | None:
    """``(description, question, choices)`` of a DLC-Bench judge prompt, or None for any other prompt."""
    if not prompt.startswith(_DLC_HEAD):
        return None
    description, sep, body = prompt[len(_DLC_HEAD):].rpartition(_DLC_MIDDLE)
    if not sep:
        return None
    lines = body.strip().split("\n")
    return description, lines[0], [_LETTER.sub("", line) for line in lines[1:]]


def reply_parses(prompt: str, reply: str) -> bool:
    """Whether ``reply`` is usable by the evaluation that wrote ``prompt`` (see the module docstring)."""
    parts = choice_prompt(prompt)
    if parts is not None:
        return parse_reply(reply, parts[2]) is not None
    if prompt.endswith(ANSWER_INSTRUCTION):
        return reply in ("Yes", "No")
    if prompt.startswith(_CLAIR_HEAD):
        return parse_clair(reply)[0] is not None
    return bool(reply.strip())
