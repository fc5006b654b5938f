"""The training loop, identical on every rank, and its launchers (local process or Ray Train).

The settings are one `regionlib.training.config.TrainJob` (sections ``task``, ``recipe``, ``train``,
``run``; `load_config` builds it from YAML and ``--set`` and refuses what it does not know).

Each step every rank takes its share of one global batch (one shuffle per epoch, the same on
every rank and after restarts) and computes the loss through the wrapped model's ``forward``
(DDP replicas, or FSDP2 shards with ``run.strategy=fsdp``: `fsdp_shard`), so gradients are
all-reduced (reduce-scattered). FSDP checkpoints hold every rank's DCP shard under ``sharded/``
(they resume on any worker count) beside rank 0's consolidated model directory; validation under
FSDP runs on rank 0 over an unsharded copy gathered from all ranks. Checkpoints (`TrainState`: a
`RegionModel.save_pretrained` directory plus optimizer / scheduler / RNG state, so
`RegionModel.from_pretrained` opens it) are reported every ``train.checkpoint_every`` steps;
after a worker failure Ray restarts the workers (``run.max_failures``) and the loop resumes from
the latest checkpoint. Rank 0 writes one JSON line per step (loss, learning rate, samples/s) to
``<storage>/<name>/metrics.jsonl``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError
from .config import STRATEGIES, TrainJob, load_config

__all__ = ["load_config", "TrainJob", "train_loop", "train_local", "run_trainer", "RayTrainContext", "LocalContext",
           "DistributedContext", "check_ranks_in_sync", "parameter_checksum", "enable_activation_checkpointing",
           "STRATEGIES", "fsdp_blocks", "fsdp_shard", "gather_full_model", "newest_checkpoint"]

class RayTrainContext:
    """What the loop needs from Ray Train: rank, world size, device, DDP, checkpoints, reports."""

    def __init__(self, run_dir: str | Path | None = None):
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.run_dir = None if run_dir is None else Path(run_dir)

    @property
    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model, strategy: str = "ddp"):
        import ray.train.torch

        if strategy == "fsdp":  # wrapped here, in the worker (Ray's prepare_model knows FSDP1 only)
            return fsdp_shard(model, self.device, self.world)
        if self.world == 1:
            return model.to(self.device)
        # DAM leaves the blocks after its feature layer unused
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def latest_checkpoint(self):
        """Ray Train's latest reported checkpoint, else the newest complete one in the run's storage: a
        worker that dies right after a report can leave Ray's controller without it (seen with Ray
        2.60), and restarting from scratch would silently redo the finished steps."""
        import contextlib

        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            return checkpoint.as_directory()
        found = newest_checkpoint(self.run_dir) if self.run_dir is not None else None
        return None if found is None else contextlib.nullcontext(str(found))

    def report(self, metrics: dict, checkpoint_dir: str | None, *, sharded: bool = False) -> None:
        """``sharded``: every rank reports its own directory (its DCP shard; rank 0's also holds the
        consolidated model and state.json) and Ray Train merges them into one checkpoint."""
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)


class LocalContext:
    """One process, no Ray Train (e.g. inside a Ray task of the main job): checkpoints go to ``out``."""

    rank, world = 0, 1

    def __init__(self, out: str, device: str = "cpu"):
        import torch

        self.out, self.device = Path(out), torch.device(device)
        self.last: Path | None = None

    def prepare_model(self, model, strategy: str = "ddp"):
        if strategy == "fsdp":
            raise ConfigError("run.strategy=fsdp needs a torch.distributed process group: run under torchrun "
                              "(DistributedContext) or Ray Train (run_trainer), on any number of workers")
        return model.to(self.device)

    def latest_checkpoint(self):
        return None

    def report(self, metrics: dict, checkpoint_dir: str | None, *, sharded: bool = False) -> None:
        """Copy ``checkpoint_dir`` to ``out/checkpoint_<step>`` under a temporary name, renamed when complete
        (a full disk leaves a ``.checkpoint_*.partial`` folder, never a checkpoint that looks whole)."""
        import shutil

        if checkpoint_dir:
            target = self.out / f"checkpoint_{metrics['step']:06d}"
            partial = self.out / f".{target.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(checkpoint_dir, partial)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
            self.last = target


class DistributedContext(LocalContext):
    """An initialised ``torch.distributed`` process group without Ray (torchrun, ``mp.spawn``): the model is
    wrapped in DDP (or sharded with FSDP2, ``run.strategy=fsdp``), rank 0 writes the checkpoints to ``out``
    (with FSDP every rank adds its shard to the same directory)."""

    def __init__(self, out: str, device: str = "cpu"):
        import torch.distributed as dist

        if not dist.is_initialized():
            raise ConfigError("DistributedContext needs an initialised torch.distributed process group")
        super().__init__(out, device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def prepare_model(self, model, strategy: str = "ddp"):
        from torch.nn.parallel import DistributedDataParallel

        if strategy == "fsdp":
            return fsdp_shard(model, self.device, self.world)
        model = model.to(self.device)
        if self.world == 1:
            return model
        # DAM leaves the blocks after its feature layer unused
        return DistributedDataParallel(model, find_unused_parameters=True)

    def report(self, metrics: dict, checkpoint_dir: str | None, *, sharded: bool = False) -> None:
        """``sharded``: every rank's ``checkpoint_dir`` (its DCP shard files) is merged into one directory
        (as Ray Train merges the workers' checkpoints); rank 0's ``state.json`` goes in last, so
        `newest_checkpoint` never takes a checkpoint with a shard missing."""
        import shutil

        import torch.distributed as dist

        if not sharded:
            if self.rank == 0:
                super().report(metrics, checkpoint_dir)
            dist.barrier()
            return
        target = self.out / f"checkpoint_{metrics['step']:06d}"
        if self.rank == 0:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
        dist.barrier()
        src = Path(checkpoint_dir)
        shutil.copytree(src, target, dirs_exist_ok=True,
                        ignore=lambda d, names: {"state.json"} if Path(d) == src else set())
        dist.barrier()
        if self.rank == 0:
            shutil.copy2(src / "state.json", target / "state.json")
            self.last = target
        dist.barrier()


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the lines of the metrics log up to ``step`` (a run resumed there logs the later steps again;
    a kill between a metrics line and the next checkpoint must not leave them twice)."""
    from ..runtime.shards import atomic_write_bytes

    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        atomic_write_bytes(path, "".join(kept).encode())


def _all_reduce_sum(value: float, world: int) -> float:
    """``value`` summed over the ranks (the process group Ray Train / torchrun set up)."""
    if world == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t)


