"""Stateful region predictor (layer 3): encode an image once, then caption / segment / select many regions.

Like segment-anything's ``SamPredictor``: `RegionPredictor.set_image` runs and caches the
expensive, region-independent part of the model, and every later call works on batches of
regions against that cache:

=============  =====================================================  ==================================
model          cached by ``set_image``                                per-region work
=============  =====================================================  ==================================
SCA            SAM's image embedding (the ViT encoder)                prompt encoder, decoder, mixer, LM
pooled         the frozen encoder's patch features                     mask pooling, LM
RAS            every feature encoder's patch features                  mask pooling, LM, selection head
DAM            nothing (see below)                                     focal prompt, both encoder passes, LM
=============  =====================================================  ==================================

(DAM's global pass embeds each region's mask into the full image, ``E_I(I) + E_M(M)``, so no
encoder work is shared between regions; its predictor batches regions only.) Cached and uncached (`DAM.caption`, `SCA.caption_regions`,
`PooledCaptioner.caption`) calls give identical captions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .errors import ConfigError, InvalidMaskError, InvalidPromptError, RegionLibError
from .images import to_rgb_uint8
from .masks import as_mask_batch, boxes_to_masks
from .models.checkpoint import RegionModel
from .prompts import Prompt
from .regions import Regions

__all__ = ["RegionPredictor"]


class RegionPredictor:
    """Args:
        model: a `DAM`, `SCA`, `PooledCaptioner` (captioning) or `RAS` (selection).
        batch_size: regions per forward pass.
    """

    def __init__(self, model: RegionModel, *, batch_size: int = 16):
        if not isinstance(model, RegionModel):
            raise ConfigError(f"model must be a regionlib RegionModel, got {type(model).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise RegionLibError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model = model.eval()
        self.batch_size = batch_size
        self.image: np.ndarray | None = None
        self._cache = None

    @property
    def image_size(self) -> tuple[int, int] | None:
        return None if self.image is None else self.image.shape[:2]

    @torch.no_grad()
    def set_image(self, image) -> None:
        """Encode ``image`` (anything `to_rgb_uint8` accepts) once for the calls that follow."""
        rgb = to_rgb_uint8(image, "image")
        kind = self.model.kind
        if kind == "dam":
            cache = None
        elif kind == "sca":
            cache = self.model.embed_image(rgb)[0]
        else:
            cache = self.model.image_features(rgb)
        self.image, self._cache = rgb, cache

    def reset(self) -> None:
        """Forget the current image and its cached encoding (nothing else: model and settings stay)."""
        self.image, self._cache = None, None

    def _require_image(self) -> None:
        if self.image is None:
            raise RegionLibError("call set_image(image) first")

    def _masks(self, regions, name: str = "regions") -> np.ndarray:
        """``Regions`` (masks, or boxes as box masks) or an ``(N, H, W)`` array -> validated masks."""
        if isinstance(regions, Regions):
            if len(regions) == 0:
                raise RegionLibError(f"{name} is empty: pass at least one region")
            if tuple(regions.image_size) != self.image_size:
                raise InvalidMaskError(f"{name} belong to an image of size {regions.image_size}, "
                                       f"the current image is {self.image_size}")
            if regions.has_masks:
                return regions.masks
            return boxes_to_masks(regions.boxes_xyxy, self.image_size)
        masks = as_mask_batch(regions, name, image_size=self.image_size)
        if len(masks) == 0:
            raise RegionLibError(f"{name} is empty: pass at least one mask")
        return masks

    def _chunks(self, n: int, batch_size: int | None):
        bs = self.batch_size if batch_size is None else batch_size
        if not isinstance(bs, int) or bs < 1:
            raise RegionLibError(f"batch_size must be a positive int, got {bs!r}")
        return [slice(i, min(i + bs, n)) for i in range(0, n, bs)]

    def _region_batches(self, regions, batch_size: int | None):
        """Model inputs for chunks of ``regions`` of the current image (SCA: their box prompts)."""
        kind, model = self.model.kind, self.model
        if kind == "ras":
            raise ConfigError("a RAS model selects regions; use select(), not caption()")
        if kind == "sca":
            if isinstance(regions, Regions):
                if len(regions) == 0:
                    raise RegionLibError("regions is empty: pass at least one region")
                boxes = regions.boxes_xyxy
            else:
                from .masks import masks_to_boxes

                boxes = masks_to_boxes(self._masks(regions))
            prompts = [Prompt(box_xyxy=b) for b in boxes]
            for sl in self._chunks(len(prompts), batch_size):
                yield model.prepare(self.image, prompts[sl], image_embedding=self._cache)
            return
        masks = self._masks(regions)
        for sl in self._chunks(len(masks), batch_size):
            if kind == "dam":
                yield model.prepare(self.image, masks[sl])
            else:
                yield model.prepare(self.image, masks[sl], features=self._cache)

    @torch.no_grad()
    def caption(self, regions, *, batch_size: int | None = None, **generate_kwargs) -> list[str]:
        """Captions of ``regions`` (`Regions` or ``(N, H, W)`` masks) of the current image.

        ``generate_kwargs``: ``max_new_tokens``, ``num_beams``, ``do_sample``, ``temperature``, ``top_p``, ``seed``.
        SCA captions each region from its box prompt.
        """
        self._require_image()
        return [c for batch in self._region_batches(regions, batch_size)
                for c in self.model.generate(batch, **generate_kwargs)]

    @torch.no_grad()
    def describe(self, regions: Regions, *, batch_size: int | None = None, **generate_kwargs) -> Regions:
        """``regions`` with their captions and confidences: ``captions`` set, ``data["caption_logprob"]``
        the mean log-probability per caption token (eos included) — self-labeling's caption confidence.

        Each chunk's LM context is built once and serves both generation and the teacher-forced pass
        that scores the generated caption (greedy, beam or sampled alike); captions equal `caption`'s.
        """
        self._require_image()
        if not isinstance(regions, Regions):
            raise RegionLibError(f"regions must be Regions, got {type(regions).__name__}")
        model, head = self.model, self.model.lm_head
        captions: list[str] = []
        logp: list[float] = []
        for batch in self._region_batches(regions, batch_size):
            # DAM / SCA: a visual prefix in the LM's template; the pooled captioner builds whole contexts
            contexts = head.contexts(model.prefix(batch)) if hasattr(model, "prefix") else model.region_contexts(batch)
            caps = [head.decode(ids) for ids in head.generate_ids(contexts, **generate_kwargs)]
            captions += caps
            logp += head.mean_log_prob_contexts(contexts, caps).tolist()
        return regions.with_fields(captions=captions, data={"caption_logprob": np.asarray(logp)})

    @torch.no_grad()
    def segment_and_caption(self, prompts: Sequence[Prompt], *, batch_size: int | None = None,
                            **generate_kwargs) -> Regions:
        """SCA: masks and captions for point / box ``prompts`` in one pass -> `Regions`.

        ``scores`` and ``data["predicted_iou"]`` hold SAM's predicted IoU, ``data["prompt_index"]`` the order.
        """
        self._require_image()
        if self.model.kind != "sca":
            raise ConfigError(f"segment_and_caption needs an SCA model, got a {self.model.kind!r} model")
        if isinstance(prompts, Prompt):
            prompts = [prompts]
        if len(prompts) == 0:
            raise InvalidPromptError("prompts is empty: pass at least one Prompt")
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(prompts):
            if not isinstance(p, Prompt):
                raise InvalidPromptError(f"prompts[{i}] must be a Prompt, got {type(p).__name__}")
            groups.setdefault(p.signature, []).append(i)
        n = len(prompts)
        masks = np.zeros((n, *self.image_size), dtype=bool)
        ious = np.zeros(n)
        captions = [""] * n
        for members in groups.values():
            for sl in self._chunks(len(members), batch_size):
                idx = members[sl]
                batch = self.model.prepare(self.image, [prompts[i] for i in idx], image_embedding=self._cache)
                m, iou, caps = self.model.segment_and_caption(batch, self.image_size, **generate_kwargs)
                masks[idx], ious[idx] = m, iou
                for i, c in zip(idx, caps):
                    captions[i] = c
        empty = ~masks.any(axis=(1, 2))
        if empty.any():
            raise InvalidPromptError(f"prompts[{int(np.flatnonzero(empty)[0])}] produced an empty mask")
        return Regions.from_masks(masks, captions=captions, scores=ious,
                                  data={"predicted_iou": ious, "prompt_index": np.arange(n)})

    @torch.no_grad()
    def select(self, prompt_text: str, candidates: Regions, *, references=None, threshold: float | None = None) -> Regions:
        """RAS: the group of ``candidates`` matching ``prompt_text`` (possibly empty).

        Returns the selected candidates as `Regions` with ``scores`` = their selection probability
        and ``data["candidate_index"]`` = their indices in ``candidates``.
        """
        self._require_image()
        if self.model.kind != "ras":
            raise ConfigError(f"select needs a RAS model, got a {self.model.kind!r} model")
        if not isinstance(candidates, Regions):
            raise RegionLibError(f"candidates must be Regions, got {type(candidates).__name__}")
        masks = self._masks(candidates, "candidates")
        refs = None if references is None else self._masks(references, "references")
        sample = self.model.prepare(self.image, prompt_text, masks, references=refs, features=self._cache)
        sel = self.model.select([sample], threshold=threshold)[0]
        keep = np.zeros(len(candidates), dtype=bool)
        keep[sel.indices] = True
        return candidates[keep].with_fields(scores=sel.scores[keep], data={"candidate_index": sel.indices})
