"""Benchmarks of the primitives (issue 1/6), measured side by side in one run.

* Mask pooling: 256 masks (256x256) on a 256x64x64 feature map — one batched contraction
  vs. a per-mask loop (goal >= 20x).
* SAM: 64 box prompts in one batched call vs. 64 single `SamPredictor.predict` calls on one
  cached image embedding.

Prints the ratios and writes them to ``--out`` (JSON) when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402


def bench_pooling() -> dict:
    import torch.nn.functional as F

    from regionlib.pooling import mask_pool

    rng = np.random.default_rng(0)
    feats = torch.randn(256, 64, 64)
    masks = rng.random((256, 256, 256)) < 0.2

    def loop():  # the usual research-code loop: resize each mask, weighted mean
        for m in masks:
            w = F.adaptive_avg_pool2d(torch.from_numpy(m).float()[None, None], (64, 64))[0, 0]
            (feats * w).sum((1, 2)) / w.sum()

    batched = best_of(lambda: mask_pool(feats, masks))
    looped = best_of(loop)
    return {"what": "mask pooling, 256 masks on 256x64x64", "baseline": "per-mask loop",
            "batched_s": batched, "baseline_s": looped, "ratio": looped / batched}


def bench_sam(preset: str) -> dict:
    from skimage import data

    from regionlib.prompts import Prompt
    from regionlib.sam import SamSegmenter, build_sam

    seg = SamSegmenter(build_sam(preset))
    seg.set_image(data.astronaut())
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 400, (64, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 100, (64, 2))], axis=1)
    prompts = [Prompt.from_box(b) for b in boxes]

    def single():
        for b in boxes:
            seg.predictor.predict(box=b, multimask_output=True)

    one_call = best_of(lambda: seg.predict(prompts, batch_size=64), repeats=2)
    chunked = best_of(lambda: seg.predict(prompts), repeats=2)
    looped = best_of(single, repeats=2)
    return [
        {"what": f"SAM ({preset}) 64 box prompts in one predict_torch call", "baseline": "64 single predict() calls",
         "batched_s": one_call, "baseline_s": looped, "ratio": looped / one_call},
        {"what": f"SAM ({preset}) 64 box prompts, default chunks of 8", "baseline": "64 single predict() calls",
         "batched_s": chunked, "baseline_s": looped, "ratio": looped / chunked},
    ]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-preset", default="vit_b", help="SAM architecture (random init); 'tiny' for a quick run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    results = [bench_pooling(), *bench_sam(args.sam_preset)]
    for r in results:
        print(f"{r['what']}: {r['ratio']:.1f}x  (batched {r['batched_s'] * 1e3:.1f} ms vs {r['baseline']} {r['baseline_s'] * 1e3:.1f} ms)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
