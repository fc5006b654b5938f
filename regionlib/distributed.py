"""Ray plumbing shared by the jobs in ``ray_jobs/``: starting Ray and running sharded work.

`init_ray` connects to a cluster when an address is given (or ``RAY_ADDRESS`` is set, as
under ``ray job submit``) and otherwise starts a local instance bound to 127.0.0.1 with usage
stats off. `run_shards` maps pending shards (`regionlib.shards`) over a Ray Data actor pool:
each actor writes whole shard files atomically; the driver records each finished shard in the
manifest. A worker that dies mid-shard leaves no file behind and Ray retries the shard on a
restarted actor, so no record is lost or duplicated; a rerun computes only missing shards.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import numpy as np

from .shards import ShardedWriter, ShardSpec

__all__ = ["init_ray", "run_shards"]

#: A shard worker: ``work(spec, shard_path) -> number of records written`` (writes the file itself).
ShardWork = Callable[[ShardSpec, str], int]


def init_ray(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True):
    """Start or join Ray. Local instances bind to 127.0.0.1; usage stats are always off."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=not quiet)
    else:
        # local workers inherit the environment: make this checkout's `regionlib` importable there
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if root not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p]])
        ray.init(
            address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
            num_cpus=num_cpus, log_to_driver=not quiet,
        )
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    return ray


class _ShardActor:
    """Ray Data actor: builds the worker once, then processes one shard per batch row."""

    def __init__(self, make_work: Callable[[], ShardWork], root: str, suffix: str):
        self.work = make_work()
        self.root, self.suffix = root, suffix

    def __call__(self, batch: dict) -> dict:
        out = {"index": [], "count": []}
        for index, ids in zip(batch["index"], batch["ids"]):
            spec = ShardSpec(int(index), tuple(json.loads(ids)))
            path = os.path.join(self.root, f"{spec.name}{self.suffix}")
            out["index"].append(spec.index)
            out["count"].append(int(self.work(spec, path)))
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def run_shards(
    writer: ShardedWriter,
    specs: Sequence[ShardSpec],
    make_work: Callable[[], ShardWork],
    *,
    actors: int = 1,
    num_cpus: float = 0.5,
    num_gpus: float = 0,
) -> dict:
    """Compute every pending shard of ``specs`` on a pool of ``actors`` Ray actors.

    Args:
        writer: the output directory's manifest (`ShardedWriter`).
        make_work: called once per actor to build its `ShardWork` (load models there).
        num_cpus / num_gpus: resources per actor (fractional CPUs on small machines).
    Returns:
        ``{"shards": total, "skipped": already done, "computed": n, "records": n}``.
    """
    import ray.data

    pending = writer.pending(specs)
    stats = {"shards": len(specs), "skipped": len(specs) - len(pending), "computed": 0, "records": 0}
    if not pending:
        return stats
    by_index = {s.index: s for s in pending}
    items = [{"index": s.index, "ids": json.dumps(list(s.ids))} for s in pending]
    writer.root.mkdir(parents=True, exist_ok=True)
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _ShardActor,
        fn_constructor_kwargs={"make_work": make_work, "root": str(writer.root), "suffix": writer.suffix},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    for row in ds.iter_rows():
        spec = by_index[int(row["index"])]
        writer.record(spec, count=int(row["count"]))
        stats["computed"] += 1
        stats["records"] += int(row["count"])
    return stats
