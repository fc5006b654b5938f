"""Per-region training / evaluation examples for the captioners, from images + `Regions`.

DAM: the focal prompt of `regionlib.focal` at the encoder size, with the crop mode the variant
needs (tight crop for ``crop`` and ``full+crop-*``, DAM's focal crop for ``focal`` and
``full+focal-xattn``). SCA: SAM's image embedding (computed once per image; frozen) and the
region's prompt in SAM's input frame — a box, or one pseudo-point (CPB / RPB / RPM, seed 000
Tab. 7).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..focal import focal_prompt
from ..prompts import cpb_points, rpb_points, rpm_points
from ..regions import Regions
from .captioner import CaptionerConfig

__all__ = ["crop_mode_for", "region_examples"]

PROMPT_TYPES = ("box", "cpb", "rpb", "rpm")


def crop_mode_for(variant: str) -> str:
    return "focal_crop" if variant in ("focal", "full+focal-xattn") else "crop"


def region_examples(images: Sequence[np.ndarray], regions: Sequence[Regions], config: CaptionerConfig, *,
                    segmenter=None, prompt_type: str = "box", seed: int = 0, captions: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """One example dict per region (tensors + ``caption`` + ``id``); ``captions`` overrides the regions' own."""
    if prompt_type not in PROMPT_TYPES:
        raise ConfigError(f"prompt_type must be one of {PROMPT_TYPES}, got {prompt_type!r}")
    examples = []
    rng = np.random.default_rng(seed)
    for k, (image, regs) in enumerate(zip(images, regions)):
        caps = list(captions[k]) if captions is not None else (regs.captions or [""] * len(regs))
        ids = regs.ids or [f"{k}_{i}" for i in range(len(regs))]
        if config.kind == "dam":
            fp = focal_prompt(image, regs.masks, mode=crop_mode_for(config.variant), size=(config.image_size, config.image_size))
            for i in range(len(regs)):
                examples.append({"full_image": fp.full_image_tensor[0], "full_mask": fp.full_mask_tensor[i],
                                 "crop_image": fp.image_tensor[i], "crop_mask": fp.mask_tensor[i],
                                 "caption": caps[i], "id": ids[i]})
            continue
        if segmenter is None:
            raise ConfigError("SCA examples need a SamSegmenter (segmenter=...)")
        segmenter.set_image(image)
        emb = segmenter.predictor.get_image_embedding()[0].detach().cpu()
        size = image.shape[:2]
        transform = segmenter.predictor.transform
        if prompt_type == "box":
            prompts = transform.apply_boxes(regs.boxes_xyxy, size)
        else:
            pts = {"cpb": lambda: cpb_points(regs.boxes_xyxy), "rpb": lambda: rpb_points(regs.boxes_xyxy, seed=rng),
                   "rpm": lambda: rpm_points(regs.masks, seed=rng)}[prompt_type]()
            prompts = transform.apply_coords(pts, size)
        for i in range(len(regs)):
            ex = {"image_embedding": emb, "caption": caps[i], "id": ids[i]}
            if prompt_type == "box":
                ex["boxes"] = torch.as_tensor(prompts[i], dtype=torch.float32)
            else:
                ex["points"] = torch.as_tensor(prompts[i][None], dtype=torch.float32)
                ex["point_labels"] = torch.ones(1, dtype=torch.int64)
            examples.append(ex)
    return examples
