"""Ray Train on 2 CPU workers (gloo), DDP and FSDP: killed after a checkpoint, restarted, equal to an
uninterrupted run. Both on the shared local Ray (`local_ray`): one Ray start for the two.

The uninterrupted reference is the same loop in this process on one rank with the same global batch
(`train_local`, batch 4 = 2 workers x 2): a second Ray Train run (~40-50 s on 2 cores) would prove no more,
since two ranks equal one rank with the same global batch (tests/training/test_data_parallel.py and
test_fsdp.py), and a restart that differs from an uninterrupted run differs from this reference too."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from regionlib.training.loop import load_config, run_trainer, train_local

pytestmark = pytest.mark.slow


def _weights(checkpoint) -> dict:
    return load_file(str(Path(checkpoint) / "model.safetensors"))


def test_restart_after_worker_death_equals_uninterrupted(local_ray, tmp_path):
    """Bugs caught: a restart that retrains from scratch (steps logged twice), resumes from the wrong step
    or loses the optimizer / scheduler state or the data position (the weights would differ)."""

    def cfg(name, batch_size, **train):
        return load_config(None, [
            # eps = 1 keeps Adam's step linear in the gradient: DDP's first-step bucket order after a restart
            # must not be amplified by g / sqrt(v) on near-zero gradients into a spurious difference
            "task.preset=tiny-dam", "task.n_images=4", "task.n_val=1", "recipe.lr=0.003", "recipe.warmup_steps=1",
            "recipe.eps=1.0", f"train.batch_size={batch_size}", "train.max_steps=4", "train.checkpoint_every=2",
            "run.workers=2", "run.cpus_per_worker=0.5", f"run.storage={tmp_path}", f"run.name={name}",
            *[f"train.{k}={v}" for k, v in train.items()]])

    torch.set_num_threads(1)
    clean = train_local(cfg("clean", 4), str(tmp_path / "clean"))
    marker = tmp_path / "killed"
    faulty = run_trainer(cfg("faulty", 2, fail_at_step=3, fail_marker=str(marker)))
    assert marker.exists(), "the fault was not injected"
    assert faulty.metrics["step"] == 4
    a, b = _weights(clean), _weights(faulty.checkpoint.path)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    lines = (tmp_path / "faulty" / "metrics.jsonl").read_text().splitlines()
    assert '"samples_per_s"' in lines[0]
    # resumed from the step-2 checkpoint, not retrained from scratch: every step logged once, in order
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]


def _assert_same(a: dict, b: dict, atol: float) -> None:
    common = a.keys() & b.keys()  # tied weights may be stored under either name
    assert len(common) >= len(a) - 1 and len(common) >= len(b) - 1, (sorted(a.keys() ^ b.keys()))
    for k in common:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def test_ray_train_fsdp_restart_after_worker_death_equals_uninterrupted(local_ray, tmp_path):
    """Bugs caught under Ray Train (`RayTrainContext`): Ray's ``prepare_model`` (DDP / FSDP1) used instead of
    FSDP2, only rank 0's shard reported (the merged checkpoint would lack ``__1_0.distcp`` and the restart
    could not load), a restart that retrains from scratch (steps logged twice) or loses optimizer state."""

    def cfg(name, batch_size, strategy, *extra):
        # eps = 1: Adam's step is linear in the gradient, so reduction order (rank splits) is not amplified
        return load_config(None, [
            "task.preset=tiny-dam", "task.n_images=6", "task.n_val=0", "recipe.lr=0.003", "recipe.warmup_steps=1",
            "recipe.eps=1.0", f"train.batch_size={batch_size}", "train.max_steps=4", "train.checkpoint_every=2",
            "train.check_sync_every=1", f"run.storage={tmp_path}", f"run.name={name}", f"run.strategy={strategy}",
            *extra])

    torch.set_num_threads(1)
    ref = _weights(train_local(cfg("ref", 4, "ddp"), str(tmp_path / "ref")))
    marker = tmp_path / "killed"
    result = run_trainer(cfg("faulty", 2, "fsdp", "run.workers=2", "run.cpus_per_worker=0.5", "train.fail_at_step=3",
                             f"train.fail_marker={marker}"))
    assert marker.exists(), "the fault was not injected"
    ckpt = Path(result.checkpoint.path)
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= {p.name for p in (ckpt / "sharded").iterdir()}
    _assert_same(ref, _weights(ckpt), atol=1e-6)
    steps = [json.loads(x)["step"] for x in (tmp_path / "faulty" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
