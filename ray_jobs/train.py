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
    """Defaults <- YAML file <- ``key.sub=value`` overrides (values parsed as YAML)."""
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
        cfg[section][name] = parse_value(value)
    return cfg


def train_loop_per_worker(cfg: dict) -> None:
    """The per-worker loop (runs inside each Ray Train worker)."""
    import numpy as np
    import ray.train
    import ray.train.torch
    import torch

    from regionlib.train_tasks import create_task
    from regionlib.training import TrainState, build_optimizer, build_scheduler, get_recipe

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
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
    checkpoint = ray.train.get_checkpoint()
    resume_dir = cfg.get("resume_from")
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = TrainState.load(d, model=model, optimizer=optimizer, scheduler=scheduler)["step"]
    elif resume_dir:
        start = TrainState.load(resume_dir, model=model, optimizer=optimizer, scheduler=scheduler)["step"]
    ddp = (ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
           if world > 1 else model)  # DAM leaves the blocks after its feature layer unused
    device = ray.train.torch.get_device()
    if world == 1:
        model.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg["run"]["precision"] == "bf16")
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
                ckpt = None
                if rank == 0:
                    TrainState.save(tmp, step=done, model=model, optimizer=optimizer, scheduler=scheduler, config=cfg)
                    ckpt = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(metrics, checkpoint=ckpt)


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
