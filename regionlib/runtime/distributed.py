"""Ray plumbing shared by the jobs in ``ray_jobs/``: starting Ray and running sharded work.

`init_ray` connects to a cluster when an address is given (or ``RAY_ADDRESS`` is set, as
under ``ray job submit``) and otherwise starts a local instance on the loopback interface:
the node's address is 127.0.0.1 (Ray's own switch for single-machine instances, `single_machine_ray`),
so the GCS, the raylet, the workers and the dashboard / runtime-env agents listen on 127.0.0.1 only; the
files Ray creates (the auth token, the session's logs and sockets) are private to the user and
the session directory is not world-readable. Local start-up is made robust on a loaded machine:
longer registration timeouts through Ray's settings, no dashboard unless asked for, and one
retry with a clear message. Usage stats are always off; worker logs reach the driver.

`run_shards` maps pending shards (`regionlib.shards`) over a Ray Data actor pool: each actor
writes whole shard files atomically; the driver records each finished shard in the manifest. A
worker that dies mid-shard leaves no file behind and Ray retries the shard on a restarted actor,
so no record is lost or duplicated; a rerun computes only missing shards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .shards import ShardedWriter, ShardSpec

__all__ = ["init_ray", "run_shards", "single_machine_ray", "RayInternalsChanged", "RAY_CHECKED_ON", "LOOPBACK"]

log = logging.getLogger(__name__)

#: The address a local instance binds to.
LOOPBACK = "127.0.0.1"
#: The environment variable of Ray's single-machine switch (see `single_machine_ray`).
ENV_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

#: A shard worker: ``work(spec, shard_path) -> number of records written`` (writes the file itself).
ShardWork = Callable[[ShardSpec, str], int]


#: The Ray release on which `single_machine_ray`'s private names were checked.
RAY_CHECKED_ON = "2.60.0"


class RayInternalsChanged(RuntimeError):
    """A private Ray name regionlib patches is gone (a Ray release newer than `RAY_CHECKED_ON`)."""


@contextlib.contextmanager
def single_machine_ray():
    """Ray's switch for single-machine instances (its default on macOS / Windows) on for the block: the
    node's address is 127.0.0.1, so every Ray process started in the block binds to loopback.

    Ray reads the switch at import, in the driver (the private ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``)
    and in each process it starts (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, inherited); both are restored
    afterwards (a later connection to a cluster must not advertise 127.0.0.1). Raises `RayInternalsChanged`
    if either name is gone (checked on Ray `RAY_CHECKED_ON`): Ray would listen on every interface.
    """
    import ray

    try:
        from ray._private import ray_constants
    except ImportError:
        ray_constants = None
    if not isinstance(getattr(ray_constants, "ENABLE_RAY_CLUSTER", None), bool) or \
            getattr(ray_constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", None) != ENV_SWITCH:
        raise RayInternalsChanged(
            f"ray._private.ray_constants.ENABLE_RAY_CLUSTER (read from ${ENV_SWITCH}) is absent in Ray "
            f"{ray.__version__} (regionlib checked it on Ray {RAY_CHECKED_ON}): a local Ray would listen on every "
            f"interface, so none is started. Use ray=={RAY_CHECKED_ON}, or find Ray's new switch and update "
            "regionlib.runtime.distributed.single_machine_ray")
    saved, saved_flag = os.environ.get(ENV_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ENV_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved is None:
            os.environ.pop(ENV_SWITCH, None)
        else:
            os.environ[ENV_SWITCH] = saved


def _start_local(num_cpus: int | None, dashboard: bool, timeout_s: float) -> None:
    import ray

    umask = os.umask(0o077)  # Ray's processes and the files they create (auth token, logs): user-only
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host=LOOPBACK,
                 _system_config={"agent_register_timeout_ms": int(timeout_s * 1000),
                                 "worker_register_timeout_seconds": int(timeout_s),
                                 "gcs_server_request_timeout_seconds": int(timeout_s)})
    finally:
        os.umask(umask)
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    session.chmod(0o700)  # Ray makes its directories world-writable; the session's need not be
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file() and token.stat().st_uid == os.getuid():
        token.chmod(0o600)


def init_ray(address: str | None = None, *, num_cpus: int | None = None, dashboard: bool = False,
             timeout_s: float = 120.0):
    """Start or join Ray; returns the ``ray`` module.

    Args:
        address: a cluster to join (else ``RAY_ADDRESS``; else a local instance is started).
        num_cpus: CPUs of a local instance (None: all of this machine's).
        dashboard: start the dashboard of a local instance (on 127.0.0.1).
        timeout_s: how long a local instance's processes may take to register on a loaded machine.

    A local start that fails (e.g. "node timed out during startup" on a loaded machine) is retried
    once; a second failure raises `RuntimeError` naming both causes.
    """
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return ray
    # local workers inherit the environment: make this checkout's `regionlib` importable there
    root = str(Path(__file__).resolve().parents[2])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p]])
    with single_machine_ray():
        try:
            _start_local(num_cpus, dashboard, timeout_s)
        except Exception as first:  # Ray raises bare Exception / RuntimeError / ConnectionError here
            log.warning("local Ray did not start (%s: %s); retrying once", type(first).__name__, first)
            ray.shutdown()
            try:
                _start_local(num_cpus, dashboard, timeout_s)
            except Exception as second:
                ray.shutdown()
                raise RuntimeError(
                    f"local Ray did not start twice (first: {type(first).__name__}: {first}; then: "
                    f"{type(second).__name__}: {second}). On a loaded machine give it more time (timeout_s) or "
                    "fewer CPUs to compete with; `ray start --head` beforehand and RAY_ADDRESS also work") from second
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


def pool_size(actors: int, pending: int) -> int:
    """Actors to start: at most one per pending shard (each builds its models: an extra one only costs a
    process, a model load and, on a GPU, its memory), at least one."""
    return max(1, min(int(actors), int(pending)))


def run_shards(
    writer: ShardedWriter,
    specs: Sequence[ShardSpec],
    make_work: Callable[[], ShardWork],
    *,
    actors: int = 1,
    num_cpus: float = 0.5,
    num_gpus: float = 0,
) -> dict:
    """Compute every pending shard of ``specs`` on a pool of up to ``actors`` Ray actors (`pool_size`).

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
        compute=ray.data.ActorPoolStrategy(size=pool_size(actors, len(pending))),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    for row in ds.iter_rows():
        spec = by_index[int(row["index"])]
        writer.record(spec, count=int(row["count"]))
        stats["computed"] += 1
        stats["records"] += int(row["count"])
    return stats
