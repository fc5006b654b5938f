"""The training loop, identical on every rank, and its launchers (local process or Ray Train).

Config sections: ``task`` (what to train: a name from `regionlib.training.tasks.TASKS` and its
options: model preset, data, LoRA), ``recipe`` (a named recipe of `regionlib.training.recipes`
plus overrides), ``train`` (batch size per worker, steps, checkpoint / validation / log intervals,
seed) and ``run`` (workers, GPUs, precision, storage path, run name, max failures).

Each step every rank takes its share of one global batch (one shuffle per epoch, the same on
every rank and after restarts) and computes the loss through the (DDP-wrapped) model's
``forward``, so gradients are all-reduced. Checkpoints (`TrainState`: a
`RegionModel.save_pretrained` directory plus optimizer / scheduler / RNG state, so
`RegionModel.from_pretrained` opens it) are reported every ``train.checkpoint_every`` steps;
after a worker failure Ray restarts the workers (``run.max_failures``) and the loop resumes from
the latest checkpoint. Rank 0 writes one JSON line per step (loss, learning rate, samples/s) to
``<storage>/<name>/metrics.jsonl``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from ..errors import ConfigError

__all__ = ["DEFAULTS", "load_config", "train_loop", "train_local", "run_trainer", "RayTrainContext", "LocalContext"]

DEFAULTS = {
    "task": {"name": "regionworld-captioner"},
    "recipe": {"name": "dam"},
    "train": {"batch_size": 4, "max_steps": 20, "checkpoint_every": 10, "log_every": 1, "validate_every": 0,
              "seed": 0, "fail_at_step": None, "fail_marker": None},
    "run": {"workers": 1, "use_gpu": False, "precision": "fp32", "storage": "outputs/runs", "name": "train",
            "max_failures": 2, "cpus_per_worker": 1},
}


def load_config(path: str | None, overrides: list[str]) -> dict:
    """Defaults <- YAML file <- ``section.key[.sub...]=value`` overrides (values parsed as YAML)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        for section, values in loaded.items():
            if section not in cfg or not isinstance(values, dict):
                raise ConfigError(f"{path}: unknown section {section!r} (expected {sorted(cfg)})")
            cfg[section].update(values)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        if section not in cfg:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}")
        target = cfg[section]
        *parents, leaf = name.split(".")  # task.overrides.vision__path=... sets a nested key
        for key in parents:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {item!r}: {key!r} is not a mapping")
        target[leaf] = yaml.safe_load(value)
    return cfg


class RayTrainContext:
    """What the loop needs from Ray Train: rank, world size, device, DDP, checkpoints, reports."""

    def __init__(self):
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    @property
    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model):
        import ray.train.torch

        if self.world == 1:
            return model.to(self.device)
        # DAM leaves the blocks after its feature layer unused
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def latest_checkpoint(self):
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        return None if checkpoint is None else checkpoint.as_directory()

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)


class LocalContext:
    """One process, no Ray Train (e.g. inside a Ray task of the main job): checkpoints go to ``out``."""

    rank, world = 0, 1

    def __init__(self, out: str, device: str = "cpu"):
        import torch

        self.out, self.device = Path(out), torch.device(device)
        self.last: Path | None = None

    def prepare_model(self, model):
        return model.to(self.device)

    def latest_checkpoint(self):
        return None

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        import shutil

        if checkpoint_dir:
            target = self.out / f"checkpoint_{metrics['step']:06d}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(checkpoint_dir, target)
            self.last = target


