"""PTB tokenisation exactly as pycocoevalcap 1.2 does it, in process (REFERENCE §5).

pycocoevalcap's ``PTBTokenizer`` writes every caption as one line of a file, runs Stanford
CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` on it (Java) and drops the tokens in
its ``PUNCTUATIONS`` list. `tokenize` gives the same strings:

* **Line ends first.** The Java lexer ends a line at ``\\n``, ``\\r``, ``\\x0b``, ``\\x0c``,
  ``\\u2028`` and ``\\u2029`` (probed over every control, format and separator code point;
  ``\\x85`` is not one), while pycocoevalcap replaces only ``\\n``: one such character shifts
  every later caption of the call by a line. `normalize_line_ends` turns them all into spaces
  before tokenising, so each caption stays on its line.
* **In-process rules** (`in_process`, the fast path: chunk by chunk, memoised) for every caption
  built from ASCII letters, digits, spaces, tabs and ``, . ; : ! ? ' / - " ( ) [ ] { }`` in the
  whitespace-separated *chunks* whose tokens the lexer provably decides locally: a word of
  letters and digits, parts joined by ``-`` or ``/`` (one token), optionally followed by a clitic
  (``n't`` off letters not ending in "n", ``'s``, ``'m``, ``'re``, ``'ve``, ``'ll``, ``'d`` —
  split off — or a bare ``'``, dropped, except after the lexer's ``d' j' l' ol' somethin'``) and
  by one of ``, ; : ! ?`` (dropped), or by a ``.`` (dropped) unless the word is one of the
  lexer's abbreviations (``etc.``, ``st.``, ``no.``, ``Miss.``, single letters, ...) or of mixed
  case; such a word wrapped in double quotes (dropped, as pycocoevalcap drops the lexer's quote
  tokens) and brackets (``-lrb-``, ``-rrb-``, ``-lsb-``, ... — kept: pycocoevalcap's list has
  them upper-case, the lexer writes them lower-cased), with marks after the closing ones;
  standalone ``-``, ``--``, ``...``, brackets, quotes and single marks.
* **The in-process lexer** (`ptb_lexer`) for every other caption: CoreNLP 3.4.1's ``PTBLexer``
  itself — its JFlex DFA, read from the jar pycocoevalcap ships, with the rules' actions and
  the program's ``-preserveLines -lowerCase`` output — run over the caption's line and, for the
  lexer's look-ahead, the lines after it, exactly as Java runs it over the whole file: any
  symbol, unicode, abbreviations, acronyms, numbers, dates, fractions, URLs, e-mail addresses,
  SGML tags, smileys, split words (``cannot`` -> ``can not``), ... Equal to the Java program on
  every code point in five contexts, on every text of the reference data and on randomised text
  (``tests/evaluation/test_ptb.py``).
* **Java** only for what the lexer refuses (`ptb_lexer.Unsupported`: a token whose lower case
  Java 17 may write differently — a capital sigma inside a token before a non-letter, a capital
  letter of Unicode 14 or later) or when the jar's tables are not CoreNLP 3.4.1's: those
  captions go through pycocoevalcap's own ``PTBTokenizer`` in one call, each run of them followed
  by the lines the lexer looks ahead to. Each use is logged (a warning naming the reason) and
  counted in `counts` (``"rules"``, ``"lexer"``, ``"java"``: texts per path since import).
  Real DLC-Bench text never needs it.

The rules were derived by probing the Java tokenizer (every word of 1-4 letters in three cases
and of 5 lower-case letters before a period, in up to four contexts; MiniLM's 21,745 words with
every suffix, quote and bracket above, in three cases and five contexts; numbers, compounds and
words with digits before a period); the lexer's abbreviation lists (``PTBLexer.flex``) have no
word of more than seven letters, and the tests check the rules against the in-process lexer on
every word of up to three letters and every listed abbreviation in three cases and four
contexts, and on randomised text, besides pycocoevalcap's ``PTBTokenizer`` itself.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import re
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from ..errors import RegionLibError
from . import ptb_lexer
from .fast_captions import gc_paused

__all__ = ["LINE_BREAKS", "JavaUnavailable", "require_java", "normalize_line_ends", "tokenize", "tokenize_groups",
           "java_tokenize", "in_process", "counts"]

_log = logging.getLogger(__name__)
# How many texts each path tokenised since import: "rules" (`in_process`), "lexer" (`ptb_lexer`), "java".
counts: Counter = Counter()

LINE_BREAKS = "\n\r\x0b\x0c\u2028\u2029"
_LINE_BREAK_TABLE = str.maketrans({c: " " for c in LINE_BREAKS})


class JavaUnavailable(RegionLibError):
    """Java is needed for the PTB tokenizer's fallback, METEOR and SPICE."""


