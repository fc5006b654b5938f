"""Sharded outputs with a manifest and checksums, written so that jobs can die and resume.

A sharded dataset is a directory::

    out/
      manifest.json          # {"kind", "config", "shards": {name: {"ids", "sha256", "bytes", "count"}}}
      shard-00000.jsonl      # or .safetensors: one file per shard, written atomically
      ...

Rules that make reruns and worker deaths safe:

* the work is split into shards *deterministically* (`plan_shards`: sorted ids in fixed-size
  chunks), so a shard's content is a function of its inputs alone;
* a shard file is written to a temporary name, flushed, fsynced and renamed — a worker killed
  mid-write leaves no partial shard;
* the manifest is rewritten atomically after each recorded shard; `ShardedWriter.pending`
  lists the shards whose file is missing or fails its checksum, so a rerun computes only those
  and never duplicates a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import DataFormatError, RegionLibError

__all__ = ["ShardSpec", "plan_shards", "atomic_write_bytes", "sha256_file", "ShardedWriter", "read_jsonl_shards"]


@dataclass(frozen=True)
class ShardSpec:
    """One unit of work: shard ``index`` covering ``ids`` (in order)."""

    index: int
    ids: tuple

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


def plan_shards(ids: Iterable, shard_size: int) -> list[ShardSpec]:
    """Split ``ids`` (sorted, must be unique) into consecutive shards of ``shard_size``."""
    if shard_size < 1:
        raise RegionLibError(f"shard_size must be >= 1, got {shard_size}")
    ordered = sorted(ids)
    if len(set(ordered)) != len(ordered):
        raise RegionLibError("ids must be unique to plan shards")
    return [ShardSpec(i, tuple(ordered[s : s + shard_size])) for i, s in enumerate(range(0, len(ordered), shard_size))]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ShardedWriter:
    """The manifest side of a sharded output directory (see the module docstring).

    Args:
        root: output directory.
        kind: what the shards hold (e.g. ``"sam_embeddings"``, ``"self_labels"``).
        config: the job configuration; a rerun with a different config is refused rather
            than silently mixing outputs.
        suffix: shard file suffix (``".jsonl"``, ``".safetensors"``).
    """

    def __init__(self, root: str | Path, *, kind: str, config: dict, suffix: str):
        self.root = Path(root)
        self.kind, self.config, self.suffix = kind, json.loads(json.dumps(config)), suffix
        self.manifest_path = self.root / "manifest.json"
        self.manifest = {"kind": kind, "config": self.config, "shards": {}}
        if self.manifest_path.exists():
            try:
                old = json.loads(self.manifest_path.read_text())
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{self.manifest_path}: corrupt manifest ({exc})") from exc
            if old.get("kind") != kind or old.get("config") != self.config:
                raise RegionLibError(
                    f"{self.root} holds a {old.get('kind')!r} output with another config; use a new output directory"
                )
            self.manifest = old

    def shard_path(self, spec: ShardSpec) -> Path:
        return self.root / f"{spec.name}{self.suffix}"

    def is_done(self, spec: ShardSpec) -> bool:
        entry = self.manifest["shards"].get(spec.name)
        path = self.shard_path(spec)
        return bool(entry) and path.exists() and entry["sha256"] == sha256_file(path) and tuple(entry["ids"]) == spec.ids

    def pending(self, specs: Sequence[ShardSpec]) -> list[ShardSpec]:
        """Shards still to compute (missing, unrecorded or failing their checksum)."""
        return [s for s in specs if not self.is_done(s)]

    def record(self, spec: ShardSpec, *, count: int, sha256: str | None = None) -> None:
        """Record a finished shard file (checksummed here unless given) and save the manifest."""
        path = self.shard_path(spec)
        if not path.exists():
            raise RegionLibError(f"cannot record {spec.name}: {path} does not exist")
        digest = sha256 or sha256_file(path)
        self.manifest["shards"][spec.name] = {
            "ids": list(spec.ids), "sha256": digest, "bytes": path.stat().st_size, "count": int(count),
        }
        atomic_write_bytes(self.manifest_path, json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    def verify(self) -> None:
        """Raise `DataFormatError` if any recorded shard is missing or fails its checksum."""
        for name, entry in self.manifest["shards"].items():
            path = self.root / f"{name}{self.suffix}"
            if not path.exists() or sha256_file(path) != entry["sha256"]:
                raise DataFormatError(f"{path}: missing or checksum mismatch with {self.manifest_path}")


def read_jsonl_shards(root: str | Path) -> list[dict]:
    """All records of a verified JSONL sharded output, in shard order."""
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise DataFormatError(f"{root}: no manifest.json (not a sharded output)")
    manifest = json.loads(manifest_path.read_text())
    writer = ShardedWriter(root, kind=manifest["kind"], config=manifest["config"], suffix=".jsonl")
    writer.verify()
    records = []
    for name in sorted(manifest["shards"]):
        with open(root / f"{name}.jsonl", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataFormatError(f"{root / name}.jsonl line {line_no}: {exc}") from exc
    return records
