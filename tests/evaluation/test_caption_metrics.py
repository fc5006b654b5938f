import re

import numpy as np
import pytest

from regionlib.errors import DataFormatError
from regionlib.evaluation.caption_metrics import caption_scores, check_captions
from regionlib.evaluation.fast_captions import bleu, cider_d, lcs_length, rouge_l


def simple_tokens(text):
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def real_corpus(dam_descriptions, n_refs=3):
    a, b = dam_descriptions
    ids = sorted(set(a) & set(b))
    preds = [simple_tokens(a[i]) for i in ids]
    refs = [[simple_tokens(b[ids[(k + j) % len(ids)]]) for j in range(n_refs)] for k in range(len(ids))]
    # sentence-level captions of the same text as a second corpus (short hyps and refs)
    return ids, preds, refs


def reference_scores(preds, refs):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    return Bleu(4).compute_score(gts, res, verbose=0), Rouge().compute_score(gts, res), Cider().compute_score(gts, res)


@pytest.mark.parametrize("split_sentences", [False, True])
def test_fast_path_equals_pycocoevalcap_on_real_text(dam_descriptions, split_sentences):
    ids, preds, refs = real_corpus(dam_descriptions)
    if split_sentences:  # short captions: first sentence of each description, including 1-token edge cases
        a, b = dam_descriptions
        preds = [simple_tokens(a[i].split(".")[0]) or "object" for i in ids]
        refs = [[simple_tokens(b[i].split(".")[0]) or "thing", "a", "red object"] for i in ids]
    (bl, bls), (r, rs), (c, cs) = reference_scores(preds, refs)
    fb, fbs = bleu(preds, refs)
    np.testing.assert_allclose(fb, bl, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fbs, np.asarray(bls), atol=1e-9, rtol=0)
    fr, frs = rouge_l(preds, refs)
    assert abs(fr - r) <= 1e-9 and np.abs(frs - rs).max() <= 1e-9
    fc, fcs = cider_d(preds, refs)
    assert abs(fc - c) <= 1e-9 and np.abs(fcs - cs).max() <= 1e-9
    assert c > 0.1  # the corpus is real text with overlap


def test_lcs_matches_dynamic_programming():
    from pycocoevalcap.rouge.rouge import my_lcs

    rng = np.random.default_rng(0)
    for _ in range(200):
        x = [str(v) for v in rng.integers(0, 6, rng.integers(1, 40))]
        y = [str(v) for v in rng.integers(0, 6, rng.integers(1, 40))]
        assert lcs_length(x, y) == my_lcs(x, y)


@pytest.mark.slow
def test_both_backends_with_ptb_tokenizer_and_meteor(dam_descriptions):
    a, b = dam_descriptions
    ids = sorted(set(a) & set(b))[:30]
    preds, refs = {i: a[i] for i in ids}, {i: [b[i]] for i in ids}
    fast = caption_scores(preds, refs)
    ref = caption_scores(preds, refs, backend="reference")
    for m in ["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", "METEOR"]:
        assert fast.corpus[m] == pytest.approx(ref.corpus[m], abs=1e-9)
        np.testing.assert_allclose(fast.per_sample[m], ref.per_sample[m], atol=1e-9)
    assert 0 < fast.corpus["METEOR"] < 1


def test_bad_inputs_and_single_image_corpus():
    with pytest.raises(DataFormatError, match="ids differ"):
        check_captions({"a": "x"}, {"b": ["x"]})
    with pytest.raises(DataFormatError, match="empty"):
        check_captions({"a": "  "}, {"a": ["x"]})
    with pytest.raises(DataFormatError, match="must be str"):
        check_captions({"a": 3}, {"a": ["x"]})
    with pytest.raises(DataFormatError, match="non-empty list"):
        check_captions({"a": "x"}, {"a": "x"})
    one = caption_scores({"a": "a red ball"}, {"a": ["a red ball"]}, metrics=["CIDEr"], tokenize=False)
    assert one.corpus["CIDEr"] == 0.0 and "single-image" in one.notes[0]
    from regionlib.evaluation.caption_metrics import SpiceUnavailable, _spice_jars_present

    if not _spice_jars_present():
        with pytest.raises(SpiceUnavailable, match="drop 'SPICE'"):
            caption_scores({"a": "x"}, {"a": ["x"]}, metrics=["SPICE", "CIDEr"])
