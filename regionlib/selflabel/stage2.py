"""DLC-SDP stage 2 (seed 003 §4, App. H.1; REFERENCE §2): proposals, masks and class-conditioned captions.

Per unlabeled image:

1. category proposals — boxes from an open-vocabulary detector (OWLv2 through transformers'
   ``Owlv2ForObjectDetection`` + ``Owlv2Processor``, `OwlV2Detector`) for a list of class names,
   or given boxes (COCO annotations; crowd annotations are never objects, `non_crowd`);
2. SAM masks for the boxes (box prompts, `segment_boxes`; SAM's predicted IoU kept);
3. the stage-1 captioner, *given the class name*, describes each region (`describe_given_class`);
4. filters on the detector's confidence, SAM's predicted IoU and the image-text similarity of the
   region crop and the caption (`regionlib.selflabel.filters`), then at most two regions per image
   of different classes (`select_per_image`).

``describe_given_class`` — how the class name reaches the captioner
--------------------------------------------------------------------
A model whose ``region_inputs`` accepts one text prompt per region (it says so with a true
``accepts_text_prompts`` attribute) gets ``class_prompt(name)`` as that prompt: the class is in
its LM context and it generates the description from there. No regionlib model does today (DAM's
prompt is its fixed LM template; SCA's ``prompts`` are prompt kinds), and the predictor has no
forced-prefix decoding, so for those the class name conditions the captioner through the
*caption*: the captioner proposes ``candidates`` descriptions of the region (greedy + samples),
each is scored by the captioner as the class-prefixed text ``"{class}, {description}"`` (its mean
log-probability per token given the region, `RegionPredictor.score`), the best-scoring
description is kept with the prefix stripped (the student learns to describe *without* the
keyword, as in stage 1), and that class-conditioned score is its ``logprob`` confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import CheckpointError, ConfigError, RegionLibError

__all__ = ["OwlV2Detector", "non_crowd", "crowd_masks", "drop_inside_crowd", "nms", "segment_boxes",
           "class_prompt", "class_prefixed", "describe_given_class"]


def non_crowd(regions):
    """``regions`` without COCO crowd annotations (``data["iscrowd"] == 1``): a crowd region is never an object."""
    if regions is None or "iscrowd" not in regions.data or len(regions) == 0:
        return regions
    return regions[np.asarray(regions.data["iscrowd"]) == 0]


def crowd_masks(regions) -> np.ndarray | None:
    """``(C, H, W)`` masks of the crowd annotations of ``regions`` (None when there are none)."""
    if regions is None or "iscrowd" not in regions.data or len(regions) == 0:
        return None
    crowd = np.asarray(regions.data["iscrowd"]) == 1
    if not crowd.any() or not regions.has_masks:
        return None
    return regions[crowd].masks


def drop_inside_crowd(masks: np.ndarray, crowd: np.ndarray | None, *, max_fraction: float = 0.5) -> np.ndarray:
    """Keep-mask over ``masks`` ``(N, H, W)``: False where more than ``max_fraction`` of a mask lies inside
    the crowd regions (COCO's convention: a detection on a crowd is not an instance)."""
    keep = np.ones(len(masks), dtype=bool)
    if crowd is None or len(masks) == 0:
        return keep
    union = crowd.any(axis=0)
    area = masks.reshape(len(masks), -1).sum(1)
    inside = (masks & union[None]).reshape(len(masks), -1).sum(1)
    return inside <= max_fraction * np.maximum(area, 1)


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, labels: Sequence, iou: float, *,
        limit: int | None = None) -> np.ndarray:
    """Indices kept by class-wise greedy non-maximum suppression (best score first, ties by index),
    at most ``limit`` of them."""
    from ..boxes import box_iou

    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    kept: list[int] = []
    for i in order:
        if limit is not None and len(kept) >= limit:
            break
        same = [k for k in kept if labels[k] == labels[i]]
        if same and box_iou(boxes_xyxy[i:i + 1], boxes_xyxy[same]).max() > iou:
            continue
        kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


