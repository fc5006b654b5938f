"""Benchmarks of the models (issue 3/6), measured side by side in one run.

* Captioning 1, 16 and 64 regions of one image through `RegionPredictor` (``set_image`` +
  ``caption``, greedy, a fixed number of new tokens) for each captioning family: the cost of 64
  regions vs 1, the fixed cost (the slope-free part: time at 0 regions extrapolated from 16 and
  64) vs the per-region cost (the slope), where the time of 64 regions goes (``encode_image``,
  ``region_inputs``, the model up to the LM context, LM decoding), and 16 regions through the
  predictor vs 16 uncached one-region calls.
* Parameters (total / trainable) and forward FLOPs per preset, counted with
  ``torch.utils.flop_counter.FlopCounterMode``: the image encoding (cacheable per image) and the
  per-region part (prefix + one LM pass over the context and a 20-token caption). Paper-size
  presets are built on the meta device (no memory, no weights) and counted there.

Prints the ratios and writes rows to ``--out`` (JSON) when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402


def scene(n_regions: int, size: int = 256, seed: int = 0):
    """An image and ``n_regions`` rectangular / elliptic masks on it."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:size, 0:size]
    masks = np.zeros((n_regions, size, size), dtype=bool)
    for i in range(n_regions):
        cx, cy = rng.uniform(20, size - 20, 2)
        rx, ry = rng.uniform(6, 40, 2)
        masks[i] = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    return image, masks


def bench_captioning(preset: str, *, new_tokens: int, overrides: dict, rounds: int, uncached_regions: int) -> list[dict]:
    """Rows for ``preset``: 64 vs 1 region through the predictor; N cached vs N uncached one-region calls."""
    from regionlib.models import create_model
    from regionlib.predictor import RegionPredictor

    from regionlib.regions import Regions

    model = create_model(preset, **overrides).eval()
    image, masks = scene(64)
    masks = Regions.from_masks(masks)
    predictor = RegionPredictor(model, batch_size=64)
    gen = {"max_new_tokens": new_tokens}

    def through_predictor(n):
        predictor.set_image(image)
        predictor.caption(masks[:n], **gen)

    def uncached_one_by_one():
        single = RegionPredictor(model, batch_size=1)
        for i in range(uncached_regions):
            single.set_image(image)  # no reuse: every region pays the image encoding
            single.caption(masks[i:i + 1], **gen)

    through_predictor(1)  # warm-up
    sizes = sorted({1, 16, 64, uncached_regions})
    t = {n: float("inf") for n in sizes}
    for _ in range(rounds):  # interleaved, best of rounds: the machine is shared and noisy
        for n in sizes:
            t[n] = min(t[n], best_of(lambda n=n: through_predictor(n), repeats=1))
    t_uncached = best_of(uncached_one_by_one, repeats=1)
    per_region = (t[64] - t[16]) / 48
    fixed = t[16] - 16 * per_region
    with torch.no_grad():  # where the time of 64 regions goes (one batch)
        state = model.encode_image(image)
        t_encode = best_of(lambda: model.encode_image(image), repeats=rounds)
        batch = model.region_inputs(state, masks)
        t_inputs = best_of(lambda: model.region_inputs(state, masks), repeats=rounds)
        t_context = best_of(lambda: model.contexts(batch), repeats=rounds)
        t_generate = best_of(lambda: model.generate(batch, **gen), repeats=rounds)
    label = preset + (f" {overrides}" if overrides else "")
    n_u = uncached_regions
    return [
        {"what": f"{label}: caption 64 regions of one image (predictor)", "baseline": "1 region (predictor)",
         "batched_s": t[64], "baseline_s": t[1], "ratio": t[64] / t[1],
         "regions_16_s": t[16], "ratio_16_vs_1": t[16] / t[1], "max_new_tokens": new_tokens,
         "fixed_s": fixed, "per_region_s": per_region,
         "breakdown_64_s": {"encode_image": t_encode, "region_inputs": t_inputs, "model to LM context": t_context,
                            "LM decoding": t_generate - t_context}},
        {"what": f"{label}: caption {n_u} regions (predictor, cached, one batch)",
         "baseline": f"{n_u} uncached one-region calls", "batched_s": t[n_u], "baseline_s": t_uncached,
         "ratio": t_uncached / t[n_u]},
    ]


