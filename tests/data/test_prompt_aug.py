"""DAM prompt augmentation: the prompt lists equal the paper's, suffix rules, distribution over 10k draws."""

from __future__ import annotations

import glob
import re
from collections import Counter

import numpy as np
import pytest

from regionlib.data.prompt_aug import (
    PROMPTS_WITH_SUFFIX, PROMPTS_WITHOUT_SUFFIX, PromptAugmenter, count_sentences, prompt_suffix,
)
from tests.conftest import REPO_ROOT, missing_shared_data


def _paper_lists():
    paths = glob.glob(str(REPO_ROOT.parent / "shared" / "seeds" / "003_*.txt"))
    if not paths:
        missing_shared_data(f"seed 003 (the DAM paper's text) not found in {REPO_ROOT.parent / 'shared' / 'seeds'}: "
                            "put the project's shared/ folder beside the clone")
    text = open(paths[0], encoding="utf-8").read()
    start = text.index("The list of prompts that include a {prompt\\_suffix}")
    end = text.index("For prompts without a suffix")
    block = text[start:end].replace("{prompt\\_suffix}", "{prompt_suffix}")
    items = re.findall(r"\d+\. ((?:[A-Z][^.?]*?)(?:\{prompt_suffix\})?[^.?]*[.?])", block)
    items = [i for i in items if "masked" in i]
    with_suffix = [i for i in items if "{prompt_suffix}" in i]
    without = [i for i in items if "{prompt_suffix}" not in i]
    return with_suffix, without


def test_prompt_lists_equal_the_paper():
    with_suffix, without = _paper_lists()
    assert len(PROMPTS_WITH_SUFFIX) == len(PROMPTS_WITHOUT_SUFFIX) == 15
    assert set(with_suffix) == set(PROMPTS_WITH_SUFFIX)
    assert set(without) == set(PROMPTS_WITHOUT_SUFFIX)


def test_suffix_rules():
    rng = np.random.default_rng(0)
    assert prompt_suffix("A red car.", "words", rng) == "in 3 words"
    assert prompt_suffix(" ".join(["w"] * 57), "words", rng) in ("in about 60 words", "in around 60 words")
    assert prompt_suffix(" ".join(["w"] * 54), "words", rng).endswith(" 50 words")
    assert prompt_suffix(" ".join(["w"] * 200), "words", rng).endswith(" 200 words")
    assert prompt_suffix(" ".join(["w"] * 201), "words", rng) == "in more than 200 words"
    assert prompt_suffix("One sentence here.", "sentences", rng) in ("in one sentence", "in a sentence")
    assert prompt_suffix("One. Two! Three? ", "sentences", rng) == "in 3 sentences"
    assert prompt_suffix("anything", "detail", rng) == "in detail"
    assert count_sentences("A 3.5 cm pin. Next.") == 2


def test_distribution_over_10k_draws():
    aug = PromptAugmenter(seed=123)
    caption = "A small red striped circle. It sits in the top left of the image."
    draws = [aug.sample(caption, class_name="circle") for _ in range(10_000)]
    kinds = Counter(d.kind for d in draws)
    assert abs(kinds["sentences"] / 1e4 - 0.2) < 0.02 and abs(kinds["words"] / 1e4 - 0.2) < 0.02
    assert abs(sum(d.with_class_name for d in draws) / 1e4 - 0.5) < 0.02
    detail = [d for d in draws if d.kind == "detail"]
    assert abs(np.mean([d.with_suffix for d in detail]) - 0.5) < 0.03  # 15 of the 30 prompts have the slot
    assert all(d.with_suffix for d in draws if d.kind != "detail")  # counts only go into prompts with the slot
    per_template = Counter(d.template_index for d in draws if d.with_suffix)
    assert len(per_template) == 15 and min(per_template.values()) > 0.7 * max(per_template.values())
    assert all("in 2 sentences" in d.text for d in draws if d.kind == "sentences")
    assert all("in 14 words" in d.text for d in draws if d.kind == "words")  # exact below 20 words
    assert all(d.text.endswith("The masked region is a circle.") == d.with_class_name for d in draws)
    assert not any(aug.sample(caption).with_class_name for _ in range(200))


def test_seeded_and_validated():
    a = [PromptAugmenter(seed=5)("A cat.") for _ in range(1)] + [PromptAugmenter(seed=5)("A cat.")]
    assert a[0] == a[1]
    seq1 = PromptAugmenter(seed=9)
    seq2 = PromptAugmenter(seed=9)
    assert [seq1("x y z.") for _ in range(50)] == [seq2("x y z.") for _ in range(50)]
    with pytest.raises(Exception, match="sentence_p"):
        PromptAugmenter(sentence_p=1.5)
    with pytest.raises(Exception, match="caption"):
        PromptAugmenter()("  ")