def train_loop(cfg: dict, ctx) -> None:
    """The training loop, identical on every rank (``ctx``: `RayTrainContext` or `LocalContext`)."""
    import contextlib

    import numpy as np
    import torch

    from .recipes import TrainState, build_optimizer, build_scheduler, get_recipe
    from .tasks import create_task

    rank, world = ctx.rank, ctx.world
    tc = cfg["train"]
    seed = int(tc["seed"])
    torch.manual_seed(seed)
    task = create_task(cfg["task"], seed=seed)
    model = task.build_model()
    recipe_cfg = dict(cfg["recipe"])
    recipe = get_recipe(recipe_cfg.pop("name"), **recipe_cfg)
    optimizer = build_optimizer(model, recipe, batch_size=tc["batch_size"] * world)
    total = int(tc["max_steps"])
    scheduler = build_scheduler(optimizer, recipe, total_steps=total)
    start = 0
    latest = ctx.latest_checkpoint()
    resume_dir = cfg.get("resume_from")
    if latest is not None:
        with latest as d:
            start = TrainState.load(d, model=model, optimizer=optimizer, scheduler=scheduler)["step"]
    elif resume_dir:
        start = TrainState.load(resume_dir, model=model, optimizer=optimizer, scheduler=scheduler)["step"]
    ddp = ctx.prepare_model(model)
    device = ctx.device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg["run"]["precision"] == "bf16"
                else contextlib.nullcontext())
    samples = task.train_samples()
    n = len(samples)
    global_batch = tc["batch_size"] * world
    steps_per_epoch = max(1, n // global_batch)
    log_path = Path(cfg["run"]["storage"]) / cfg["run"]["name"] / "metrics.jsonl"
    if rank == 0:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    fail_at, marker = tc.get("fail_at_step"), tc.get("fail_marker")
    order_epoch, order = None, None
    for step in range(start, total):
        t0 = time.perf_counter()
        epoch, k = divmod(step, steps_per_epoch)
        if epoch != order_epoch:  # one shuffle per epoch, the same on every rank and after restarts
            order_epoch, order = epoch, np.random.default_rng(seed + epoch).permutation(n)
        idx = order[k * global_batch : (k + 1) * global_batch][rank::world]
        torch.manual_seed(seed * 1_000_003 + step * world + rank)  # per-step RNG: dropout etc. resume exactly
        batch = task.collate([samples[i] for i in idx], device=device)
        ddp.train()
        with autocast:
            loss = task.loss(ddp, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        if fail_at is not None and done == int(fail_at) and rank == world - 1 and marker and not os.path.exists(marker):
            Path(marker).write_text(f"worker {rank} killed after step {done}")
            os._exit(1)  # injected fault: this worker process dies
        metrics = {"step": done, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                   "samples_per_s": global_batch / (time.perf_counter() - t0)}
        if tc.get("validate_every") and done % int(tc["validate_every"]) == 0 and rank == 0:
            metrics.update({f"val/{k}": v for k, v in task.evaluate(model).items()})
        if rank == 0 and done % int(tc["log_every"]) == 0:
            with open(log_path, "a") as f:
                f.write(json.dumps(metrics) + "\n")
        if done % int(tc["checkpoint_every"]) == 0 or done == total:
            with tempfile.TemporaryDirectory() as tmp:
                if rank == 0:
                    TrainState.save(tmp, step=done, model=model, optimizer=optimizer, scheduler=scheduler, config=cfg)
                ctx.report(metrics, tmp if rank == 0 else None)


def _train_loop_per_worker(cfg: dict) -> None:
    """The per-worker entry point of the `TorchTrainer`."""
    train_loop(cfg, RayTrainContext())


def train_local(cfg: dict, out: str, device: str = "cpu") -> Path:
    """Run the same loop in this process (no Ray Train); returns the final checkpoint directory."""
    ctx = LocalContext(out, device)
    train_loop(cfg, ctx)
    return ctx.last


def run_trainer(cfg: dict, *, address: str | None = None):
    """Launch the `TorchTrainer`; returns Ray Train's `Result`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ..distributed import init_ray

    init_ray(address)
    run_cfg = cfg["run"]
    storage = str(Path(run_cfg["storage"]).resolve())
    cfg = copy.deepcopy(cfg)
    cfg["run"]["storage"] = storage
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=int(run_cfg["workers"]), use_gpu=bool(run_cfg["use_gpu"]),
                                     resources_per_worker={"CPU": float(run_cfg["cpus_per_worker"])}),
        run_config=RunConfig(name=run_cfg["name"], storage_path=storage,
                             failure_config=FailureConfig(max_failures=int(run_cfg["max_failures"])),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
        torch_config=TorchConfig(backend="nccl" if run_cfg["use_gpu"] else "gloo"),
    )
    return trainer.fit()


