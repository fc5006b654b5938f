"""Benchmarks of the Ray jobs (issue 5/6), measured side by side in one run.

* Training with the frozen-feature cache vs. recomputing the frozen encoder: an SCA-style
  captioner over the tiny SAM trains on batches of regions; the baseline runs SAM's image
  encoder for every sample's image at every step, the cached path reads the embeddings written
  by ``ray_jobs/cache_features.py``'s shard format (`FeatureCache`, from disk). Same model,
  batches, optimizer; samples/s of each (goal >= 5x).
  A second row does the same with SAM ViT-B's architecture (random weights, 1024-px input), the
  scale at which the cache is meant to be used.
* Self-labeling throughput (``ray_jobs/self_label.py``, RegionWorld proposals, tiny DAM
  captioner): 2 actors vs. 1 on the same images, each actor one CPU and one torch thread; steady
  state (shards per second once the actors run) and end to end, where ~10 s of Ray Data and actor
  start-up are a fixed cost (goal >= 1.6x on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def feature_cache_rows(steps: int, batch: int, sam_preset: str = "tiny") -> list[dict]:
    from regionlib.data.grammar import caption_words
    from regionlib.data.regionworld import generate_regionworld
    from regionlib.runtime.feature_cache import FeatureCache, write_feature_shard
    from regionlib.models import create_model
    from regionlib.models.tokenizer import builtin_tokenizer
    from regionlib.runtime.shards import ShardedWriter, plan_shards
    from regionlib.models.sca import sca_prompts

    samples = generate_regionworld(batch * 2, seed=0, split="train")
    model = create_model("tiny-sca", tokenizer=builtin_tokenizer([" ".join(caption_words())]), sam_preset=sam_preset)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    # one region per image: the first
    regions = [s.regions[0] for s in samples]
    prompts = [sca_prompts(r)[0] for r in regions]
    captions = [r.captions[0] for r in regions]
    with tempfile.TemporaryDirectory() as tmp:
        specs = plan_shards([s.image_id for s in samples], 8)
        writer = ShardedWriter(tmp, kind="sam_image_embeddings", config={}, suffix=".safetensors")
        by_id = {s.image_id: s for s in samples}
        with torch.no_grad():
            for spec in specs:
                feats = {i: model.encode_image(by_id[i].image).tensors["image_embeddings"][0] for i in spec.ids}
                write_feature_shard(writer.shard_path(spec), spec, feats)
                writer.record(spec, count=len(feats))
        cache = FeatureCache(tmp)

        def step(k: int, cached: bool) -> None:
            idx = [(k * batch + j) % len(samples) for j in range(batch)]
            embs = []
            for i in idx:
                if cached:
                    embs.append(cache[samples[i].image_id][None])
                else:
                    with torch.no_grad():
                        embs.append(model.encode_image(samples[i].image).tensors["image_embeddings"])
            b = model.prompt_batch([prompts[i] for i in idx], samples[0].image.shape[:2])
            b["image_embeddings"] = torch.cat(embs)
            b["image_index"] = torch.arange(batch)
            b["targets"] = [captions[i] for i in idx]
            loss = model(b).loss
            opt.zero_grad()
            loss.backward()
            opt.step()

        times = {}
        for cached in (False, True, False, True):  # interleaved, best of two
            step(0, cached)  # warm-up
            t = time.perf_counter()
            for k in range(steps):
                step(k, cached)
            times.setdefault(cached, []).append(time.perf_counter() - t)
    recompute, cached = min(times[False]), min(times[True])
    n = steps * batch
    return [{"bench": "jobs", "what": f"SCA training samples/s with the feature cache ({sam_preset} SAM, batch {batch})",
             "baseline": "recomputing the frozen SAM encoder every step", "ratio": recompute / cached,
             "cached_s": cached, "baseline_s": recompute, "cached_samples_per_s": n / cached,
             "baseline_samples_per_s": n / recompute, "goal": ">= 5x"}]


def self_label_rows(n_images: int) -> list[dict]:
    """End to end (actor start-up included) and steady state (shard completions after the first,
    from the shard files' modification times) for 1 and 2 actors."""
    import glob
    import os

    from regionlib.selflabel import cli as self_label

    from regionlib.runtime.distributed import init_ray

    init_ray(num_cpus=2)
    total, steady = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--regionworld", str(n_images), "--preset", "tiny-dam", "--max-new-tokens", "32", "--shard-size", "8",
                "--cpus-per-actor", "1"]
        for actors in (1, 2):
            out = f"{tmp}/a{actors}"
            t = time.perf_counter()
            t_wall = time.time()
            stats = self_label.main([*base, "--out", out, "--actors", str(actors)])
            total[actors] = time.perf_counter() - t
            assert stats["computed"] == stats["shards"] >= 3
            done = sorted(os.path.getmtime(f) - t_wall for f in glob.glob(f"{out}/*.jsonl"))
            steady[actors] = (done[-1] - done[0]) / (len(done) - 1)  # seconds per shard once running
    return [{"bench": "jobs", "what": f"self-labeling {n_images} RegionWorld images, 2 actors, steady state",
             "baseline": "1 actor (1 CPU, 1 thread each)", "ratio": steady[1] / steady[2],
             "two_actors_s": steady[2], "baseline_s": steady[1], "unit": "seconds per 8-image shard",
             "goal": ">= 1.6x on 2 cores"},
            {"bench": "jobs", "what": f"self-labeling {n_images} RegionWorld images, 2 actors, end to end",
             "baseline": "1 actor, actor start-up (~10 s) included", "ratio": total[1] / total[2],
             "two_actors_s": total[2], "baseline_s": total[1], "goal": ">= 1.6x on 2 cores"}]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = feature_cache_rows(steps=3 if args.quick else 10, batch=8)
    # the same with SAM ViT-B's architecture (random weights, 1024-px input): the paper-scale frozen encoder
    rows += feature_cache_rows(steps=1 if args.quick else 2, batch=2, sam_preset="vit_b")
    rows += self_label_rows(24 if args.quick else 192)
    for r in rows:
        print(f"{r['what']}: {r['ratio']:.2f}x vs {r['baseline']} (goal {r['goal']})")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