def parameter_checksum(model) -> tuple[float, float]:
    """``(sum, sum of squares)`` of every parameter in float64: equal on every rank of a synchronised run.

    FSDP-sharded parameters (DTensors) count with their full value (``full_tensor``: a collective, so every
    rank must call this), the same on every rank and equal to an unsharded run's."""
    import torch
    from torch.distributed.tensor import DTensor

    s = q = 0.0
    with torch.no_grad():
        for p in model.parameters():
            t = p.detach()
            t = (t.full_tensor() if isinstance(t, DTensor) else t).double()
            s += float(t.sum())
            q += float(t.square().sum())
    return s, q


def check_ranks_in_sync(model, world: int, step: int) -> None:
    """Raise `TrainingError` if the ranks' parameters differ (unsynchronised replicas)."""
    if world == 1:
        return
    import torch
    import torch.distributed as dist

    mine = torch.tensor(parameter_checksum(model), dtype=torch.float64)
    every = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    ref = every[0]
    bad = [r for r, c in enumerate(every) if not torch.allclose(c, ref, rtol=1e-9, atol=1e-9)]
    if bad:
        from ..errors import TrainingError

        raise TrainingError(f"after step {step} the parameters of ranks {bad} differ from rank 0's "
                            f"(checksums {[tuple(c.tolist()) for c in every]}): the replicas are not synchronised")



# ---------------------------------------------------------------------------------------------- FSDP2


def fsdp_blocks(model) -> list:
    """The transformer layers to shard one by one: the elements of every ``nn.ModuleList`` that are
    blocks (modules with children) holding trainable parameters — the LM's blocks, the vision encoder's
    layers, DAM's adapters, SCA's mixer layers — outermost first (nothing inside a chosen block)."""
    import torch.nn as nn

    chosen: list = []

    def visit(module):
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                for block in child:
                    if list(block.children()) and any(p.requires_grad for p in block.parameters()):
                        chosen.append(block)
                    else:
                        visit(block)
            else:
                visit(child)

    visit(model)
    return chosen


