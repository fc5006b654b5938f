"""Ray Train on 2 CPU workers (gloo): killed after a checkpoint, restarted, equal to an uninterrupted run."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def run(tmp_path, name, **train):
    from regionlib.training import loop as job

    cfg = job.load_config(None, [
        # eps = 1 keeps Adam's step linear in the gradient: DDP's first-step bucket order after a restart
        # must not be amplified by g / sqrt(v) on near-zero gradients into a spurious difference
        "task.preset=tiny-dam", "task.n_images=4", "task.n_val=1", "recipe.lr=0.003", "recipe.warmup_steps=1",
        "recipe.eps=1.0",
        "train.batch_size=2", "train.max_steps=4", "train.checkpoint_every=2", "run.workers=2",
        "run.cpus_per_worker=0.5", f"run.storage={tmp_path}", f"run.name={name}",
        *[f"train.{k}={v}" for k, v in train.items()]])
    return job.run_trainer(cfg)


def test_restart_after_worker_death_equals_uninterrupted(local_ray, tmp_path):
    clean = run(tmp_path, "clean")
    marker = tmp_path / "killed"
    faulty = run(tmp_path, "faulty", fail_at_step=3, fail_marker=str(marker))
    assert marker.exists(), "the fault was not injected"
    assert clean.metrics["step"] == faulty.metrics["step"] == 4
    a = load_file(str(Path(clean.checkpoint.path) / "model.safetensors"))
    b = load_file(str(Path(faulty.checkpoint.path) / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    lines = (tmp_path / "faulty" / "metrics.jsonl").read_text().splitlines()
    assert '"samples_per_s"' in lines[0]
    # resumed from the step-2 checkpoint, not retrained from scratch: every step logged once, in order
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
