"""The in-process PTB tokenizer equals pycocoevalcap's PTBTokenizer (Java) on every caption of the reference
data and on generated text with every ASCII punctuation mark, digits, hyphens, apostrophes, unicode letters,
emoji and line-end characters; the in-process lexer (CoreNLP's PTBLexer run in Python) equals the Java
program's output on every code point, every real text and randomised text, and agrees with the rules; only
what the lexer refuses goes to Java."""

import json
import logging
import random
import string
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from regionlib.errors import RegionLibError
from regionlib.evaluation import ptb, ptb_lexer

ORACLE = Path(__file__).with_name("ptb_java_oracle.json")


def reference_tokens(texts):
    """pycocoevalcap's PTBTokenizer on the line-end-normalised texts, all in one Java call (the reference)."""
    out = PTBTokenizer().tokenize({i: [{"caption": ptb.normalize_line_ends(t)}] for i, t in enumerate(texts)})
    return [out[i][0] for i in range(len(texts))]


def java_output_lines(lines, tmp_path):
    """The Java program pycocoevalcap runs, on ``"\\n".join(lines)``: its output split into lines, punctuation kept."""
    path = tmp_path / "ptb_input.txt"
    path.write_bytes("\n".join(lines).encode())
    out = subprocess.run(["java", "-cp", str(ptb_lexer.corenlp_jar()), "edu.stanford.nlp.process.PTBTokenizer",
                          "-preserveLines", "-lowerCase", str(path)], capture_output=True, check=True).stdout
    return out.decode().split("\n")


def reference_texts(reference_data):
    """Every text of the reference data: descriptions, questions, choices, judge replies and prompts."""
    texts = []
    for path in sorted((reference_data / "dlc_bench").glob("*.json")):
        data = json.loads(path.read_text())
        for value in data.values():
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, dict):
                texts.append(value["pred"])
                texts += value["response"] + value["prompt"]
                for key in ("details_recognition", "details_positives", "details_negatives"):
                    for q in value[key]:
                        texts += [q["question"], q["pred_answer"], *(c[0] for c in q["choices"])]
    return list(dict.fromkeys(texts))


UNICODE = ["café", "naïve", "Straße", "日本の犬", "Ελλάδα", "Москва", "ﬁsh", "İstanbul", "résumé", "½", "ǅ", "ⅷ",
           "🐶", "👍🏽", "❤️", "🇫🇷", "a\u00a0b", "x\u200by", "e\u0301", "\x85", "\u3000", "—", "–", "“quoted”", "‘s"]
SPECIAL = ["etc.", "Mr.", "U.S.", "e.g.", "No.", "no. 5", "St.", "a.m.", "Calif.", "messrs.", "cannot", "Gonna",
           "wanna", "o'clock", "rock'n'roll", "'tis", "y'all", "dogs'", "don't", "CAN'T", "Ain't", "isn't", "I'm",
           "they're", "we've", "you'll", "he'd", "it's", "Aberdeenn't", "5n't", "3.5", "1,000", "10.", "$5", "50%",
           "1/2", "2nd", "1990s", "3:30", "well-known", "red-and-white", "t-shirt.", "black/white.", "-", "--",
           "---", "...", "..", "a-", "-a", "a--b", "(paren)", "[br]", "{cb}", "<lt>", '"quoted"', "`back`", "&amp;",
           "AT&T", "Yahoo!", "C++", "#1", "@user", "http://x.org", "a\tb", "a  b", " ", ""]


