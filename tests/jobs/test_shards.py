import json

import pytest
import torch

from regionlib.errors import DataFormatError, RegionLibError
from regionlib.runtime.feature_cache import FeatureCache, write_feature_shard
from regionlib.runtime.shards import ShardedWriter, atomic_write_bytes, plan_shards, read_jsonl_shards


def test_plan_is_deterministic_and_complete():
    specs = plan_shards([5, 3, 9, 1, 7], 2)
    assert [s.ids for s in specs] == [(1, 3), (5, 7), (9,)]
    assert [s.name for s in specs] == ["shard-00000", "shard-00001", "shard-00002"]
    with pytest.raises(RegionLibError, match="unique"):
        plan_shards([1, 1], 2)



def test_actor_pool_is_no_larger_than_the_pending_shards():
    """Bug caught: a rerun with one shard left (or a tiny job) starting every configured actor, each loading
    its models (a GPU's memory each) for nothing; and a pool of 0 actors for ``--actors 0``."""
    from regionlib.runtime.distributed import pool_size

    assert pool_size(8, 1) == 1 and pool_size(2, 3) == 2 and pool_size(0, 5) == 1

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


def _write_jsonl_shard(w, spec):
    atomic_write_bytes(w.shard_path(spec), "".join(json.dumps({"id": i}) + "\n" for i in spec.ids).encode())


def _bytes_written() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_recording_n_shards_writes_o_n_manifest_bytes(tmp_path):
    """Bug caught: `ShardedWriter.record` rewrote the whole growing manifest.json after every shard,
    so recording N shards wrote O(N^2) bytes (and the driver's cost per shard grew with the output).
    Measured as the bytes this process writes (/proc/self/io wchar) inside `record` only."""
    n = 400
    specs = plan_shards(range(n), 1)
    w = ShardedWriter(tmp_path, kind="t", config={"k": 1}, suffix=".jsonl")
    per_record = []
    for s in specs:
        _write_jsonl_shard(w, s)
        before = _bytes_written()
        w.record(s, count=1)
        per_record.append(_bytes_written() - before)
    first, last = sum(per_record[: n // 4]), sum(per_record[-n // 4:])
    assert last <= 1.2 * first, f"the last quarter of the shards cost {last} manifest bytes, the first {first}"
    assert sum(per_record) < 300 * n, f"{sum(per_record)} manifest bytes for {n} shards"
    assert len(read_jsonl_shards(tmp_path)) == n  # all readable before compaction (the log alone)
    w.compact()  # once per job: O(N)
    assert not (tmp_path / "manifest.jsonl").exists()
    assert len(json.loads((tmp_path / "manifest.json").read_text())["shards"]) == n
    assert ShardedWriter(tmp_path, kind="t", config={"k": 1}, suffix=".jsonl").pending(specs) == []


def test_opening_hashes_nothing_and_a_corrupt_shard_is_found_when_read(tmp_path, monkeypatch):
    """Bug caught: opening a feature cache (and a writer's pending check) re-hashed every shard, so
    opening cost O(total bytes); now each shard is verified when it is first read, and the
    corrupted one is reported then, by name, while the intact ones stay readable."""
    import regionlib.runtime.shards as shards_mod

    specs = plan_shards(["a", "b", "c", "d"], 2)
    w = ShardedWriter(tmp_path / "feat", kind="feat", config={}, suffix=".safetensors")
    feats = {k: torch.full((2, 3), float(i)) for i, k in enumerate("abcd")}
    for s in specs:
        write_feature_shard(w.shard_path(s), s, feats)
        w.record(s, count=len(s.ids))
    getattr(w, "compact", lambda: None)()  # (absent in the old code, which rewrote manifest.json per shard)
    blob = bytearray(w.shard_path(specs[1]).read_bytes())
    blob[-1] ^= 0xFF  # same size, different bytes: only the checksum can tell
    w.shard_path(specs[1]).write_bytes(bytes(blob))
    calls = []
    real = shards_mod.sha256_file
    monkeypatch.setattr(shards_mod, "sha256_file", lambda p: calls.append(p) or real(p))
    cache = FeatureCache(tmp_path / "feat")  # opening: no hashing, no error
    assert ShardedWriter(tmp_path / "feat", kind="feat", config={}, suffix=".safetensors").pending(specs) == []
    assert calls == [] and len(cache) == 4
    assert torch.equal(cache["a"], feats["a"]) and len(calls) == 1  # shard 0 verified once, on first read
    assert torch.equal(cache["b"], feats["b"]) and len(calls) == 1
    with pytest.raises(DataFormatError, match="shard-00001.*checksum"):
        cache["c"]
    # JSONL outputs: records of intact shards come out, the corrupt one raises when reached
    j = ShardedWriter(tmp_path / "j", kind="t", config={}, suffix=".jsonl")
    for s in plan_shards(range(4), 2):
        _write_jsonl_shard(j, s)
        j.record(s, count=2)
    j.shard_path(plan_shards(range(4), 2)[1]).write_text('{"id": 9}\n{"id": 3}\n')  # same size
    from regionlib.runtime.shards import iter_jsonl_shards

    it = iter_jsonl_shards(tmp_path / "j")
    assert [next(it)["id"], next(it)["id"]] == [0, 1]
    with pytest.raises(DataFormatError, match="shard-00001.jsonl: checksum"):
        next(it)


def test_torn_manifest_line_and_legacy_manifest(tmp_path):
    """Guards the append log itself (not in the old code): a driver killed mid-append leaves a torn last line: it is ignored (that shard is recomputed) and
    cut before the next append; a deleted manifest.json with a stale log starts a fresh output; an
    output written by the old code (every shard in manifest.json) reads and resumes unchanged."""
    specs = plan_shards(range(6), 2)
    w = ShardedWriter(tmp_path, kind="t", config={}, suffix=".jsonl")
    for s in specs[:2]:
        _write_jsonl_shard(w, s)
        w.record(s, count=2)
    with open(tmp_path / "manifest.jsonl", "ab") as f:
        f.write(b'{"shard": "shard-00002", "ids": [4')  # torn
    _write_jsonl_shard(w, specs[2])
    again = ShardedWriter(tmp_path, kind="t", config={}, suffix=".jsonl")
    assert again.pending(specs) == specs[2:]
    again.record(specs[2], count=2)
    assert ShardedWriter(tmp_path, kind="t", config={}, suffix=".jsonl").pending(specs) == []
    assert [r["id"] for r in read_jsonl_shards(tmp_path)] == list(range(6))
    (tmp_path / "manifest.json").unlink()  # the documented way to force a full recompute
    fresh = ShardedWriter(tmp_path, kind="t", config={}, suffix=".jsonl")
    assert fresh.pending(specs) == specs
    fresh.record(specs[0], count=2)
    assert sorted(ShardedWriter(tmp_path, kind="t", config={}, suffix=".jsonl").manifest["shards"]) == ["shard-00000"]
    # legacy layout
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    entries = {}
    for s in specs[:2]:
        data = "".join(json.dumps({"id": i}) + "\n" for i in s.ids).encode()
        (legacy / f"{s.name}.jsonl").write_bytes(data)
        import hashlib

        entries[s.name] = {"ids": list(s.ids), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "count": 2}
    (legacy / "manifest.json").write_text(json.dumps({"kind": "t", "config": {}, "shards": entries}))
    assert [r["id"] for r in read_jsonl_shards(legacy)] == [0, 1, 2, 3]
    assert ShardedWriter(legacy, kind="t", config={}, suffix=".jsonl").pending(specs) == specs[2:]
