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
  ? ' / -`` in the whitespace-separated *chunks* whose tokens the lexer provably decides locally:
  a word of letters and digits, parts joined by ``-`` or ``/`` (one token), optionally followed
  by a clitic (``n't`` off letters not ending in "n", ``'s``, ``'m``, ``'re``, ``'ve``, ``'ll``,
  ``'d`` — split off — or a bare ``'``, dropped) and by one of ``, ; : ! ?`` (dropped), or by a
  ``.`` (dropped) unless the word is one of the lexer's abbreviations (``etc.``, ``st.``,
  ``no.``, ``Miss.``, single letters, ...) or of mixed case; standalone ``-``, ``--``, ``...``
  and single marks (dropped). The lexer's split words (``cannot`` -> ``can not``, ``gonna`` ->
  ``gon na``, ...) go to Java.
* **Java for everything else** (quotes, brackets, ``&``, other symbols, any non-ASCII text,
  abbreviations, capitalised words before a period, numbers with ``.`` or ``,`` inside, ...):
  those captions go through pycocoevalcap's own ``PTBTokenizer`` in one call, so their tokens
  are the reference's by construction.

The in-process rules were derived by probing the Java tokenizer (every word of 1-4 letters in
three cases and of 5 lower-case letters before a period, in up to four contexts; MiniLM's 21,745
words with every suffix above, in three cases; numbers, compounds and words with digits before a
period) and are tested against pycocoevalcap's ``PTBTokenizer`` on every caption of the
reference data and on generated text with every ASCII punctuation mark, digits, hyphens,
apostrophes, unicode letters, emoji and line ends (``tests/evaluation/test_ptb.py``). Words of
six or more letters before a period are covered by the word list and the lexer's two long
abbreviations (bancorp, messrs), not exhaustively.
"""

from __future__ import annotations

import re
import shutil
from typing import Sequence

from ..errors import RegionLibError

__all__ = ["LINE_BREAKS", "JavaUnavailable", "normalize_line_ends", "tokenize", "java_tokenize", "in_process"]

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
# Words of letters the lexer splits (its assimilations).
_SPLIT_WORDS = frozenset({"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"})
_DROPPED_CHUNKS = frozenset({"-", "--", "...", ",", ";", ":", "!", "?", "."})
_CHUNK = re.compile(r"(?P<word>[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*)"
                    r"(?P<clitic>[nN]'[tT]|'(?:[sSmMdD]|[rR][eE]|[vV][eE]|[lL][lL])|')?(?P<mark>[,;:!?.])?")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9 \t,.;:!?'/-]")


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
    if clitic and clitic != "'":
        return f"{lower} {clitic.lower()}"
    return lower


def in_process(text: str, memo: dict | None = None) -> str | None:
    """PTB tokens of ``text`` (line ends already normalised) by the in-process rules, or None when
    the text is outside the proven subset (see the module docstring)."""
    if _UNSAFE_CHAR.search(text):
        return None
    memo = {} if memo is None else memo
    out = []
    for chunk in text.split():
        tokens = memo.get(chunk, False)
        if tokens is False:
            tokens = memo[chunk] = _chunk_tokens(chunk)
        if tokens is None:
            return None
        if tokens:
            out.append(tokens)
    return " ".join(out)


def java_tokenize(texts: Sequence[str], context: Sequence[str] = ()) -> list[str]:
    """pycocoevalcap's ``PTBTokenizer`` (Java) on ``texts`` after `normalize_line_ends`, one call, in order.

    ``context``: lines that follow the last text in the caller's corpus (the lexer looks past a line
    end: an abbreviation ending a line keeps its period unless the next line starts a sentence);
    they are tokenised with the texts and dropped. Blank lines the Java tokenizer leaves out at the
    end of its output (pycocoevalcap loses them) come back as "".
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not texts:
        return []
    require_java()
    lines = [normalize_line_ends(t) for t in (*texts, *context)]
    out = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(lines)})
    return [out[i][0] if i in out else "" for i in range(len(texts))]


def tokenize(texts: Sequence[str]) -> list[str]:
    """PTB tokens of each text, joined by single spaces: lower-cased, pycocoevalcap's punctuation
    removed, line ends normalised first (`normalize_line_ends`).

    The result equals pycocoevalcap's ``PTBTokenizer`` on the normalised ``texts`` in one call (so
    tokenise predictions and references in two calls, as ``COCOEvalCap`` does, for its numbers).
    Texts outside the in-process subset go to Java together, each run of them followed by the
    lines after it up to the first non-blank one, which is all the lexer looks ahead.
    """
    memo: dict = {}
    lines = []
    out: list = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RegionLibError(f"texts[{i}] must be str, got {type(text).__name__}")
        line = normalize_line_ends(text)
        lines.append(line)
        out.append(in_process(line, memo))
    runs: list[tuple[int, int]] = []  # [start, stop) of consecutive texts that need Java
    for i, tokens in enumerate(out):
        if tokens is None:
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
    if not runs:
        return out
    batch, context_of = [], []
    for start, stop in runs:
        batch.extend(range(start, stop))
        after = stop
        while after < len(lines) and out[after] is not None and not lines[after].strip():
            after += 1
        context_of.append(range(stop, min(after + 1, len(lines))))
    # one Java call: each run, then its context lines (tokenised and dropped)
    texts_in_call, keep = [], []
    for (start, stop), ctx in zip(runs, context_of):
        keep.extend(range(len(texts_in_call), len(texts_in_call) + stop - start))
        texts_in_call.extend(lines[start:stop])
        texts_in_call.extend(lines[j] for j in ctx)
    tokens = java_tokenize(texts_in_call)
    for i, k in zip(batch, keep):
        out[i] = tokens[k]
    return out