def generated_texts(n: int, seed: int = 0) -> list[str]:
    """Captions mixing real words (all cases) with every ASCII punctuation mark before, after and inside
    words, digits, hyphenation, apostrophes, abbreviations, unicode letters, emoji and line-end characters."""
    rng = random.Random(seed)
    words = ("a red dog sits on the grass near two small cats while people walk by its side and it looks "
             "happy The Large DOG was running quickly toward THEM").split()
    line_ends = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\u2028", "\u2029"]

    def piece() -> str:
        kind = rng.random()
        w = rng.choice(words)
        if kind < 0.35:
            return w
        if kind < 0.6:
            p = rng.choice(string.punctuation)
            return rng.choice([w + p, p + w, w + p + rng.choice(words), p, w + p + p])
        if kind < 0.7:
            return rng.choice([str(rng.randint(0, 2000)), f"{rng.randint(0, 99)}.{rng.randint(0, 9)}",
                               f"{rng.randint(1, 9)}-{w}", f"{w}{rng.randint(0, 9)}"])
        if kind < 0.8:
            return rng.choice([f"{w}-{rng.choice(words)}", f"{w}'s", f"{w}n't", f"{w}'", f"'{w}", f"{w}'ll",
                               f"{w}'re", f"{w}/{rng.choice(words)}"])
        if kind < 0.9:
            return rng.choice(SPECIAL)
        if kind < 0.97:
            return rng.choice(UNICODE)
        return rng.choice(line_ends)

    texts = [" ".join(piece() for _ in range(rng.randint(1, 14))) + rng.choice(["", ".", " .", "?", "!"])
             for _ in range(n)]
    return texts + SPECIAL + UNICODE + [f"x {c} y" for c in string.punctuation] + [f"x{c}y" for c in string.punctuation]


def test_line_break_set_is_the_java_lexers():
    """Every character of LINE_BREAKS starts a new line in the Java tokenizer (pycocoevalcap itself only
    replaces \\n); \\x85 (NEL) and other separators do not."""
    probes = [f"a{c}b" for c in ptb.LINE_BREAKS[1:] + "\x85\u00a0\u3000\x1c"] + ["end"]
    out = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(probes)})
    lines = [out[i][0] for i in range(len(out))]
    assert lines[:10] == ["a", "b"] * 5  # \r \x0b \x0c \u2028 \u2029: each one line more
    assert all("b" in line for line in lines[10:14])


def test_parity_on_every_reference_caption(reference_data):
    texts = reference_texts(reference_data)
    assert len(texts) > 3000
    java_before = ptb.counts["java"]
    ours = ptb.tokenize(texts)
    assert ours == reference_tokens(texts)
    assert ptb.counts["java"] == java_before  # real text never needs the JVM
    descriptions = [v for name in ("dam_3b_v1.json", "dam_3b_joint_v1.json")
                    for v in json.loads((reference_data / "dlc_bench" / name).read_text()).values()]
    handled = sum(ptb.in_process(ptb.normalize_line_ends(t)) is not None for t in descriptions)
    assert handled / len(descriptions) > 0.9  # the in-process path does the bulk of the work


def test_parity_on_generated_text():
    texts = generated_texts(4000)
    java_before = ptb.counts["java"]
    ours = ptb.tokenize(texts)
    assert ptb.counts["java"] == java_before
    theirs = reference_tokens(texts)
    mismatches = [(t, a, b) for t, a, b in zip(texts, ours, theirs) if a != b]
    assert not mismatches, mismatches[:5]
    in_process = [ptb.in_process(ptb.normalize_line_ends(t)) is not None for t in texts]
    assert 0.1 < sum(in_process) / len(texts) < 0.9  # both in-process paths are exercised
    # every non-ASCII text, and every text with a mark outside the rules' set, went to the lexer
    for t, handled in zip(map(ptb.normalize_line_ends, texts), in_process):
        if not t.isascii() or set(t) & set("#$%&*+<=>@\\^_`|~"):
            assert not handled, t


@pytest.mark.parametrize("text,tokens", [
    ("A dog's toy, isn't it?", "a dog 's toy is n't it"),
    ("Well-known black/white cats; two dogs' bowls!", "well-known black/white cats two dogs bowls"),
    ("It is 10 a.m. now", None),   # abbreviation: the lexer
    ("The end.", "the end"),
    ('He said "Don\'t walk." (CRT), [a-b] {x}', "he said do n't walk -lrb- crt -rrb- -lsb- a-b -rsb- -lcb- x -rcb-"),
    ("Somethin' else", None),  # the lexer keeps "somethin'": the lexer
    ("Near the Eiffel Tower.", "near the eiffel tower"),
    ("Rue de la Paix. Miss.", None),  # "Miss." keeps its period: the lexer
    ("Next to McDonald.", None),  # mixed case before a period: the lexer
    ("", ""), ("  \t ", ""),
])
def test_in_process_rules(text, tokens):
    assert ptb.in_process(text) == tokens