def require_java() -> None:
    """Raise `JavaUnavailable` with install hints when ``java`` is not on PATH."""
    if shutil.which("java") is None:
        raise JavaUnavailable("java was not found on PATH: the PTB tokenizer, METEOR and SPICE need Java "
                              "(e.g. apt-get install openjdk-17-jre-headless, or conda install openjdk)")


def normalize_line_ends(text: str) -> str:
    """``text`` with every character the Java PTB lexer ends a line at (`LINE_BREAKS`) replaced by a space."""
    return text.translate(_LINE_BREAK_TABLE)


# Lower-case words the Java lexer keeps together with a following period in at least one context
# (end of line, before "the", before "The", before "5"): probed exhaustively over a-z{1,4} in the
# four contexts and a-z{5} before "The", over MiniLM's 21,745 words of letters in the four
# contexts, plus the lexer's longer company / title abbreviations (bancorp, messrs).
_ABBREVIATIONS = frozenset("""
a adj adm adv al ala alex apr ariz art assn assoc asst atty attys aug ave b bancorp bhd bldg blvd
brig bros c ca calif capt cf cie cmdr co col colo comdr conn corp cos cpl ct d dak dec dept det dr
drs e elec ens esq est etc ext f feb fig figs fla fri ft g ga gen gov govs h hon i inc ind insp intl
invt j jan jos jr jul jun k kan kans ky l lieut lt ltd m maj mar md messrs mfg mich minn mlle mme mo
mon mont mr mrs ms msgr mt mtg n natl neb nev no nos nov o oct okla op p penn pfc ph plc pp ppte
pptes ppty pptys pres prof profs prop pte ptes pty ptys pvt q r rd rep reps rev rt s sen sens sep
sept seq sfc sgt spc sq sr st ste supt supts sys t tel tenn thu thurs treas tue tues u univ v va vs
vt w wed wis wisc wm wyo x y z
""".split())
# Capitalised or upper-case words that also keep their period (probed likewise: a-z{1,4} exhaustively,
# MiniLM's words of five letters or more).
_CASED_ABBREVIATIONS = frozenset("ark az del ill la mass miss ore pa tex wash".split())
# Words the lexer keeps with a bare trailing apostrophe (probed: a-z{1,4} exhaustively, MiniLM's words).
_APOSTROPHE_WORDS = frozenset({"d", "j", "l", "ol", "somethin"})
# Words of letters the lexer splits (its assimilations).
_SPLIT_WORDS = frozenset({"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"})
_DROPPED_CHUNKS = frozenset({"-", "--", "...", ",", ";", ":", "!", "?", "."})
_CHUNK = re.compile(r"(?P<word>[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*)"
                    r"(?P<clitic>[nN]'[tT]|'(?:[sSmMdD]|[rR][eE]|[vV][eE]|[lL][lL])|')?(?P<mark>[,;:!?.])?")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9 \t,.;:!?'/\"()\[\]{}-]")
