"""Region-caption expressiveness judged by a text-only LLM (seed 001, Fig. 1) with AMBER's metrics (REFERENCE §9).

`yes_no_prompt` writes seed 001's question from an image's region captions and a target.
`amber_scores` follows AMBER's ``inference.py`` (junyangwang0410/AMBER): a reply counts only
when it is exactly ``"Yes"`` or ``"No"`` (anything else is wrong for both classes and is
counted as ``invalid``); "No" is the positive class (hallucination detection):

* accuracy  = correct / (0.001 + n),
* precision = #(reply No and truth no) / (0.001 + #reply No),
* recall    = #(reply No and truth no) / (0.001 + #truth no),
* F1        = 2 P R / (P + R + 1e-4)

(AMBER's counters start at 0.001; it prints percentages rounded to 0.1 and forms F1 from the
rounded values, with epsilon 1e-3 for its existence split — pass ``f1_epsilon`` to match that.)

`cover` is AMBER's generative *Cover*: the share of ground-truth objects mentioned by the
captions — caption nouns lemmatised (spaCy), AMBER's safe words ignored, an object counts when
its lemma or one of its associated words (AMBER's ``relation.json``) occurs; micro-averaged.
AMBER additionally accepts nouns with en_core_web_lg similarity > 0.8, which needs word vectors
that are not available offline here.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from ..errors import DataFormatError

__all__ = ["yes_no_prompt", "amber_scores", "cover"]

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


def amber_scores(truths: Sequence[str], replies: Sequence[str], types: Sequence[str] | None = None, *,
                 f1_epsilon: float = 1e-4) -> dict[str, dict]:
    """AMBER's discriminative metrics per question type and over ``"all"``.

    Args:
        truths: ``"yes"`` / ``"no"`` per question (the ground truth).
        replies: the judge's raw replies (only exactly ``"Yes"`` / ``"No"`` count).
        types: a type name per question (e.g. existence / attribute / relation), or None.

    Returns ``{type: {"accuracy", "precision", "recall", "f1", "n", "invalid"}}`` (fractions).
    """
    if len(truths) != len(replies):
        raise DataFormatError(f"truths ({len(truths)}) and replies ({len(replies)}) differ in length")
    types = ["all"] * len(truths) if types is None else list(types)
    if len(types) != len(truths):
        raise DataFormatError(f"types ({len(types)}) and truths ({len(truths)}) differ in length")
    groups: dict[str, list[int]] = {"all": list(range(len(truths)))}
    for i, t in enumerate(types):
        if t != "all":
            groups.setdefault(str(t), []).append(i)
    out = {}
    for name, idx in groups.items():
        correct = truth_no = reply_no = hit_no = invalid = 0
        for i in idx:
            truth, reply = truths[i], replies[i]
            if truth not in ("yes", "no"):
                raise DataFormatError(f"truths[{i}] must be 'yes' or 'no', got {truth!r}")
            invalid += reply not in ("Yes", "No")
            correct += (truth == "yes" and reply == "Yes") or (truth == "no" and reply == "No")
            truth_no += truth == "no"
            reply_no += reply == "No"
            hit_no += truth == "no" and reply == "No"
        precision = hit_no / (0.001 + reply_no)
        recall = hit_no / (0.001 + truth_no)
        out[name] = {"accuracy": correct / (0.001 + len(idx)), "precision": precision, "recall": recall,
                     "f1": 2 * precision * recall / (precision + recall + f1_epsilon), "n": len(idx),
                     "invalid": invalid}
    return out


def cover(captions: Sequence[Sequence[str]], objects: Sequence[Sequence[str]], *, nlp=None,
          safe_words: Iterable[str] = (), associations: Mapping[str, Sequence[str]] | None = None) -> float:
    """AMBER's Cover over images: sum of covered ground-truth objects / sum of ground-truth objects.

    Args:
        captions: per image, its region captions.
        objects: per image, its ground-truth object names (lemmas, as AMBER's annotations).
        nlp: a spaCy pipeline (default: `content.load_spacy()`).
        safe_words: caption nouns to ignore (AMBER's ``safe_words.txt``).
        associations: object -> associated words that also count as mentioning it.
    """
    if len(captions) != len(objects):
        raise DataFormatError(f"captions ({len(captions)}) and objects ({len(objects)}) differ in length")
    if nlp is None:
        from .content import load_spacy

        nlp = load_spacy()
    safe = {w.lower() for w in safe_words}
    assoc = {k.lower(): {w.lower() for w in v} for k, v in (associations or {}).items()}
    covered = total = 0
    for caps, objs in zip(captions, objects):
        nouns = {t.lemma_.lower() for doc in nlp.pipe(list(caps)) for t in doc if t.pos_ in ("NOUN", "PROPN")} - safe
        for obj in objs:
            o = obj.lower()
            covered += o in nouns or bool(assoc.get(o, set()) & nouns)
            total += 1
    if total == 0:
        raise DataFormatError("cover needs at least one ground-truth object")
    return covered / total