def test_empty_and_blank_captions_keep_their_lines():
    texts = ["", "a dog", "   ", "x\r", "", "\u2028"]
    assert ptb.tokenize(texts) == ["", "a dog", "", "x", "", ""]
    assert ptb.java_tokenize(["(a)", "", "\t"]) == ["-lrb- a -rrb-", "", ""]


def test_look_ahead_past_the_line_end_like_the_reference():
    # the lexer looks past a line end: "a." ending a line loses its period when the next line starts a sentence
    texts = ["(x) a b c.", "The dog", "(y) go etc.", "", "  ", "The cat", "[z] plan B.", "the end", "last a."]
    assert ptb.tokenize(texts) == reference_tokens(texts)
    assert ptb.tokenize(texts)[0] != ptb.java_tokenize(["(x) a b c.", "the dog"])[0]
    # an SGML tag with a quoted attribute is one token across line ends (and lines between): the Java
    # program writes the line end inside the token, so every caption keeps its line
    texts = ["<a b='x", "y'> z", "w", '<a b="x', "hello world", 'y">', "U.S.", "He said", "ca.", "5", "a."]
    assert ptb.tokenize(texts) == reference_tokens(texts)
    assert ptb.tokenize(texts)[:2] == ["<a\u00a0b='x", "y'> z"]


@pytest.mark.slow
def test_period_rule_is_exhaustive_for_short_words():
    """The proof of the abbreviation lists: every word of 1-3 letters, in three cases, before a period in
    four contexts (end of line, before "the", "The", "5"): the in-process answer, when there is one, is
    Java's (1-4 letters were probed when the lists were made; 1-3 keep this test to seconds)."""
    import itertools

    words = ["".join(p) for n in range(1, 4) for p in itertools.product(string.ascii_lowercase, repeat=n)]
    lines = [c.format(case(w)) for w in words for case in (str.lower, str.capitalize, str.upper)
             for c in ("{}.", "x {}. the", "x {}. The", "x {}. 5")]
    handled = 0
    for line, theirs in zip(lines, ptb.java_tokenize(lines)):
        ours = ptb.in_process(line)
        if ours is not None:
            handled += 1
            assert ours == theirs, line
    assert handled > 0.9 * len(lines)


# ------------------------------------------------------------------------------------- the in-process lexer
def dam_sentences(reference_data):
    """The DAM descriptions' sentences as benchmarks/bench_evaluation.py draws its captions from them."""
    import re

    texts = [v for name in ("dam_3b_v1.json", "dam_3b_joint_v1.json")
             for v in json.loads((reference_data / "dlc_bench" / name).read_text()).values()]
    return [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]


def test_lexer_tables_are_corenlp_341(tmp_path):
    lex = ptb_lexer.lexer()
    assert lex.tables.sha256 == ptb_lexer.TABLES_SHA256
    assert len(lex.tables.trans) == 472250 and len(lex.tables.cmap) == 0x10000
    # another jar (here: one without the class) is refused, and the tokenizer then uses Java for what the rules
    # do not cover
    fake = tmp_path / "fake.jar"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("edu/stanford/nlp/process/Other.class", b"")
    with pytest.raises(ptb_lexer.LexerUnavailable, match="cannot read PTBLexer.class"):
        ptb_lexer.Lexer(fake)


def test_lexer_equals_java_on_every_real_text(reference_data, tmp_path):
    """Raw output lines (punctuation tokens kept) of every reference-data text and every DAM sentence."""
    lines = [ptb.normalize_line_ends(t) for t in reference_texts(reference_data) + dam_sentences(reference_data)]
    ours = ptb_lexer.Lexer().output_lines(lines)
    assert ours == java_output_lines(lines, tmp_path)
    # the sentences that went to Java before the lexer: "<image>", "de 1.000", a backslash
    before = [s for s in dam_sentences(reference_data) if ptb.in_process(s) is None]
    assert len(before) >= 3 and ptb.tokenize(before) == reference_tokens(before)


