"""Compute a frozen encoder's features once into a sharded safetensors cache (Ray Data).

Local:    python ray_jobs/cache_features.py --images DIR --out cache/sam_tiny
Cluster:  ray job submit --working-dir . -- python ray_jobs/cache_features.py --images DIR --out /shared/cache \
              --sam-preset vit_h --sam-checkpoint /ckpt/sam_vit_h_4b8939.pth --actors 8 --gpus-per-actor 1

Each shard holds ``{image_id: SAM image embedding (C, g, g)}``; each finished shard appends its ids
and sha256 to ``manifest.jsonl``, folded into ``manifest.json`` at the end (`regionlib.runtime.shards`). A rerun skips finished shards; a killed worker's shard is recomputed.
Read it back with `regionlib.runtime.feature_cache.FeatureCache`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.runtime.feature_cache import cache_sam_features  # noqa: E402


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
    stats = cache_sam_features(args.images, args.out, sam_preset=args.sam_preset, sam_checkpoint=args.sam_checkpoint,
                               shard_size=args.shard_size, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                               gpus_per_actor=args.gpus_per_actor, address=args.address)
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
