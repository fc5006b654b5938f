"""Ray Train on 2 CPU workers (gloo): killed after a checkpoint, restarted, equal to an uninterrupted run."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def run(tmp_path, name, **train):
    from regionlib.training import loop as job

    cfg = job.load_config(None, [
        "task.preset=tiny-dam", "task.n_images=4", "task.n_val=1", "recipe.lr=0.003", "recipe.warmup_steps=1",
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
    assert len(lines) >= 4 and '"samples_per_s"' in lines[0]
