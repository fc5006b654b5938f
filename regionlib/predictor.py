"""Stateful region predictor (layer 3): encode an image once, then caption / describe / score /
segment / select many regions in batches. It is the only runner of a model: training-time
validation, the main job, self-labeling, the notebooks and the benchmarks call it.

Like segment-anything's ``SamPredictor``: `RegionPredictor.set_image` runs the model's
``encode_image`` (the region-independent work, `regionlib.models.interface`) once and keeps the
result on the model's device; every later call builds ``region_inputs`` for chunks of regions
against it:

=============  =====================================================  ==================================
model          cached by ``set_image``                                per-region work
=============  =====================================================  ==================================
SCA            SAM's image embedding (the ViT encoder)                prompt encoder, decoder, mixer, LM
pooled         the frozen encoder's patch features                     mask pooling, LM
RAS            every feature encoder's patch features                  mask pooling, LM, selection head
DAM            the resized, normalised full image; ``E_I(I) + P``     mask embedding, both encoder passes,
               runs once per image in each batch                      LM
=============  =====================================================  ==================================

(DAM's global pass embeds each region's mask into the full image, ``E_I(I) + E_M(M)``, so its
encoder blocks run per region.) The predictor never switches on a model's kind: captioning needs
a `Captioner`, segmentation a `PromptSegmenter`, selection a `Selector`, video a `VideoDescriber`
(`regionlib.models.interface`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .errors import ConfigError, InvalidMaskError, InvalidPromptError, RegionLibError
from .models.checkpoint import RegionModel
from .models.interface import Captioner, PromptSegmenter, Selector, VideoDescriber
from .prompts import Prompt, prompt_chunks
from .regions import Regions

__all__ = ["RegionPredictor"]

_MODELS_FOR = {Captioner: "a DAM, SCA or pooled captioner", PromptSegmenter: "an SCA", Selector: "a RAS",
               VideoDescriber: "a DAM"}


class RegionPredictor:
    """Args:
        model: a region model (`regionlib.models`): DAM, SCA, pooled captioner (captioning), RAS (selection).
        batch_size: regions per forward pass.
    """

    def __init__(self, model: RegionModel, *, batch_size: int = 16):
        if not isinstance(model, RegionModel):
            raise ConfigError(f"model must be a regionlib RegionModel, got {type(model).__name__}")
        self.model = model.eval()
        self.batch_size = self._check_batch_size(batch_size)
        self.reset()

    @staticmethod
    def _check_batch_size(batch_size) -> int:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise RegionLibError(f"batch_size must be a positive int, got {batch_size!r}")
        return batch_size

    @property
    def image(self) -> np.ndarray | None:
        return None if self.state is None else self.state.image

    @property
    def image_size(self) -> tuple[int, int] | None:
        return None if self.state is None else self.state.size

    @torch.no_grad()
    def set_image(self, image) -> None:
        """Encode ``image`` (anything `to_rgb_uint8` accepts) once for the calls that follow."""
        self.state = self.model.encode_image(image)

    def reset(self) -> None:
        """Forget the current image / clip and its cached encodings (nothing else: model and settings stay)."""
        self.state = None
        self.frames, self.frame_states = None, {}

    # ---------------------------------------------------------------- video (DAM: a region over a clip)
    def set_video(self, frames: Sequence) -> None:
        """A clip of T frames (a sequence of images or a ``(T, H, W, 3)`` array) for `caption_video` /
        `describe_video`; frames are encoded when a masklet first needs them, once each, and cached."""
        if not isinstance(self.model, VideoDescriber):
            raise ConfigError(f"a {type(self.model).__name__} does not describe video regions; use a DAM")
        if len(frames) == 0:
            raise RegionLibError("frames is empty: pass at least one frame")
        self.reset()
        self.frames = frames

    def _video_batch(self, masklet, prompt: str | None) -> dict:
        """One masklet ``(T, H, W)`` -> the model's video inputs over its sampled frames (`sample_frames`)."""
        from .models.dam import sample_frames

        if self.frames is None:
            raise RegionLibError("call set_video(frames) first")
        masks = np.asarray(masklet)
        if masks.ndim != 3 or len(masks) != len(self.frames):
            raise InvalidMaskError(f"a masklet must be ({len(self.frames)}, H, W): one mask per frame, "
                                   f"got {masks.shape}")
        present = masks.reshape(len(masks), -1).any(1)
        idx = sample_frames(present, self.model.num_video_frames)
        for i in idx:
            if i not in self.frame_states:
                self.frame_states[i] = self.model.encode_image(self.frames[i])
        return self.model.video_inputs([self.frame_states[i] for i in idx], [masks[i] for i in idx], prompts=prompt)

    def _video_batches(self, masklets: Sequence, prompts):
        if prompts is not None and (isinstance(prompts, str) or len(prompts) != len(masklets)):
            raise RegionLibError(f"prompts must be None or one instruction per masklet ({len(masklets)})")
        for k, masklet in enumerate(masklets):
            yield self._video_batch(masklet, None if prompts is None else prompts[k])

    @torch.no_grad()
    def caption_video(self, masklets: Sequence, *, prompts=None, **generate_kwargs) -> list[str]:
        """Captions of N objects over the clip: ``masklets`` ``(N, T, H, W)`` (one mask per frame each,
        empty where the object is absent; the frames where it is present are sampled to the model's
        ``num_video_frames``, as the released DAM video pipeline), ``prompts`` one instruction per masklet
        or None (the model's video prompt)."""
        return [c for b in self._video_batches(masklets, prompts) for c in self.model.generate(b, **generate_kwargs)]

    @torch.no_grad()
    def describe_video(self, masklets: Sequence, *, prompts=None, **generate_kwargs) -> tuple[list[str], np.ndarray]:
        """`caption_video` and each caption's mean log-probability per token (eos included), on one context."""
        captions, logp = [], []
        for batch in self._video_batches(masklets, prompts):
            caps, lp = self.model.describe(batch, **generate_kwargs)
            captions += caps
            logp.append(lp)
        return captions, torch.cat(logp).cpu().numpy()

    def _require(self, capability: type, use: str) -> None:
        if self.state is None:
            raise RegionLibError("call set_image(image) first")
        if not isinstance(self.model, capability):
            raise ConfigError(f"a {type(self.model).__name__} does not {use}: it is not a {capability.__name__}; "
                              f"use {_MODELS_FOR[capability]}")

    def batches(self, regions: Regions, *, prompts=None, batch_size: int | None = None):
        """``region_inputs`` of consecutive chunks of ``regions`` (``prompts``: the model's, e.g. SCA's kind)."""
        if not isinstance(regions, Regions):
            raise RegionLibError(f"regions must be Regions, got {type(regions).__name__}")
        if len(regions) == 0:
            raise RegionLibError("regions is empty: pass at least one region")
        bs = self.batch_size if batch_size is None else self._check_batch_size(batch_size)
        explicit = prompts is not None and not isinstance(prompts, str)
        if explicit and len(prompts) != len(regions):
            raise InvalidPromptError(f"prompts must hold one Prompt per region ({len(regions)}), got {len(prompts)}")
        for start in range(0, len(regions), bs):
            sl = slice(start, min(start + bs, len(regions)))
            kwargs = {} if prompts is None else {"prompts": list(prompts[sl]) if explicit else prompts}
            yield self.model.region_inputs(self.state, regions[sl], **kwargs)

    @torch.no_grad()
    def caption(self, regions: Regions, *, prompts=None, batch_size: int | None = None, **generate_kwargs) -> list[str]:
        """Captions of ``regions`` (`Regions` of the current image).

        ``prompts``: SCA's prompt kind (``"box"`` default, ``"cpb"``, ``"rpb"``, ``"rpm"``) or one `Prompt`
        per region. ``generate_kwargs``: ``max_new_tokens``, ``num_beams``, ``do_sample``, ``temperature``,
        ``top_p``, ``seed``.
        """
        self._require(Captioner, "caption regions")
        return [c for b in self.batches(regions, prompts=prompts, batch_size=batch_size)
                for c in self.model.generate(b, **generate_kwargs)]

    @torch.no_grad()
    def describe(self, regions: Regions, *, prompts=None, batch_size: int | None = None, **generate_kwargs) -> Regions:
        """``regions`` with their captions and confidences: ``captions`` set, ``data["caption_logprob"]``
        the mean log-probability per caption token (eos included) — self-labeling's caption confidence.
        Each chunk's LM context serves both generation and scoring; captions equal `caption`'s."""
        self._require(Captioner, "caption regions")
        captions: list[str] = []
        logp: list[torch.Tensor] = []
        for b in self.batches(regions, prompts=prompts, batch_size=batch_size):
            caps, lp = self.model.describe(b, **generate_kwargs)
            captions += caps
            logp.append(lp)
        return regions.with_fields(captions=captions, data={"caption_logprob": torch.cat(logp).cpu().numpy()})

    @torch.no_grad()
    def score(self, regions: Regions, texts: Sequence[str], *, prompts=None, batch_size: int | None = None) -> np.ndarray:
        """``(N,)`` mean log-probability per token of ``texts[i]`` given region i (seed 001's captioner score)."""
        self._require(Captioner, "caption regions")
        if isinstance(texts, str) or len(texts) != len(regions):
            raise RegionLibError(f"texts must hold one string per region ({len(regions)})")
        out, start = [], 0
        for b in self.batches(regions, prompts=prompts, batch_size=batch_size):
            n = int(b["image_index"].shape[0])
            out.append(self.model.score(b, texts[start: start + n]))
            start += n
        return torch.cat(out).cpu().numpy()

    @torch.no_grad()
    def segment_and_caption(self, prompts: Sequence[Prompt], *, batch_size: int | None = None,
                            **generate_kwargs) -> Regions:
        """SCA: masks and captions for point / box ``prompts`` in one pass -> `Regions`.

        ``scores`` and ``data["predicted_iou"]`` hold SAM's predicted IoU, ``data["prompt_index"]`` the order.
        Prompts of different kinds are batched by kind; results come back in the given order.
        """
        self._require(PromptSegmenter, "segment prompts")
        if isinstance(prompts, Prompt):
            prompts = [prompts]
        if len(prompts) == 0:
            raise InvalidPromptError("prompts is empty: pass at least one Prompt")
        bs = self.batch_size if batch_size is None else self._check_batch_size(batch_size)
        n, size = len(prompts), self.state.size
        masks = torch.zeros((n, *size), dtype=torch.bool)
        ious = torch.zeros(n)
        captions = [""] * n
        for idx in prompt_chunks(prompts, bs):
            batch = self.model.prompt_inputs(self.state, [prompts[i] for i in idx])
            m, iou, caps = self.model.segment_and_caption(batch, size, **generate_kwargs)
            masks[idx], ious[idx] = m.cpu(), iou.cpu()
            for i, c in zip(idx, caps):
                captions[i] = c
        masks_np, ious_np = masks.numpy(), ious.numpy().astype(np.float64)
        empty = ~masks_np.any(axis=(1, 2))
        if empty.any():
            raise InvalidPromptError(f"prompts[{int(np.flatnonzero(empty)[0])}] produced an empty mask")
        return Regions.from_masks(masks_np, captions=captions, scores=ious_np,
                                  data={"predicted_iou": ious_np, "prompt_index": np.arange(n)})

    @torch.no_grad()
    def select(self, prompt_text: str, candidates: Regions, *, references: Regions | None = None,
               threshold: float | None = None) -> Regions:
        """RAS: the group of ``candidates`` matching ``prompt_text`` (possibly empty).

        Returns the selected candidates as `Regions` with ``scores`` = their selection probability
        and ``data["candidate_index"]`` = their indices in ``candidates``.
        """
        self._require(Selector, "select mask groups")
        if not isinstance(candidates, Regions):
            raise RegionLibError(f"candidates must be Regions, got {type(candidates).__name__}")
        batch = self.model.region_inputs(self.state, candidates, prompt_text, references=references)
        sel = self.model.select(batch, threshold=threshold)[0]
        keep = np.zeros(len(candidates), dtype=bool)
        keep[sel.indices] = True
        return candidates[keep].with_fields(scores=sel.scores[keep], data={"candidate_index": sel.indices})
