"""PTB tokenisation exactly as pycocoevalcap 1.2 does it, in process where that is proven (REFERENCE §5).

pycocoevalcap's ``PTBTokenizer`` writes every caption as one line of a file, runs Stanford
CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` on it (Java) and drops the tokens in
its ``PUNCTUATIONS`` list. `tokenize` gives the same strings:

* **Line ends first.** The Java lexer ends a line at ``\\n``, ``\\r``, ``\\x0b``, ``\\x0c``,
  ``\\u2028`` and ``\\u2029`` (probed over every control, format and separator code point;
  ``\\x85`` is not one), while pycocoevalcap replaces only ``\\n``: one such character shifts
  every later caption of the call by a line. `normalize_line_ends` turns them all into spaces
  before tokenising, so each caption stays on its line.
* **In process** for every caption built from ASCII letters, digits, spaces, tabs and ``, . ; : !
  ? ' / - " ( ) [ ] { }`` in the whitespace-separated *chunks* whose tokens the lexer provably
  decides locally: a word of letters and digits, parts joined by ``-`` or ``/`` (one token),
  optionally followed by a clitic (``n't`` off letters not ending in "n", ``'s``, ``'m``,
  ``'re``, ``'ve``, ``'ll``, ``'d`` — split off — or a bare ``'``, dropped, except after the
  lexer's ``d' j' l' ol' somethin'``) and by one of ``, ; : ! ?`` (dropped), or by a ``.``
  (dropped) unless the word is one of the lexer's abbreviations (``etc.``, ``st.``, ``no.``,
  ``Miss.``, single letters, ...) or of mixed case; such a word wrapped in double quotes (dropped,
  as pycocoevalcap drops the lexer's quote tokens) and brackets (``-lrb-``, ``-rrb-``,
  ``-lsb-``, ... — kept: pycocoevalcap's list has them upper-case, the lexer writes them
  lower-cased), with marks after the closing ones; standalone ``-``, ``--``, ``...``, brackets,
  quotes and single marks. The lexer's split words (``cannot`` -> ``can not``, ``gonna`` ->
  ``gon na``, ...) go to Java.
* **Java for everything else** (``&``, ``<``, ``$``, other symbols, any non-ASCII text,
  abbreviations, numbers with ``.`` or ``,`` inside, leading apostrophes, ...): those captions
  go through pycocoevalcap's own ``PTBTokenizer`` in one call, each run of them followed by the
  lines the lexer looks ahead to, so their tokens are the reference's by construction.

The in-process rules were derived by probing the Java tokenizer (every word of 1-4 letters in
three cases and of 5 lower-case letters before a period, in up to four contexts; MiniLM's 21,745
words with every suffix, quote and bracket above, in three cases and five contexts; numbers,
compounds and words with digits before a period) and are tested against pycocoevalcap's
``PTBTokenizer`` on every caption of the reference data and on generated text with every ASCII
punctuation mark, digits, hyphens, apostrophes, unicode letters, emoji and line ends
(``tests/evaluation/test_ptb.py``). Words of
six or more letters before a period are covered by the word list and the lexer's two long
abbreviations (bancorp, messrs), not exhaustively.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from ..errors import RegionLibError
from .fast_captions import gc_paused

__all__ = ["LINE_BREAKS", "JavaUnavailable", "require_java", "normalize_line_ends", "tokenize", "tokenize_groups",
           "java_tokenize", "in_process"]

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

    The result equals pycocoevalcap's ``PTBTokenizer`` on the normalised ``texts`` in one call.
    Texts outside the in-process subset go to Java together, each run of them followed by the
    lines after it up to the first non-blank one, which is all the lexer looks ahead.
    """
    return tokenize_groups([texts])[0]


@gc_paused()
def tokenize_groups(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """`tokenize` of each group as its own tokenizer call (e.g. references and predictions, as
    ``COCOEvalCap`` tokenises them), the groups' Java fallbacks running concurrently."""
    memo: dict = {}
    plans = [_plan(texts, memo) for texts in groups]
    calls = [(out, batch, lines) for out, batch, lines in plans if batch]
    if len(calls) > 1:
        with ThreadPoolExecutor(len(calls)) as pool:
            results = list(pool.map(java_tokenize, [lines for _, _, lines in calls]))
    else:
        results = [java_tokenize(lines) for _, _, lines in calls]
    for (out, batch, _), tokens in zip(calls, results):
        for i, k in batch:
            out[i] = tokens[k]
    return [out for out, _, _ in plans]


def _plan(texts: Sequence[str], memo: dict) -> tuple[list, list[tuple[int, int]], list[str]]:
    """In-process tokens of ``texts`` (None where Java is needed), the (text index, Java line index)
    pairs and the lines of the Java call: each run of fallback texts, then its look-ahead context."""
    lines, out = [], []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RegionLibError(f"texts[{i}] must be str, got {type(text).__name__}")
        tokens = in_process(text, memo)  # a text with a line end is outside the subset: normalise, retry
        line = text if tokens is not None else normalize_line_ends(text)
        lines.append(line)
        out.append(tokens if tokens is not None or line is text else in_process(line, memo))
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
    return out, batch, call
