"""Fast in-process CIDEr-D, BLEU-1..4 and ROUGE-L on pre-tokenised text (pycocoevalcap 1.2 parity).

Same tokens in, the same numbers out as pycocoevalcap's scorers (tested to 1e-9 on real text),
computed with vectorised n-gram numbering (one sort per n; `count_ngrams` once for BLEU and
CIDEr-D, its hypothesis / reference split shared by both, its token numbers by ROUGE-L where
splitting on spaces gives the same tokens), sorted-key joins and segmented reductions (numpy)
instead of per-sentence Python dictionaries, with the garbage collector paused (`gc_paused`).

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
import re
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


_OTHER_BLANKS = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"  # ASCII whitespace str.split() splits on, besides " "
_NON_SPACE_BLANK = re.compile(r"[^\S ]")


def _changes(a: np.ndarray) -> np.ndarray:
    """(len(a),) bool: True where ``a[i] != a[i - 1]``, and at 0."""
    out = np.empty(len(a), dtype=bool)
    if len(a):
        out[0] = True
        np.not_equal(a[1:], a[:-1], out=out[1:])
    return out


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
        vocab = dict.fromkeys(words)
        vocab = dict(zip(vocab, range(len(vocab))))
        flat = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
        if n_sent > 1:
            ends = np.flatnonzero(flat == vocab["\x00"])
            lengths = np.diff(ends, prepend=-1, append=len(flat)) - 1
            flat = np.delete(flat, ends)
        else:
            lengths = np.full(n_sent, len(flat), dtype=np.int64)
        n_flat = len(flat)
        sent = np.repeat(np.arange(n_sent, dtype=np.int32), lengths)  # int32: half the memory traffic
        left = (np.repeat(np.cumsum(lengths), lengths) - np.arange(n_flat)).astype(np.int32)  # tokens to the end
        n_vocab = max(len(vocab), 1)
        gram_at, n_prev = flat, n_vocab  # number of the (n-1)-gram starting at each position
        grams, sents, counts, orders, offset = [], [], [], [], 0
        for n in range(1, max_n + 1):
            if n == 1:
                code, n_valid = flat, n_flat
            else:  # positions whose n-gram would cross a sentence end get a code past every valid one
                code = gram_at[: n_flat - n + 1] * n_vocab
                code += flat[n - 1:]
                code[left[: n_flat - n + 1] < n] = n_prev * n_vocab
                n_valid = int(np.count_nonzero(left >= n))
            code_s, pos_s = _sort_codes(code)
            code_s, pos_s = code_s[:n_valid], pos_s[:n_valid]
            sent_s = sent[pos_s]
            new_gram = _changes(code_s)
            rank = np.cumsum(new_gram) - 1
            if n < max_n:
                gram_at = np.empty(n_flat, dtype=np.int64)  # positions left out are masked above
                gram_at[pos_s] = rank
            first = np.flatnonzero(_changes(sent_s) | new_gram)
            grams.append(rank[first] + offset)
            sents.append(sent_s[first].astype(np.int64))
            counts.append(np.diff(first, append=n_valid))
            n_prev = int(rank[-1]) + 1 if n_valid else 0
            orders.append(np.full(n_prev, n, dtype=np.int64))
            offset += n_prev
        self.pair_gram, self.pair_sent = np.concatenate(grams), np.concatenate(sents)
        self.pair_count = np.concatenate(counts).astype(np.float64)
        self.order = np.concatenate(orders)
        self.n_tokens = lengths
        self.max_n = max_n
        self.tokens, self.n_vocab = flat, n_vocab  # the token numbers, sentence after sentence
        # whether splitting on " " (ROUGE-L's tokens) gives these tokens too: single spaces only, none at
        # either end of a sentence, no empty sentence, no other whitespace
        self.space_split = bool(joined and "  " not in joined and not joined.startswith(" ")
                                and not joined.endswith(" ")
                                and (not any(c in joined for c in _OTHER_BLANKS) if joined.isascii()
                                     else not _NON_SPACE_BLANK.search(joined)))


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


def _sides(ng: _NGrams):
    """The hypothesis and reference pairs of ``ng`` apart, computed once for `bleu` and `cider_d`:
    (h_sent, h_gram, h_count, h_key, r_sent, r_gram, r_count, r_key, r_runs), with keys
    ``n-gram * images + image`` (both sorted) and ``r_runs`` the starts of the reference key runs."""
    if getattr(ng, "_sides", None) is None:
        n_img = ng.n_images
        is_hyp = ng.pair_sent < n_img
        is_ref = ~is_hyp
        h_sent, h_gram, h_count = ng.pair_sent[is_hyp], ng.pair_gram[is_hyp], ng.pair_count[is_hyp]
        r_sent, r_gram, r_count = ng.pair_sent[is_ref] - n_img, ng.pair_gram[is_ref], ng.pair_count[is_ref]
        r_key = r_gram * n_img + ng.owner[r_sent]  # sorted: pairs are sorted by (n-gram, sentence)
        ng._sides = (h_sent, h_gram, h_count, h_gram * n_img + h_sent, r_sent, r_gram, r_count, r_key,
                     np.flatnonzero(_changes(r_key)))
    return ng._sides


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
    h_sent, h_gram, h_count, h_key, r_sent, r_gram, r_count, r_key, r_runs = _sides(ng)
    # document frequency: the number of images whose references contain the n-gram (runs of (n-gram, image))
    df = np.bincount(r_gram[r_runs], minlength=len(ng.order))
    idf = math.log(float(n_img)) - np.log(np.maximum(1.0, df))
    h_vec = h_count * idf[h_gram]
    r_vec = r_count * idf[r_gram]
    r_slot = r_sent * n + ng.order[r_gram] - 1  # (reference, n - 1) of each reference pair
    h_norm = np.sqrt(np.bincount(h_sent * n + ng.order[h_gram] - 1, weights=h_vec**2, minlength=n_img * n))
    r_norm = np.sqrt(np.bincount(r_slot, weights=r_vec**2, minlength=n_ref * n))
    h_at_r = _join(r_key, h_key, h_vec)  # the hypothesis' weight of each reference n-gram
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
    h_img, h_gram, h_count, h_key, _, _, r_count, r_key, starts = _sides(ng)
    max_keys = r_key[starts]
    max_count = np.maximum.reduceat(r_count, starts) if len(starts) else np.zeros(0)
    clipped = np.minimum(h_count, _join(h_key, max_keys, max_count))
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
    words.extend(itertools.chain.from_iterable(refs))
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tokens = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
    c_len = np.fromiter(map(len, cands), dtype=np.int64, count=len(cands))
    r_len_all = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    return _pairwise_lcs_numbers(tokens, c_len, r_len_all, owner, max(len(vocab), 1), chunk=chunk)


def _pairwise_lcs_numbers(tokens: np.ndarray, c_len: np.ndarray, r_len_all: np.ndarray, owner: np.ndarray,
                          n_vocab: int, *, chunk: int = 8192) -> np.ndarray:
    """`_pairwise_lcs` of numbered tokens: ``tokens`` holds the candidates' (``c_len`` each) then the
    references' (``r_len_all`` each), numbers below ``n_vocab``."""
    n_cand_tokens = int(c_len.sum())
    r_start = n_cand_tokens + np.cumsum(r_len_all) - r_len_all
    # (image, token) -> bitmask of the candidate's positions holding that token
    c_tok = tokens[:n_cand_tokens]
    c_img = np.repeat(np.arange(len(c_len)), c_len)
    c_pos = np.arange(len(c_tok)) - np.repeat(np.cumsum(c_len) - c_len, c_len)
    keep = c_len[c_img] <= 63
    key = c_img[keep] * n_vocab + c_tok[keep]
    bits = np.left_shift(np.uint64(1), c_pos[keep].astype(np.uint64))
    order = np.argsort(key, kind="stable")
    key, bits = key[order], bits[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    keys, masks = key[first], np.bitwise_or.reduceat(bits, first) if len(first) else bits
    out = np.zeros(len(r_len_all), dtype=np.int64)
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
    c_start = np.cumsum(c_len) - c_len
    for k in np.flatnonzero(c_len[owner] > 63):
        c = owner[k]
        out[k] = lcs_length(tokens[r_start[k]:r_start[k] + r_len_all[k]].tolist(),
                            tokens[c_start[c]:c_start[c] + c_len[c]].tolist())
    return out


@gc_paused()
def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]], *, beta: float = 1.2,
            ngrams: _NGrams | None = None):
    """ROUGE-L F -> (corpus mean, per-image (I,) array), as pycocoevalcap's `Rouge` (tokens split on " ").

    Per image: the best LCS precision and the best LCS recall over its references, combined as
    ``(1 + beta^2) P R / (R + beta^2 P)`` (0 when either is 0). ``ngrams``: `count_ngrams` of the
    same inputs, whose token numbers are used where splitting on " " gives the same tokens.
    """
    n_refs = np.fromiter(map(len, references), dtype=np.int64, count=len(references))
    n_img = len(predictions)
    owner = np.repeat(np.arange(n_img), n_refs)
    if ngrams is not None and ngrams.space_split and ngrams.n_images == n_img and len(ngrams.n_tokens) == \
            n_img + len(owner):
        lengths = ngrams.n_tokens
        lcs = _pairwise_lcs_numbers(ngrams.tokens, lengths[:n_img], lengths[n_img:], owner,
                                    ngrams.n_vocab).astype(np.float64)
        c_len, r_len = lengths[:n_img].astype(np.float64), lengths[n_img:].astype(np.float64)
    else:
        cands = [c.split(" ") for c in predictions]
        refs = [r.split(" ") for rs in references for r in rs]
        lcs = _pairwise_lcs(cands, refs, owner).astype(np.float64)
        c_len = np.fromiter(map(len, cands), dtype=np.float64, count=len(cands))
        r_len = np.fromiter(map(len, refs), dtype=np.float64, count=len(refs))
    starts = np.cumsum(n_refs) - n_refs
    prec = np.maximum.reduceat(lcs / c_len[owner], starts)
    rec = np.maximum.reduceat(lcs / r_len, starts)
    ok = (prec != 0) & (rec != 0)
    scores = np.zeros(n_img)
    scores[ok] = ((1 + beta**2) * prec[ok] * rec[ok]) / (rec[ok] + beta**2 * prec[ok])
    return float(scores.mean()), scores
