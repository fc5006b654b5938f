"""Fast in-process CIDEr-D, BLEU-1..4 and ROUGE-L on pre-tokenised text (pycocoevalcap 1.2 parity).

Same tokens in, the same numbers out as pycocoevalcap's scorers (tested to 1e-9 on real text),
computed with vectorised n-gram numbering (one sort per n; `count_ngrams` once for BLEU and
CIDEr-D), sorted-key joins and segmented reductions (numpy) instead of per-sentence Python
dictionaries, with the garbage collector paused (`gc_paused`).

* CIDEr-D (REFERENCE §5): raw n-gram counts n = 1..4; document frequency over the reference
  sets of the images scored; weights ``tf * (log N - log max(1, df))``; per n the clipped
  similarity ``sum(min(h, r) * r) / (|h| |r|)`` times ``exp(-delta^2 / (2 sigma^2))`` where
  delta is the difference of the *bigram* counts (the reference code's ``length``); mean over n,
  divided by the number of references, times 10.
* BLEU: modified n-gram precision with the references' maximum counts, "closest" reference
  length, pycocoevalcap's ``tiny = 1e-15`` / ``small = 1e-9`` guards, per-sentence and corpus.
* ROUGE-L: LCS by the bit-parallel algorithm of Crochemore et al. (2001), vectorised over all
  (candidate, reference) pairs on uint64 words (Python integers for candidates over 63 tokens);
  F-measure with beta = 1.2 over the best precision and best recall across references.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
from typing import Sequence

import numpy as np

from ..errors import RegionLibError

__all__ = ["gc_paused", "count_ngrams", "cider_d", "bleu", "rouge_l", "lcs_length"]


@contextlib.contextmanager
def gc_paused():
    """Keep Python's cyclic garbage collector off inside the block (restored after, no collection run).

    The metrics allocate millions of short-lived lists and strings and create no reference cycles;
    with a large corpus alive (the callers' dicts of lists), every few thousand allocations would
    trigger a collection that walks it — more than half the time of a 20,000-region evaluation.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sort_codes(code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted codes, their positions)`` of non-negative ``code``, ties in position order.

    Packs ``code << bits | position`` into one int64 and sorts values (much faster than an
    argsort); codes too large to pack fall back to a stable argsort.
    """
    bits = max(1, len(code).bit_length())
    if not len(code) or int(code.max()) < 2 ** (62 - bits):
        packed = np.sort((code << bits) | np.arange(len(code)))
        return packed >> bits, packed & ((1 << bits) - 1)
    perm = np.argsort(code, kind="stable")
    return code[perm], perm


class _NGrams:
    """The n-grams (n = 1..max_n) of tokenised sentences as (n-gram, sentence, count) triples.

    Attributes (P distinct pairs, G distinct n-grams, S sentences):
        pair_gram, pair_sent, pair_count: (P,) sorted by (n-gram, sentence);
        order: (G,) the n of each n-gram id; n_tokens: (S,) token counts.

    Tokens are split on whitespace (pycocoevalcap's ``precook``). The n-gram starting at each
    token position is coded from the number of its (n-1)-gram prefix and its last token; one
    sort of the codes per n numbers the n-grams and, since ties stay in position order, also
    yields the per-sentence counts. No n-gram is ever spelled out.
    """

    def __init__(self, sentences: Sequence[str], max_n: int = 4):
        n_sent = len(sentences)
        joined = " \x00 ".join(sentences)  # one split for all sentences; NUL tokens mark the ends
        if joined.count("\x00") != max(n_sent - 1, 0):
            raise RegionLibError("captions must not contain NUL characters")
        words = joined.split()
        vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
        flat = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
        if n_sent > 1:
            is_end = flat == vocab["\x00"]
            lengths = np.diff(np.r_[-1, np.flatnonzero(is_end), len(flat)]) - 1
            flat = flat[~is_end]
        else:
            lengths = np.full(n_sent, len(flat), dtype=np.int64)
        sent = np.repeat(np.arange(n_sent), lengths)
        left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(flat))  # tokens from here to the end
        n_vocab = max(len(vocab), 1)
        gram_at, n_prev = flat, n_vocab  # number of the (n-1)-gram starting at each position
        grams, sents, counts, orders, offset = [], [], [], [], 0
        for n in range(1, max_n + 1):
            if n == 1:
                code = flat
            else:  # positions whose n-gram would cross a sentence end get a code past every valid one
                code = np.where(left[: len(flat) - n + 1] >= n, gram_at[: len(flat) - n + 1] * n_vocab
                                + flat[n - 1:], n_prev * n_vocab)
            n_valid = int(np.count_nonzero(left >= n))
            code_s, pos_s = _sort_codes(code)
            code_s, pos_s = code_s[:n_valid], pos_s[:n_valid]
            sent_s = sent[pos_s]
            new_gram = np.r_[True, code_s[1:] != code_s[:-1]][:n_valid]
            rank = np.cumsum(new_gram) - 1
            gram_at = np.zeros_like(flat)
            gram_at[pos_s] = rank
            first = np.flatnonzero(new_gram | np.r_[True, sent_s[1:] != sent_s[:-1]][:n_valid])
            grams.append(rank[first] + offset)
            sents.append(sent_s[first])
            counts.append(np.diff(np.r_[first, n_valid]))
            n_prev = int(rank[-1]) + 1 if n_valid else 0
            orders.append(np.full(n_prev, n, dtype=np.int64))
            offset += n_prev
        self.pair_gram, self.pair_sent = np.concatenate(grams), np.concatenate(sents)
        self.pair_count = np.concatenate(counts).astype(np.float64)
        self.order = np.concatenate(orders)
        self.n_tokens = lengths
        self.max_n = max_n


@gc_paused()
def count_ngrams(predictions: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> _NGrams:
    """The n-grams (n = 1..``max_n``) of the predictions followed by all references, counted once for
    `bleu` and `cider_d` (pass it as ``ngrams=``); ``.owner`` is the image of each reference."""
    if len(predictions) != len(references):
        raise RegionLibError(f"{len(predictions)} predictions but {len(references)} reference lists")
    n_refs = np.fromiter(map(len, references), dtype=np.int64, count=len(references))
    ngrams = _NGrams([*predictions, *itertools.chain.from_iterable(references)], max_n)
    ngrams.owner = np.repeat(np.arange(len(references)), n_refs)
    ngrams.n_images = len(predictions)
    return ngrams


def _counted(predictions, references, n: int, ngrams: _NGrams | None) -> _NGrams:
    if ngrams is None:
        return count_ngrams(predictions, references, n)
    if ngrams.max_n != n or ngrams.n_images != len(predictions):
        raise RegionLibError(f"ngrams= counts n <= {ngrams.max_n} of {ngrams.n_images} images; need n = {n} "
                             f"and {len(predictions)} images")
    return ngrams


def _join(keys: np.ndarray, table_keys: np.ndarray, table_values: np.ndarray) -> np.ndarray:
    """``table_values`` at ``keys`` in the sorted ``table_keys`` (0 where absent)."""
    if not len(table_keys):
        return np.zeros(len(keys))
    at = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return np.where(table_keys[at] == keys, table_values[at], 0.0)


@gc_paused()
def cider_d(predictions: Sequence[str], references: Sequence[Sequence[str]], *, n: int = 4, sigma: float = 6.0,
            ngrams: _NGrams | None = None):
    """CIDEr-D of tokenised ``predictions[i]`` against ``references[i]`` -> (corpus mean, per-image (I,) array).

    ``ngrams``: `count_ngrams` of the same inputs, shared with `bleu`.
    """
    ng = _counted(predictions, references, n, ngrams)
    owner = ng.owner
    n_img, n_ref = len(predictions), len(owner)
    is_hyp = ng.pair_sent < n_img
    h_sent, h_gram, r_gram = ng.pair_sent[is_hyp], ng.pair_gram[is_hyp], ng.pair_gram[~is_hyp]
    r_sent = ng.pair_sent[~is_hyp] - n_img
    r_img = owner[r_sent]
    # document frequency: the number of images whose references contain the n-gram (runs of (n-gram, image))
    r_key = r_gram * n_img + r_img  # sorted: pairs are sorted by (n-gram, sentence)
    new_run = np.r_[True, r_key[1:] != r_key[:-1]] if len(r_key) else np.zeros(0, dtype=bool)
    df = np.bincount(r_gram[new_run], minlength=len(ng.order))
    idf = math.log(float(n_img)) - np.log(np.maximum(1.0, df))
    h_vec = ng.pair_count[is_hyp] * idf[h_gram]
    r_vec = ng.pair_count[~is_hyp] * idf[r_gram]
    r_slot = r_sent * n + ng.order[r_gram] - 1  # (reference, n - 1) of each reference pair
    h_norm = np.sqrt(np.bincount(h_sent * n + ng.order[h_gram] - 1, weights=h_vec**2, minlength=n_img * n))
    r_norm = np.sqrt(np.bincount(r_slot, weights=r_vec**2, minlength=n_ref * n))
    h_at_r = _join(r_key, h_gram * n_img + h_sent, h_vec)  # the hypothesis' weight of each reference n-gram
    val = np.bincount(r_slot, weights=np.minimum(h_at_r, r_vec) * r_vec, minlength=n_ref * n).reshape(n_ref, n)
    denom = h_norm.reshape(n_img, n)[owner] * r_norm.reshape(n_ref, n)
    val = np.divide(val, denom, out=val.copy(), where=denom != 0)
    bigrams_h = np.maximum(ng.n_tokens[:n_img] - 1, 0)
    bigrams_r = np.maximum(ng.n_tokens[n_img:] - 1, 0)
    delta = (bigrams_h[owner] - bigrams_r).astype(np.float64)
    val *= np.e ** (-(delta**2) / (2 * sigma**2))[:, None]
    per_ref = val.mean(axis=1)
    n_refs = np.bincount(owner, minlength=n_img)
    scores = np.bincount(owner, weights=per_ref, minlength=n_img) / n_refs * 10.0
    return float(scores.mean()), scores


@gc_paused()
def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]], *, n: int = 4,
         ngrams: _NGrams | None = None):
    """BLEU-1..n -> (corpus [n floats], per-sentence (n, I) array), pycocoevalcap's 'closest' option.

    ``ngrams``: `count_ngrams` of the same inputs, shared with `cider_d`.
    """
    tiny, small = 1e-15, 1e-9
    ng = _counted(predictions, references, n, ngrams)
    owner = ng.owner
    n_img = len(predictions)
    # pairs are sorted by (n-gram, sentence), hence references by (n-gram, image): the references'
    # maximum count per (n-gram, image) is a segmented maximum, joined to the hypotheses by key
    is_hyp = ng.pair_sent < n_img
    h_img, h_gram, h_count = ng.pair_sent[is_hyp], ng.pair_gram[is_hyp], ng.pair_count[is_hyp]
    r_key = ng.pair_gram[~is_hyp] * n_img + owner[ng.pair_sent[~is_hyp] - n_img]
    starts = np.flatnonzero(np.r_[True, r_key[1:] != r_key[:-1]]) if len(r_key) else np.zeros(0, dtype=np.int64)
    max_keys = r_key[starts]
    max_count = np.maximum.reduceat(ng.pair_count[~is_hyp], starts) if len(starts) else np.zeros(0)
    clipped = np.minimum(h_count, _join(h_gram * n_img + h_img, max_keys, max_count))
    correct = np.bincount(h_img * n + ng.order[h_gram] - 1, weights=clipped, minlength=n_img * n).reshape(n_img, n)
    testlen = ng.n_tokens[:n_img].astype(np.float64)
    guess = np.maximum(0, testlen[:, None] - np.arange(n)[None])
    # closest reference length: min over refs of (|l - testlen|, l)
    rlen = ng.n_tokens[n_img:].astype(np.float64)
    order = np.lexsort((rlen, np.abs(rlen - testlen[owner]), owner))
    first = np.flatnonzero(np.r_[True, owner[order][1:] != owner[order][:-1]])
    reflen = rlen[order][first]
    per = np.empty((n, n_img))
    running = np.ones(n_img)
    for k in range(n):
        running = running * (correct[:, k] + tiny) / (guess[:, k] + small)
        per[k] = running ** (1.0 / (k + 1))
    ratio = (testlen + tiny) / (reflen + small)
    per[:, ratio < 1] *= np.exp(1 - 1 / ratio[ratio < 1])
    total_ratio = (testlen.sum() + tiny) / (reflen.sum() + small)
    corpus, b = [], 1.0
    for k in range(n):
        b *= float(correct[:, k].sum() + tiny) / (guess[:, k].sum() + small)
        corpus.append(b ** (1.0 / (k + 1)))
    if total_ratio < 1:
        corpus = [c * math.exp(1 - 1 / total_ratio) for c in corpus]
    return corpus, per


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (bit-parallel, Crochemore et al. 2001)."""
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return 0
    masks: dict = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << m) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return m - bin(v).count("1")


def _pairwise_lcs(cands: list[list[str]], refs: list[list[str]], owner: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
    """LCS length of every (candidate ``owner[k]``, reference ``k``) pair -> (R,) int64.

    Candidates of at most 63 tokens run the bit-parallel recurrence on uint64 words for all
    their pairs at once (one vector step per reference token); longer ones use `lcs_length`.
    """
    words = list(itertools.chain.from_iterable(cands))
    n_cand_tokens = len(words)
    words.extend(itertools.chain.from_iterable(refs))
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    n_vocab = max(len(vocab), 1)
    tokens = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
    c_len = np.fromiter(map(len, cands), dtype=np.int64, count=len(cands))
    r_len_all = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    r_start = n_cand_tokens + np.cumsum(r_len_all) - r_len_all
    # (image, token) -> bitmask of the candidate's positions holding that token
    c_tok = tokens[:n_cand_tokens]
    c_img = np.repeat(np.arange(len(cands)), c_len)
    c_pos = np.arange(len(c_tok)) - np.repeat(np.cumsum(c_len) - c_len, c_len)
    keep = c_len[c_img] <= 63
    key = c_img[keep] * n_vocab + c_tok[keep]
    bits = np.left_shift(np.uint64(1), c_pos[keep].astype(np.uint64))
    order = np.argsort(key, kind="stable")
    key, bits = key[order], bits[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    keys, masks = key[first], np.bitwise_or.reduceat(bits, first) if len(first) else bits
    out = np.zeros(len(refs), dtype=np.int64)
    fast = np.flatnonzero(c_len[owner] <= 63)
    for block in range(0, len(fast), chunk):
        pairs = fast[block:block + chunk]
        r_len = r_len_all[pairs]
        r_pair = np.repeat(np.arange(len(pairs)), r_len)
        r_pos = np.arange(int(r_len.sum())) - np.repeat(np.cumsum(r_len) - r_len, r_len)
        r_tok = tokens[r_start[pairs][r_pair] + r_pos]
        r_key = owner[pairs][r_pair] * n_vocab + r_tok
        at = np.minimum(np.searchsorted(keys, r_key), max(len(keys) - 1, 0))
        found = keys[at] == r_key if len(keys) else np.zeros(len(r_key), dtype=bool)
        match = np.zeros((len(pairs), int(r_len.max(initial=0))), dtype=np.uint64)  # padding steps change nothing
        match[r_pair, r_pos] = np.where(
            found, masks[at] if len(keys) else 0, 0)
        full = (np.left_shift(np.uint64(1), c_len[owner[pairs]].astype(np.uint64)) - np.uint64(1))
        v = full.copy()
        for t in range(match.shape[1]):
            u = v & match[:, t]
            v = ((v + u) | (v - u)) & full
        out[pairs] = c_len[owner[pairs]] - np.bitwise_count(v)
    for k in np.flatnonzero(c_len[owner] > 63):
        out[k] = lcs_length(refs[k], cands[owner[k]])
    return out


@gc_paused()
def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]], *, beta: float = 1.2):
    """ROUGE-L F -> (corpus mean, per-image (I,) array), as pycocoevalcap's `Rouge` (tokens split on " ").

    Per image: the best LCS precision and the best LCS recall over its references, combined as
    ``(1 + beta^2) P R / (R + beta^2 P)`` (0 when either is 0).
    """
    cands = [c.split(" ") for c in predictions]
    refs = [r.split(" ") for rs in references for r in rs]
    n_refs = np.fromiter(map(len, references), dtype=np.int64, count=len(references))
    owner = np.repeat(np.arange(len(cands)), n_refs)
    lcs = _pairwise_lcs(cands, refs, owner).astype(np.float64)
    c_len = np.fromiter(map(len, cands), dtype=np.float64, count=len(cands))
    r_len = np.fromiter(map(len, refs), dtype=np.float64, count=len(refs))
    starts = np.cumsum(n_refs) - n_refs
    prec = np.maximum.reduceat(lcs / c_len[owner], starts)
    rec = np.maximum.reduceat(lcs / r_len, starts)
    ok = (prec != 0) & (rec != 0)
    scores = np.zeros(len(cands))
    scores[ok] = ((1 + beta**2) * prec[ok] * rec[ok]) / (rec[ok] + beta**2 * prec[ok])
    return float(scores.mean()), scores
