import json

import pytest
import torch

from regionlib.errors import DataFormatError, RegionLibError
from regionlib.feature_cache import FeatureCache, write_feature_shard
from regionlib.shards import ShardedWriter, atomic_write_bytes, plan_shards, read_jsonl_shards


def test_plan_is_deterministic_and_complete():
    specs = plan_shards([5, 3, 9, 1, 7], 2)
    assert [s.ids for s in specs] == [(1, 3), (5, 7), (9,)]
    assert [s.name for s in specs] == ["shard-00000", "shard-00001", "shard-00002"]
    with pytest.raises(RegionLibError, match="unique"):
        plan_shards([1, 1], 2)


def test_writer_resumes_and_detects_corruption(tmp_path):
    specs = plan_shards(range(6), 2)
    w = ShardedWriter(tmp_path, kind="t", config={"k": 1}, suffix=".jsonl")
    for s in specs[:2]:
        atomic_write_bytes(w.shard_path(s), "".join(json.dumps({"id": i}) + "\n" for i in s.ids).encode())
        w.record(s, count=len(s.ids))
    again = ShardedWriter(tmp_path, kind="t", config={"k": 1}, suffix=".jsonl")
    assert again.pending(specs) == specs[2:]
    w.shard_path(specs[0]).write_text('{"id": 0}\n')  # tampered: fails its checksum
    assert again.pending(specs) == [specs[0], *specs[2:]]
    with pytest.raises(DataFormatError, match="checksum"):
        read_jsonl_shards(tmp_path)
    with pytest.raises(RegionLibError, match="another config"):
        ShardedWriter(tmp_path, kind="t", config={"k": 2}, suffix=".jsonl")
    assert not list(tmp_path.glob(".shard-*"))  # no temporary files left behind


def test_feature_cache_round_trip(tmp_path):
    specs = plan_shards(["a", "b", "c"], 2)
    w = ShardedWriter(tmp_path, kind="feat", config={}, suffix=".safetensors")
    feats = {k: torch.full((2, 3), float(i)) for i, k in enumerate("abc")}
    for s in specs:
        write_feature_shard(w.shard_path(s), s, feats)
        w.record(s, count=len(s.ids))
    cache = FeatureCache(tmp_path)
    assert len(cache) == 3 and "b" in cache and torch.equal(cache["c"], feats["c"])
    with pytest.raises(KeyError):
        cache["zz"]
    with pytest.raises(DataFormatError, match="missing for ids"):
        write_feature_shard(tmp_path / "x.safetensors", specs[0], {"a": feats["a"]})
