"""Benchmarks of the primitives (issue 1/6), measured side by side in one run.

* Mask pooling (`bench_pooling`): `mask_pool` on a dividing and a non-dividing grid, numpy and
  tensor masks, vs the bare contraction of pre-resized masks (goal <= 1.2x) and vs users' batched
  ``adaptive_avg_pool2d`` + ``einsum``.
* Mask pooling near its limit (`bench_pooling_limit`): `mask_pool` of 256 masks of 1024 x 1024 on dividing
  (32 x 32, 64 x 64) and non-dividing (27 x 27) grids, numpy and tensor masks, vs reading the masks once
  (``np.count_nonzero``; goal <= 3x).
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
from timing import best_of, best_of_each, machine  # noqa: E402


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


def bench_pooling_limit(repeats: int = 5) -> list[dict]:
    """`mask_pool` vs the least any pooling of these masks must do, reading them once (``np.count_nonzero``
    of the same bool array): 256 masks of 1024 x 1024 (256 MiB) on a 256-channel feature map of 32 x 32,
    64 x 64 (grids that divide 1024) and 27 x 27 (one that does not), numpy and CPU tensor masks. The
    functions take turns (`best_of_each`), so load on a shared machine hits the two sides of a ratio alike."""
    from regionlib.pooling import mask_pool

    rng = np.random.default_rng(0)
    side = 1024
    masks = np.zeros((256, side, side), dtype=bool)  # blobs, as masks are: one box each
    for i, (x, y) in enumerate(rng.integers(0, side * 3 // 4, (256, 2))):
        masks[i, y: y + side // 4, x: x + side // 4] = True
    tmasks = torch.from_numpy(masks)
    rows = []
    for grid in (32, 64, 27):
        feats = torch.randn(256, grid, grid)
        t = best_of_each({"read": lambda: np.count_nonzero(masks), "numpy": lambda f=feats: mask_pool(f, masks),
                          "tensor": lambda f=feats: mask_pool(f, tmasks)}, repeats)
        kind = "dividing" if side % grid == 0 else "non-dividing"
        for name in ("numpy", "tensor"):
            rows.append({"what": f"mask_pool, 256 masks {side}x{side} ({name}) on 256x{grid}x{grid} ({kind} grid)",
                         "baseline": "np.count_nonzero of the masks (one read)", "pool_s": t[name],
                         "baseline_s": t["read"], "ratio": t[name] / t["read"], "goal": "<= 3x of one read"})
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
    parser.add_argument("--no-sam", action="store_true", help="skip the SAM rows")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    before = machine()
    results = [*bench_pooling(), *bench_pooling_limit(), *([] if args.no_sam else bench_sam(args.sam_preset))]
    after = machine()
    for r in results:
        measured = r.get("batched_s", r.get("pool_s"))
        print(f"{r['what']}: {r['ratio']:.2f}x  ({measured * 1e3:.1f} ms vs {r['baseline']} {r['baseline_s'] * 1e3:.1f} ms)")
        r.update({k: v for k, v in before.items() if k != "load_average"}, torch_threads=torch.get_num_threads(),
                 load_average_before=before["load_average"], load_average_after=after["load_average"])
    print(f"machine: {before['cpu_model']}, {before['cpus']} CPUs, {before['threads']} threads, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), BLAS {before.get('blas')} "
          f"({before.get('blas_kernel')}, {before.get('blas_threads')} threads), load "
          f"{before['load_average']} -> {after['load_average']}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
