"""RAS: refer to any segmentation mask group (seed 004 §3; REFERENCE §7).

Candidate masks (SAM proposals, detector masks, ...) become one LM token each through the
`MaskTokenizer` (features of one or more frozen encoders pooled inside the mask, optional 2D
position feature, 2-layer MLP). The LM reads::

    [image tokens] prompt text [<mask-ref-pre> ref_1 ...] <mask-pool-pre> cand_1 <mask-pool-pre> cand_2 ...

and a binary selection classifier (2-layer MLP) on the LM's hidden state at each candidate token
scores it; training uses binary cross-entropy with ``pos_weight`` (5.0) on positives. The
selected *group* is every candidate scoring above ``threshold`` (possibly none — gRefCOCO's
empty targets). ``<mask-pool-pre>`` and ``<mask-ref-pre>`` are added to the tokenizer as
special tokens (two distinct role tokens: the paper's best ablation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, RegionLibError
from ..regions import Regions
from .checkpoint import RegionModel, register_kind
from .interface import ImageState, RegionOutput, check_regions
from .lm_head import LMConfig, LMHead, build_lm_head
from .mask_tokens import FeatureEncoders, MaskTokenizer
from .vision import VisionConfig

__all__ = ["RASConfig", "RAS", "Selection", "SelectionHead", "build_ras", "MASK_POOL_PRE", "MASK_REF_PRE"]

MASK_POOL_PRE = "<mask-pool-pre>"
MASK_REF_PRE = "<mask-ref-pre>"


@dataclass(frozen=True)
class RASConfig:
    """RAS: frozen feature encoders, LM, mask tokenizer and selection head settings."""

    encoders: tuple[VisionConfig, ...] = (VisionConfig(),)
    lm: LMConfig = field(default_factory=lambda: LMConfig(template="{visual}"))
    image_tokens: bool = True
    position_dim: int = 32
    prompt_template: str = "Select the masks that match the description: {prompt}"
    pos_weight: float = 5.0
    threshold: float = 0.5


@dataclass
class Selection:
    """indices: selected candidates (ascending, may be empty); scores ``(N,)`` sigmoid probabilities."""

    indices: np.ndarray
    scores: np.ndarray


class SelectionHead(nn.Module):
    """2-layer MLP: LM hidden ``(N, D)`` -> selection logits ``(N,)``."""

    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden).squeeze(-1)


@register_kind("ras")
class RAS(RegionModel):
    """Mask tokenizer + LM + selection head. A *sample* (`prepare`) is one image's prompt and candidates."""

    config_class = RASConfig

    def __init__(self, config: RASConfig, encoders: FeatureEncoders, lm_head: LMHead):
        super().__init__()
        if config.pos_weight <= 0 or not 0 < config.threshold < 1:
            raise ConfigError(f"pos_weight must be > 0 and threshold in (0, 1), got {config.pos_weight}, {config.threshold}")
        if "{prompt}" not in config.prompt_template:
            raise ConfigError(f"prompt_template must contain '{{prompt}}', got {config.prompt_template!r}")
        self.config, self.encoders, self.lm_head = config, encoders, lm_head
        self.pool_id, self.ref_id = lm_head.add_special_tokens([MASK_POOL_PRE, MASK_REF_PRE], keep_in_text=False)
        self.mask_tokenizer = MaskTokenizer(encoders.dims, lm_head.width, position_dim=config.position_dim)
        self.image_proj = nn.Linear(encoders.dims[0], lm_head.width) if config.image_tokens else None
        self.head = SelectionHead(lm_head.width)

    @torch.no_grad()
    def encode_image(self, image) -> ImageState:
        """The expensive, cacheable part: every encoder's patch grid, ``features`` = tuple of ``(1, C_k, g_k, g_k)``."""
        state = ImageState.of(image)
        state.tensors["features"] = tuple(f[None] for f in self.encoders(state.image))
        return state

    def region_inputs(self, state: ImageState, regions: Regions, prompts: str = "", *,
                      references: Regions | None = None) -> dict:
        """One sample: the referring text ``prompts`` over the candidate masks ``regions`` (optional
        ``references``: the prompt's reference masks). The masks' pooled features are computed here
        (frozen encoders). Targets: ``regions.data["selected"]`` (bool per candidate) when present.
        Returns ``{"samples": [sample]}``; `collate` joins samples of several images."""
        if not isinstance(prompts, str):
            raise RegionLibError(f"prompts must be the referring text (a str), got {type(prompts).__name__}")
        check_regions(state, regions, need_masks=True)
        feats = [f[0] for f in state.tensors["features"]]
        tok = self.mask_tokenizer
        refs = None
        if references is not None:
            check_regions(state, references, need_masks=True)
            refs = tok.pooled_features(feats, references.masks, image_size=state.size)
        selected = regions.data.get("selected")
        sample = {"features": feats, "prompt": prompts,
                  "candidates": tok.pooled_features(feats, regions.masks, image_size=state.size), "references": refs}
        return {"samples": [sample], "targets": None if selected is None else [np.asarray(selected, dtype=bool)]}

    def collate(self, batches: Sequence[dict]) -> dict:
        targets = [b["targets"] for b in batches]
        return {"samples": [s for b in batches for s in b["samples"]],
                "targets": None if any(t is None for t in targets) else [t for ts in targets for t in ts]}

    def forward(self, batch: dict, *, reduction: str = "mean", label_smoothing: float | None = None) -> RegionOutput:
        """Selection logits of every sample (concatenated) and, with targets, the weighted BCE (mean over
        candidates, or their sum with ``reduction="sum"``; ``label_smoothing`` does not apply)."""
        logits = self.logits(batch["samples"])
        out = RegionOutput(logits=torch.cat(logits))
        if batch.get("targets") is not None:
            out.loss = self.loss(batch["samples"], batch["targets"], logits=logits)
            if reduction == "sum":
                out.loss = out.loss * self.n_targets(batch)
        return out

    def n_targets(self, batch: dict) -> int:
        """The number of candidates the loss of ``batch`` averages over."""
        return sum(int(s["candidates"].shape[0]) for s in batch["samples"])

    def _sequence(self, sample: dict) -> tuple[torch.Tensor, list[int]]:
        """Embedded context ``(L, D)`` of one sample (`LMHead.context`: BOS and chat template as the
        tokenizer has them) and the positions of its candidate tokens."""
        feats, lm = sample["features"], self.lm_head
        cand = self.mask_tokenizer(sample["candidates"])  # (N, D)
        parts: list = []
        if self.image_proj is not None:
            parts.append(self.image_proj(feats[0].flatten(1).transpose(0, 1)).to(cand.dtype))
        parts.append(self.config.prompt_template.format(prompt=sample["prompt"]))
        if sample["references"] is not None:
            ref = lm.embed_ids([self.ref_id]).to(cand.dtype)
            parts += [torch.cat([ref, t[None]]) for t in self.mask_tokenizer(sample["references"])]
        pool = lm.embed_ids([self.pool_id]).to(cand.dtype)
        parts += [torch.cat([pool, t[None]]) for t in cand]
        seq, starts = lm.context(parts, offsets=True)
        return seq, [start + 1 for start in starts[-len(cand):]]  # the candidates are the last tensor parts

    def logits(self, samples: Sequence[dict]) -> list[torch.Tensor]:
        """Selection logits of every sample's candidates: a list of ``(N_i,)``."""
        if len(samples) == 0:
            raise RegionLibError("samples must be non-empty")
        seqs, positions = zip(*(self._sequence(s) for s in samples))
        embeds, mask = LMHead.pad_left(list(seqs))
        out = self.lm_head.forward_embeds(embeds, mask, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        n = embeds.shape[1]
        result = []
        for i, (seq, pos) in enumerate(zip(seqs, positions)):
            offset = n - seq.shape[0]
            result.append(self.head(hidden[i, [offset + p for p in pos]]))
        return result

    def loss(self, samples: Sequence[dict], targets: Sequence, *, logits: list[torch.Tensor] | None = None) -> torch.Tensor:
        """BCE with ``pos_weight`` over all candidates; ``targets``: per sample the selected indices (or a bool vector)."""
        if len(targets) != len(samples):
            raise RegionLibError(f"targets must hold one entry per sample ({len(samples)}), got {len(targets)}")
        logits = self.logits(samples) if logits is None else logits
        labels = []
        for i, (lg, t) in enumerate(zip(logits, targets)):
            t = np.asarray(t)
            if t.dtype == bool:
                if t.shape != (len(lg),):
                    raise RegionLibError(f"targets[{i}] as a bool vector must have {len(lg)} entries, got {t.shape}")
                t = np.flatnonzero(t)
            t = t.astype(np.int64).reshape(-1)
            if len(t) and (t.min() < 0 or t.max() >= len(lg)):
                raise RegionLibError(f"targets[{i}] holds an index outside [0, {len(lg)})")
            y = torch.zeros(len(lg))
            y[torch.as_tensor(t)] = 1
            labels.append(y.to(lg.device))
        pw = torch.tensor(self.config.pos_weight, device=logits[0].device)
        return F.binary_cross_entropy_with_logits(torch.cat(logits), torch.cat(labels), pos_weight=pw)

    @torch.no_grad()
    def select(self, batch: dict, *, threshold: float | None = None) -> list[Selection]:
        """The selected group of every sample of ``batch`` (candidates with sigmoid score > ``threshold``)."""
        th = self.config.threshold if threshold is None else threshold
        out = []
        for lg in self.logits(batch["samples"]):
            s = torch.sigmoid(lg.float()).cpu().numpy()
            out.append(Selection(np.flatnonzero(s > th), s))
        return out


def build_ras(config: RASConfig, tokenizer, *, load_weights: bool = True) -> RAS:
    encoders = FeatureEncoders(config.encoders, load_weights=load_weights)
    return RAS(config, encoders, build_lm_head(config.lm, tokenizer, load_weights=load_weights))


RAS.builder = staticmethod(build_ras)