class OwlV2Detector:
    """Open-vocabulary boxes from a transformers OWLv2 checkpoint directory (``config.json``,
    weights, ``preprocessor_config.json`` / ``processor_config.json`` and the CLIP tokenizer).

    Args:
        path: the checkpoint directory (``Owlv2ForObjectDetection.save_pretrained`` +
            ``Owlv2Processor.save_pretrained``), e.g. a local copy of google/owlv2-base-patch16-ensemble.
        threshold: minimum class score (sigmoid of OWLv2's class logit) of a box; 0 keeps every box
            (the stage-2 filter ``--min-detector`` drops low scores afterwards, and counts them).
        nms_iou: class-wise NMS IoU (OWLv2 predicts one box per patch, so near-duplicates abound).
        max_detections: best-scoring boxes kept per image.
        min_box: boxes narrower or lower than this many pixels (after clipping) are dropped.
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", threshold: float = 0.0, nms_iou: float = 0.5,
                 max_detections: int = 16, min_box: float = 4.0):
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        path = Path(path)
        if not (path / "config.json").exists():
            raise CheckpointError(f"--detector {path}: not an OWLv2 checkpoint directory (no config.json)")
        try:
            self.model = Owlv2ForObjectDetection.from_pretrained(str(path)).to(device).eval()
            self.processor = Owlv2Processor.from_pretrained(str(path))
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"--detector {path}: cannot load Owlv2ForObjectDetection + Owlv2Processor ({exc})") from exc
        self.device, self.threshold, self.nms_iou = device, float(threshold), float(nms_iou)
        self.max_detections, self.min_box = int(max_detections), float(min_box)
        self.max_text = int(self.model.config.text_config.max_position_embeddings)

    def __call__(self, image, classes: Sequence[str]):
        """Boxes of ``classes`` in ``image`` -> `Regions` (boxes only) with ``labels`` = class names,
        ``scores`` = ``data["detector_score"]`` = the class score."""
        import torch

        from ..boxes import clip_boxes
        from ..images import to_rgb_uint8
        from ..regions import Regions

        if isinstance(classes, str) or not classes:
            raise ConfigError("classes must be a non-empty list of class names")
        rgb = to_rgb_uint8(image, "image")
        h, w = rgb.shape[:2]
        inputs = self.processor(text=[list(classes)], images=rgb, return_tensors="pt", padding="max_length",
                                truncation=True, max_length=self.max_text)
        with torch.no_grad():
            out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        side = max(h, w)  # OWLv2 pads the image to a square (bottom / right): boxes are relative to it
        res = self.processor.post_process_grounded_object_detection(out, threshold=self.threshold,
                                                                    target_sizes=[(side, side)])[0]
        boxes = clip_boxes(res["boxes"].float().cpu().numpy(), (h, w))
        scores = res["scores"].float().cpu().numpy().astype(np.float64)
        labels = [classes[int(k)] for k in res["labels"].cpu().numpy()]
        ok = ((boxes[:, 2] - boxes[:, 0]) >= self.min_box) & ((boxes[:, 3] - boxes[:, 1]) >= self.min_box)
        ok &= np.isfinite(scores)
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(-scores[idx], kind="stable")[: 20 * self.max_detections]]  # bounds the NMS loop
        boxes, scores, labels = boxes[idx], scores[idx], [labels[i] for i in idx]
        keep = nms(boxes, scores, labels, self.nms_iou, limit=self.max_detections) if len(idx) else idx
        return Regions.from_boxes(boxes[keep].reshape(-1, 4), image_size=(h, w), labels=[labels[i] for i in keep],
                                  scores=scores[keep], data={"detector_score": scores[keep]})


def segment_boxes(segmenter, image, regions):
    """SAM masks for the boxes of ``regions`` (one box prompt each, SAM's single-mask output).

    Returns the regions (boxes at least 1 px wide and high) that got a non-empty mask, with masks,
    ``data["predicted_iou"]`` (also ``scores`` when the input had none) and the input's labels / ids /
    data (e.g. ``detector_score``).
    """
    from ..prompts import Prompt
    from ..regions import Regions

    b = regions.boxes_xyxy
    regions = regions[((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)]  # a degenerate box prompts nothing
    if len(regions) == 0:
        return regions
    segmenter.set_image(image)
    pred = segmenter.predict([Prompt.from_box(b) for b in regions.boxes_xyxy], multimask_output=False)
    masks, iou = pred.masks[:, 0], pred.iou_predictions[:, 0].astype(np.float64)
    ok = masks.reshape(len(masks), -1).any(1)
    src = regions[ok]
    if len(src) == 0:
        return src
    data = {**src.data, "predicted_iou": iou[ok], "prompt_box_xyxy": src.boxes_xyxy}
    return Regions.from_masks(masks[ok], image_size=regions.image_size, labels=src.labels, ids=src.ids,
                              scores=src.scores if src.scores is not None else iou[ok], data=data)


def class_prompt(class_name: str) -> str:
    """The per-region text prompt of a model that takes one (``accepts_text_prompts``)."""
    return f"Describe the {class_name} in the masked region in detail."


def class_prefixed(class_name: str, caption: str) -> str:
    """The class-prefixed caption the captioner scores when it cannot take a text prompt."""
    return f"{class_name}, {caption}"


def describe_given_class(predictor, regions, class_names: Sequence[str], *, candidates: int = 4,
                         max_new_tokens: int = 40, temperature: float = 1.0, seed: int = 0):
    """Descriptions of ``regions`` by the captioner given each region's class name (module docstring).

    Returns ``(captions, logprob (N,), how)``: ``how`` is ``"prompt"`` (the class in the model's
    context) or ``"prefix"`` (candidates re-ranked by the class-prefixed score); ``logprob`` is the
    class-conditioned mean log-probability per token.
    """
    if len(class_names) != len(regions):
        raise RegionLibError(f"class_names must hold one name per region ({len(regions)}), got {len(class_names)}")
    if not isinstance(candidates, int) or candidates < 1:
        raise RegionLibError(f"candidates must be a positive int, got {candidates!r}")
    if getattr(predictor.model, "accepts_text_prompts", False):
        d = predictor.describe(regions, prompts=[class_prompt(c) for c in class_names], max_new_tokens=max_new_tokens)
        return list(d.captions), np.asarray(d.data["caption_logprob"], dtype=np.float64), "prompt"
    pools = [list(predictor.caption(regions, max_new_tokens=max_new_tokens))]
    for j in range(1, candidates):
        pools.append(list(predictor.caption(regions, max_new_tokens=max_new_tokens, do_sample=True,
                                            temperature=temperature, seed=seed + j)))
    n = len(regions)
    scores = np.full((candidates, n), -np.inf)
    for j, pool in enumerate(pools):
        ok = [i for i in range(n) if pool[i].strip()]
        if ok:
            scores[j, ok] = predictor.score(regions[np.asarray(ok, dtype=np.int64)],
                                            [class_prefixed(class_names[i], pool[i]) for i in ok])
    best = scores.argmax(0)
    captions = [pools[best[i]][i] for i in range(n)]
    return captions, scores[best, np.arange(n)], "prefix"
