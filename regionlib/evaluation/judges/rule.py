"""A deterministic judge for RegionWorld's closed vocabulary (no model, no network).

It reads the prompts regionlib itself writes and answers by keyword matching:

* DLC-Bench (`dlc_bench.format_question`): the recognition question is "Yes" when the class name
  (any ``/`` alternative, or a synonym) is named in the description. Attribute questions are
  read from their choices' templates — "The {attr} of the {obj} is mentioned in the description
  and is {v}." (*match*), "... but is not {v}." (*other*), "The {attr} of the {obj} is not
  mentioned, but the {obj} is mentioned." (*object only*), "The {obj} is not mentioned ..."
  (*absent*). The judge picks *match* when the description names ``v`` (or one of its ``or``
  alternatives), *other* when it names another value of ``{attr}`` from the vocabulary, *object
  only* when it names the object, else *absent* — like a careful reader of the description.
  Only the description's first clause (up to the first comma) is read: RegionWorld captions name
  a neighbouring object after it.
* seed 001's yes/no prompt (`amber.yes_no_prompt`): "Yes" when every word of the target occurs
  in the captions, else "No".
* CLAIR (`clair.clair_prompt`): the word-overlap F1 of the two caption sets, as CLAIR's JSON.

Anything else gets "I cannot answer this question." (which no parser maps to a choice).
"""

from __future__ import annotations

import json
import re
from typing import Mapping, Sequence

from ...errors import JudgeError
from .base import Judge
from .replies import choice_prompt

__all__ = ["RuleJudge"]

_WORD = re.compile(r"[a-z0-9]+")
_MATCH = re.compile(r"^the (?P<attr>.+?) of the (?P<obj>.+?) (?:is|are) mentioned in the description and (?:is|are) "
                    r"(?P<value>.+?)\.?$")
_OTHER = re.compile(r"^the (?P<attr>.+?) of the (?P<obj>.+?) (?:is|are) mentioned in the description but (?:is|are) "
                    r"not (?P<value>.+?)\.?$")
_OBJECT_ONLY = re.compile(r"^the (?P<attr>.+?) of the (?P<obj>.+?) (?:is|are) not mentioned, but ")
_ABSENT = re.compile(r"^the (?P<obj>.+?) (?:is|are) not mentioned")
_RECOGNITION = re.compile(r"^Is it likely that the objects? in the description (?:is an?|are) (?P<name>.+?) or "
                          r"(?:an )?objects? of a similar type\?")
_AMBER = re.compile(r"^If an image contains (?P<captions>.*)\. (?:Are|Is|Does|Do) the (?P<target>.+?) in this image\?",
                    re.S)
_CLAIR = re.compile(r"Candidate set:\n(?P<cand>.*?)\n\nReference set:\n(?P<ref>.*?)\n\n", re.S)
UNANSWERABLE = "I cannot answer this question."


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _alternatives(value: str) -> list[str]:
    return [v for v in re.split(r",\s*or\s+|,\s*|\s+or\s+", value) if v.strip()]


class RuleJudge(Judge):
    """Keyword-matching judge over a closed vocabulary (see the module docstring).

    Args:
        vocabulary: attribute -> its values, e.g. RegionWorld's ``VOCABULARY``
            (``{"color": ["red", ...], "pattern": [...], ...}``).
        synonyms: name -> other words that count as naming it (e.g. ``{"circle": ["disc"]}``).
        cache, retry_unparsed: see `Judge` (the vocabulary is part of the cache key).
    """

    backend = "rule"

    def __init__(self, vocabulary: Mapping[str, Sequence[str]], *, synonyms: Mapping[str, Sequence[str]] | None = None,
                 cache=None, retry_unparsed: bool = False):
        if not isinstance(vocabulary, Mapping) or not all(
                isinstance(v, Sequence) and all(isinstance(x, str) for x in v) for v in vocabulary.values()):
            raise JudgeError("vocabulary must map attribute names to lists of str values")
        self.vocabulary = {k.lower(): [v.lower() for v in vs] for k, vs in vocabulary.items()}
        self.synonyms = {k.lower(): [s.lower() for s in v] for k, v in (synonyms or {}).items()}
        super().__init__(model="regionworld-rules", settings={"vocabulary": self.vocabulary, "synonyms": self.synonyms},
                         cache=cache, retry_unparsed=retry_unparsed)

    def _names(self, name: str, words: set[str]) -> bool:
        """Whether the words of ``name`` (an alternative of it, or a synonym) all occur in ``words``."""
        for alt in name.lower().split("/"):
            for form in (alt, *self.synonyms.get(alt.strip(), [])):
                w = _words(form)
                if w and w <= words:
                    return True
        return False

    def _complete(self, prompt: str) -> str:
        parts = choice_prompt(prompt)
        if parts is not None:
            return self._multiple_choice(*parts)
        m = _AMBER.match(prompt)
        if m:
            return "Yes" if _words(m["target"]) <= _words(m["captions"]) else "No"
        m = _CLAIR.search(prompt)
        if m:
            cand, ref = _words(m["cand"]), _words(m["ref"])
            overlap = len(cand & ref)
            f1 = 2 * overlap / (len(cand) + len(ref)) if overlap else 0.0
            return json.dumps({"score": round(100 * f1), "reason": "word overlap of the two caption sets"})
        return UNANSWERABLE

    def _multiple_choice(self, description: str, question: str, choices: list[str]) -> str:
        words = _words(description.split(",", 1)[0])
        m = _RECOGNITION.match(question)
        if m:
            pick = 0 if self._names(m["name"], words) else 1
            return f"{'AB'[pick]}. {choices[pick]}" if len(choices) == 2 else UNANSWERABLE
        kinds: dict[str, tuple[int, re.Match]] = {}
        for i, c in enumerate(choices):
            text = c.lower()
            for kind, pattern in (("match", _MATCH), ("other", _OTHER), ("object only", _OBJECT_ONLY),
                                  ("absent", _ABSENT)):
                hit = pattern.match(text)
                if hit:
                    kinds.setdefault(kind, (i, hit))
                    break
        if "match" not in kinds:
            return UNANSWERABLE
        attr, obj, value = kinds["match"][1]["attr"], kinds["match"][1]["obj"], kinds["match"][1]["value"]
        if any(self._names(v, words) for v in _alternatives(value)):
            wanted = ["match"]
        elif any(self._names(v, words) for v in self.vocabulary.get(attr, [])):
            wanted = ["other"]
        elif self._names(obj, words):
            wanted = ["object only", "absent"]
        else:
            wanted = ["absent"]
        for kind in wanted:
            if kind in kinds:
                i = kinds[kind][0]
                return f"{'ABCDE'[i]}. {choices[i]}"
        return UNANSWERABLE
