"""Compute a frozen encoder's features once into a sharded safetensors cache (Ray Data).

Local:    python ray_jobs/cache_features.py --images DIR --out cache/sam_tiny
Cluster:  ray job submit --working-dir . -- python ray_jobs/cache_features.py --images DIR --out /shared/cache \
              --sam-preset vit_h --sam-checkpoint /ckpt/sam_vit_h_4b8939.pth --actors 8 --gpus-per-actor 1

Each shard holds ``{image_id: SAM image embedding (C, g, g)}``; each finished shard appends its ids
and sha256 to ``manifest.jsonl``, folded into ``manifest.json`` at the end (`regionlib.runtime.shards`). A rerun skips finished shards; a killed worker's shard is recomputed.
Read it back with `regionlib.runtime.feature_cache.FeatureCache`. The options are `CacheFeaturesSettings`'
(``--help``); a wrong value or a missing input is a `ConfigError` naming the option before Ray starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.config import Settings, add_options, from_args, setting  # noqa: E402
from regionlib.runtime.feature_cache import cache_sam_features  # noqa: E402
from regionlib.sam import SAM_PRESETS  # noqa: E402


@dataclass(frozen=True)
class CacheFeaturesSettings(Settings):
    """The feature-cache job's settings (`cache_sam_features`' arguments)."""

    images: str = setting(exists="dir", help="directory of image files")
    out: str = setting(help="the cache directory")
    sam_preset: str = setting("tiny", choices=tuple(SAM_PRESETS))
    sam_checkpoint: str | None = setting(None, exists="file")
    shard_size: int = setting(16, min=1, help="images per shard")
    actors: int = setting(1, min=1)
    cpus_per_actor: float = setting(0.5, min=0)
    gpus_per_actor: float = setting(0.0, min=0)
    address: str | None = setting(None, help="Ray address (default: $RAY_ADDRESS or a local instance)")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(parser, CacheFeaturesSettings)
    s = from_args(CacheFeaturesSettings, parser.parse_args(argv))
    stats = cache_sam_features(**asdict(s))
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
