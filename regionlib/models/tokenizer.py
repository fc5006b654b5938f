"""Tokenizers for the tiny presets: real `PreTrainedTokenizerFast` objects trained here with `tokenizers`.

`train_word_tokenizer` trains a lower-casing word-level tokenizer (punctuation split off) and
`train_bpe_tokenizer` a byte-level BPE; `builtin_tokenizer` trains the word-level one on
`BUILTIN_CORPUS` — the prompts of the seeds and the closed vocabulary of region descriptions
(shapes, colours, sizes, patterns, positions, relations) that the embedded RegionWorld uses.
Real checkpoints bring their own tokenizer (``AutoTokenizer.from_pretrained(path)``).
"""

from __future__ import annotations

import functools
from typing import Iterable

from ..errors import ConfigError

__all__ = ["SPECIAL_TOKENS", "BUILTIN_CORPUS", "train_word_tokenizer", "train_bpe_tokenizer", "builtin_tokenizer"]

SPECIAL_TOKENS = {"pad_token": "[PAD]", "bos_token": "[BOS]", "eos_token": "[EOS]", "unk_token": "[UNK]"}

BUILTIN_CORPUS = (
    "Describe the masked region in detail.",
    "Describe the image with grounded phrases.",
    "Select the masks that match the description.",
    "Given the video in the form of a sequence of frames above, describe the object in the masked region "
    "in the video in detail. Focus on appearance, motion, and actions.",
    "a an the this that these those it its of in on at to with and or is are there image region object objects",
    "circle square triangle diamond star hexagon shape shapes",
    "red orange yellow green cyan blue purple pink brown white black gray grey colour color",
    "tiny small medium large big size",
    "solid striped dotted checkered pattern",
    "top middle bottom left center right position",
    "to the left of to the right of above below next to in front of behind near",
    "with a dark outline",
    "all every each same different other another one two three four five six many",
    "person people man woman dog cat car tree sky grass road building wall floor table chair",
)


def _wrap(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def train_word_tokenizer(texts: Iterable[str], *, min_frequency: int = 1):
    """A lower-casing word-level tokenizer (punctuation split off) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts = [t for t in texts if t]
    if not texts:
        raise ConfigError("texts must hold at least one non-empty sentence to train a tokenizer")
    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    # words split at whitespace, every punctuation mark its own token: decode -> encode is the identity
    # (a run like ".." would otherwise be one out-of-vocabulary token)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation(behavior="isolated")])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, glues punctuation
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values()),
                                                            min_frequency=min_frequency))
    return _wrap(tok)


def train_bpe_tokenizer(texts: Iterable[str], *, vocab_size: int = 500):
    """A byte-level BPE tokenizer (GPT-2 style) of at most ``vocab_size`` tokens trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [t for t in texts if t]
    if not texts:
        raise ConfigError("texts must hold at least one non-empty sentence to train a tokenizer")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return _wrap(tok)


@functools.lru_cache(maxsize=8)
def _trained_json(texts: tuple[str, ...]) -> str:
    return train_word_tokenizer(texts).backend_tokenizer.to_str()


def builtin_tokenizer(extra_texts: Iterable[str] = ()):
    """The tiny presets' word-level tokenizer: `BUILTIN_CORPUS` plus ``extra_texts`` (a fresh object each call).

    It is marked ``regionlib_builtin = True``: `check_tokenizer` refuses to pair it with a real LM.
    """
    from tokenizers import Tokenizer

    tok = _wrap(Tokenizer.from_str(_trained_json((*BUILTIN_CORPUS, *extra_texts))))
    tok.regionlib_builtin = True
    return tok
