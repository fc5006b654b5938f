"""A local transformers causal LM as a judge (greedy decoding; the chat template when the tokenizer has one)."""

from __future__ import annotations

import threading

from ...errors import JudgeError
from .base import Judge

__all__ = ["TransformersJudge"]


class TransformersJudge(Judge):
    """Judge with a transformers causal LM on this machine.

    Args:
        model: a ``*ForCausalLM`` module (put in eval mode).
        tokenizer: its tokenizer (a pad or eos token is needed for generation).
        name: the model's name in the cache key (default: its ``config._name_or_path``).
        max_new_tokens: reply length limit (part of the cache key).
        cache, retry_unparsed: see `Judge`. Calls run one at a time (the module is shared).
    """

    backend = "transformers"

    def __init__(self, model, tokenizer, *, name: str | None = None, max_new_tokens: int = 32, cache=None,
                 retry_unparsed: bool = False):
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise JudgeError("the tokenizer needs a pad or eos token for generation")
        name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        super().__init__(model=name, settings={"max_new_tokens": max_new_tokens, "greedy": True}, cache=cache,
                         retry_unparsed=retry_unparsed)
        self.lm, self.tokenizer, self.max_new_tokens = model.eval(), tokenizer, max_new_tokens
        self._generate_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "TransformersJudge":
        """Load a model directory saved with ``save_pretrained`` (model and tokenizer), offline."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return cls(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                   name=kwargs.pop("name", str(path)), **kwargs)

    def _complete(self, prompt: str) -> str:
        import torch

        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        else:
            text = prompt
        enc = self.tokenizer(text, return_tensors="pt")
        limit = getattr(self.lm.config, "max_position_embeddings", None)
        if limit is not None and enc["input_ids"].shape[1] > limit - self.max_new_tokens:  # keep the prompt's end
            enc = {k: v[:, -(limit - self.max_new_tokens):] for k, v in enc.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with self._generate_lock, torch.no_grad():
            out = self.lm.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        return self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
