"""Region-caption expressiveness judged by a text-only LLM (seed 001, Fig. 1) with AMBER's metrics (REFERENCE §9).

`yes_no_prompt` writes seed 001's question from an image's region captions and a target.
`amber_scores` follows AMBER's ``inference.py`` (junyangwang0410/AMBER): a reply counts only
when it is exactly ``"Yes"`` or ``"No"`` (anything else is wrong for both classes and is
counted as ``invalid``); "No" is the positive class (hallucination detection); every counter
of a question type starts at 0.001 (AMBER's ``metrics.txt``):

* accuracy  = correct / (0.001 + n),
* precision = #(reply No and truth no) / (0.001 + #reply No),
* recall    = #(reply No and truth no) / (0.001 + #truth no),
* F1        = 2 P R / (P + R + 1e-4).

AMBER's attribute split pools three sub-types (``discriminative-attribute-state`` / ``-number``
/ ``-action``), each with its own counters starting at 0.001, so its denominators carry 0.003:
with those type names, the result also has ``"discriminative-attribute"`` computed that way
(AMBER prints percentages rounded to 0.1 and forms F1 from the rounded values, with epsilon 1e-3
for its existence split — pass ``f1_epsilon`` to match that).

`cover` is AMBER's generative *Cover*: per image, each caption noun (lemmatised with spaCy, AMBER's
safe words skipped) credits the *first* entry it equals in AMBER's search list — the associated
words (AMBER's ``relation.json``) of every ground-truth object in order, then the objects
themselves — i.e. one object only; Cover = covered objects / (0.001 + objects), summed over
images. AMBER additionally accepts nouns with en_core_web_lg similarity > 0.8 (and lemmatises
with NLTK's WordNet), which needs data that is not available offline here.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from ..errors import DataFormatError

__all__ = ["ATTRIBUTE_TYPES", "yes_no_prompt", "amber_scores", "cover"]

ANSWER_INSTRUCTION = "Answer the Yes-No question with only the single word with nothing else."


def yes_no_prompt(captions: Sequence[str], target: str, *, verb: str | None = None) -> str:
    """``If an image contains [cap1], [cap2]... [capk]. Are/Is/Does/Do the [target] in this image? ...``

    ``verb`` defaults to "Are" when the target's last word looks plural, else "Is".
    """
    caps = [c.strip().rstrip(".") for c in captions if isinstance(c, str) and c.strip()]
    if not caps:
        raise DataFormatError("yes_no_prompt needs at least one non-empty caption")
    if not isinstance(target, str) or not target.strip():
        raise DataFormatError(f"target must be a non-empty str, got {target!r}")
    if verb is None:
        last = target.split()[-1].lower()
        verb = "Are" if last.endswith("s") and not last.endswith(("ss", "us")) else "Is"
    if verb not in ("Are", "Is", "Does", "Do"):
        raise DataFormatError(f"verb must be one of Are, Is, Does, Do; got {verb!r}")
    return f"If an image contains {', '.join(caps)}. {verb} the {target.strip()} in this image? {ANSWER_INSTRUCTION}"


ATTRIBUTE_TYPES = ("discriminative-attribute-state", "discriminative-attribute-number",
                   "discriminative-attribute-action")


def _rates(correct: float, n: float, hit: float, reply_no: float, truth_no: float, start: float,
           f1_epsilon: float) -> dict:
    precision = hit / (start + reply_no)
    recall = hit / (start + truth_no)
    return {"accuracy": correct / (start + n), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall + f1_epsilon)}


def amber_scores(truths: Sequence[str], replies: Sequence[str], types: Sequence[str] | None = None, *,
                 f1_epsilon: float = 1e-4) -> dict[str, dict]:
    """AMBER's discriminative metrics per question type, over ``"all"`` and, with AMBER's attribute
    sub-types, over ``"discriminative-attribute"`` (three counters, see the module docstring).

    Args:
        truths: ``"yes"`` / ``"no"`` per question (the ground truth).
        replies: the judge's raw replies (only exactly ``"Yes"`` / ``"No"`` count).
        types: a type name per question (e.g. AMBER's ``discriminative-hallucination``, its attribute
            sub-types, ``discriminative-relation``), or None.

    Returns ``{type: {"accuracy", "precision", "recall", "f1", "n", "invalid"}}`` (fractions).
    """
    if len(truths) != len(replies):
        raise DataFormatError(f"truths ({len(truths)}) and replies ({len(replies)}) differ in length")
    types = ["all"] * len(truths) if types is None else [str(t) for t in types]
    if len(types) != len(truths):
        raise DataFormatError(f"types ({len(types)}) and truths ({len(truths)}) differ in length")
    counts: dict[str, list[int]] = {"all": [0] * 6}  # correct, n, hit, reply No, truth no, invalid
    for i, (truth, reply, t) in enumerate(zip(truths, replies, types)):
        if truth not in ("yes", "no"):
            raise DataFormatError(f"truths[{i}] must be 'yes' or 'no', got {truth!r}")
        row = ((truth == "yes" and reply == "Yes") or (truth == "no" and reply == "No"), 1,
               truth == "no" and reply == "No", reply == "No", truth == "no", reply not in ("Yes", "No"))
        for name in {"all", t}:
            c = counts.setdefault(name, [0] * 6)
            for k, v in enumerate(row):
                c[k] += v
    out = {name: {**_rates(*c[:5], 0.001, f1_epsilon), "n": c[1], "invalid": c[5]} for name, c in counts.items()}
    if any(t in ATTRIBUTE_TYPES for t in counts):
        pooled = [sum(counts.get(t, [0] * 6)[k] for t in ATTRIBUTE_TYPES) for k in range(6)]
        out["discriminative-attribute"] = {**_rates(*pooled[:5], 0.001 * len(ATTRIBUTE_TYPES), f1_epsilon),
                                           "n": pooled[1], "invalid": pooled[5]}
    return out


def cover(captions: Sequence[Sequence[str]], objects: Sequence[Sequence[str]], *, nlp=None,
          safe_words: Iterable[str] = (), associations: Mapping[str, Sequence[str]] | None = None) -> float:
    """AMBER's Cover over images: covered ground-truth objects / (0.001 + ground-truth objects).

    Args:
        captions: per image, its region captions.
        objects: per image, its ground-truth object names (lemmas, as AMBER's annotations).
        nlp: a spaCy pipeline (default: `content.spacy_pipeline()`).
        safe_words: caption nouns to ignore (AMBER's ``safe_words.txt``).
        associations: object -> associated words (AMBER's ``relation.json``); a caption noun credits
            only the first object whose associated words, then whose name, it equals.
    """
    if len(captions) != len(objects):
        raise DataFormatError(f"captions ({len(captions)}) and objects ({len(objects)}) differ in length")
    if nlp is None:
        from .content import spacy_pipeline

        nlp = spacy_pipeline()
    safe = {w.lower() for w in safe_words}
    assoc = {k.lower(): [w.lower() for w in v] for k, v in (associations or {}).items()}
    covered = total = 0
    for caps, objs in zip(captions, objects):
        objs = [o.lower() for o in objs]
        # AMBER's search list: (word, index of its object), associated words first, then the objects
        search = [(w, k) for k, o in enumerate(objs) for w in assoc.get(o, ())] + [(o, k) for k, o in enumerate(objs)]
        first = {}
        for w, k in search:
            first.setdefault(w, k)
        hit = set()
        for doc in nlp.pipe(list(caps)):
            for t in doc:
                noun = t.lemma_.lower()
                if t.pos_ in ("NOUN", "PROPN") and noun not in safe and noun in first:
                    hit.add(first[noun])
        covered += len(hit)
        total += len(objs)
    return covered / (0.001 + total)
