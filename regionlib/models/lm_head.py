"""Causal-LM head over visual prefix tokens: teacher-forced loss, generation, streaming, LoRA.

Any transformers causal LM (GPT-2, Llama, ...) reads a context built from a *template*: text
with one ``{visual}`` slot, e.g. ``"{visual} Describe the masked region in detail."`` (DAM,
seed 003 App. H.2: image tokens before the text) or ``"USER: {visual}\\nDescribe... ASSISTANT:"``.
The visual prefix ``(B, P, D)`` (already in the LM width ``D``) fills the slot; the text parts
are embedded with the LM's own input embeddings (`LMHead.contexts`). Richer contexts (RAS, grounded
captioning) are assembled from *parts* — strings and ``(n, D)`` tensors — with `LMHead.context`.

Everything that runs the LM reads whole contexts ``(B, L, D)``, left-padded with a mask ``(B, L)``
(`LMHead.pad_left`; None: no padding): `LMHead.teacher_forced` + `LMHead.token_loss` (training),
`LMHead.mean_log_prob` (scores), `LMHead.generate` / `LMHead.generate_ids` (texts / token ids) and
`LMHead.stream` (one context, piece by piece).

Real LMs (``LMConfig.path``) load through ``AutoModelForCausalLM`` (float32, with
``output_loading_info``: a missing / unexpected / mismatched weight is a `CheckpointError`) with
their own ``AutoTokenizer``; a tokenizer whose vocabulary disagrees with the LM's (or the built-in
word tokenizer) is a `CheckpointError`. Whole contexts follow the tokenizer's conventions:

* BOS: when the tokenizer adds a BOS token to plain text (``tokenizer("x")["input_ids"][0] ==
  bos_token_id``), every context starts with it — before the template's first text or visual slot.
* Chat template: when the tokenizer has one, the template is rendered with it as one user turn,
  ``apply_chat_template([{"role": "user", "content": template}], add_generation_prompt=True,
  tokenize=False)``, the ``{visual}`` slot kept in place; the rendered text is split at the slot and
  each side tokenized with ``add_special_tokens=False`` (so the template's own BOS text, e.g.
  Llama-3's ``<|begin_of_text|>``, is not doubled). `LMHead.template_ids` shows the resulting ids.
  ``LMConfig.chat_template=False`` turns this off.
* EOS: the tokenizer's eos token ends every target; generation stops at it and at the generation
  config's eos ids (e.g. an end-of-turn token).

`LMHead.context(parts)` builds one whole context from parts (strings and ``(n, D)`` tensors) by the
same rules.

LoRA (peft): ``lora_r > 0`` with empty ``lora_targets`` uses peft's default target modules for the
LM's ``model_type`` (``c_attn`` for GPT-2, ``q_proj`` / ``v_proj`` for Llama, ...); an architecture
peft has no defaults for raises `ConfigError` asking for ``lora_targets``.

Loss (SCA Tab. 1, DAM §3): cross-entropy over the target tokens only (context positions are
``-100``), with label smoothing; every target ends with the tokenizer's eos token. Contexts of
different lengths are left-padded, with ``position_ids = cumsum(attention_mask) - 1`` so that
padding never shifts positions (the same rule transformers' ``generate`` applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, ConfigError, RegionLibError
from .checkpoint import load_base, read_auto_config

__all__ = ["LMConfig", "LMHead", "build_lm", "build_lm_head", "check_tokenizer", "default_lora_targets", "VISUAL_SLOT"]

VISUAL_SLOT = "{visual}"


@dataclass(frozen=True)
class LMConfig:
    """A causal LM: from ``path`` (a transformers checkpoint) or built from the fields below.

    Attributes:
        path: directory / hub id of a causal LM (weights loaded from it); None = random init.
        arch: ``"gpt2"`` or ``"llama"`` (used when ``path`` is None).
        width / depth / heads / kv_heads / intermediate: architecture of the random-init LM.
        vocab_size: LM vocabulary; None = ``len(tokenizer)``. Grown to fit added tokens.
        max_positions: context length of the random-init LM; dropout: its dropout probabilities.
        template: text with one ``{visual}`` slot (see module docstring).
        freeze: keep the LM's weights frozen (SCA's default).
        label_smoothing: default label smoothing of `LMHead.token_loss` (SCA: 0.1).
        max_target_tokens: truncate targets to this many tokens (SCA: 20); None = no cap.
        lora_r / lora_alpha / lora_dropout / lora_targets: peft LoRA on ``lora_targets`` when r > 0
            (empty: peft's defaults for the LM's architecture).
        chat_template: render the template with the tokenizer's chat template when it has one.
        bos_position: where the BOS of a tokenizer that adds one goes: ``"context"`` (before the
            template) or ``"target"`` (the released SCA: none in the context; every target is encoded
            with the tokenizer's special tokens, so it starts with BOS right after the visual prefix,
            BOS counted in ``max_target_tokens`` and learned as the first target token).
    """

    path: str | None = None
    arch: str = "gpt2"
    width: int = 64
    depth: int = 2
    heads: int = 4
    kv_heads: int | None = None
    intermediate: int | None = None
    vocab_size: int | None = None
    max_positions: int = 512
    dropout: float = 0.0
    template: str = "{visual} Describe the masked region in detail."
    freeze: bool = False
    label_smoothing: float = 0.0
    max_target_tokens: int | None = None
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()
    chat_template: bool = True
    bos_position: str = "context"


BOS_POSITIONS = ("context", "target")


def _check_lm_config(config: LMConfig) -> None:
    def positive(name, allow_none=False):
        v = getattr(config, name)
        if v is None and allow_none:
            return
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"LMConfig.{name} must be a positive int{' or None' if allow_none else ''}, got {v!r}")

    positive("max_target_tokens", allow_none=True)
    if not isinstance(config.lora_r, int) or config.lora_r < 0:
        raise ConfigError(f"LMConfig.lora_r must be an int >= 0, got {config.lora_r!r}")
    if not 0.0 <= config.lora_dropout < 1.0:
        raise ConfigError(f"LMConfig.lora_dropout must be in [0, 1), got {config.lora_dropout}")
    if config.path:
        return
    for name in ("width", "depth", "heads", "max_positions"):
        positive(name)
    for name in ("kv_heads", "intermediate", "vocab_size"):
        positive(name, allow_none=True)
    if config.width % config.heads:
        raise ConfigError(f"LMConfig.width {config.width} must be divisible by heads {config.heads}")
    if config.kv_heads and config.heads % config.kv_heads:
        raise ConfigError(f"LMConfig.heads {config.heads} must be divisible by kv_heads {config.kv_heads}")
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"LMConfig.dropout must be in [0, 1), got {config.dropout}")


def _lm_from_path(path: str, *, load_weights: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg = read_auto_config(path, "LMConfig.path")
    if cfg.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(f"LMConfig.path {path!r}: config.json names model_type {cfg.model_type!r} "
                              f"(architectures {getattr(cfg, 'architectures', None)}), which has no causal-LM class "
                              "in transformers (AutoModelForCausalLM); regionlib's LM head needs a causal LM")
    if not load_weights:
        return AutoModelForCausalLM.from_config(cfg)
    return load_base(AutoModelForCausalLM, path, "LMConfig.path", "the causal LM's")


def build_lm(config: LMConfig, tokenizer, *, load_weights: bool = True) -> nn.Module:
    """The transformers causal LM of ``config`` (``load_weights=False``: the path's architecture, random init)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    _check_lm_config(config)
    if config.path:
        return _lm_from_path(config.path, load_weights=load_weights)
    vocab = config.vocab_size or len(tokenizer)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    if config.arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=config.width, n_layer=config.depth, n_head=config.heads,
                                          n_inner=config.intermediate, n_positions=config.max_positions,
                                          resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
                                          **ids))
    if config.arch == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=config.width, num_hidden_layers=config.depth,
                                            num_attention_heads=config.heads, num_key_value_heads=config.kv_heads or config.heads,
                                            intermediate_size=config.intermediate or 4 * config.width,
                                            max_position_embeddings=config.max_positions, attention_dropout=config.dropout,
                                            tie_word_embeddings=False, **ids))
    raise ConfigError(f"LMConfig.arch must be 'gpt2' or 'llama', got {config.arch!r}")


