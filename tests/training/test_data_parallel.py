"""Data parallelism is correct: 2 gloo ranks stay identical after every step and equal a 1-rank run with
the same global batch; gradient accumulation of 2 x half a batch equals the whole batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from regionlib.training.loop import load_config, train_local

pytestmark = pytest.mark.slow


def _cfg(tmp: Path, name: str, *, batch_size: int, grad_accum: int = 1, preset: str = "tiny-dam") -> dict:
    return load_config(None, [
        # eps = 1: Adam's step is then linear in the gradient, so float summation order (rank splits)
        # cannot be amplified by g / sqrt(v) on near-zero gradients; the comparison tests the gradients
        f"task.preset={preset}", "task.n_images=6", "task.n_val=0", "recipe.lr=0.003", "recipe.warmup_steps=1",
        "recipe.eps=1.0",
        f"train.batch_size={batch_size}", f"train.grad_accum={grad_accum}", "train.max_steps=3",
        "train.checkpoint_every=3", "train.check_sync_every=1", f"run.storage={tmp}", f"run.name={name}"])


TRAIN = """
import json, sys
import torch, torch.distributed as dist
from regionlib.training.loop import DistributedContext, train_loop
torch.set_num_threads(1)
dist.init_process_group("gloo")
try:
    train_loop(json.loads(open(sys.argv[1]).read()), DistributedContext(sys.argv[2]))
finally:
    dist.destroy_process_group()
"""

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


def torchrun(tmp: Path, script: str, *args: str) -> str:
    """Run ``script`` on 2 gloo ranks with torchrun on 127.0.0.1 (as a user launches multi-process training)."""
    path = tmp / "script.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(port), str(path), *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _weights(checkpoint: Path) -> dict:
    return load_file(str(checkpoint / "model.safetensors"))


def _assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-sca"])
def test_two_ranks_stay_in_sync_and_equal_one_rank_with_the_same_global_batch(tmp_path, preset):
    """Bug caught: the loss computed on the unwrapped module (DDP's forward skipped) — gradients never
    all-reduced, each rank training its own replica (check_sync_every=1 raises TrainingError then) — and
    per-rank token means weighting the ranks' tokens unequally (the 1-rank run would differ)."""
    torch.set_num_threads(1)
    one = train_local(_cfg(tmp_path, "one", batch_size=4, preset=preset), str(tmp_path / "one"))
    two = tmp_path / "two"
    cfg = tmp_path / "two.json"
    cfg.write_text(json.dumps(_cfg(tmp_path, "two", batch_size=2, preset=preset)))
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
