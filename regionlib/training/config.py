"""The training job's settings (`TrainJob`), in the one config convention (`regionlib.config`).

Sections: ``task`` (what to train: `regionlib.training.tasks.RegionCaptionConfig`), ``recipe`` (a
named `regionlib.training.recipes.Recipe` plus field overrides), ``train`` (`TrainSettings`: batch
size per worker, steps, intervals, seed) and ``run`` (`RunSettings`: workers, GPUs, precision,
storage, run name, failures, strategy); ``resume_from`` a checkpoint directory. Built by
`load_config` from a YAML file and ``--set section.key=value`` overrides; unknown keys, wrong types
and out-of-range values are a `ConfigError` before Ray or any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import Settings, build, setting
from .recipes import RECIPES, Recipe
from .tasks import RegionCaptionConfig

__all__ = ["TrainSettings", "RunSettings", "TrainJob", "load_config", "STRATEGIES", "PRECISIONS"]

STRATEGIES = ("ddp", "fsdp")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Steps and intervals; a step takes ``batch_size * workers * grad_accum`` regions."""

    batch_size: int = setting(4, min=1, help="regions per worker per micro-batch")
    grad_accum: int = setting(1, min=1, help="micro-batches per step")
    max_steps: int = setting(20, min=1)
    checkpoint_every: int = setting(10, min=1, help="steps between checkpoints (the last step always saves)")
    log_every: int = setting(1, min=1, help="steps between metrics.jsonl lines")
    validate_every: int = setting(0, min=0, help="steps between validations (0: never)")
    check_sync_every: int = setting(0, min=0, help="steps between checks that every rank holds the same weights")
    activation_checkpointing: bool = False
    seed: int = setting(0, min=0)
    fail_at_step: int | None = setting(None, min=1, help="tests: the last worker dies after this step, once")
    fail_marker: str | None = setting(None, help="tests: the file that says the fault was injected")


@dataclass(frozen=True)
class RunSettings(Settings):
    """Where and on what the loop runs."""

    workers: int = setting(1, min=1)
    use_gpu: bool = False
    precision: str = setting("fp32", choices=PRECISIONS, help="bf16: autocast to bfloat16")
    storage: str = setting("outputs/runs", help="the runs' folder; <storage>/<name>/metrics.jsonl")
    name: str = "train"
    max_failures: int = setting(2, min=0, help="worker failures Ray Train restarts from the last checkpoint")
    cpus_per_worker: float = setting(1.0, gt=0)
    strategy: str = setting("ddp", choices=STRATEGIES, help="ddp: replicas; fsdp: FSDP2 shards")


@dataclass(frozen=True)
class TrainJob(Settings):
    """Everything one training run needs (`regionlib.training.loop.train_loop`)."""

    task: RegionCaptionConfig = field(default_factory=RegionCaptionConfig)
    recipe: Recipe = field(default_factory=lambda: RECIPES["dam"])
    train: TrainSettings = field(default_factory=TrainSettings)
    run: RunSettings = field(default_factory=RunSettings)
    resume_from: str | None = setting(None, help="a checkpoint directory to resume from")


def load_config(path: str | Path | None, overrides: Sequence[str] = (), **sections) -> TrainJob:
    """`TrainJob` from its defaults <- the YAML file ``path`` <- ``section.key=value`` ``overrides`` <-
    ``sections`` (mappings, e.g. ``task={"sources": [...]}``)."""
    return build(TrainJob, path, overrides, **sections)