class LMHead(nn.Module):
    """A causal LM + its tokenizer, reading visual prefixes.

    Args:
        lm: a transformers causal LM; tokenizer: its (fast) tokenizer, needing an eos token
            (a missing pad token is set to eos).
        template: text with one ``{visual}`` slot.
        special_tokens: tokens to add to the tokenizer (input embeddings resized).
        freeze: freeze the LM's weights.
        label_smoothing / max_target_tokens / bos_position: see `LMConfig`.
    """

    def __init__(self, lm: nn.Module, tokenizer, *, template: str = VISUAL_SLOT, special_tokens: Sequence[str] = (),
                 freeze: bool = False, label_smoothing: float = 0.0, max_target_tokens: int | None = None,
                 chat_template: bool = True, bos_position: str = "context"):
        super().__init__()
        if template.count(VISUAL_SLOT) != 1:
            raise ConfigError(f"template must contain exactly one {VISUAL_SLOT!r} slot, got {template!r}")
        if tokenizer.eos_token_id is None:
            gen_eos = self._generation_eos(lm)
            if not gen_eos:
                raise ConfigError("tokenizer needs an eos token (neither the tokenizer nor the LM's generation config "
                                  "names one)")
            tokenizer.eos_token = tokenizer.convert_ids_to_tokens(gen_eos[0])
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if bos_position not in BOS_POSITIONS:
            raise ConfigError(f"bos_position must be one of {BOS_POSITIONS}, got {bos_position!r}")
        self.bos_position = bos_position
        self.lm, self.tokenizer, self.template = lm, tokenizer, template
        self.label_smoothing, self.max_target_tokens = label_smoothing, max_target_tokens
        self.use_chat_template = bool(chat_template)
        self.kept_tokens: list[str] = []
        self._layouts: dict[str, list[list[int]]] = {}
        if special_tokens:
            self.add_special_tokens(special_tokens)
        elif len(tokenizer) > self.lm.get_input_embeddings().num_embeddings:
            self.lm.resize_token_embeddings(len(tokenizer))
        self.lora: dict | None = None
        if freeze:
            for p in self.lm.parameters():
                p.requires_grad_(False)

    @staticmethod
    def _generation_eos(lm) -> list[int]:
        gen = getattr(lm, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        if eos is None:
            return []
        return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]

    @property
    def eos_ids(self) -> list[int]:
        """Ids that end generation: the tokenizer's eos, then the generation config's (e.g. end of turn)."""
        ids = [int(self.tokenizer.eos_token_id)]
        base = self.lm.get_base_model() if self.lora is not None else self.lm
        ids += [e for e in self._generation_eos(base) if e not in ids and e < len(self.tokenizer)]
        return ids

    @property
    def bos_id(self) -> int | None:
        """The BOS id when the tokenizer adds one to plain text (then every context starts with it), else None."""
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return None
        ids = self.tokenizer("x")["input_ids"]
        return int(bos) if ids and ids[0] == bos else None

    @property
    def chat(self) -> bool:
        """Whether contexts are rendered with the tokenizer's chat template."""
        return self.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, text: str) -> str:
        """``text`` (with ``{visual}`` slots) as the LM sees it: the chat template's user turn + generation
        prompt when the tokenizer has a chat template, else unchanged (BOS is added by `layout`)."""
        if not self.chat:
            return text
        rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        if rendered.count(VISUAL_SLOT) != text.count(VISUAL_SLOT):
            raise ConfigError(f"the tokenizer's chat template does not keep the {VISUAL_SLOT!r} slots of {text!r} "
                              f"(rendered {rendered!r}); set LMConfig.chat_template=False")
        return rendered

    def layout(self, text: str) -> list[list[int]]:
        """Token ids of the text pieces around the ``{visual}`` slots of a whole context ``text``:
        ``k`` slots give ``k + 1`` lists; BOS (if the tokenizer adds one) opens the first, and with a
        chat template the pieces are those of the rendered turn."""
        cached = self._layouts.get(text)
        if cached is not None:
            return cached
        rendered = self.render(text)
        pieces = [self.token_ids(t) for t in rendered.split(VISUAL_SLOT)]
        bos = self.bos_id if self.bos_position == "context" else None
        if bos is not None and not (rendered.startswith(self.tokenizer.bos_token) or pieces[0][:1] == [bos]):
            pieces[0] = [bos] + pieces[0]
        self._layouts[text] = pieces
        return pieces

    def template_ids(self) -> tuple[list[int], list[int]]:
        """Ids before and after the visual prefix in every `contexts` (BOS and chat template included)."""
        before, after = self.layout(self.template)
        return list(before), list(after)

    # ------------------------------------------------------------------ tokens and embeddings
    @property
    def width(self) -> int:
        return self.lm.get_input_embeddings().embedding_dim

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    def add_special_tokens(self, tokens: Sequence[str], *, keep_in_text: bool = True) -> list[int]:
        """Add ``tokens`` to the tokenizer (never split), resize the LM's embeddings; returns their ids.

        ``keep_in_text``: decoded outputs keep these tokens (e.g. PGC's ``<SEG_t>``).
        """
        new = [t for t in tokens if t not in self.tokenizer.get_vocab()]
        self._layouts.clear()
        if new:
            self.tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
        if len(self.tokenizer) > self.lm.get_input_embeddings().num_embeddings:
            self.lm.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        if keep_in_text:
            self.kept_tokens.extend(t for t in tokens if t not in self.kept_tokens)
        return self.tokenizer.convert_tokens_to_ids(list(tokens))

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def embed_ids(self, ids) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        return self.lm.get_input_embeddings()(ids)

    def contexts(self, prefix: torch.Tensor) -> torch.Tensor:
        """``prefix`` ``(B, P, D)`` placed in the template -> ``(B, L, D)`` context embeddings
        (BOS and chat template as `template_ids`)."""
        if not isinstance(prefix, torch.Tensor) or prefix.ndim != 3 or prefix.shape[-1] != self.width:
            raise RegionLibError(f"prefix must be a (B, P, {self.width}) tensor, got {getattr(prefix, 'shape', type(prefix))}")
        before, after = self.template_ids()
        b = prefix.shape[0]
        parts = [prefix]
        if before:
            parts.insert(0, self.embed_ids(before).to(prefix.dtype)[None].expand(b, -1, -1))
        if after:
            parts.append(self.embed_ids(after).to(prefix.dtype)[None].expand(b, -1, -1))
        return torch.cat(parts, dim=1)

    def context(self, parts: Sequence, *, offsets: bool = False):
        """One whole context ``(L, D)`` from parts (``str`` and ``(n, D)`` tensors), with BOS and the chat
        template as `layout` (the strings joined, each tensor a ``{visual}`` slot of the user turn).

        ``offsets=True``: also return the start position in the context of each tensor part (e.g. to
        find RAS's candidate tokens or the grounded captioner's mask tokens).
        """
        text, tensors = "", []
        for i, part in enumerate(parts):
            if isinstance(part, str):
                if VISUAL_SLOT in part:
                    raise RegionLibError(f"parts[{i}] contains the slot marker {VISUAL_SLOT!r}")
                text += part
            elif isinstance(part, torch.Tensor) and part.ndim == 2 and part.shape[1] == self.width:
                text += VISUAL_SLOT
                tensors.append(part)
            else:
                raise RegionLibError(f"parts[{i}] must be a str or an (n, {self.width}) tensor, got "
                                     f"{getattr(part, 'shape', type(part).__name__)}")
        pieces = self.layout(text)
        dtype = tensors[0].dtype if tensors else self.lm.get_input_embeddings().weight.dtype
        out, starts, n = [], [], 0
        for k, ids in enumerate(pieces):
            if ids:
                out.append(self.embed_ids(ids).to(dtype))
                n += len(ids)
            if k < len(tensors):
                starts.append(n)
                out.append(tensors[k].to(dtype))
                n += tensors[k].shape[0]
        if not out:
            raise RegionLibError("parts must give a non-empty context")
        ctx = torch.cat(out, dim=0)
        return (ctx, starts) if offsets else ctx

    @staticmethod
    def pad_left(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """List of ``(L_i, D)`` -> left-padded ``(B, L, D)`` embeddings and ``(B, L)`` attention mask."""
        if len(sequences) == 0:
            raise RegionLibError("sequences must be non-empty")
        n = max(s.shape[0] for s in sequences)
        ref = sequences[0]
        embeds = ref.new_zeros((len(sequences), n, ref.shape[1]))
        mask = torch.zeros((len(sequences), n), dtype=torch.long, device=ref.device)
        for i, s in enumerate(sequences):
            embeds[i, n - s.shape[0]:] = s
            mask[i, n - s.shape[0]:] = 1
        return embeds, mask

    @staticmethod
    def positions(attention_mask: torch.Tensor) -> torch.Tensor:
        return (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """Run the LM on ``(B, L, D)`` embeddings (padding-aware positions); returns the transformers output."""
        if attention_mask is None:
            attention_mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=self.positions(attention_mask),
                       **kwargs)

    # ------------------------------------------------------------------ training
    def target_ids(self, targets: Sequence[str]) -> list[list[int]]:
        """Token ids of each target + eos (BOS first with ``bos_position="target"``). A target with
        out-of-vocabulary words (the unk token of a word-level tokenizer, which decoding drops) is warned
        about once per word, never silently learned."""
        eos, unk = self.tokenizer.eos_token_id, self.tokenizer.unk_token_id
        bos = [self.bos_id] if self.bos_position == "target" and self.bos_id is not None else []
        out = []
        for t in targets:
            ids = bos + self.token_ids(t)
            if unk is not None and unk in ids:
                self._warn_unknown(t)
            if self.max_target_tokens is not None:
                ids = ids[: self.max_target_tokens]
            out.append(ids + [eos])
        return out

    def _warn_unknown(self, text: str) -> None:
        import warnings

        seen = self.__dict__.setdefault("_unknown_words", set())
        unk = self.tokenizer.unk_token_id
        new = [w for w in text.split() if unk in self.token_ids(w) and w not in seen]
        if new:
            seen.update(new)
            warnings.warn(f"target words outside the tokenizer's vocabulary become {self.tokenizer.unk_token!r} "
                          f"(and vanish when decoded): {new[:10]}; train the tokenizer on them "
                          "(builtin_tokenizer(extra_texts)) or use a subword tokenizer", stacklevel=3)

    def teacher_forced(self, contexts: torch.Tensor, context_mask: torch.Tensor | None, targets: Sequence[str], *,
                       all_positions: bool = False, **kwargs):
        """LM output and labels for ``targets`` after left-padded ``contexts`` ``(B, L, D)``.

        Returns ``(output, labels)``: labels ``(B, L + T)`` with ``-100`` outside the targets. By default
        the LM computes logits only where they are needed — the last context position and the T target
        positions (``logits_to_keep = T + 1``; the vocabulary projection of the ~L context positions is
        skipped) — and ``labels`` are the matching last ``T + 1`` columns; ``all_positions=True`` keeps
        every position (e.g. to read hidden states and labels at the same indices).
        """
        if isinstance(targets, str) or len(targets) != contexts.shape[0]:
            raise RegionLibError(f"targets must be a list of {contexts.shape[0]} strings (one per prefix), "
                                 f"got {len(targets) if not isinstance(targets, str) else 'a str'}")
        seqs = self.target_ids(targets)
        width = max(len(x) for x in seqs)
        b, n = contexts.shape[:2]
        ids = torch.full((b, width), self.tokenizer.pad_token_id, dtype=torch.long, device=contexts.device)
        tmask = torch.zeros((b, width), dtype=torch.long, device=contexts.device)
        for i, x in enumerate(seqs):
            ids[i, : len(x)] = torch.tensor(x, device=contexts.device)
            tmask[i, : len(x)] = 1
        if context_mask is None:
            context_mask = torch.ones((b, n), dtype=torch.long, device=contexts.device)
        embeds = torch.cat([contexts, self.embed_ids(ids).to(contexts.dtype)], dim=1)
        attn = torch.cat([context_mask.to(tmask.dtype), tmask], dim=1)
        labels = torch.cat([torch.full((b, n), -100, dtype=torch.long, device=ids.device), ids.masked_fill(tmask == 0, -100)], 1)
        if all_positions:
            return self.forward_embeds(embeds, attn, **kwargs), labels
        return self.forward_embeds(embeds, attn, logits_to_keep=width + 1, **kwargs), labels[:, -(width + 1):]

    def token_loss(self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float | None = None,
                   reduction: str = "mean") -> torch.Tensor:
        """Shifted cross-entropy (position t predicts token t + 1) of logits ``(B, T, V)`` over labels
        ``(B, T)`` != -100 (as `teacher_forced` returns them): the mean over the target tokens, or their sum
        (``reduction="sum"``). ``label_smoothing`` None: the head's own."""
        if reduction not in ("mean", "sum"):
            raise RegionLibError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        ls = self.label_smoothing if label_smoothing is None else label_smoothing
        pred = logits[:, :-1]
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100,
                               label_smoothing=ls, reduction=reduction)

    @torch.no_grad()
    def mean_log_prob(self, contexts: torch.Tensor, targets: Sequence[str],
                      context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean log-probability per token (eos included) of each target after its (left-padded) context
        ``(B, L, D)`` -> ``(B,)``.

        The caption-confidence of DLC-SDP stage 2 (seed 003 App. H.1) and seed 001's
        text-region score: ``(1/T) sum_t log p(y_t | y_<t, context)``.
        """
        out, labels = self.teacher_forced(contexts, context_mask, targets)
        logp = out.logits[:, :-1].float().log_softmax(-1)
        tgt = labels[:, 1:]
        keep = tgt != -100
        picked = logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0] * keep
        return picked.sum(1) / keep.sum(1).clamp(min=1)

    # ------------------------------------------------------------------ inference
    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text, dropping the tokenizer's special tokens except those kept in text."""
        keep = set(self.tokenizer.convert_tokens_to_ids(self.kept_tokens))
        drop = set(self.tokenizer.all_special_ids) - keep
        return self.tokenizer.decode([int(i) for i in ids if int(i) not in drop], skip_special_tokens=False).strip()

    @staticmethod
    def _check_length(max_new_tokens) -> None:
        if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
            raise RegionLibError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")

    @torch.no_grad()
    def generate_ids(self, contexts: torch.Tensor, context_mask: torch.Tensor | None = None, *, max_new_tokens: int = 40,
                     num_beams: int = 1, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                     top_k: int = 0, seed: int | None = None) -> list[list[int]]:
        """New token ids for left-padded ``contexts`` ``(B, L, D)`` (greedy / beam search / sampling)."""
        self._check_length(max_new_tokens)
        if not isinstance(num_beams, int) or num_beams < 1:
            raise RegionLibError(f"num_beams must be a positive int, got {num_beams!r}")
        if do_sample and not temperature > 0:
            raise RegionLibError(f"temperature must be > 0 when sampling, got {temperature}")
        if context_mask is None:
            context_mask = torch.ones(contexts.shape[:2], dtype=torch.long, device=contexts.device)
        if seed is not None:
            torch.manual_seed(seed)
        kwargs = {"temperature": temperature, "top_p": top_p, "top_k": top_k} if do_sample else {}
        was_training = self.lm.training
        self.lm.eval()
        eos = self.eos_ids
        out = self.lm.generate(inputs_embeds=contexts, attention_mask=context_mask, max_new_tokens=max_new_tokens,
                               num_beams=num_beams, do_sample=do_sample, eos_token_id=eos if len(eos) > 1 else eos[0],
                               pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        self.lm.train(was_training)
        result = []
        for row in out.tolist():
            ends = [row.index(e) for e in eos if e in row]
            result.append(row[: min(ends)] if ends else row)
        return result

    def generate(self, contexts: torch.Tensor, context_mask: torch.Tensor | None = None, **kwargs) -> list[str]:
        """Decoded `generate_ids` of left-padded ``contexts`` ``(B, L, D)``: one text per row."""
        return [self.decode(ids) for ids in self.generate_ids(contexts, context_mask, **kwargs)]

    @torch.no_grad()
    def stream(self, context: torch.Tensor, *, max_new_tokens: int = 40, do_sample: bool = False,
               temperature: float = 1.0, seed: int | None = None) -> Iterator[str]:
        """Decode one context ``(1, L, D)`` token by token (KV cache), yielding each new piece of text.

        The pieces concatenate to the decoded text of the greedy (or sampled) continuation.
        """
        self._check_length(max_new_tokens)
        if context.ndim != 3 or context.shape[0] != 1:
            raise RegionLibError(f"stream decodes one region at a time: context must be (1, L, D), got {tuple(context.shape)}")
        gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        was_training = self.lm.training
        self.lm.eval()
        eos = set(self.eos_ids)
        try:
            out = self.lm(inputs_embeds=context, use_cache=True)
            ids: list[int] = []
            shown = ""
            for step in range(max_new_tokens):
                logits = out.logits[0, -1].float()
                if do_sample:
                    probs = torch.softmax(logits / temperature, -1).cpu()
                    nxt = int(torch.multinomial(probs, 1, generator=gen))
                else:
                    nxt = int(logits.argmax())
                if nxt in eos:
                    return
                ids.append(nxt)
                text = self.decode(ids)
                if text.startswith(shown) and len(text) > len(shown):
                    yield text[len(shown):]
                    shown = text
                pos = torch.tensor([[context.shape[1] + step]], device=context.device)
                out = self.lm(inputs_embeds=self.embed_ids([[nxt]]).to(context.dtype), past_key_values=out.past_key_values,
                              position_ids=pos, use_cache=True)
        finally:
            self.lm.train(was_training)

    # ------------------------------------------------------------------ LoRA
    def add_lora(self, *, target_modules: Sequence[str] | None = None, r: int = 8, alpha: int = 16,
                 dropout: float = 0.0) -> None:
        """Wrap the LM with peft LoRA adapters on ``target_modules`` (None / empty: peft's defaults for the
        LM's architecture, `default_lora_targets`); only the adapters train, base weights stay."""
        from peft import LoraConfig, get_peft_model

        if self.lora is not None:
            raise ConfigError("LoRA adapters are already attached")
        if not isinstance(r, int) or r <= 0:
            raise ConfigError(f"LoRA needs r > 0, got r={r!r}")
        targets = list(target_modules or default_lora_targets(self.lm))
        from transformers.pytorch_utils import Conv1D

        conv1d = any(isinstance(m, Conv1D) for n, m in self.lm.named_modules() if n.split(".")[-1] in targets)
        try:
            self.lm = get_peft_model(self.lm, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                         target_modules=targets, bias="none", fan_in_fan_out=conv1d))
        except ValueError as exc:
            raise ConfigError(f"target_modules {targets} do not name modules of the LM ({exc})") from exc
        self.lora = {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": targets}

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The LM's own weights under their original names (LoRA adapters excluded)."""
        lm = self.lm.get_base_model() if self.lora is not None else self.lm
        return {k.replace(".base_layer", ""): v for k, v in lm.state_dict().items() if "lora_" not in k}


def default_lora_targets(lm: nn.Module) -> list[str]:
    """peft's default LoRA target modules for ``lm``'s ``model_type``; `ConfigError` when peft has none."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(getattr(lm, "config", None), "model_type", None)
    targets = DEFAULTS.get(model_type)
    if not targets:
        raise ConfigError(f"peft has no default LoRA target modules for model_type {model_type!r}: "
                          "set LMConfig.lora_targets (e.g. lm__lora_targets=('q_proj', 'v_proj'))")
    return list(targets)


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def check_tokenizer(lm: nn.Module, tokenizer, *, path: str | None = None) -> None:
    """`CheckpointError` unless ``tokenizer`` fits the LM loaded from ``path``.

    The built-in word tokenizer never pairs with a real LM; when ``path`` holds its own tokenizer,
    ``tokenizer`` must give every one of its tokens the same id; and no token id may exceed the LM's
    embedding rows; a tokenizer with fewer than half the LM's embedding rows (transformers' near-empty
    tokenizer of a directory without tokenizer files) is not the LM's.
    """
    if getattr(tokenizer, "regionlib_builtin", False):
        raise CheckpointError(f"LMConfig.path {path!r} is a real LM but the tokenizer is regionlib's built-in word "
                              "tokenizer (tiny presets only): pass the LM's own tokenizer, or none to load it")
    rows = lm.get_input_embeddings().num_embeddings
    vocab = tokenizer.get_vocab()
    if len(vocab) < rows // 2:
        raise CheckpointError(f"the tokenizer{' at ' + repr(path) if path else ''} has {len(vocab)} tokens for an LM "
                              f"of {rows} embedding rows: not this LM's tokenizer (are its tokenizer files "
                              f"missing? expected one of {list(_TOKENIZER_FILES)})")
    if path and any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
        from transformers import AutoTokenizer

        own = AutoTokenizer.from_pretrained(path).get_vocab()
        differ = sorted(t for t, i in own.items() if vocab.get(t) != i)
        if differ:
            raise CheckpointError(f"the tokenizer's vocabulary does not match the LM's own tokenizer at {path!r}: "
                                  f"{len(differ)} of its {len(own)} tokens differ (e.g. {differ[:5]})")
    special = set(tokenizer.all_special_tokens)
    beyond = sorted((i, t) for t, i in vocab.items() if i >= rows and t not in special)
    if beyond:  # special tokens added for regionlib's roles (RAS, PGC) get new rows when the head is built
        raise CheckpointError(f"the tokenizer has token ids up to {beyond[-1][0]} but the LM"
                              f"{' at ' + repr(path) if path else ''} has {rows} embedding rows "
                              f"(e.g. {[t for _, t in beyond[:5]]}): a tokenizer of another vocabulary")


def build_lm_head(config: LMConfig, tokenizer, *, special_tokens: Sequence[str] = (), load_weights: bool = True) -> LMHead:
    """`LMHead` for ``config`` (LM from its path or random init; LoRA attached when ``lora_r > 0``).

    With a path, ``tokenizer`` must be the LM's own (see `check_tokenizer`).
    """
    if not isinstance(config, LMConfig):
        raise ConfigError(f"config must be an LMConfig, got {type(config).__name__}")
    try:
        lm = build_lm(config, tokenizer, load_weights=load_weights)
    except OSError as exc:
        raise CheckpointError(f"LMConfig.path {config.path!r}: cannot load a causal LM ({exc})") from exc
    if config.path:
        check_tokenizer(lm, tokenizer, path=config.path)
    head = LMHead(lm, tokenizer, template=config.template, special_tokens=special_tokens, freeze=config.freeze,
                  label_smoothing=config.label_smoothing, max_target_tokens=config.max_target_tokens,
                  chat_template=config.chat_template, bos_position=config.bos_position)
    if config.lora_r > 0:
        head.add_lora(target_modules=config.lora_targets, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout)
    return head
