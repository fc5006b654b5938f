"""Small end-to-end run of the primitives: image -> SAM masks -> focal crops -> captions, mask tokens.

``python -m regionlib.demo --out DIR`` draws a RegionWorld test image, turns one box and one click
(on two of its objects) into masks with SAM — the shipped pretrained tiny SAM by default
(`regionlib.models.bases`), or a real checkpoint via ``--sam-preset vit_h --sam-checkpoint
sam_vit_h.pth`` —, computes DAM focal crops, captions each mask from its focal crop with the
shipped VL base (``tiny-dam-focal-crop`` from ``base="regionworld"``: with the mask embedding at
zero it is the base captioner reading the crop), pools mask tokens from SAM's image embedding,
and saves ``demo.png`` and ``demo.json`` (IoU against the ground truth, predicted IoUs, captions,
shapes, crop boxes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run(out_dir: Path, *, sam_preset: str = "tiny", sam_checkpoint: str | None = None, seed: int = 3) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data.regionworld import generate_sample
    from .focal import focal_prompt
    from .masks import interior_points
    from .models import create_model
    from .models.bases import load_base_sam
    from .overlays import draw_boxes, draw_masks, draw_points, side_by_side
    from .pooling import mask_pool
    from .predictor import RegionPredictor
    from .prompts import Prompt
    from .sam import SamSegmenter, build_sam

    sample = generate_sample((seed, 2, 0), split="test")  # a RegionWorld test image (256 px)
    image, truth = sample.image, sample.regions
    order = np.argsort(-truth.masks.sum((1, 2)))[:2]  # the two largest objects: one boxed, one clicked
    box = truth.boxes_xyxy[order[0]].astype(np.float64)
    click = interior_points(truth.masks[order[1]][None])[:1].astype(np.float64)
    sam = (load_base_sam("regionworld") if sam_checkpoint is None and sam_preset == "tiny"
           else build_sam(sam_preset, checkpoint=sam_checkpoint))
    segmenter = SamSegmenter(sam)
    segmenter.set_image(image)
    regions = segmenter.segment([Prompt.from_box(box), Prompt.from_points(click)])
    gt = truth.masks[order]
    iou = ((regions.masks & gt).sum((1, 2)) / np.maximum((regions.masks | gt).sum((1, 2)), 1)).round(4).tolist()
    captioner = RegionPredictor(create_model("tiny-dam-focal-crop", base="regionworld"))
    captioner.set_image(image)
    captions = captioner.caption(regions, max_new_tokens=16)
    focal = focal_prompt(image, regions.masks, size=(96, 96))
    embedding = segmenter.predictor.get_image_embedding()[0]  # (C, g, g)
    pooled = mask_pool(embedding, regions.masks)

    out_dir.mkdir(parents=True, exist_ok=True)
    overlay = draw_points(draw_boxes(draw_masks(image, regions.masks), box[None]), click)
    crops = [draw_masks(c, m[None], colors=[[255, 80, 0]]) for c, m in zip(focal.crops, focal.crop_masks)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.2, 1]})
    axes[0].imshow(overlay)
    axes[0].set_title("box + click -> SAM masks")
    axes[0].set_xlabel("\n".join(f"{k}: {c} (IoU {v:.2f})" for k, c, v in zip(("box", "click"), captions, iou)))
    axes[1].imshow(side_by_side(crops, height=160))
    axes[1].set_title("focal crops (alpha = 3, min 48 px)")
    axes[2].imshow(pooled.tokens.detach().numpy(), aspect="auto", cmap="coolwarm")
    axes[2].set_title(f"pooled mask tokens {tuple(pooled.tokens.shape)}")
    axes[2].set_yticks([0, 1], ["box", "click"])
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out_dir / "demo.png", dpi=110)
    plt.close(fig)
    summary = {
        "sam": "regionworld base" if sam_checkpoint is None and sam_preset == "tiny" else sam_preset,
        "image_id": sample.image_id,
        "image_size": list(image.shape[:2]),
        "iou_vs_ground_truth": iou,
        "predicted_iou": regions.data["predicted_iou"].round(4).tolist(),
        "captions": captions,
        "true_captions": [truth.captions[i] for i in order],
        "mask_boxes_xyxy": regions.boxes_xyxy.tolist(),
        "focal_crop_boxes_xyxy": focal.crop_boxes.tolist(),
        "encoder_tensor_shape": list(focal.image_tensor.shape),
        "pooled_tokens_shape": list(pooled.tokens.shape),
    }
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--sam-preset", default="tiny")
    parser.add_argument("--sam-checkpoint", default=None)
    args = parser.parse_args(argv)
    summary = run(args.out, sam_preset=args.sam_preset, sam_checkpoint=args.sam_checkpoint)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out / 'demo.png'} and {args.out / 'demo.json'}")


if __name__ == "__main__":
    main()
