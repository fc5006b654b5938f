"""Caption metrics through the PTB tokenizer: both backends agree, clear errors for bad input, no Java,
SPICE without its jars, single-image CIDEr, empty predictions and line-end characters as pycocoevalcap."""

import numpy as np
import pytest

from regionlib.errors import DataFormatError, RegionLibError
from regionlib.evaluation.caption_metrics import (
    CAPTION_METRICS,
    JavaUnavailable,
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
    with pytest.raises(DataFormatError, match="must be str, got int"):
        check_captions({"a": 3}, {"a": ["x"]})
    with pytest.raises(DataFormatError, match="non-empty list"):
        check_captions({"a": "x"}, {"a": "x"})
    with pytest.raises(DataFormatError, match="empty or non-str"):
        check_captions({"a": "x"}, {"a": ["x", None]})
    with pytest.raises(RegionLibError, match="unknown caption metrics"):
        caption_scores({"a": "x"}, {"a": ["x"]}, metrics=["CIDEr-X"])


def reference_pipeline(preds: dict, refs: dict, metrics=("BLEU", "ROUGE-L", "CIDEr", "METEOR")) -> dict:
    """pycocoevalcap as COCOEvalCap runs it: PTBTokenizer on gts and on res, then its scorers."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = PTBTokenizer().tokenize({k: [{"caption": preds[k]}] for k in refs})
    out = {}
    for name, scorer in (("BLEU", Bleu(4)), ("ROUGE-L", Rouge()), ("CIDEr", Cider()), ("METEOR", Meteor())):
        if name in metrics:
            c, s = scorer.compute_score(gts, res, verbose=0) if name == "BLEU" else scorer.compute_score(gts, res)
            if name == "BLEU":
                out.update({f"BLEU-{k + 1}": (c[k], s[k]) for k in range(4)})
            else:
                out[name] = (c, s)
    return out


def test_empty_predictions_score_as_pycocoevalcap(real_pairs):
    preds, refs = real_pairs
    preds = dict(preds)
    empty = list(preds)[:3]
    preds[empty[0]], preds[empty[1]], preds[empty[2]] = "", "   ", "..."  # empty, blank, punctuation only
    ours = caption_scores(preds, refs)  # fast backend, METEOR included
    theirs = reference_pipeline(preds, refs)
    for m, (c, s) in theirs.items():
        assert ours.corpus[m] == pytest.approx(c, abs=1e-12), m
        np.testing.assert_allclose(ours.per_sample[m], s, atol=1e-12, rtol=0, err_msg=m)
    for m in ("CIDEr", "ROUGE-L", "METEOR"):
        assert ours.per_sample[m][:3].tolist() == [0.0, 0.0, 0.0]


def test_line_end_characters_score_as_spaces(real_pairs):
    preds, refs = real_pairs
    odd = dict(preds)
    ids = list(odd)
    for k, ch in zip(ids, ["\r", "\x0b", "\x0c", "\u2028", "\u2029", "\r\n", "\n"]):
        odd[k] = odd[k].replace(" ", ch, 2)
    spaced = {k: odd[k].replace("\r\n", " ").translate(str.maketrans("\r\x0b\x0c\u2028\u2029\n", "      "))
              for k in ids}
    refs_odd = {k: [r.replace(" ", "\u2028", 1) for r in v] for k, v in refs.items()}
    metrics = ["BLEU-4", "ROUGE-L", "CIDEr"]
    a = caption_scores(odd, refs_odd, metrics=metrics)
    b = caption_scores(spaced, refs, metrics=metrics)
    for m in metrics:
        assert a.corpus[m] == b.corpus[m] and a.per_sample[m].tolist() == b.per_sample[m].tolist()
    # pycocoevalcap on the raw text shifts every later caption by a line: different (wrong) scores
    raw = reference_pipeline(odd, refs_odd, metrics=("CIDEr",))
    assert raw["CIDEr"][0] != pytest.approx(b.corpus["CIDEr"], abs=1e-9)


def test_identical_to_cocoevalcap_with_lexer_captions(real_pairs):
    preds, refs = real_pairs
    preds = {k: v if n % 3 else f'"{v}" (etc.) & <b>' for n, (k, v) in enumerate(preds.items())}  # the lexer
    ours = caption_scores(preds, refs, metrics=["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"])
    for m, (c, s) in reference_pipeline(preds, refs, metrics=("BLEU", "ROUGE-L", "CIDEr")).items():
        if m in ours.corpus:
            assert ours.corpus[m] == pytest.approx(c, abs=1e-12)
            np.testing.assert_allclose(ours.per_sample[m], s, atol=1e-12, rtol=0)


def test_single_image_cider_is_zero_with_an_explanation():
    with pytest.warns(UserWarning, match="single-image corpus"):
        one = caption_scores({"a": "a red ball"}, {"a": ["a red ball"]}, metrics=["CIDEr", "BLEU-1"], tokenize=False)
    assert one.corpus["CIDEr"] == 0.0 and one.corpus["BLEU-1"] == pytest.approx(1.0)
    assert "log 1" in one.notes[0]


def test_no_java_is_a_clear_error_only_when_java_is_needed(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JavaUnavailable, match="java was not found"):  # the lexer leaves this sigma to Java
        caption_scores({"a": "\u0391\u03a3-\u0392", "b": "z"}, {"a": ["x y"], "b": ["z"]}, metrics=["BLEU-4"])
    with pytest.raises(JavaUnavailable, match="java was not found"):
        caption_scores({"a": "x y", "b": "z"}, {"a": ["x y"], "b": ["z"]}, metrics=["METEOR"])
    # any other text (the in-process rules and lexer) and pre-tokenised text need no Java for the fast metrics
    assert caption_scores({"a": "Xo, yes.", "b": "z"}, {"a": ["xo yes"], "b": ["z"]},
                          metrics=["ROUGE-L"]).corpus["ROUGE-L"] == 1.0
    assert caption_scores({"a": "x & y <image> 1.000 U.S. caf\u00e9 \U0001f436", "b": "z"},
                          {"a": ["x & y <image> 1.000 u.s. caf\u00e9"], "b": ["z"]},
                          metrics=["ROUGE-L"]).corpus["ROUGE-L"] == 1.0
    assert caption_scores({"a": "x y", "b": "z"}, {"a": ["x y"], "b": ["z"]}, metrics=["ROUGE-L"],
                          tokenize=False).corpus["ROUGE-L"] == 1.0


@pytest.mark.skipif(_spice_jars_present(), reason="SPICE's CoreNLP jars are installed here")
def test_spice_without_jars_never_aborts_the_other_metrics():
    with pytest.warns(UserWarning, match="SPICE left out.*stanford-corenlp-3.6.0.jar"):
        s = caption_scores({"a": "x", "b": "y"}, {"a": ["x"], "b": ["y"]}, metrics=list(CAPTION_METRICS))
    assert "SPICE" not in s.corpus and set(s.corpus) == set(CAPTION_METRICS) - {"SPICE"}
    assert any("SPICE left out" in n for n in s.notes)


def test_rows_are_tidy(real_pairs):
    preds, refs = real_pairs
    s = caption_scores(preds, refs, metrics=["BLEU-4", "CIDEr"])
    rows = s.rows("dam")
    assert {tuple(r) for r in rows} == {("id", "method", "metric", "value")}
    assert len(rows) == 2 * (len(refs) + 1)
    corpus = {r["metric"]: r["value"] for r in rows if r["id"] is None}
    assert corpus == s.corpus
