"""Mask-pooled captioner: seed 002's "LLaVA-NeXT-pool" variant for region and grounded captioning (REFERENCE §8).

Image tokens (a frozen vision encoder's patch tokens through a 2-layer MLP projector) plus one
pooled *mask token* per region (`MaskTokenizer`: features averaged inside the mask) go to the
LM, each mask token introduced by a ``<mask>`` role token:

* region captioning — ``[image] <mask> m_i  Describe the masked region in detail.`` -> caption;
* grounded captioning — ``[image] <mask> m_1 ... <mask> m_K  Describe the image with grounded
  phrases.`` -> text in the PGC format ``<p>phrase</p><SEG_t>`` (thing) / ``<p>phrase</p><SEG_s>``
  (stuff). Each ``<SEG_*>`` token is grounded to one of the K input masks by a matching head:
  ``score_k = (W h_seg) . h_mask_k / sqrt(D)`` over the LM's hidden states, trained with
  cross-entropy; `parse_pgc` reads the phrases back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, DataFormatError, RegionLibError
from ..masks import boxes_to_masks
from ..regions import Regions
from .checkpoint import RegionModel, register_kind
from .interface import Captioner, ImageState, check_regions
from .projectors import build_projector
from .lm_head import LMConfig, LMHead, build_lm_head
from .mask_tokens import FeatureEncoders, MaskTokenizer
from .vision import VisionConfig

__all__ = ["PooledCaptionerConfig", "PooledCaptioner", "GroundedPhrase", "GroundedCaption", "build_pooled_captioner",
           "parse_pgc", "format_pgc", "PGC_TOKENS", "MASK_TOKEN"]

MASK_TOKEN = "<mask>"
PGC_TOKENS = ("<p>", "</p>", "<SEG_t>", "<SEG_s>")
_PGC = re.compile(r"<p>\s*(.*?)\s*</p>\s*<SEG_([ts])>")


@dataclass(frozen=True)
class GroundedPhrase:
    """phrase text; kind ``"thing"`` (``<SEG_t>``) or ``"stuff"`` (``<SEG_s>``); mask_index into the input masks."""

    phrase: str
    kind: str
    mask_index: int | None = None


@dataclass
class GroundedCaption:
    """text: the raw PGC output; phrases: its grounded phrases in order."""

    text: str
    phrases: list[GroundedPhrase]


def parse_pgc(text: str) -> list[GroundedPhrase]:
    """Phrases of a PGC string (``<p>phrase</p><SEG_t>`` / ``<SEG_s>``; whitespace between tags allowed)."""
    if not isinstance(text, str):
        raise DataFormatError(f"text must be a str, got {type(text).__name__}")
    return [GroundedPhrase(m.group(1), "thing" if m.group(2) == "t" else "stuff") for m in _PGC.finditer(text)]


def format_pgc(parts: Sequence) -> str:
    """Join plain strings and `GroundedPhrase`s (or ``(phrase, kind)`` pairs) into PGC text."""
    out = []
    for i, p in enumerate(parts):
        if isinstance(p, str):
            out.append(p)
            continue
        phrase, kind = (p.phrase, p.kind) if isinstance(p, GroundedPhrase) else p
        if kind not in ("thing", "stuff"):
            raise DataFormatError(f"parts[{i}]: kind must be 'thing' or 'stuff', got {kind!r}")
        out.append(f"<p>{phrase}</p><SEG_{kind[0]}>")
    return " ".join(out)


@dataclass(frozen=True)
class PooledCaptionerConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    lm: LMConfig = field(default_factory=lambda: LMConfig(template="{visual}"))
    projector: str = "mlp2x_gelu"
    position_dim: int = 0
    region_prompt: str = "Describe the masked region in detail."
    grounded_prompt: str = "Describe the image with grounded phrases."


@register_kind("pooled")
class PooledCaptioner(Captioner, RegionModel):
    """Image tokens + pooled mask tokens -> LM (see the module docstring), behind the region-model
    interface: ``encode_image`` caches the frozen encoder's patch grids ``features`` (a tuple of
    ``(1, C_k, g_k, g_k)``); ``region_inputs`` pools them inside each mask."""

    config_class = PooledCaptionerConfig

    def __init__(self, config: PooledCaptionerConfig, encoders: FeatureEncoders, lm_head: LMHead):
        super().__init__()
        self.config, self.encoders, self.lm_head = config, encoders, lm_head
        ids = lm_head.add_special_tokens([MASK_TOKEN], keep_in_text=False)
        self.mask_id = ids[0]
        self.seg_ids = lm_head.add_special_tokens(list(PGC_TOKENS), keep_in_text=True)[2:]
        d = lm_head.width
        self.image_proj = build_projector(config.projector, encoders.dims[0], d)
        self.mask_tokenizer = MaskTokenizer(encoders.dims, d, position_dim=config.position_dim)
        self.ground_proj = nn.Linear(d, d)

    # ---------------------------------------------------------------- inputs
    @torch.no_grad()
    def encode_image(self, image) -> ImageState:
        """The frozen encoder's patch grid(s) of ``image``: ``features`` = tuple of ``(1, C_k, g_k, g_k)``."""
        state = ImageState.of(image)
        state.tensors["features"] = tuple(f[None] for f in self.encoders(state.image))
        return state

    def region_inputs(self, state: ImageState, regions: Regions, prompts=None) -> dict:
        """The N ``regions``' masks pooled from the cached features: ``mask_features`` ``(N, F)``,
        ``features`` (per image), ``image_index`` ``(N,)``, ``targets`` = the regions' captions."""
        if prompts is not None:
            raise ConfigError("the pooled captioner's prompt is PooledCaptionerConfig.region_prompt; prompts must be None")
        check_regions(state, regions)
        masks = regions.masks if regions.has_masks else boxes_to_masks(regions.boxes_xyxy, state.size)
        feats = state.tensors["features"]
        pooled = self.mask_tokenizer.pooled_features([f[0] for f in feats], masks, image_size=state.size)
        return {"features": feats, "mask_features": pooled,
                "image_index": torch.zeros(len(masks), dtype=torch.long, device=pooled.device),
                "targets": None if regions.captions is None else list(regions.captions)}

    def _image_tokens(self, features, index: int = 0) -> torch.Tensor:
        return self.image_proj(features[0][index].flatten(1).transpose(0, 1))  # (g*g, D)

    def contexts(self, batch: dict) -> tuple[torch.Tensor, None]:
        """``(B, L, D)``: per region, its image's tokens, the mask role token + its mask token, the prompt —
        one whole context each (`LMHead.context`: BOS and chat template as the tokenizer has them)."""
        f0 = batch["features"][0]  # (N_img, C, g, g)
        img = self.image_proj(f0.flatten(2).transpose(1, 2))  # (N_img, g*g, D)
        tokens = self.mask_tokenizer(batch["mask_features"])  # (B, D)
        role = self.lm_head.embed_ids([self.mask_id]).to(tokens.dtype)  # (1, D)
        prompt = " " + self.config.region_prompt
        return torch.stack([self.lm_head.context([img[i].to(tokens.dtype), torch.cat([role, t[None]]), prompt])
                            for i, t in zip(batch["image_index"].tolist(), tokens)]), None

    def grounded_context(self, batch: dict) -> tuple[torch.Tensor, list[int]]:
        """``(L, D)`` context with all K masks of a one-image batch, and the positions of the K mask tokens."""
        img = self._image_tokens(batch["features"])
        tokens = self.mask_tokenizer(batch["mask_features"])
        role = self.lm_head.embed_ids([self.mask_id]).to(tokens.dtype)
        parts = [img.to(tokens.dtype), *(torch.cat([role, t[None]]) for t in tokens), " " + self.config.grounded_prompt]
        ctx, starts = self.lm_head.context(parts, offsets=True)
        return ctx, [start + 1 for start in starts[1:]]  # each mask token follows its role token

    # ---------------------------------------------------------------- grounded captioning
    def _grounding_logits(self, hidden: torch.Tensor, seg_pos: list[int], mask_pos: list[int]) -> torch.Tensor:
        q = self.ground_proj(hidden[seg_pos])  # (S, D)
        k = hidden[mask_pos]  # (K, D)
        return q @ k.T / math.sqrt(k.shape[-1])

    def grounded_loss(self, samples: Sequence[dict], texts: Sequence[str], groundings: Sequence[Sequence[int]], *,
                      label_smoothing: float | None = None, grounding_weight: float = 1.0) -> torch.Tensor:
        """LM loss on PGC ``texts`` + cross-entropy grounding each ``<SEG_*>`` to its mask index (``groundings``)."""
        if not (len(samples) == len(texts) == len(groundings)):
            raise RegionLibError(f"samples, texts and groundings must be equally long, got "
                                 f"{len(samples)}, {len(texts)}, {len(groundings)}")
        ctxs, mask_pos = zip(*(self.grounded_context(s) for s in samples))
        embeds, am = LMHead.pad_left(list(ctxs))
        out, labels = self.lm_head.teacher_forced(embeds, am, texts, all_positions=True, output_hidden_states=True)
        loss = self.lm_head.token_loss(out.logits, labels, label_smoothing)
        hidden = out.hidden_states[-1]
        n = embeds.shape[1]
        terms = []
        for i, (ctx, pos, target) in enumerate(zip(ctxs, mask_pos, groundings)):
            seg = [j for j in range(n, labels.shape[1]) if int(labels[i, j]) in self.seg_ids]
            if len(seg) != len(target):
                raise RegionLibError(f"texts[{i}] has {len(seg)} <SEG_*> tokens but groundings[{i}] names {len(target)} masks")
            if not seg:
                continue
            if min(target) < 0 or max(target) >= len(pos):
                raise RegionLibError(f"groundings[{i}] must index its {len(pos)} masks, got {list(target)}")
            offset = n - ctx.shape[0]
            logits = self._grounding_logits(hidden[i], seg, [offset + p for p in pos])
            terms.append(F.cross_entropy(logits, torch.as_tensor(list(target), device=logits.device), reduction="sum"))
        if terms:
            loss = loss + grounding_weight * torch.stack(terms).sum() / sum(len(t) for t in groundings)
        return loss

    @torch.no_grad()
    def grounded_caption(self, samples: Sequence[dict], **kwargs) -> list[GroundedCaption]:
        """PGC captions of each sample, every phrase grounded to one of its masks."""
        ctxs, mask_pos = zip(*(self.grounded_context(s) for s in samples))
        embeds, am = LMHead.pad_left(list(ctxs))
        gen = self.lm_head.generate_ids(embeds, am, **kwargs)
        results = []
        for ctx, pos, ids in zip(ctxs, mask_pos, gen):
            text = self.lm_head.decode(ids)
            phrases = parse_pgc(text)
            # the <SEG_*> tokens that close a well-formed <p>phrase</p> (stray ones ground nothing)
            seg, count = [], 0
            for j, t in enumerate(ids):
                if t in self.seg_ids and len(parse_pgc(self.lm_head.decode(ids[: j + 1]))) > count:
                    seg.append(j)
                    count += 1
            if seg:
                full = torch.cat([ctx, self.lm_head.embed_ids(ids).to(ctx.dtype)], dim=0)[None]
                hidden = self.lm_head.forward_embeds(full, output_hidden_states=True).hidden_states[-1][0]
                choice = self._grounding_logits(hidden, [ctx.shape[0] + j for j in seg], pos).argmax(-1).tolist()
                phrases = [GroundedPhrase(p.phrase, p.kind, c) for p, c in zip(phrases, choice)]
            results.append(GroundedCaption(text, phrases))
        return results


def build_pooled_captioner(config: PooledCaptionerConfig, tokenizer, *, load_weights: bool = True) -> PooledCaptioner:
    if not config.region_prompt or not config.grounded_prompt:
        raise ConfigError("region_prompt and grounded_prompt must be non-empty")
    encoders = FeatureEncoders((config.vision,), load_weights=load_weights)
    return PooledCaptioner(config, encoders, build_lm_head(config.lm, tokenizer, load_weights=load_weights))


PooledCaptioner.builder = staticmethod(build_pooled_captioner)
