"""Frozen-encoder feature cache: sharded safetensors files + manifest (see `regionlib.shards`).

`ray_jobs/cache_features.py` fills it once (e.g. SAM image embeddings ``(C, 64, 64)`` per
image); training reads it instead of re-running a frozen encoder. Loading uses safetensors
only (no pickle).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from .errors import DataFormatError
from .shards import ShardSpec, atomic_write_bytes, load_manifest, verify_shard

__all__ = ["write_feature_shard", "FeatureCache"]


def write_feature_shard(path: str | Path, spec: ShardSpec, features: dict[str, torch.Tensor]) -> None:
    """Atomically write one shard file ``{str(id): tensor}`` (the driver records it in the manifest)."""
    missing = [i for i in spec.ids if str(i) not in features]
    if missing:
        raise DataFormatError(f"{spec.name}: features missing for ids {missing[:5]}")
    blob = save({str(i): features[str(i)].contiguous().cpu() for i in spec.ids}, metadata={"shard": spec.name})
    atomic_write_bytes(path, blob)


class FeatureCache:
    """Read-only view of a feature cache directory: ``cache[id] -> tensor``.

    Opening reads the manifest only (no shard is hashed, so it costs the same for 10 or 100 000
    shards); with ``verify`` (default) each shard's size and sha256 are checked the first time one
    of its ids is read, and a corrupted shard raises `DataFormatError` naming it then. Shard files
    are opened lazily and memory-mapped by safetensors.
    """

    def __init__(self, root: str | Path, *, verify: bool = True):
        self.root = Path(root)
        if not (self.root / "manifest.json").exists():
            raise DataFormatError(f"{self.root}: no manifest.json (not a feature cache)")
        manifest = load_manifest(self.root)
        self.config, self.verify = manifest["config"], verify
        self._entries = manifest["shards"]
        self._where = {str(i): name for name, e in self._entries.items() for i in e["ids"]}
        self._open: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key) -> bool:
        return str(key) in self._where

    def ids(self) -> list[str]:
        return sorted(self._where)

    def __getitem__(self, key) -> torch.Tensor:
        name = self._where.get(str(key))
        if name is None:
            raise KeyError(f"id {key!r} is not in the feature cache {self.root}")
        if name not in self._open:
            path = self.root / f"{name}.safetensors"
            if self.verify:
                verify_shard(self.root, name, self._entries[name], ".safetensors")
            self._open[name] = safe_open(str(path), framework="pt", device="cpu")
        return self._open[name].get_tensor(str(key))