def _count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_and_parameters(preset: str) -> dict:
    """Parameters and forward FLOPs (image encoding, per region) of ``preset``; paper sizes on the meta device."""
    from regionlib.models import DAM, RAS, SCA, create_model

    meta = not preset.startswith("tiny")
    device = "meta" if meta else "cpu"
    model = create_model(preset, device=device if meta else None).eval()
    report = model.parameter_report()
    lm = model.lm_head
    caption_len = 20

    def lm_pass(prefix_or_context, is_context=False):
        ctx = prefix_or_context if is_context else lm.contexts(prefix_or_context)
        ids = torch.zeros((ctx.shape[0], caption_len), dtype=torch.long, device=ctx.device)
        lm.lm(inputs_embeds=torch.cat([ctx, lm.embed_ids(ids).to(ctx.dtype)], 1))

    if isinstance(model, DAM):
        s = model.backbone.image_size  # (H, W) of the encoder's processor
        x = {"full_image": torch.zeros(1, 3, *s, device=device), "full_mask": torch.ones(1, 1, *s, device=device),
             "crop_image": torch.zeros(1, 3, *s, device=device), "crop_mask": torch.ones(1, 1, *s, device=device)}
        image_flops = 0  # DAM's encoder passes depend on the mask: all per region
        region_flops = _count_flops(lambda: lm_pass(model.prefix(x)))
    elif isinstance(model, SCA):
        side = model.sam.image_encoder.img_size
        image_flops = _count_flops(lambda: model.sam.image_encoder(torch.zeros(1, 3, side, side, device=device)))
        grid = model.sam.prompt_encoder.image_embedding_size
        emb = torch.zeros(1, model.sam.prompt_encoder.embed_dim, *grid, device=device)
        box = torch.tensor([[10.0, 10.0, side / 2, side / 2]], device=device)
        region_flops = _count_flops(lambda: lm_pass(model.run(emb, torch.zeros(1, dtype=torch.long, device=device),
                                                              boxes=box).prefix))
    else:
        from regionlib.regions import Regions

        img, masks = scene(1, size=128)
        image_flops = _count_flops(lambda: model.encode_image(img))
        state = model.encode_image(img)
        if isinstance(model, RAS):
            batch = model.region_inputs(state, Regions.from_masks(masks), "every circle")
            region_flops = _count_flops(lambda: model.logits(batch["samples"]))
        else:
            batch = model.region_inputs(state, Regions.from_masks(masks))
            region_flops = _count_flops(lambda: lm_pass(model.contexts(batch)[0], is_context=True))
    return {"what": f"{preset}: parameters and forward FLOPs", "baseline": "", "ratio": None,
            "parameters": report["total"], "trainable_parameters": report["trainable"],
            "image_gflops": image_flops / 1e9, "region_gflops": region_flops / 1e9, "meta_device": meta}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer presets and new tokens")
    parser.add_argument("--sam-preset", default="tiny",
                        help="SAM architecture of the SCA captioning row (random init), e.g. vit_b for a real-size encoder")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (best of)")
    parser.add_argument("--uncached-regions", type=int, default=16,
                        help="regions captioned one call each (image re-encoded) for the caching comparison")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    new_tokens = 8 if args.quick else args.new_tokens
    results = []
    runs = [("tiny-dam", {}), ("tiny-sca", {}), ("tiny-pooled", {})]
    if args.sam_preset != "tiny":
        runs.append(("tiny-sca", {"sam_preset": args.sam_preset}))
    for preset, overrides in runs:
        for r in bench_captioning(preset, new_tokens=new_tokens, overrides=overrides,
                                  rounds=2 if args.quick else args.rounds, uncached_regions=args.uncached_regions):
            results.append(r)
            print(f"{r['what']}: {r['ratio']:.2f}x  ({r['batched_s'] * 1e3:.0f} ms vs {r['baseline']} "
                  f"{r['baseline_s'] * 1e3:.0f} ms)")
            if "fixed_s" in r:
                parts = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in r["breakdown_64_s"].items())
                print(f"    fixed {r['fixed_s'] * 1e3:.0f} ms + {r['per_region_s'] * 1e3:.1f} ms per region; "
                      f"64 regions: {parts}")
    presets = ["tiny-dam", "tiny-sca", "tiny-ras", "tiny-pooled"] + ([] if args.quick else ["sca-gpt2-large", "dam-3b"])
    for preset in presets:
        r = flops_and_parameters(preset)
        results.append(r)
        print(f"{r['what']}: {r['parameters'] / 1e6:.2f} M params ({r['trainable_parameters'] / 1e6:.2f} M trainable), "
              f"image {r['image_gflops']:.3f} GFLOPs, per region {r['region_gflops']:.3f} GFLOPs"
              + (" [meta device]" if r["meta_device"] else ""))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