def fsdp_shard(model, device, world: int):
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) on every `fsdp_blocks` layer, then on the root with the
    frozen parameters ignored (SCA's SAM, frozen encoders / LMs stay plain, replicated tensors, so
    ``encode_image`` runs them outside ``forward``). The model is changed in place and returned.

    FSDP2 cannot shard 0-d parameters (DAM's adapter gates ``gamma``): those stay replicated too and
    `fsdp_sync_replicated` averages their gradients (listed in ``model.fsdp_replicated``)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = model.to(device)
    mesh = init_device_mesh(device.type, (world,))
    ignored = {p for p in model.parameters() if not p.requires_grad or p.ndim == 0}
    for block in fsdp_blocks(model):
        fully_shard(block, mesh=mesh, ignored_params=ignored)
    fully_shard(model, mesh=mesh, ignored_params=ignored or None)
    model.fsdp_replicated = [p for p in model.parameters() if p.requires_grad and p in ignored]
    return model


def fsdp_sync_replicated(model, world: int) -> None:
    """Average the gradients of the trainable parameters FSDP left replicated (`fsdp_shard`) over the ranks."""
    import torch.distributed as dist

    for p in getattr(model, "fsdp_replicated", ()):
        if p.grad is not None and world > 1:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def clip_grad_norm_sharded(model, max_norm: float, world: int) -> float:
    """`torch.nn.utils.clip_grad_norm_` (2-norm, same formula) over FSDP-sharded (DTensor) gradients and
    replicated ones: each rank's shards' squares summed over the ranks, the replicated ones once."""
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    sharded = [g.to_local() for g in grads if isinstance(g, DTensor)]
    plain = [g for g in grads if not isinstance(g, DTensor)]
    sq = torch.zeros((), dtype=torch.float64)
    for g in sharded:
        sq += g.detach().double().square().sum().cpu()
    if world > 1:
        dist.all_reduce(sq)
    for g in plain:
        sq += g.detach().double().square().sum().cpu()
    total = float(sq.sqrt())
    coef = min(max_norm / (total + 1e-6), 1.0)
    if coef < 1.0:
        for g in sharded + plain:
            g.detach().mul_(coef)
    return total


def meta_template(model):
    """A copy of ``model`` whose parameters live on the meta device (no memory) and whose buffers, tokenizer
    and config are real: the skeleton rank 0 fills with a gathered full state dict (`unsharded_copy`)."""
    import torch

    memo = {id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    return copy.deepcopy(model, memo)


def unsharded_copy(template, full_state: dict):
    """A plain (unsharded) model: a copy of `meta_template`'s ``template`` with ``full_state`` (the gathered
    full state dict) assigned; tied parameters tied again."""
    shadow = copy.deepcopy(template)
    groups: dict[int, list[str]] = {}
    for name, p in template.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    # own storage per tensor (gathered ones can be views of one buffer: safetensors refuses those)
    shadow.load_state_dict({k: v.detach().clone() for k, v in full_state.items()}, strict=False, assign=True)
    for names in groups.values():
        first = shadow.get_parameter(names[0])
        for name in names[1:]:
            owner, _, leaf = name.rpartition(".")
            setattr(shadow.get_submodule(owner) if owner else shadow, leaf, first)
    still_meta = [n for n, t in list(shadow.named_parameters()) + list(shadow.named_buffers()) if t.is_meta]
    if still_meta:
        from ..errors import CheckpointError

        raise CheckpointError(f"the gathered state dict misses {still_meta[:5]}")
    return shadow


def gather_full_model(model, template, rank: int):
    """Collective (every rank calls it): rank 0 gets an unsharded copy of the FSDP ``model`` on the CPU,
    the others None."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return unsharded_copy(template, full) if rank == 0 else None


def enable_activation_checkpointing(model) -> int:
    """Turn on activation checkpointing in every transformers sub-model (vision encoders, LMs); returns how many."""
    n = 0
    for m in model.modules():
        if getattr(m, "supports_gradient_checkpointing", False) and hasattr(m, "activation_checkpointing_enable"):
            m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            n += 1
    return n


def train_loop(cfg: TrainJob, ctx) -> None:
    """The training loop, identical on every rank (``ctx``: `RayTrainContext`, `DistributedContext` or
    `LocalContext`).

    A step takes one global batch of ``batch_size * world * grad_accum`` regions from the epoch's
    order (`task.epoch_samples`); rank ``r`` takes every ``world``-th of them, in ``grad_accum``
    micro-batches. Each micro-batch's loss is the *sum* over its target tokens divided by the target
    tokens of the whole global batch (all-reduced) times ``world`` — so after DDP / FSDP average the
    gradients, every token weighs the same whatever the worker count or accumulation, and 2 workers
    equal 1 worker with the same global batch. Gradients are synchronised only on the last micro-batch
    (DDP ``no_sync``; FSDP ``set_requires_gradient_sync``).

    ``run.strategy``: ``ddp`` (default; replicas) or ``fsdp`` (FSDP2 ``fully_shard`` on every trainable
    transformer layer and on the root, frozen parameters ignored: `fsdp_shard`). With ``fsdp`` a
    checkpoint holds every rank's shard of model + optimizer (``torch.distributed.checkpoint`` under
    ``sharded/``, resumable on any worker count: DCP reshards) *and*, from rank 0, the consolidated
    ``model.safetensors`` + config (`RegionModel.from_pretrained` opens it); validation gathers the full
    weights into an unsharded copy on rank 0 (every rank takes part in the gather) and runs there.
    """
    import contextlib

    import torch

    from .recipes import TrainState, build_optimizer, build_scheduler
    from .tasks import create_task

    rank, world = ctx.rank, ctx.world
    tc, recipe = cfg.train, cfg.recipe
    seed, accum = tc.seed, tc.grad_accum
    fsdp = cfg.run.strategy == "fsdp"
    torch.manual_seed(seed)
    task = create_task(cfg.task, seed=seed)
    model = task.build_model()
    if tc.activation_checkpointing:
        enable_activation_checkpointing(model)
    global_batch = tc.batch_size * world * accum
    total = tc.max_steps
    latest = ctx.latest_checkpoint()
    resume_dir = cfg.resume_from
    start = 0
    template = None
    if fsdp:
        template = meta_template(model) if rank == 0 else None  # the skeleton of the consolidated copies
        model = ddp = ctx.prepare_model(model, "fsdp")  # sharded in place, before the optimizer sees it
    optimizer = build_optimizer(model, recipe, batch_size=global_batch)
    scheduler = build_scheduler(optimizer, recipe, total_steps=total)
    source = latest if latest is not None else contextlib.nullcontext(resume_dir) if resume_dir else None
    if source is not None:
        load = TrainState.load_sharded if fsdp else TrainState.load
        with source as d:
            start = load(d, model=model, optimizer=optimizer, scheduler=scheduler)["step"]
    if not fsdp:
        ddp = ctx.prepare_model(model)
    device = ctx.device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.run.precision == "bf16"
                else contextlib.nullcontext())
    log_path = Path(cfg.run.storage) / cfg.run.name / "metrics.jsonl"
    if rank == 0:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, start)
    fail_at, marker, sync_every = tc.fail_at_step, tc.fail_marker, tc.check_sync_every
    epoch, order, k = 0, task.epoch_samples(0), 0  # one shuffle per epoch, the same on every rank
    steps_per_epoch = max(1, len(order) // global_batch)
    epoch, k = divmod(start, steps_per_epoch)
    if epoch:
        order = task.epoch_samples(epoch)
    for step in range(start, total):
        t0 = time.perf_counter()
        if k == steps_per_epoch:
            epoch, k = epoch + 1, 0
            order = task.epoch_samples(epoch)
        mine = order[k * global_batch: (k + 1) * global_batch][rank::world]
        k += 1
        torch.manual_seed(seed * 1_000_003 + step * world + rank)  # per-step RNG: dropout etc. resume exactly
        micro = [task.collate(mine[m::accum], device=device, step=step) for m in range(accum)]
        collate_s = time.perf_counter() - t0
        n_global = _all_reduce_sum(sum(model.n_targets(b) for b in micro), world)
        ddp.train()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for m, batch in enumerate(micro):
            last = m == accum - 1
            if fsdp:
                model.set_requires_gradient_sync(last)  # reduce-scatter on the last micro-batch only
                sync = contextlib.nullcontext()
            else:
                sync = contextlib.nullcontext() if last or not hasattr(ddp, "no_sync") else ddp.no_sync()
            with sync:
                with autocast:
                    loss = task.loss(ddp, batch, label_smoothing=recipe.label_smoothing, reduction="sum")
                (loss * (world / n_global)).backward()
            loss_sum += float(loss.detach())
        if fsdp:
            fsdp_sync_replicated(model, world)
        if recipe.grad_clip and fsdp:
            clip_grad_norm_sharded(model, recipe.grad_clip, world)
        elif recipe.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        if sync_every and done % sync_every == 0:
            check_ranks_in_sync(model, world, done)
        if fail_at is not None and done == fail_at and rank == world - 1 and marker and not os.path.exists(marker):
            Path(marker).write_text(f"worker {rank} killed after step {done}")
            os._exit(1)  # injected fault: this worker process dies
        step_s = time.perf_counter() - t0
        metrics = {"step": done, "epoch": epoch, "loss": _all_reduce_sum(loss_sum, world) / n_global,
                   "lr": scheduler.get_last_lr()[0], "samples_per_s": global_batch / step_s,
                   "step_s": step_s, "collate_s": collate_s}
        if not fsdp and hasattr(model, "training_stats"):  # e.g. DAM's gates and mask-embedding norm
            metrics.update(model.training_stats())
        if tc.validate_every and done % tc.validate_every == 0:
            if fsdp:  # sharded parameters: gather an unsharded copy (all ranks), validate it on rank 0
                full = gather_full_model(model, template, rank)
                if rank == 0:
                    metrics.update({f"val/{k}": v for k, v in task.evaluate(full.to(device)).items()})
                del full
            elif rank == 0:
                metrics.update({f"val/{k}": v for k, v in task.evaluate(model).items()})
        if rank == 0 and done % tc.log_every == 0:
            with open(log_path, "a") as f:
                f.write(json.dumps(metrics) + "\n")
        if done % tc.checkpoint_every == 0 or done == total:
            with tempfile.TemporaryDirectory() as tmp:
                if fsdp:
                    TrainState.save_sharded(tmp, step=done, model=model, optimizer=optimizer, scheduler=scheduler,
                                            config=to_dict(cfg), rank=rank,
                                            consolidate=lambda: gather_full_model(model, template, rank))
                    ctx.report(metrics, tmp, sharded=True)
                else:
                    if rank == 0:
                        TrainState.save(tmp, step=done, model=model, optimizer=optimizer, scheduler=scheduler,
                                        config=to_dict(cfg))
                    ctx.report(metrics, tmp if rank == 0 else None)


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint directory under ``run_dir`` with the highest step whose ``state.json`` (written last,
    atomically, by `TrainState.save`) is complete and whose ``model.safetensors`` holds every byte its
    header promises; None if there is none. Incomplete ones are skipped with a warning naming them."""
    import warnings

    best, best_step = None, -1
    for d in Path(run_dir).glob("checkpoint_*"):
        try:
            meta = json.loads((d / "state.json").read_text())
            step = int(meta["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a (complete) training checkpoint
        sharded_ok = not meta.get("sharded") or (d / "sharded" / ".metadata").is_file()
        if step <= best_step or not sharded_ok:
            continue
        if not _safetensors_complete(d / "model.safetensors"):
            warnings.warn(f"{d}: model.safetensors is missing or truncated; skipping this checkpoint", stacklevel=2)
            continue
        best, best_step = d, step
    return best


def _safetensors_complete(path: Path) -> bool:
    """True if ``path`` is a readable, complete safetensors file (`read_safetensors_header`)."""
    from ..errors import CheckpointError
    from ..models.checkpoint import read_safetensors_header

    try:
        read_safetensors_header(path)
        return True
    except CheckpointError:
        return False


def _train_loop_per_worker(settings: dict) -> None:
    """The per-worker entry point of the `TorchTrainer` (Ray hands it the `TrainJob`'s `to_dict` form)."""
    from ..config import from_mapping

    cfg = from_mapping(TrainJob, settings)
    train_loop(cfg, RayTrainContext(Path(cfg.run.storage) / cfg.run.name))


def train_local(cfg: TrainJob, out: str, device: str = "cpu") -> Path:
    """Run the same loop in this process (no Ray Train); returns the final checkpoint directory."""
    ctx = LocalContext(out, device)
    train_loop(cfg, ctx)
    return ctx.last


def run_trainer(cfg: TrainJob, *, address: str | None = None):
    """Launch the `TorchTrainer` (settings checked already: a `TrainJob`); returns Ray Train's `Result`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ..runtime.distributed import init_ray

    if not isinstance(cfg, TrainJob):
        raise ConfigError(f"run_trainer takes a TrainJob (regionlib.training.config.load_config), got {type(cfg).__name__}")
    init_ray(address)
    run_cfg = dataclasses.replace(cfg.run, storage=str(Path(cfg.run.storage).resolve()))
    cfg = dataclasses.replace(cfg, run=run_cfg)
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=to_dict(cfg),
        scaling_config=ScalingConfig(num_workers=run_cfg.workers, use_gpu=run_cfg.use_gpu,
                                     resources_per_worker={"CPU": run_cfg.cpus_per_worker}),
        run_config=RunConfig(name=run_cfg.name, storage_path=run_cfg.storage,
                             failure_config=FailureConfig(max_failures=run_cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
        torch_config=TorchConfig(backend="nccl" if run_cfg.use_gpu else "gloo"),
    )
    return trainer.fit()


