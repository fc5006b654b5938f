"""The one interface every region model implements (DESIGN.md, layer 3; issue "one model interface").

A region model splits its work the way segment-anything's predictor does:

1. ``encode_image(image) -> ImageState`` — the region-independent work of one image (SAM's image
   embedding, a frozen encoder's patch grid, DAM's resized full image). It never trains, so a
   predictor or a training task may cache it.
2. ``region_inputs(state, regions, prompts=None) -> batch`` — the model inputs of the N regions of
   that image (`Regions`: masks and / or boxes, captions as targets when present). ``prompts``
   is model-specific: DAM's instruction text per region (prompt augmentation, DAM App. H.2); SCA's
   prompt kind (``"box"``, ``"cpb"``, ``"rpb"``, ``"rpm"``) or explicit `Prompt`s; RAS's referring text. A batch is a dict: per-image tensors (leading axis = images),
   per-region tensors (leading axis B), ``image_index`` ``(B,)`` mapping regions to images, and
   ``targets`` (the captions to learn, or None).
3. ``collate(batches) -> batch`` — batches of several images joined into one (training).
4. ``forward(batch) -> RegionOutput`` with ``.loss`` when the batch has targets, so DDP / FSDP
   wrap the model and the loss goes through the wrapper's ``forward``.
5. ``generate(batch, **kwargs) -> list[str]`` and ``score(batch, texts) -> (B,)`` (mean
   log-probability per token of each text given its region); ``describe`` does both on one
   context.

`regionlib.models.checkpoint.RegionModel` declares 1-4 (abstract methods); `Captioner` implements 3-5
for every model whose regions become an LM context (it declares ``lm_head`` and the abstract
``contexts(batch) -> (embeds (B, L, D), attention mask (B, L))``): DAM, SCA, the pooled captioner.
What only some models do is a `typing.Protocol` the predictor checks with ``isinstance``:
`PromptSegmenter` (SCA: prompts -> masks + captions), `Selector` (RAS: a mask group for a text),
`VideoDescriber` (DAM: a masklet over a clip), `EmbeddingCacheable` (SCA: image states from a feature
cache of its frozen encoder).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..errors import InvalidMaskError, RegionLibError
from ..images import to_rgb_uint8
from ..regions import Regions

if TYPE_CHECKING:
    from ..prompts import Prompt
    from .lm_head import LMHead

__all__ = ["ImageState", "RegionOutput", "Captioner", "PromptSegmenter", "Selector", "VideoDescriber",
           "EmbeddingCacheable", "collate_batches", "check_regions"]


@dataclass
class ImageState:
    """The cached, region-independent encoding of one image.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB (what region inputs crop from).
        tensors: model-specific per-image tensors, each with a leading image axis of 1.
    """

    image: np.ndarray
    tensors: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.image.shape[:2])

    @staticmethod
    def of(image) -> "ImageState":
        return ImageState(to_rgb_uint8(image, "image"))


@dataclass
class RegionOutput:
    """What ``forward`` returns: ``loss`` (scalar, when the batch has targets) and the model's
    intermediate results (``prefix`` ``(B, P, D)`` for prefix models, ``logits``, ``masks``, ``iou``)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    prefix: torch.Tensor | None = None
    low_res_masks: torch.Tensor | None = None
    iou: torch.Tensor | None = None


def check_regions(state: ImageState, regions: Regions, *, need_masks: bool = False) -> None:
    """``regions`` must be non-empty `Regions` of ``state``'s image (with masks if ``need_masks``)."""
    if not isinstance(regions, Regions):
        raise RegionLibError(f"regions must be Regions, got {type(regions).__name__}")
    if len(regions) == 0:
        raise RegionLibError("regions is empty: pass at least one region")
    if tuple(regions.image_size) != tuple(state.size):
        raise InvalidMaskError(f"regions belong to an image of size {tuple(regions.image_size)}, "
                             f"the encoded image is {tuple(state.size)}")
    if need_masks and not regions.has_masks:
        raise RegionLibError("regions need masks for this model (Regions.from_masks, or boxes_to_masks)")


def collate_batches(batches: Sequence[dict]) -> dict:
    """Join region batches of several images: per-image entries (tensors or tuples of tensors, leading
    axis = images) and per-region tensors are concatenated, ``image_index`` renumbered (batch k's
    images follow those of batches < k), targets joined."""
    if not batches:
        raise RegionLibError("batches must be non-empty")
    keys = set(batches[0])
    for i, b in enumerate(batches):
        if set(b) != keys:
            raise RegionLibError(f"batches[{i}] has keys {sorted(b)}, batches[0] has {sorted(keys)}")
    out: dict = {}
    offsets = np.cumsum([0] + [int(b["image_index"].max()) + 1 for b in batches[:-1]])
    for key in keys:
        values = [b[key] for b in batches]
        if key in ("targets", "prompts"):  # per-region lists (or None)
            out[key] = None if any(v is None for v in values) else [t for v in values for t in v]
        elif key == "image_index":
            out[key] = torch.cat([v + int(o) for v, o in zip(values, offsets)])
        elif isinstance(values[0], tuple):
            out[key] = tuple(torch.cat(parts) for parts in zip(*values))
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.cat(values)
        else:
            raise RegionLibError(f"cannot collate batch entry {key!r} of type {type(values[0]).__name__}")
    return out


