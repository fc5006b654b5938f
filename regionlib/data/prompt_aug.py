"""DAM's prompt augmentation (seed 003, App. H.2; REFERENCE §1).

Per training caption (probabilities are the paper's):

1. the suffix: with p = ``sentence_p`` (0.2) the sentence count — ``in one sentence`` /
   ``in a sentence`` (one each half of the time) for a one-sentence caption, else
   ``in {n} sentences``; with p = ``word_p`` (0.2) the word count — ``in {n} words`` (or
   ``in 1 word``) below ``exact_words_below`` (20) words, ``in about {n} words`` /
   ``in around {n} words`` (one each half of the time) with n rounded to the nearest ten up
   to 200 words, ``in more than 200 words`` beyond; otherwise the default ``in detail``;
2. the template: with the default suffix, uniformly one of all 30 prompts (15 with a
   ``{prompt_suffix}`` slot and 15 without); with a count suffix, one of the 15 with the slot;
3. self-labeling variant: when a class name is given, with p = ``class_name_p`` (0.5)
   append ``class_name_template`` (regionlib's wording; the paper gives none).

Without augmentation DAM uses ``DEFAULT_PROMPT`` = "Describe the masked region in detail.".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, RegionLibError

__all__ = ["DEFAULT_PROMPT", "DEFAULT_SUFFIX", "PROMPTS_WITH_SUFFIX", "PROMPTS_WITHOUT_SUFFIX", "AugmentedPrompt",
           "PromptAugmenter", "count_sentences", "count_words", "prompt_suffix"]

DEFAULT_PROMPT = "Describe the masked region in detail."
DEFAULT_SUFFIX = "in detail"
PROMPTS_WITH_SUFFIX = (
    "Describe the masked region {prompt_suffix}.",
    "Describe the masked area {prompt_suffix}.",
    "What can you describe about the masked region {prompt_suffix}?",
    "Can you describe the masked region {prompt_suffix}?",
    "Provide an explanation of the masked region {prompt_suffix}.",
    "Depict the masked area {prompt_suffix}.",
    "Portray the masked area {prompt_suffix}.",
    "Describe what the masked region looks like {prompt_suffix}.",
    "Illustrate the masked region {prompt_suffix}.",
    "How would you explain the masked area {prompt_suffix}?",
    "What details can you provide about the masked region {prompt_suffix}?",
    "What does the masked region entail {prompt_suffix}?",
    "How would you illustrate the masked region {prompt_suffix}?",
    "How would you depict the masked area {prompt_suffix}?",
    "How would you portray the masked area {prompt_suffix}?",
)
PROMPTS_WITHOUT_SUFFIX = (
    "Give a detailed description of the masked region.",
    "Provide a thorough description of the masked region.",
    "Can you explain the details of the masked area?",
    "Give a detailed account of the masked region.",
    "Describe the masked area comprehensively.",
    "Provide an in-depth description of the masked region.",
    "Explain the specifics of the masked area.",
    "Can you provide a thorough explanation of the masked region?",
    "What are the details of the masked area?",
    "Provide a comprehensive description of the masked area.",
    "What specific details can you provide about the masked region?",
    "Can you give an in-depth account of the masked section?",
    "What are the main characteristics of the masked region?",
    "Give a thorough description of the masked area's details.",
    "Provide detailed information about the masked area.",
)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


def count_sentences(text: str) -> int:
    """Sentences of ``text``: runs of ``.``/``!``/``?`` followed by a space or the end (at least 1)."""
    return max(1, len(_SENTENCE_END.findall(text.strip())))


def count_words(text: str) -> int:
    return len(text.split())


def prompt_suffix(caption: str, kind: str, rng: np.random.Generator, *, exact_words_below: int = 20) -> str:
    """The suffix of ``kind`` ("sentences", "words" or "detail") for ``caption`` (module docstring)."""
    if kind == "detail":
        return DEFAULT_SUFFIX
    if kind == "sentences":
        n = count_sentences(caption)
        if n == 1:
            return "in one sentence" if rng.random() < 0.5 else "in a sentence"
        return f"in {n} sentences"
    if kind == "words":
        n = count_words(caption)
        if n < exact_words_below:
            return "in 1 word" if n == 1 else f"in {n} words"
        if n <= 200:
            tens = int(n / 10 + 0.5) * 10
            return f"in {'about' if rng.random() < 0.5 else 'around'} {tens} words"
        return "in more than 200 words"
    raise RegionLibError(f"kind must be 'sentences', 'words' or 'detail', got {kind!r}")


@dataclass(frozen=True)
class AugmentedPrompt:
    """One drawn prompt: ``text``, its ``suffix`` kind ("detail" / "sentences" / "words"),
    the template (``with_suffix``, ``template_index``) and whether the class name was added."""

    text: str
    kind: str
    suffix: str | None
    with_suffix: bool
    template_index: int
    with_class_name: bool


class PromptAugmenter:
    """Seeded sampler of DAM's augmented prompts (module docstring).

    Args:
        sentence_p, word_p: probabilities of the sentence- and word-count suffixes (0.2 each).
        class_name_p: probability of adding the class name when one is given (0.5).
        class_name_template: how the class name is added (``{prompt}``, ``{article}``, ``{class_name}``).
        exact_words_below: word counts below this are given exactly.
        seed: seed of the generator (or pass ``rng`` to `sample`).
    """

    def __init__(self, *, sentence_p: float = 0.2, word_p: float = 0.2, class_name_p: float = 0.5,
                 class_name_template: str = "{prompt} The masked region is {article} {class_name}.",
                 exact_words_below: int = 20, seed: int | None = 0):
        for name, p in (("sentence_p", sentence_p), ("word_p", word_p), ("class_name_p", class_name_p)):
            if not 0 <= p <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {p!r}")
        if sentence_p + word_p > 1:
            raise ConfigError(f"sentence_p + word_p must be <= 1, got {sentence_p + word_p}")
        if "{prompt}" not in class_name_template or "{class_name}" not in class_name_template:
            raise ConfigError("class_name_template needs {prompt} and {class_name}")
        self.sentence_p, self.word_p, self.class_name_p = sentence_p, word_p, class_name_p
        self.class_name_template = class_name_template
        self.exact_words_below = exact_words_below
        self.rng = np.random.default_rng(seed)

    def sample(self, caption: str, *, class_name: str | None = None,
               rng: np.random.Generator | None = None) -> AugmentedPrompt:
        """Draw the prompt for a training ``caption`` (and optional ``class_name``)."""
        if not isinstance(caption, str) or not caption.strip():
            raise RegionLibError("caption must be a non-empty str")
        rng = rng if rng is not None else self.rng
        u = rng.random()
        kind = "sentences" if u < self.sentence_p else "words" if u < self.sentence_p + self.word_p else "detail"
        suffix = prompt_suffix(caption, kind, rng, exact_words_below=self.exact_words_below)
        if kind == "detail":
            k = int(rng.integers(len(PROMPTS_WITH_SUFFIX) + len(PROMPTS_WITHOUT_SUFFIX)))
            with_suffix = k < len(PROMPTS_WITH_SUFFIX)
            index = k if with_suffix else k - len(PROMPTS_WITH_SUFFIX)
        else:
            with_suffix, index = True, int(rng.integers(len(PROMPTS_WITH_SUFFIX)))
        text = PROMPTS_WITH_SUFFIX[index].format(prompt_suffix=suffix) if with_suffix else PROMPTS_WITHOUT_SUFFIX[index]
        with_class = class_name is not None and rng.random() < self.class_name_p
        if with_class:
            article = "an" if class_name[:1].lower() in "aeiou" else "a"
            text = self.class_name_template.format(prompt=text, article=article, class_name=class_name)
        return AugmentedPrompt(text, kind, suffix if with_suffix else None, with_suffix, index, with_class)

    def __call__(self, caption: str, *, class_name: str | None = None) -> str:
        return self.sample(caption, class_name=class_name).text
