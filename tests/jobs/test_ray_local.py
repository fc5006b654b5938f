"""Sharded Ray Data jobs on a local Ray: a worker killed mid-run loses and duplicates nothing."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from regionlib.runtime.distributed import run_shards
from regionlib.runtime.shards import ShardedWriter, atomic_write_bytes, plan_shards, read_jsonl_shards

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def squares_work(marker: str | None):
    def build():
        def work(spec, path):
            if marker and spec.index == 2 and not os.path.exists(marker):
                Path(marker).write_text("killed once")
                os._exit(1)  # the actor process dies mid-shard, before writing anything
            atomic_write_bytes(path, "".join(json.dumps({"id": i, "sq": i * i}) + "\n" for i in spec.ids).encode())
            return len(spec.ids)

        return work

    return build


def test_killed_actor_loses_and_duplicates_nothing(local_ray, tmp_path):
    specs = plan_shards(range(30), 4)
    clean = ShardedWriter(tmp_path / "clean", kind="sq", config={}, suffix=".jsonl")
    run_shards(clean, specs, squares_work(None), actors=2)
    faulty = ShardedWriter(tmp_path / "faulty", kind="sq", config={}, suffix=".jsonl")
    marker = tmp_path / "killed"
    stats = run_shards(faulty, specs, squares_work(str(marker)), actors=2)
    assert marker.exists(), "the fault was not injected"
    assert stats["computed"] == len(specs) and stats["records"] == 30
    ids = [r["id"] for r in read_jsonl_shards(faulty.root)]
    assert sorted(ids) == sorted(r["id"] for r in read_jsonl_shards(clean.root)) == list(range(30))
    rerun = run_shards(ShardedWriter(faulty.root, kind="sq", config={}, suffix=".jsonl"), specs, squares_work(None))
    assert rerun == {"shards": len(specs), "skipped": len(specs), "computed": 0, "records": 0}


def test_cache_features_job(local_ray, sample_images, tmp_path):
    from ray_jobs import cache_features

    from regionlib.runtime.feature_cache import FeatureCache
    from regionlib.images import load_image
    from regionlib.sam import SamSegmenter, build_sam

    out = tmp_path / "cache"
    stats = cache_features.main(["--images", str(sample_images), "--out", str(out), "--shard-size", "2", "--actors", "2"])
    assert stats["computed"] == 3 and stats["records"] == 5
    cache = FeatureCache(out)
    seg = SamSegmenter(build_sam("tiny"))
    seg.set_image(load_image(sample_images / "rocket.png"))
    torch.testing.assert_close(cache["rocket"], seg.predictor.get_image_embedding()[0], atol=1e-5, rtol=0)
    assert cache_features.main(["--images", str(sample_images), "--out", str(out), "--shard-size", "2"])["skipped"] == 3