class Captioner(metaclass=ABCMeta):  # not ABC: its empty __slots__ would change the layout FSDP2's class swap needs
    """`forward` / `generate` / `score` / `describe` for models that turn regions into LM contexts.

    Subclasses provide ``lm_head`` (`LMHead`) and ``contexts(batch) -> (embeds (B, L, D), mask (B, L) or None)``.
    """

    lm_head: LMHead

    @abstractmethod
    def contexts(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The LM context of each region: embeddings ``(B, L, D)`` and an attention mask ``(B, L)`` or None."""

    def collate(self, batches: Sequence[dict]) -> dict:
        return collate_batches(batches)

    def forward(self, batch: dict, *, label_smoothing: float | None = None, reduction: str = "mean") -> RegionOutput:
        """Teacher-forced cross-entropy of ``batch["targets"]`` (+ eos) after each region's context:
        the mean over target tokens, or their sum (``reduction="sum"``: the training loop divides by the
        target tokens of the whole global batch, so ranks and micro-batches weigh every token alike)."""
        targets = batch.get("targets")
        if targets is None:
            raise RegionLibError("batch has no targets: build it from Regions with captions to compute a loss")
        embeds, mask = self.contexts(batch)
        out, labels = self.lm_head.teacher_forced(embeds, mask, targets)
        return RegionOutput(loss=self.lm_head.token_loss(out.logits, labels, label_smoothing, reduction),
                            logits=out.logits)

    def n_targets(self, batch: dict) -> int:
        """The number of target tokens (eos included) the loss of ``batch`` averages over."""
        return sum(len(ids) for ids in self.lm_head.target_ids(batch["targets"]))

    @torch.no_grad()
    def generate(self, batch: dict, **kwargs) -> list[str]:
        """Captions of the B regions (greedy by default; kwargs as `LMHead.generate_ids`)."""
        return self.lm_head.generate(*self.contexts(batch), **kwargs)

    @torch.no_grad()
    def score(self, batch: dict, texts: Sequence[str]) -> torch.Tensor:
        """``(B,)`` mean log-probability per token (eos included) of ``texts[i]`` given region i."""
        embeds, mask = self.contexts(batch)
        return self.lm_head.mean_log_prob(embeds, list(texts), mask)

    @torch.no_grad()
    def describe(self, batch: dict, **kwargs) -> tuple[list[str], torch.Tensor]:
        """`generate` and the `score` of the generated captions, on one context per region."""
        embeds, mask = self.contexts(batch)
        captions = self.lm_head.generate(embeds, mask, **kwargs)
        return captions, self.lm_head.mean_log_prob(embeds, captions, mask)


@runtime_checkable
class PromptSegmenter(Protocol):
    """Segments and captions point / box prompts in one pass (SCA)."""

    def prompt_inputs(self, state: ImageState, prompts: Sequence[Prompt]) -> dict:
        """The model inputs of prompts that share one `Prompt.signature`."""

    def segment_and_caption(self, batch: dict, original_size: tuple[int, int], **kwargs) -> tuple:
        """``(masks (B, H, W) bool, predicted IoU (B,), captions)``."""


@runtime_checkable
class Selector(Protocol):
    """Selects the group of candidate masks a text refers to (RAS)."""

    def select(self, batch: dict, *, threshold: float | None = None) -> list:
        """One `regionlib.models.ras.Selection` per sample of ``batch``."""


@runtime_checkable
class VideoDescriber(Protocol):
    """Describes a region over a clip from per-frame image states and masks (DAM)."""

    @property
    def num_video_frames(self) -> int:
        """Frames a masklet is sampled to."""

    def video_inputs(self, states: Sequence[ImageState], masks: Sequence, prompts=None) -> dict:
        """The inputs of one masklet over its sampled frames."""


@runtime_checkable
class EmbeddingCacheable(Protocol):
    """Image states can be rebuilt from a cache of the frozen image encoder's output (SCA's SAM)."""

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        """``(C, h, w)`` of one image's embedding."""

    def state_from_embedding(self, embedding: torch.Tensor, image_size: tuple[int, int]) -> ImageState:
        """The `ImageState` of an image of ``image_size`` whose embedding is ``embedding`` ``(C, h, w)``."""
