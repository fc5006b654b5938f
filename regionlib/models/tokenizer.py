"""Tokenizers for tiny presets: a real `PreTrainedTokenizerFast`, trained here with `tokenizers`."""

from __future__ import annotations

from typing import Iterable

from ..errors import ConfigError

__all__ = ["SPECIAL_TOKENS", "train_word_tokenizer"]

SPECIAL_TOKENS = {"pad_token": "[PAD]", "bos_token": "[BOS]", "eos_token": "[EOS]", "unk_token": "[UNK]"}


def train_word_tokenizer(texts: Iterable[str], *, min_frequency: int = 1):
    """A lower-casing word-level tokenizer (punctuation split off) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if not texts:
        raise ConfigError("texts must hold at least one sentence to train a tokenizer")
    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values()),
                                                            min_frequency=min_frequency))
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
