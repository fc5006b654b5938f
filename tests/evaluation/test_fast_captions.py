"""The in-process BLEU / ROUGE-L / CIDEr-D equal pycocoevalcap 1.2's scorers on the same tokens (1e-9)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge, my_lcs

from regionlib.errors import RegionLibError
from regionlib.evaluation.caption_metrics import ptb_tokenize
from regionlib.evaluation.fast_captions import bleu, cider_d, count_ngrams, lcs_length, rouge_l


def reference_scores(preds, refs):
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    (b, bs) = Bleu(4).compute_score(gts, res, verbose=0)
    (r, rs) = Rouge().compute_score(gts, res)
    (c, cs) = Cider().compute_score(gts, res)
    return (np.asarray(b), np.asarray(bs)), (r, np.asarray(rs)), (c, np.asarray(cs))


def assert_parity(preds, refs):
    (b, bs), (r, rs), (c, cs) = reference_scores(preds, refs)
    fb, fbs = bleu(preds, refs)
    np.testing.assert_allclose(fb, b, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fbs, bs, rtol=0, atol=1e-9)
    fr, frs = rouge_l(preds, refs)
    assert abs(fr - r) <= 1e-9 and np.abs(frs - rs).max() <= 1e-9
    sr, srs = rouge_l(preds, refs, ngrams=count_ngrams(preds, refs))  # count_ngrams' token numbers: same numbers
    assert sr == fr and np.array_equal(srs, frs)
    fc, fcs = cider_d(preds, refs)
    assert abs(fc - c) <= 1e-9 and np.abs(fcs - cs).max() <= 1e-9
    return c


@pytest.fixture(scope="module")
def ptb_corpus(dam_descriptions):
    """PTB-tokenised DAM descriptions: v1 as candidates, three joint_v1 descriptions as references
    (the same region's first), and the first sentences as a short-caption corpus."""
    a, b = dam_descriptions
    ids = sorted(set(a) & set(b))
    long_refs = [[b[ids[(k + j) % len(ids)]] for j in range(3)] for k in range(len(ids))]
    short_preds = [a[i].split(".")[0] for i in ids]
    short_refs = [[b[i].split(".")[0], b[ids[(k + 1) % len(ids)]].split(".")[0]] for k, i in enumerate(ids)]
    toks = ptb_tokenize([[a[i]] for i in ids] + long_refs + [[p] for p in short_preds] + short_refs)
    n = len(ids)
    return ([t[0] for t in toks[:n]], toks[n:2 * n]), ([t[0] for t in toks[2 * n:3 * n]], toks[3 * n:])


def test_parity_on_real_dam_descriptions(ptb_corpus):
    (preds, refs), (short_preds, short_refs) = ptb_corpus
    assert len(preds) > 90 and all(p == p.lower() and "," not in p for p in preds)  # PTB: lower-cased, no punct
    assert assert_parity(preds, refs) > 0.05
    assert assert_parity(short_preds, short_refs) > 0.05


def test_cider_length_penalty_counts_bigrams_like_the_reference():
    # pycocoevalcap's delta is the difference of *bigram* counts: "dog" vs "dog" and "dog" vs "a dog"
    # both have 0 vs 0 / 0 vs 1 bigrams -- check the quirk against pycocoevalcap itself
    preds = ["dog", "a dog", "cat", "a dog"]
    refs = [["dog"], ["dog"], ["a cat sits"], ["a dog", "dog"]]
    assert_parity(preds, refs)
    _, per = cider_d(preds, refs)
    assert per[0] > 0 and per[2] > 0 and per[3] > 0


def test_nul_characters_are_refused():
    with pytest.raises(RegionLibError, match="NUL"):
        cider_d(["a\x00b", "c"], [["a"], ["c"]])


words = st.sampled_from(["a", "red", "dog", "the", "on", "grass", "runs", "small", "cat", "of"])
sentence = st.lists(words, min_size=1, max_size=14).map(" ".join)
corpus = st.integers(2, 7).flatmap(lambda n: st.tuples(
    st.lists(sentence, min_size=n, max_size=n),
    st.lists(st.lists(sentence, min_size=1, max_size=4), min_size=n, max_size=n)))


@settings(max_examples=60, deadline=None)
@given(corpus)
def test_parity_on_generated_text(data):
    preds, refs = data
    assert_parity(preds, refs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40), st.lists(st.integers(0, 5), max_size=40))
def test_bit_parallel_lcs_equals_dynamic_programming(x, y):
    x, y = [str(v) for v in x], [str(v) for v in y]
    assert lcs_length(x, y) == my_lcs(x, y)


def test_single_image_cider_is_zero():
    score, per = cider_d(["a red dog"], [["a red dog"]])
    assert score == 0.0 and per.tolist() == [0.0]


def test_empty_sentences_and_shared_ngrams_match_the_reference():
    preds = ["", "a dog", "", "two red cats sit"]
    refs = [["a dog"], ["a dog runs", "dog"], ["x y", "z"], ["two cats", "red cats sit on a mat"]]
    assert_parity(preds, refs)
    ngrams = count_ngrams(preds, refs)
    assert np.array_equal(bleu(preds, refs, ngrams=ngrams)[1], bleu(preds, refs)[1])
    assert np.array_equal(cider_d(preds, refs, ngrams=ngrams)[1], cider_d(preds, refs)[1])
    with pytest.raises(RegionLibError, match="need n = 3"):
        bleu(preds, refs, n=3, ngrams=ngrams)


def test_rouge_with_shared_token_numbers_only_where_splitting_on_spaces_agrees():
    """ROUGE-L splits on " " (pycocoevalcap's Rouge), BLEU / CIDEr-D on any whitespace: the n-gram counter's
    token numbers are reused only when both splits give the same tokens."""
    long = " ".join(f"w{i % 9}" for i in range(100))  # over 63 tokens: the per-pair LCS
    cases = [
        (["a red dog", "two cats", long], [["a dog", "red dog sits"], ["cats"], [long, "w1 w2"]], True),
        (["", "a dog"], [["a dog"], ["dog"]], False),           # an empty prediction: [""] for ROUGE-L
        (["a  dog", "x"], [["a dog"], ["x"]], False),           # a double space: an empty token
        (["a dog ", "x"], [["a dog"], ["x"]], False),           # a trailing space
        (["a\tdog", "x"], [["a dog"], ["x"]], False),          # a tab: one token for ROUGE-L
        (["1\u00a01/2 cups", "x"], [["1 1/2 cups"], ["x"]], False),  # PTB's no-break space inside a token
        (["caf\u00e9 au lait", "x"], [["caf\u00e9"], ["x y"]], True),
    ]
    for preds, refs, shared in cases:
        ngrams = count_ngrams(preds, refs)
        assert ngrams.space_split == shared, preds
        c, s = rouge_l(preds, refs)
        cs, ss = rouge_l(preds, refs, ngrams=ngrams)
        rc, _ = Rouge().compute_score({i: r for i, r in enumerate(refs)}, {i: [p] for i, p in enumerate(preds)})
        assert c == cs == pytest.approx(rc, abs=1e-12) and np.array_equal(s, ss), preds
