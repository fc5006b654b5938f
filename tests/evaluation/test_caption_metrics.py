"""Caption metrics through the PTB tokenizer: both backends agree, clear errors for bad input, no Java,
SPICE without its jars and single-image CIDEr."""

import numpy as np
import pytest

from regionlib.errors import DataFormatError, RegionLibError
from regionlib.evaluation.caption_metrics import (
    JavaUnavailable,
    SpiceUnavailable,
    _spice_jars_present,
    caption_scores,
    check_captions,
)


@pytest.fixture(scope="module")
def real_pairs(dam_descriptions):
    a, b = dam_descriptions
    ids = sorted(set(a) & set(b))[:25]
    return {i: a[i] for i in ids}, {i: [b[i], b[ids[(k + 1) % len(ids)]]] for k, i in enumerate(ids)}


def test_fast_and_reference_backends_agree_and_meteor_runs(real_pairs):
    preds, refs = real_pairs
    metrics = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"]
    fast = caption_scores(preds, refs, metrics=[*metrics, "METEOR"])  # METEOR: pycocoevalcap's Java in both
    ref = caption_scores(preds, refs, metrics=metrics, backend="reference")
    assert fast.ids == list(refs) and set(fast.corpus) == {*metrics, "METEOR"}
    for m in metrics:
        assert fast.corpus[m] == pytest.approx(ref.corpus[m], abs=1e-9)
        np.testing.assert_allclose(fast.per_sample[m], ref.per_sample[m], atol=1e-9, rtol=0)
        assert fast.per_sample[m].shape == (25,)
    assert fast.per_sample["METEOR"].shape == (25,)
    assert 0.05 < fast.corpus["METEOR"] < 1 and 0.05 < fast.corpus["CIDEr"] < 10
    assert fast.corpus["BLEU-1"] > fast.corpus["BLEU-4"] > 0


def test_tokenizer_removes_punctuation_and_case():
    s = caption_scores({"a": "A RED ball!", "b": "Two cats."}, {"a": ["a red ball"], "b": ["two cats"]},
                       metrics=["BLEU-1", "ROUGE-L"])
    assert s.per_sample["ROUGE-L"].tolist() == pytest.approx([1.0, 1.0])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataFormatError, match=r"no prediction for \['b'\].*no references for \['c'\]"):
        check_captions({"a": "x", "c": "y"}, {"a": ["x"], "b": ["y"]})
    with pytest.raises(DataFormatError, match="'a' is empty"):
        check_captions({"a": "  "}, {"a": ["x"]})
    with pytest.raises(DataFormatError, match="must be str, got int"):
        check_captions({"a": 3}, {"a": ["x"]})
    with pytest.raises(DataFormatError, match="non-empty list"):
        check_captions({"a": "x"}, {"a": "x"})
    with pytest.raises(DataFormatError, match="empty or non-str"):
        check_captions({"a": "x"}, {"a": ["x", None]})
    with pytest.raises(DataFormatError, match="empty after tokenisation"):
        caption_scores({"a": "..."}, {"a": ["a dog"]}, metrics=["CIDEr"])
    with pytest.raises(RegionLibError, match="unknown caption metrics"):
        caption_scores({"a": "x"}, {"a": ["x"]}, metrics=["CIDEr-X"])


def test_single_image_cider_is_zero_with_an_explanation():
    with pytest.warns(UserWarning, match="single-image corpus"):
        one = caption_scores({"a": "a red ball"}, {"a": ["a red ball"]}, metrics=["CIDEr", "BLEU-1"], tokenize=False)
    assert one.corpus["CIDEr"] == 0.0 and one.corpus["BLEU-1"] == pytest.approx(1.0)
    assert "log 1" in one.notes[0]


def test_no_java_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JavaUnavailable, match="java was not found"):
        caption_scores({"a": "x y", "b": "z"}, {"a": ["x y"], "b": ["z"]}, metrics=["BLEU-4"])
    # pre-tokenised text needs no Java for the fast metrics
    assert caption_scores({"a": "x y", "b": "z"}, {"a": ["x y"], "b": ["z"]}, metrics=["ROUGE-L"],
                          tokenize=False).corpus["ROUGE-L"] == 1.0


@pytest.mark.skipif(_spice_jars_present(), reason="SPICE's CoreNLP jars are installed here")
def test_spice_without_jars_fails_fast_and_names_the_fix():
    with pytest.raises(SpiceUnavailable, match="stanford-corenlp-3.6.0.jar.*drop 'SPICE'"):
        caption_scores({"a": "x", "b": "y"}, {"a": ["x"], "b": ["y"]}, metrics=["CIDEr", "SPICE"])
    assert "CIDEr" in caption_scores({"a": "x", "b": "y"}, {"a": ["x"], "b": ["y"]}, metrics=["CIDEr"]).corpus
