"""Sharded outputs with a manifest and checksums, written so that jobs can die and resume.

A sharded dataset is a directory::

    out/
      manifest.json          # {"kind", "config", "shards": {name: {"ids", "sha256", "bytes", "count"}}}
      manifest.jsonl         # while a job runs: one JSON line per finished shard, appended
      shard-00000.jsonl      # or .safetensors: one file per shard, written atomically
      ...

Rules that make reruns and worker deaths safe:

* the work is split into shards *deterministically* (`plan_shards`: sorted ids in fixed-size
  chunks), so a shard's content is a function of its inputs alone;
* a shard file is written to a temporary name, flushed, fsynced and renamed — a worker killed
  mid-write leaves no partial shard;
* each recorded shard *appends* one line ``{"shard", "ids", "sha256", "bytes", "count"}`` to
  ``manifest.jsonl`` (flushed and fsynced): recording N shards writes O(N) manifest bytes in all,
  not the O(N²) of rewriting a growing JSON. A later line for the same shard replaces an earlier
  one; a torn last line (the driver killed mid-append) is ignored and cut off before the next
  append, so that shard is simply recomputed. `ShardedWriter.compact` folds the log into
  ``manifest.json`` once at the end of a job (the jobs call it), leaving one self-describing file;
* `ShardedWriter.pending` lists the shards whose file is missing, unrecorded or of another size
  than recorded (a stat, no hashing: opening an output of many shards costs no re-read), so a
  rerun computes only those and never duplicates a finished one; ``pending(verify=True)`` also
  re-hashes;
* checksums are verified lazily, per shard, when a shard is *read* (`iter_jsonl_shards`,
  `regionlib.feature_cache.FeatureCache`): a corrupted shard is reported by name when read.
  Delete it and rerun the job to recompute it.

Outputs written before the log existed (a ``manifest.json`` holding every shard) read unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import DataFormatError, RegionLibError

__all__ = ["ShardSpec", "plan_shards", "atomic_write_bytes", "sha256_file", "ShardedWriter", "load_manifest",
           "verify_shard", "iter_jsonl_shards", "read_jsonl_shards", "MANIFEST", "MANIFEST_LOG"]

MANIFEST = "manifest.json"
MANIFEST_LOG = "manifest.jsonl"


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


def _read_header(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        header = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: corrupt manifest ({exc})") from exc
    if not isinstance(header, dict) or not isinstance(header.get("shards", {}), dict):
        raise DataFormatError(f"{path}: a manifest must be a JSON object with a 'shards' object")
    header.setdefault("shards", {})
    return header


def _read_log(root: Path) -> tuple[dict, int]:
    """Entries of ``manifest.jsonl`` (later lines win) and the byte length of its complete lines."""
    path = root / MANIFEST_LOG
    if not path.exists():
        return {}, 0
    data = path.read_bytes()
    entries, good = {}, 0
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is a torn append (or empty)
    for line_no, line in enumerate(complete, 1):
        try:
            entry = json.loads(line)
            name = entry.pop("shard")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise DataFormatError(f"{path} line {line_no}: corrupt manifest entry ({exc})") from exc
        entries[name] = entry
        good += len(line) + 1
    return entries, good


def load_manifest(root: str | Path) -> dict:
    """``{"kind", "config", "shards": {name: entry}}`` of a sharded output: ``manifest.json`` plus the
    appended ``manifest.jsonl`` entries. Reads the manifest files only (no shard is opened or hashed).

    Raises `DataFormatError` when ``root`` holds no manifest or a corrupt one.
    """
    root = Path(root)
    header = _read_header(root)
    if header is None:
        raise DataFormatError(f"{root}: no {MANIFEST} (not a sharded output)")
    entries, _ = _read_log(root)
    header["shards"].update(entries)
    return header


def verify_shard(root: str | Path, name: str, entry: dict, suffix: str) -> Path:
    """The path of shard ``name`` after checking its size and sha256 against its manifest ``entry``."""
    path = Path(root) / f"{name}{suffix}"
    if not path.exists():
        raise DataFormatError(f"{path}: recorded in the manifest but missing; rerun the job to recompute it")
    if ("bytes" in entry and path.stat().st_size != entry["bytes"]) or sha256_file(path) != entry["sha256"]:
        raise DataFormatError(f"{path}: checksum mismatch with the manifest (corrupted shard); "
                              "delete it and rerun the job to recompute it")
    return path


class ShardedWriter:
    """The manifest side of a sharded output directory (see the module docstring).

    Args:
        root: output directory.
        kind: what the shards hold (e.g. ``"sam_embeddings"``, ``"self_labels"``).
        config: the job configuration; a rerun with a different config is refused rather
            than silently mixing outputs.
        suffix: shard file suffix (``".jsonl"``, ``".safetensors"``).

    Opening reads the manifest files only; nothing is hashed until `record` (the new shard) or a read.
    """

    def __init__(self, root: str | Path, *, kind: str, config: dict, suffix: str):
        self.root = Path(root)
        self.kind, self.config, self.suffix = kind, json.loads(json.dumps(config)), suffix
        self.manifest_path = self.root / MANIFEST
        self.log_path = self.root / MANIFEST_LOG
        self.manifest = {"kind": kind, "config": self.config, "shards": {}}
        self._log_ready = False
        header = _read_header(self.root)
        self._has_header = header is not None
        if header is not None:
            if header.get("kind") != kind or header.get("config") != self.config:
                raise RegionLibError(
                    f"{self.root} holds a {header.get('kind')!r} output with another config; use a new output directory"
                )
            entries, self._log_good = _read_log(self.root)
            header["shards"].update(entries)
            self.manifest = header

    def shard_path(self, spec: ShardSpec) -> Path:
        return self.root / f"{spec.name}{self.suffix}"

    def is_done(self, spec: ShardSpec, *, verify: bool = False) -> bool:
        """Recorded for the same ids, present and of the recorded size (and checksum, with ``verify``)."""
        entry = self.manifest["shards"].get(spec.name)
        if not entry or tuple(entry["ids"]) != spec.ids:
            return False
        path = self.shard_path(spec)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        if "bytes" in entry and size != entry["bytes"]:
            return False
        return not verify or entry["sha256"] == sha256_file(path)

    def pending(self, specs: Sequence[ShardSpec], *, verify: bool = False) -> list[ShardSpec]:
        """Shards still to compute: missing, unrecorded, of another size than recorded (``verify``:
        or failing their checksum)."""
        return [s for s in specs if not self.is_done(s, verify=verify)]

    def _prepare_log(self) -> None:
        if self._log_ready:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._has_header:  # a new output: the header, once; a stale log of a deleted manifest goes
            self.log_path.unlink(missing_ok=True)
            atomic_write_bytes(self.manifest_path, json.dumps(
                {"kind": self.kind, "config": self.config, "shards": {}}, indent=1, sort_keys=True).encode())
            self._has_header, self._log_good = True, 0
        elif self.log_path.exists() and self.log_path.stat().st_size != self._log_good:
            os.truncate(self.log_path, self._log_good)  # cut a torn last line before appending
        self._log_ready = True

    def record(self, spec: ShardSpec, *, count: int, sha256: str | None = None) -> None:
        """Record a finished shard file (checksummed here unless given): one appended manifest line."""
        path = self.shard_path(spec)
        if not path.exists():
            raise RegionLibError(f"cannot record {spec.name}: {path} does not exist")
        digest = sha256 or sha256_file(path)
        entry = {"ids": list(spec.ids), "sha256": digest, "bytes": path.stat().st_size, "count": int(count)}
        self._prepare_log()
        line = (json.dumps({"shard": spec.name, **entry}, sort_keys=True) + "\n").encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._log_good += len(line)
        self.manifest["shards"][spec.name] = entry

    def compact(self) -> None:
        """Fold ``manifest.jsonl`` into ``manifest.json`` (one atomic write, then the log goes).

        Called once at the end of a job; a crash in between leaves both, which read the same."""
        if not self._has_header:
            return
        manifest = dict(self.manifest, shards=dict(sorted(self.manifest["shards"].items())))
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
        self.log_path.unlink(missing_ok=True)
        self._log_good, self._log_ready = 0, False

    def verify(self) -> None:
        """Raise `DataFormatError` if any recorded shard is missing or fails its checksum (hashes all)."""
        for name, entry in self.manifest["shards"].items():
            verify_shard(self.root, name, entry, self.suffix)


def iter_jsonl_shards(root: str | Path) -> Iterator[dict]:
    """The records of a JSONL sharded output, in shard order; each shard's checksum is verified when
    that shard is read (`DataFormatError` naming it), not when the output is opened."""
    root = Path(root)
    manifest = load_manifest(root)
    for name in sorted(manifest["shards"]):
        entry, path = manifest["shards"][name], root / f"{name}.jsonl"
        if not path.exists():
            raise DataFormatError(f"{path}: recorded in the manifest but missing; rerun the job to recompute it")
        data = path.read_bytes()  # read once: hashed, then parsed
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DataFormatError(f"{path}: checksum mismatch with the manifest (corrupted shard); "
                                  "delete it and rerun the job to recompute it")
        for line_no, line in enumerate(data.decode("utf-8").splitlines(), 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path} line {line_no}: {exc}") from exc


def read_jsonl_shards(root: str | Path) -> list[dict]:
    """All records of a JSONL sharded output, in shard order (each shard verified as it is read)."""
    return list(iter_jsonl_shards(root))
