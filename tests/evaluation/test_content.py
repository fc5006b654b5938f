"""SCA's Noun / Verb recall (spaCy + MiniLM), Osprey's semantic similarity / IoU, CAPTURE's availability."""

import numpy as np
import pytest

from regionlib.errors import DataFormatError
from regionlib.evaluation.content import (
    CaptureUnavailable,
    capture_score,
    content_recall,
    embed_texts,
    osprey_keyword_scores,
)


def test_noun_verb_recall_known_values():
    cr = content_recall(["A man rides a horse.", "A red ball."],
                        [["A man rides a red horse near a barn."], ["A red ball.", "The ball is red."]])
    assert cr["noun_exact"][0] == pytest.approx(2 / 3)  # {man, horse} of [man, horse, barn]
    assert cr["verb_exact"][0] == pytest.approx(1.0)    # rides
    assert cr["noun_exact"][1] == pytest.approx(1 / 2)  # {ball} over the pooled reference nouns [ball, ball]
    assert cr["verb_exact"][1] == 0.0 and cr["verb_fuzzy"][1] == 0.0  # no verbs anywhere -> 0 (REFERENCE §4)
    # fuzzy: mean over reference nouns of the best cosine to a candidate noun; exact matches give 1
    emb = embed_texts(["man", "horse", "barn"])
    barn_best = float(np.max(emb[2] @ emb[:2].T))
    assert cr["noun_fuzzy"][0] == pytest.approx((1 + 1 + barn_best) / 3, abs=1e-5)
    assert cr["noun_fuzzy"][1] == pytest.approx(1.0, abs=1e-5)


def test_osprey_keyword_scores():
    s = osprey_keyword_scores(["Answer: traffic light.", "a cat", "dog"], ["traffic_light", "dog", "dog"])
    assert s["semantic_iou"].tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert s["semantic_similarity"][0] == pytest.approx(1.0, abs=1e-5) and s["semantic_similarity"][2] == pytest.approx(
        1.0, abs=1e-5)
    assert 0.0 < s["semantic_similarity"][1] < 0.9  # cat vs dog: related, not equal
    with pytest.raises(DataFormatError, match="equally many"):
        osprey_keyword_scores(["a"], [])


def test_capture_needs_its_parser():
    try:  # CAPTURE's package and parser cannot be installed offline here
        import capture_metric  # noqa: F401
    except ImportError:
        with pytest.raises(CaptureUnavailable, match="T5 scene-graph parser"):
            capture_score(["a dog"], [["a dog"]])
    else:
        assert 0.0 <= capture_score(["a dog"], [["a dog"]]) <= 1.0


def test_inputs_are_checked():
    with pytest.raises(DataFormatError, match="non-empty list"):
        content_recall(["a dog"], ["a dog"])
    with pytest.raises(DataFormatError, match="must be str"):
        content_recall([3], [["a dog"]])
