"""Distributed training on Ray Train (`TorchTrainer`): one YAML config plus command-line overrides.

Local:    python ray_jobs/train.py --config ray_jobs/configs/dam_tiny.yaml --set train.max_steps=50
Cluster:  ray job submit --working-dir . -- python ray_jobs/train.py --config ray_jobs/configs/dam_tiny.yaml \\
              --set run.workers=8 --set run.use_gpu=true --set run.storage=/shared/runs

Config sections: ``task`` (what to train: a name from `regionlib.train_tasks.TASKS` and its
options: model preset, data, LoRA), ``recipe`` (a named recipe of `regionlib.training` plus
overrides), ``train`` (batch size per worker, steps, checkpoint / validation / log intervals,
seed) and ``run`` (workers, GPUs, precision, storage path, run name, max failures).

Checkpoints (safetensors weights + optimizer / scheduler / RNG state + config) are reported to
Ray Train every ``train.checkpoint_every`` steps; after a worker failure Ray restarts the
workers (``run.max_failures``) and the loop resumes from the latest checkpoint; ``--resume
PATH`` resumes a stopped run from a checkpoint directory. Rank 0 writes one JSON line per step
(loss, learning rate, samples/s) to ``<storage>/<name>/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

import yaml  # noqa: E402

from regionlib.errors import ConfigError  # noqa: E402

DEFAULTS = {
    "task": {"name": "regionworld-captioner"},
    "recipe": {"name": "dam"},
    "train": {"batch_size": 4, "max_steps": 20, "checkpoint_every": 10, "log_every": 1, "validate_every": 0,
              "seed": 0, "fail_at_step": None, "fail_marker": None},
    "run": {"workers": 1, "use_gpu": False, "precision": "fp32", "storage": "outputs/runs", "name": "train",
            "max_failures": 2, "cpus_per_worker": 1},
}


def parse_value(text: str):
    return yaml.safe_load(text)


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
        target[leaf] = parse_value(value)
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

    from regionlib.train_tasks import create_task
    from regionlib.training import TrainState, build_optimizer, build_scheduler, get_recipe

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
    for step in range(start, total):
        t0 = time.perf_counter()
        epoch, k = divmod(step, steps_per_epoch)
        order = np.random.default_rng(seed + epoch).permutation(n)  # same order on every rank and after restarts
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


def train_loop_per_worker(cfg: dict) -> None:
    """The per-worker entry point of the `TorchTrainer`."""
    train_loop(cfg, RayTrainContext())


def train_local(cfg: dict, out: str, device: str = "cpu") -> Path:
    """Run the same loop in this process (no Ray Train); returns the final checkpoint directory."""
    ctx = LocalContext(out, device)
    train_loop(cfg, ctx)
    return ctx.last


def run(cfg: dict, *, address: str | None = None):
    """Launch the `TorchTrainer`; returns Ray Train's `Result`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from regionlib.distributed import init_ray

    init_ray(address)
    run_cfg = cfg["run"]
    storage = str(Path(run_cfg["storage"]).resolve())
    cfg = copy.deepcopy(cfg)
    cfg["run"]["storage"] = storage
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=int(run_cfg["workers"]), use_gpu=bool(run_cfg["use_gpu"]),
                                     resources_per_worker={"CPU": float(run_cfg["cpus_per_worker"])}),
        run_config=RunConfig(name=run_cfg["name"], storage_path=storage,
                             failure_config=FailureConfig(max_failures=int(run_cfg["max_failures"])),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
        torch_config=TorchConfig(backend="nccl" if run_cfg["use_gpu"] else "gloo"),
    )
    return trainer.fit()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (see ray_jobs/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--resume", help="checkpoint directory to resume from")
    parser.add_argument("--address", default=None)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    if args.resume:
        cfg["resume_from"] = str(Path(args.resume).resolve())
    result = run(cfg, address=args.address)
    print(json.dumps({"metrics": result.metrics, "checkpoint": result.checkpoint.path if result.checkpoint else None},
                     default=str))
    return result


if __name__ == "__main__":
    main()