@pytest.mark.slow
def test_lexer_equals_java_on_every_code_point(tmp_path):
    """Every BMP code point alone, between letters, between spaces, after a capital and before a period,
    between digits; every 97th supplementary code point in three of those contexts (line ends normalised)."""
    bmp = [c for c in range(1, 0x10000) if not 0xD800 <= c <= 0xDFFF]
    lines = [ptb.normalize_line_ends(f.format(chr(c))) for c in bmp for f in ("{}", "a{}b", "x {} y", "A{}.", "1{}2")]
    lines += [f.format(chr(c)) for c in range(0x10000, 0x110000, 97) for f in ("{}", "a{}b", "x {} y")]
    ours = ptb_lexer.Lexer().output_lines(lines)
    theirs = java_output_lines(lines, tmp_path)
    assert len(theirs) == len(lines)
    mismatches = [(line, a, b) for line, a, b in zip(lines, ours, theirs) if a != b]
    assert not mismatches, mismatches[:5]


def random_lines(n: int, seed: int) -> list[str]:
    """Short strings over an alphabet dense in what the lexer's rules look at: letters a-f, vowels, n't
    pieces, clitic letters, digits, every ASCII mark, blanks, soft hyphen, curly quotes, dashes, ellipsis."""
    rng = random.Random(seed)
    alphabet = (string.ascii_letters[:6] + "AEIOUaeioun't" + string.digits[:4] + string.punctuation
                + "    \t\u00a0\u00ad\u2019\u2018\u201c\u201d\u2026\u2013\u2014\u00e9\u00df" + "sdmlrvt")
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(n)]


def test_lexer_equals_java_on_randomised_text(tmp_path):
    lines = random_lines(20000, seed=1) + [ptb.normalize_line_ends(t) for t in generated_texts(4000, seed=3)]
    ours = ptb_lexer.Lexer().output_lines(lines)
    theirs = java_output_lines(lines, tmp_path)
    mismatches = [(line, a, b) for line, a, b in zip(lines, ours, theirs) if a != b]
    assert len(theirs) == len(lines) and not mismatches, mismatches[:5]


def test_lexer_memos_respect_the_look_ahead(tmp_path):
    """The lexer memoises lines and chunks with what the scanner read after them: the same chunk before
    different text (on the same line and across line ends), twice over, is still the Java program's."""
    pairs = [("U.S.", "The"), ("U.S.", "the"), ("etc.", "The"), ("etc.", "the"), ("ca.", "5"), ("ca.", "x"),
             ("1", "1/2"), ("1", "x"), ("555", "1234"), (".", ". ."), ("pty.", "ltd"), ("pty.", "x"), ("I.", "He"),
             ("'", "tis"), ("x", "'t"), ("<a", "b='c'>"), ("a.", "The"), ("Mr.", "Smith"), ("no.", "5")]
    lines = []
    for a, b in pairs * 2:
        lines += [f"{a} {b} end", a, b, f"z {a}", f"{b}"]
    assert ptb_lexer.Lexer().output_lines(lines) == java_output_lines(lines, tmp_path)


def test_rules_agree_with_the_lexer():
    """No Java: wherever the rules answer, the lexer (run over all the lines, look-ahead included) agrees;
    words of 1-3 letters and the rules' abbreviations in three cases before a period in four contexts,
    and generated text."""
    import itertools

    words = ["".join(p) for n in range(1, 4) for p in itertools.product(string.ascii_lowercase, repeat=n)]
    words += sorted(ptb._ABBREVIATIONS | ptb._CASED_ABBREVIATIONS | ptb._APOSTROPHE_WORDS | ptb._SPLIT_WORDS)
    lines = [c.format(case(w)) for w in words for case in (str.lower, str.capitalize, str.upper)
             for c in ("{}.", "x {}. the", "x {}. The", "x {}. 5")]
    lines += [ptb.normalize_line_ends(t) for t in generated_texts(10000, seed=4)] + random_lines(20000, seed=5)
    lexed = ptb_lexer.Lexer().tokenize_lines(lines)
    handled = 0
    for line, theirs in zip(lines, lexed):
        ours = ptb.in_process(line)
        if ours is not None:
            handled += 1
            assert ours == theirs, line
    assert handled > 0.5 * len(lines)


