"""Causal-LM head over visual prefix tokens: teacher-forced loss, generation, streaming, LoRA.

The LM (any transformers causal LM: GPT-2, Llama, ...) reads ``[prefix; prompt; target]`` as
input embeddings: ``prefix`` ``(B, P, D)`` are visual tokens already projected to the LM width,
``prompt`` is a fixed text template (e.g. DAM's "Describe the masked region in detail."), the
target caption is teacher-forced. The loss is cross-entropy over the target tokens only, with
label smoothing.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, RegionLibError

__all__ = ["LMHead"]


class LMHead(nn.Module):
    """Args:
        lm: a transformers causal LM; tokenizer: its tokenizer (needs eos and pad tokens).
        prompt: the text placed between the visual prefix and the caption.
        special_tokens: extra tokens to add (embeddings resized).
        freeze: keep the LM's weights frozen (SCA's default).
    """

    def __init__(self, lm, tokenizer, *, prompt: str = "", special_tokens: Sequence[str] = (), freeze: bool = False):
        super().__init__()
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer needs an eos token")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if special_tokens:
            tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
            lm.resize_token_embeddings(len(tokenizer))
        self.lm, self.tokenizer, self.prompt = lm, tokenizer, prompt
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        self.register_buffer("prompt_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        if freeze:
            for p in self.lm.parameters():
                p.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.lm.get_input_embeddings().embedding_dim

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def _context(self, prefix: torch.Tensor) -> torch.Tensor:
        if prefix.ndim != 3 or prefix.shape[-1] != self.width:
            raise RegionLibError(f"prefix must be (B, P, {self.width}), got {tuple(prefix.shape)}")
        b = prefix.shape[0]
        prompt = self._embed(self.prompt_ids.to(prefix.device))[None].expand(b, -1, -1)
        return torch.cat([prefix, prompt.to(prefix.dtype)], dim=1)

    def loss(self, prefix: torch.Tensor, targets: Sequence[str], *, label_smoothing: float = 0.0) -> torch.Tensor:
        """Teacher-forced cross-entropy of ``targets`` (+ eos) given ``prefix`` ``(B, P, D)``."""
        if len(targets) != prefix.shape[0]:
            raise RegionLibError(f"{prefix.shape[0]} prefixes but {len(targets)} targets")
        eos = self.tokenizer.eos_token_id
        seqs = [self.tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in targets]
        width = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), width), eos, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, x in enumerate(seqs):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        ids, mask = ids.to(prefix.device), mask.to(prefix.device)
        ctx = self._context(prefix)
        inputs = torch.cat([ctx, self._embed(ids).to(ctx.dtype)], dim=1)
        attn = torch.cat([torch.ones(ctx.shape[:2], dtype=mask.dtype, device=mask.device), mask], dim=1)
        logits = self.lm(inputs_embeds=inputs, attention_mask=attn).logits
        n = ctx.shape[1]
        pred = logits[:, n - 1 : -1]  # position t predicts token t + 1
        labels = ids.masked_fill(mask == 0, -100)
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), labels.reshape(-1), ignore_index=-100,
                               label_smoothing=label_smoothing)

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, *, max_new_tokens: int = 40, num_beams: int = 1, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
        """Captions for ``prefix`` ``(B, P, D)`` (greedy by default; beam search or sampling)."""
        if max_new_tokens <= 0:
            raise RegionLibError(f"max_new_tokens must be > 0, got {max_new_tokens}")
        ctx = self._context(prefix)
        attn = torch.ones(ctx.shape[:2], dtype=torch.long, device=ctx.device)
        kwargs = {"temperature": temperature, "top_p": top_p} if do_sample else {}
        out = self.lm.generate(inputs_embeds=ctx, attention_mask=attn, max_new_tokens=max_new_tokens, num_beams=num_beams,
                               do_sample=do_sample, eos_token_id=self.tokenizer.eos_token_id,
                               pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    @torch.no_grad()
    def stream(self, prefix: torch.Tensor, *, max_new_tokens: int = 40) -> Iterator[str]:
        """Greedy decoding of one prefix ``(1, P, D)``, yielding each new token's text as it comes."""
        if prefix.shape[0] != 1:
            raise RegionLibError("stream() decodes one region at a time: prefix must be (1, P, D)")
        if max_new_tokens <= 0:
            raise RegionLibError(f"max_new_tokens must be > 0, got {max_new_tokens}")
        out = self.lm(inputs_embeds=self._context(prefix), use_cache=True)
        past = out.past_key_values
        for _ in range(max_new_tokens):
            nxt = out.logits[:, -1].argmax(-1)
            if int(nxt) == self.tokenizer.eos_token_id:
                return
            yield self.tokenizer.decode(nxt)
            out = self.lm(inputs_embeds=self._embed(nxt[:, None]), past_key_values=past, use_cache=True)
            past = out.past_key_values

    def add_lora(self, *, target_modules: Sequence[str], r: int = 8, alpha: int = 16, dropout: float = 0.0) -> None:
        """Wrap the LM with peft LoRA adapters on ``target_modules`` (base weights frozen)."""
        from peft import LoraConfig, get_peft_model

        self.lm = get_peft_model(self.lm, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                     target_modules=list(target_modules), bias="none"))
