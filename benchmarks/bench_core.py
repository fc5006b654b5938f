"""Benchmarks of the primitives (issue 1/6), measured side by side in one run.

* Mask pooling (`bench_pooling`): `mask_pool` on a dividing and a non-dividing grid, numpy and
  tensor masks, vs the bare contraction of pre-resized masks (goal <= 1.2x) and vs users' batched
  ``adaptive_avg_pool2d`` + ``einsum``.
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


def bench_pooling() -> list[dict]:
    """`mask_pool` vs the limit (a bare contraction of masks resized beforehand) and vs the batched code
    users write (``adaptive_avg_pool2d`` + ``einsum``), on a dividing grid (256 masks of 256 x 256 ->
    64 x 64) and a non-dividing one (256 masks of 1024 x 1024 -> 27 x 27), numpy and tensor masks."""
    import torch.nn.functional as F

    from regionlib.masks import resize_masks
    from regionlib.pooling import mask_pool

    rng = np.random.default_rng(0)
    rows = []
    for side, grid in ((256, 64), (1024, 27)):
        feats = torch.randn(256, grid, grid)
        masks = np.zeros((256, side, side), dtype=bool)  # blobs, as masks are: one box each
        for i, (x, y) in enumerate(rng.integers(0, side * 3 // 4, (256, 2))):
            masks[i, y: y + side // 4, x: x + side // 4] = True
        tmasks = torch.from_numpy(masks)
        weights = resize_masks(masks, (grid, grid))

        def bare():  # the limit: weights already at the grid, one contraction
            torch.einsum("nhw,chw->nc", weights, feats) / weights.flatten(1).sum(1, keepdim=True)

        def users():
            w = F.adaptive_avg_pool2d(tmasks.float()[:, None], (grid, grid))[:, 0]
            torch.einsum("nhw,chw->nc", w, feats) / w.flatten(1).sum(1, keepdim=True)

        t_np = best_of(lambda: mask_pool(feats, masks))
        t_t = best_of(lambda: mask_pool(feats, tmasks))
        t_bare, t_users = best_of(bare), best_of(users)
        label = f"mask pooling, 256 masks {side}x{side} on 256x{grid}x{grid}"
        rows += [{"what": f"{label} (numpy masks)", "baseline": "bare einsum of pre-resized masks",
                  "batched_s": t_np, "baseline_s": t_bare, "ratio": t_np / t_bare, "goal": "<= 1.2x of the bare einsum"},
                 {"what": f"{label} (tensor masks)", "baseline": "bare einsum of pre-resized masks",
                  "batched_s": t_t, "baseline_s": t_bare, "ratio": t_t / t_bare, "goal": "<= 1.2x of the bare einsum"},
                 {"what": f"{label} (numpy masks)", "baseline": "adaptive_avg_pool2d + einsum (users' batched code)",
                  "batched_s": t_np, "baseline_s": t_users, "ratio": t_users / t_np}]
    return rows


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
    results = [*bench_pooling(), *bench_sam(args.sam_preset)]
    for r in results:
        print(f"{r['what']}: {r['ratio']:.1f}x  (batched {r['batched_s'] * 1e3:.1f} ms vs {r['baseline']} {r['baseline_s'] * 1e3:.1f} ms)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