def test_java_only_for_what_the_lexer_refuses(caplog):
    # Java 17 decides the final sigma of "ΑΣ-Β" by word boundaries (σ), Python by the next cased letter (ς)
    texts = ["x & y <b> 1.000 U.S. naïve", "\u0391\u03a3-\u0392 a.", "The end", "plain words"]
    before = Counter(ptb.counts)
    with caplog.at_level(logging.WARNING, logger="regionlib.evaluation.ptb"):
        ours = ptb.tokenize(texts)
    assert ours == reference_tokens(texts)
    assert ours[1] == "\u03b1\u03c3-\u03b2 a"  # Java's sigma, and "a." before "The" as Java splits it
    delta = Counter(ptb.counts)
    delta.subtract(before)
    assert (delta["rules"], delta["lexer"], delta["java"]) == (2, 1, 1)
    assert "1 of 4 texts go to Java" in caplog.text and "final sigma" in caplog.text
    with pytest.raises(ptb_lexer.Unsupported, match="final sigma"):
        ptb_lexer.Lexer().output_lines(["\u0391\u03a3-\u0392"])


def test_without_the_lexer_the_rest_goes_to_java(monkeypatch, caplog):
    """A jar whose PTBLexer is not CoreNLP 3.4.1's: the rules still apply, everything else goes to Java."""
    def unavailable():
        raise ptb_lexer.LexerUnavailable("tables are not CoreNLP 3.4.1's")

    monkeypatch.setattr(ptb_lexer, "lexer", unavailable)
    monkeypatch.setattr(ptb, "_LEXER_ERROR", None)
    texts = ["x & y <b> 1.000", "plain words", "U.S. The end"]
    before = Counter(ptb.counts)
    with caplog.at_level(logging.WARNING, logger="regionlib.evaluation.ptb"):
        assert ptb.tokenize(texts) == reference_tokens(texts)
    delta = Counter(ptb.counts)
    delta.subtract(before)
    assert (delta["rules"], delta["lexer"], delta["java"]) == (1, 0, 2)
    assert "not CoreNLP 3.4.1's" in caplog.text and "2 of 3 texts go to Java" in caplog.text


def test_unpaired_surrogate_is_refused_as_pycocoevalcap_cannot_write_it():
    with pytest.raises(RegionLibError, match="unpaired surrogate"):
        ptb.tokenize(["fine", "bad \ud800 text"])


def test_stored_java_oracle():
    """The lexer against the Java program's output stored once (no Java needed): see the fixture's "command"."""
    oracle = json.loads(ORACLE.read_text())
    assert ptb_lexer.Lexer().output_lines(oracle["lines"]) == oracle["output"]
    assert len(oracle["lines"]) > 400


def oracle_lines() -> list[str]:
    """What ptb_java_oracle.json stores: the special and unicode pieces in contexts, DLC-Bench's three
    sentences that needed Java, and a slice of randomised text."""
    lines = []
    for piece in SPECIAL + UNICODE:
        lines += [piece, f"A {piece} b.", f"x {piece}. The", f"({piece}), {piece}"]
    lines += ["<image> Describe the masked region in detail.",
              "Image: <image>\\nGiven the image above, describe the object in the masked region.",
              'The top line reads "Libra" in blue, followed by "de 1.000" in blue.']
    lines += random_lines(200, seed=7)
    return [ptb.normalize_line_ends(line) for line in lines]


if __name__ == "__main__":  # PYTHONPATH=. python tests/evaluation/test_ptb.py: (re)write the stored oracle
    import sys
    import tempfile

    lines = oracle_lines()
    output = java_output_lines(lines, Path(tempfile.mkdtemp()))
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=True).stderr.splitlines()[0]
    ORACLE.write_text(json.dumps({
        "command": "PYTHONPATH=. python tests/evaluation/test_ptb.py  (java -cp stanford-corenlp-3.4.1.jar "
                   "edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase FILE, FILE = the lines "
                   "joined by \\n; output split on \\n)",
        "java": java, "lines": lines, "output": output}, ensure_ascii=False, indent=0) + "\n")
    print(f"wrote {ORACLE} ({len(lines)} lines)", file=sys.stderr)
