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

from ..errors import DataFormatError
from .shards import ShardSpec, atomic_write_bytes, load_manifest, verify_shard

__all__ = ["write_feature_shard", "FeatureCache", "cache_sam_features"]


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


def _sam_work(paths: dict[str, str], preset: str, checkpoint: str | None, device: str):
    """Factory run once per actor: builds SAM there and returns the shard worker."""

    def build():
        from ..images import load_image
        from ..sam import SamSegmenter, build_sam

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


def cache_sam_features(images: str | Path, out: str | Path, *, sam_preset: str = "tiny", sam_checkpoint: str | None = None,
                       shard_size: int = 16, actors: int = 1, cpus_per_actor: float = 0.5, gpus_per_actor: float = 0,
                       address: str | None = None) -> dict:
    """SAM's image embedding of every image under ``images`` into the sharded cache ``out`` (Ray Data actors;
    image id = path relative to ``images`` without suffix). A rerun skips finished shards. Returns run stats."""
    import time

    from ..data.image_folder import list_images
    from .distributed import init_ray, run_shards
    from .shards import ShardedWriter, plan_shards

    paths = list_images(images)
    config = {"encoder": "sam", "preset": sam_preset, "checkpoint": sam_checkpoint,
              "images": str(Path(images).resolve()), "shard_size": shard_size}
    writer = ShardedWriter(out, kind="sam_image_embeddings", config=config, suffix=".safetensors")
    specs = plan_shards(paths, shard_size)
    init_ray(address)
    t0 = time.perf_counter()
    device = "cuda" if gpus_per_actor > 0 else "cpu"
    stats = run_shards(writer, specs, _sam_work(paths, sam_preset, sam_checkpoint, device), actors=actors,
                       num_cpus=cpus_per_actor, num_gpus=gpus_per_actor)
    writer.compact()  # the per-shard manifest log folded into manifest.json, once
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    return stats
