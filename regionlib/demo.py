"""Small end-to-end run of the primitives: photograph -> SAM masks -> focal crops -> mask tokens.

``python -m regionlib.demo --out DIR`` loads scikit-image's bundled astronaut photograph,
turns one box and one click into masks with SAM (the random-init ``tiny`` preset by default,
or a real checkpoint via ``--sam-preset vit_h --sam-checkpoint sam_vit_h.pth``), computes
DAM focal crops and mask tokens pooled from SAM's image embedding, and saves ``demo.png``
and ``demo.json`` (shapes, crop boxes, predicted IoUs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run(out_dir: Path, *, sam_preset: str = "tiny", sam_checkpoint: str | None = None, size: int = 256) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    from skimage import data

    from .focal import focal_prompt
    from .overlays import draw_boxes, draw_masks, draw_points, side_by_side
    from .pooling import mask_pool
    from .prompts import Prompt
    from .sam import SamSegmenter, build_sam

    image = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC))
    box = np.array([0.35, 0.05, 0.72, 0.45]) * size  # the astronaut's head
    click = np.array([[0.18 * size, 0.8 * size]])  # the flag / suit sleeve
    segmenter = SamSegmenter(build_sam(sam_preset, checkpoint=sam_checkpoint))
    segmenter.set_image(image)
    regions = segmenter.segment([Prompt.from_box(box), Prompt.from_points(click)])
    focal = focal_prompt(image, regions.masks, size=(96, 96))
    embedding = segmenter.predictor.get_image_embedding()[0]  # (C, g, g)
    pooled = mask_pool(embedding, regions.masks)

    out_dir.mkdir(parents=True, exist_ok=True)
    overlay = draw_points(draw_boxes(draw_masks(image, regions.masks), box[None]), click)
    crops = [draw_masks(c, m[None], colors=[[255, 80, 0]]) for c, m in zip(focal.crops, focal.crop_masks)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.2, 1]})
    axes[0].imshow(overlay)
    axes[0].set_title("box + click -> SAM masks")
    axes[1].imshow(side_by_side(crops, height=160))
    axes[1].set_title("focal crops (alpha = 3, min 48 px)")
    axes[2].imshow(pooled.tokens.detach().numpy(), aspect="auto", cmap="coolwarm")
    axes[2].set_title(f"pooled mask tokens {tuple(pooled.tokens.shape)}")
    axes[2].set_yticks([0, 1], ["box", "click"])
    for ax in axes[:2]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_dir / "demo.png", dpi=110)
    plt.close(fig)
    summary = {
        "sam_preset": sam_preset,
        "image_size": list(image.shape[:2]),
        "predicted_iou": regions.data["predicted_iou"].round(4).tolist(),
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
