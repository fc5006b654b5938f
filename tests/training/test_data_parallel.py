"""Data parallelism is correct: 2 gloo ranks stay identical after every step and equal a 1-rank run with
the same global batch; gradient accumulation of 2 x half a batch equals the whole batch."""

import json
from pathlib import Path

import pytest
import torch

from regionlib.config import to_dict
from regionlib.training.loop import load_config, train_local
from tests.training.launch import TRAIN, torchrun
from tests.training.launch import assert_same as _assert_same
from tests.training.launch import weights as _weights

pytestmark = pytest.mark.slow


def _cfg(tmp: Path, name: str, *, batch_size: int, grad_accum: int = 1, preset: str = "tiny-dam"):
    return load_config(None, [
        # eps = 1: Adam's step is then linear in the gradient, so float summation order (rank splits)
        # cannot be amplified by g / sqrt(v) on near-zero gradients; the comparison tests the gradients
        f"task.preset={preset}", "task.n_images=6", "task.n_val=0", "recipe.lr=0.003", "recipe.warmup_steps=1",
        "recipe.eps=1.0",
        f"train.batch_size={batch_size}", f"train.grad_accum={grad_accum}", "train.max_steps=3",
        "train.checkpoint_every=3", "train.check_sync_every=1", f"run.storage={tmp}", f"run.name={name}"])


DRIFT = """
import torch, torch.distributed as dist
from regionlib.errors import TrainingError
from regionlib.models import create_model
from regionlib.training.loop import check_ranks_in_sync
dist.init_process_group("gloo")
model = create_model("tiny-dam", seed=0)
check_ranks_in_sync(model, 2, step=0)  # same seed: in sync
if dist.get_rank() == 1:
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
try:
    check_ranks_in_sync(model, 2, step=1)
except TrainingError as exc:
    assert "ranks [1]" in str(exc), exc
    print("DRIFT-DETECTED")
dist.destroy_process_group()
"""


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-sca"])
def test_two_ranks_stay_in_sync_and_equal_one_rank_with_the_same_global_batch(tmp_path, preset):
    """Bug caught: the loss computed on the unwrapped module (DDP's forward skipped) — gradients never
    all-reduced, each rank training its own replica (check_sync_every=1 raises TrainingError then) — and
    per-rank token means weighting the ranks' tokens unequally (the 1-rank run would differ)."""
    torch.set_num_threads(1)
    one = train_local(_cfg(tmp_path, "one", batch_size=4, preset=preset), str(tmp_path / "one"))
    two = tmp_path / "two"
    cfg = tmp_path / "two.json"
    cfg.write_text(json.dumps(to_dict(_cfg(tmp_path, "two", batch_size=2, preset=preset))))
    torchrun(tmp_path, TRAIN, str(cfg), str(two))
    _assert_same(_weights(one), _weights(two / one.name), atol=1e-6)
    assert _weights(one) != {}  # and training moved the weights: not vacuous
    log = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 3


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
    """Bug caught: accumulated micro-batch losses not rescaled (k times the gradient) or averaged per
    micro-batch instead of per token."""
    torch.set_num_threads(1)
    whole = train_local(_cfg(tmp_path, "whole", batch_size=4), str(tmp_path / "whole"))
    accum = train_local(_cfg(tmp_path, "accum", batch_size=2, grad_accum=2), str(tmp_path / "accum"))
    _assert_same(_weights(whole), _weights(accum), atol=1e-6)


def test_unsynchronised_replicas_are_a_typed_error(tmp_path):
    """The sync check itself can fail: replicas that drift apart (rank 1 perturbed) raise TrainingError."""
    assert torchrun(tmp_path, DRIFT).count("DRIFT-DETECTED") == 2  # every rank sees it
