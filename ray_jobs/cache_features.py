"""Compute a frozen encoder's features once into a sharded safetensors cache (Ray Data).

Local:    python ray_jobs/cache_features.py --images DIR --out cache/sam_tiny
Cluster:  ray job submit --working-dir . -- python ray_jobs/cache_features.py --images DIR --out /shared/cache \
              --sam-preset vit_h --sam-checkpoint /ckpt/sam_vit_h_4b8939.pth --actors 8 --gpus-per-actor 1

Each shard holds ``{image_id: SAM image embedding (C, g, g)}``; each finished shard appends its ids
and sha256 to ``manifest.jsonl``, folded into ``manifest.json`` at the end (`regionlib.shards`). A rerun skips finished shards; a killed worker's shard is recomputed.
Read it back with `regionlib.feature_cache.FeatureCache`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.data.image_folder import list_images  # noqa: E402
from regionlib.distributed import init_ray, run_shards  # noqa: E402
from regionlib.errors import DataFormatError  # noqa: E402
from regionlib.shards import ShardedWriter, plan_shards  # noqa: E402

def make_sam_work(paths: dict[str, str], preset: str, checkpoint: str | None, device: str):
    """Factory run once per actor: builds SAM there and returns the shard worker."""

    def build():
        import torch

        from regionlib.feature_cache import write_feature_shard
        from regionlib.images import load_image
        from regionlib.sam import SamSegmenter, build_sam

        segmenter = SamSegmenter(build_sam(preset, checkpoint=checkpoint).to(device))

        def work(spec, shard_path):
            feats = {}
            with torch.no_grad():
                for image_id in spec.ids:
                    segmenter.set_image(load_image(paths[image_id]))
                    feats[str(image_id)] = segmenter.predictor.get_image_embedding()[0].cpu()
            write_feature_shard(shard_path, spec, feats)
            return len(feats)

        return work

    return build


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="directory of image files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sam-preset", default="tiny")
    parser.add_argument("--sam-checkpoint", default=None)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--cpus-per-actor", type=float, default=0.5)
    parser.add_argument("--gpus-per-actor", type=float, default=0)
    parser.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local instance)")
    args = parser.parse_args(argv)

    paths = list_images(args.images)
    config = {"encoder": "sam", "preset": args.sam_preset, "checkpoint": args.sam_checkpoint,
              "images": str(args.images.resolve()), "shard_size": args.shard_size}
    writer = ShardedWriter(args.out, kind="sam_image_embeddings", config=config, suffix=".safetensors")
    specs = plan_shards(paths, args.shard_size)
    init_ray(args.address)
    t0 = time.perf_counter()
    device = "cuda" if args.gpus_per_actor > 0 else "cpu"
    stats = run_shards(writer, specs, make_sam_work(paths, args.sam_preset, args.sam_checkpoint, device),
                       actors=args.actors, num_cpus=args.cpus_per_actor, num_gpus=args.gpus_per_actor)
    writer.compact()  # the per-shard manifest log folded into manifest.json, once
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