# Brackets become -lrb- / -rrb- ... (kept: pycocoevalcap's PUNCTUATIONS has them upper-case), quotes
# `` / '' (dropped); a chunk is peeled of its leading openers and its trailing closers with marks.
_BRACKETS = {'"': "", "(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_WRAPPED = re.compile(r'(?P<open>["(\[{]*)(?P<inner>.*?)(?P<close>(?:[")\]}]+[,;:!?.]?)*)')


def _keeps_period(word: str, lower: str) -> bool:
    """Whether the lexer may keep a period after the letters ``word`` (True also for mixed case)."""
    if word.islower():
        return lower in _ABBREVIATIONS
    if word.isupper() or word[1:].islower():
        return lower in _ABBREVIATIONS or lower in _CASED_ABBREVIATIONS
    return True


def _chunk_tokens(chunk: str) -> str | None:
    """The kept PTB tokens of one whitespace-free ``chunk`` ("" when all are dropped), or None when
    the chunk is outside the proven subset."""
    if chunk in _DROPPED_CHUNKS:
        return ""
    if all(c in _BRACKETS for c in chunk):
        return " ".join(t for t in map(_BRACKETS.__getitem__, chunk) if t)
    m = _WRAPPED.fullmatch(chunk)
    if m.group("open") or m.group("close"):
        inner = _word_tokens(m.group("inner")) if m.group("inner") else None
        if inner is None:
            return None
        tokens = [_BRACKETS[c] for c in m.group("open")] + [inner] + [_BRACKETS.get(c, "") for c in m.group("close")]
        return " ".join(t for t in tokens if t)
    return _word_tokens(chunk)


def _word_tokens(chunk: str) -> str | None:
    """`_chunk_tokens` of a chunk without brackets or quotes: a word, its clitic and its mark."""
    m = _CHUNK.fullmatch(chunk)
    if m is None:
        return None
    word, clitic, mark = m.group("word"), m.group("clitic"), m.group("mark")
    lower = word.lower()
    if any(part in _SPLIT_WORDS for part in re.split(r"[-/]", lower)):
        return None
    if "/" in word and not word.replace("/", "").replace("-", "").isalpha():
        return None  # "102 1/2" is one token (joined by U+00A0) in the lexer
    if mark == "." and (clitic or word.isalpha() and _keeps_period(word, lower)):
        return None
    if clitic and clitic[0] in "nN" and (not word.isalpha() or lower.endswith("n")):
        return None  # the lexer splits "n't" only off letters not ending in "n" ("Xn't" -> "xn ' t")
    if clitic == "'" and lower in _APOSTROPHE_WORDS:
        return None
    if clitic and clitic != "'":
        return f"{lower} {clitic.lower()}"
    return lower


def in_process(text: str, memo: dict | None = None) -> str | None:
    """PTB tokens of ``text`` (line ends already normalised) by the in-process rules, or None when
    the text is outside the proven subset (see the module docstring). ``memo``: chunk -> tokens,
    shared between calls."""
    if _UNSAFE_CHAR.search(text):
        return None
    memo = {} if memo is None else memo
    chunks = text.split()
    try:
        tokens = list(map(memo.__getitem__, chunks))
    except KeyError:
        for chunk in chunks:
            if chunk not in memo:
                memo[chunk] = _chunk_tokens(chunk)
        tokens = list(map(memo.__getitem__, chunks))
    if None in tokens:
        return None
    return " ".join(filter(None, tokens))


# chunk -> its tokens by the rules, each followed by a space ("\x01 " outside the rules), kept between calls
_CHUNK_MEMO: dict[str, str] = {}
_CHUNK_MEMO_LIMIT = 500_000
_UNSAFE_OR_NUL = re.compile(r"[^A-Za-z0-9 \t,.;:!?'/\"()\[\]{}\x00-]")


def _in_process_all(texts: Sequence[str], memo: dict) -> list[str | None]:
    """`in_process` of every text at once (one split, one pass of memo look-ups, one join for all);
    None for a text outside the subset. ``memo``: chunk -> its tokens each followed by a space."""
    joined = " \x00 ".join(texts)  # NUL chunks mark the ends of texts
    if joined.count("\x00") != len(texts) - 1:  # a text holds NUL itself (outside the subset anyway)
        return [in_process(t) for t in texts]
    chunks = joined.split()
    try:
        values = list(map(memo.__getitem__, chunks))
    except KeyError:
        memo.setdefault("\x00", "\n")
        for chunk in dict.fromkeys(chunks):
            if chunk not in memo:
                tokens = _chunk_tokens(chunk) if not _UNSAFE_CHAR.search(chunk) else None
                memo[chunk] = "\x01 " if tokens is None else f"{tokens} " if tokens else ""
        values = list(map(memo.__getitem__, chunks))
    out = [None if "\x01" in t else t[:-1] for t in "".join(values).split("\n")] if texts else []
    if _UNSAFE_OR_NUL.search(joined):  # texts with characters outside the subset (between chunks: tabs are fine)
        starts = list(itertools.accumulate((len(t) + 3 for t in texts), initial=0))
        for m in _UNSAFE_OR_NUL.finditer(joined):
            out[bisect.bisect_right(starts, m.start()) - 1] = None
    return out


def java_tokenize(texts: Sequence[str]) -> list[str]:
    """pycocoevalcap's ``PTBTokenizer`` (Java) on ``texts`` after `normalize_line_ends`, one call, in order.

    Blank lines the Java tokenizer leaves out at the end of its output (pycocoevalcap loses them)
    come back as "".
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not texts:
        return []
    require_java()
    out = PTBTokenizer().tokenize({i: [{"caption": normalize_line_ends(t)}] for i, t in enumerate(texts)})
    return [out[i][0] if i in out else "" for i in range(len(texts))]


def tokenize(texts: Sequence[str]) -> list[str]:
    """PTB tokens of each text, joined by single spaces: lower-cased, pycocoevalcap's punctuation
    removed, line ends normalised first (`normalize_line_ends`).

    The result equals pycocoevalcap's ``PTBTokenizer`` on the normalised ``texts`` in one call:
    the rules where they apply, the in-process lexer (over the following lines too, as far as it
    looks ahead) for the rest; texts the lexer refuses go to Java together, each run of them
    followed by the lines after it up to the first non-blank one.
    """
    return tokenize_groups([texts])[0]


@gc_paused()
def tokenize_groups(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """`tokenize` of each group as its own tokenizer call (e.g. references and predictions, as
    ``COCOEvalCap`` tokenises them); the groups' Java fallbacks, if any, run concurrently."""
    if len(_CHUNK_MEMO) > _CHUNK_MEMO_LIMIT:
        _CHUNK_MEMO.clear()
    plans = [_plan(texts, _CHUNK_MEMO) for texts in groups]
    calls = [(out, batch, lines) for out, batch, lines, _ in plans if batch]
    if calls:
        reasons = dict.fromkeys(r for *_, rs in plans for r in rs)
        _log.warning("%d of %d texts go to Java's PTBTokenizer: %s", sum(len(b) for _, b, _ in calls),
                     sum(map(len, groups)), "; ".join(reasons)[:1000])
    if len(calls) > 1:
        with ThreadPoolExecutor(len(calls)) as pool:
            results = list(pool.map(java_tokenize, [lines for _, _, lines in calls]))
    else:
        results = [java_tokenize(lines) for _, _, lines in calls]
    for (out, batch, _), tokens in zip(calls, results):
        for i, k in batch:
            out[i] = tokens[k]
    return [out for out, *_ in plans]


def _plan(texts: Sequence[str], memo: dict) -> tuple[list, list[tuple[int, int]], list[str], list[str]]:
    """Tokens of ``texts`` by the rules, then the lexer (None where Java is needed), the (text index,
    Java line index) pairs and the lines of the Java call (each run of fallback texts, then its
    look-ahead context), and why each fallback was needed."""
    try:
        out = _in_process_all(texts, memo)
    except TypeError:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise RegionLibError(f"texts[{i}] must be str, got {type(text).__name__}") from None
        raise
    lines = list(texts)
    if None in out:
        for i, tokens in enumerate(out):
            if tokens is None:  # a text with a line end is outside the subset: normalise, retry
                lines[i] = normalize_line_ends(texts[i])
                if lines[i] != texts[i]:
                    out[i] = in_process(lines[i])
    n_rules = len(out) - out.count(None)
    refused: list = []
    if n_rules < len(out):
        for i, line in enumerate(lines):
            if out[i] is None and not line.isascii() and _SURROGATE.search(line):
                raise RegionLibError(f"texts[{i}] holds an unpaired surrogate: it cannot be written as UTF-8 "
                                     "(pycocoevalcap's PTBTokenizer fails on it too)")
        lex = _lexer()
        if lex is not None:
            out = lex.tokenize_lines(lines, out, unsupported=refused)
        else:
            refused = [(i, "the in-process PTBLexer is unavailable") for i, t in enumerate(out) if t is None]
    n_java = out.count(None)
    counts.update(rules=n_rules, lexer=len(out) - n_rules - n_java, java=n_java)
    runs: list[list[int]] = []  # [start, stop) of consecutive texts that need Java
    for i, tokens in enumerate(out):
        if tokens is None:
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
    batch, call = [], []
    for start, stop in runs:
        batch.extend((i, len(call) + i - start) for i in range(start, stop))
        call.extend(lines[start:stop])
        after = stop  # context: the lines up to the first non-blank one (tokenised and dropped)
        while after < len(lines) and out[after] is not None and not lines[after].strip():
            after += 1
        call.extend(lines[stop:min(after + 1, len(lines))])
    return out, batch, call, [reason for _, reason in refused]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lexer():
    """The shared `ptb_lexer.Lexer`, or None (logged once) where pycocoevalcap's jar is not CoreNLP 3.4.1's."""
    global _LEXER_ERROR
    if _LEXER_ERROR is not None:
        return None
    try:
        return ptb_lexer.lexer()
    except ptb_lexer.LexerUnavailable as exc:
        _LEXER_ERROR = exc
        _log.warning("PTB tokenizer: texts outside the in-process rules go to Java: %s", exc)
        return None


_LEXER_ERROR: Exception | None = None
