"""Launching the training loop on several gloo ranks for the tests, as a user does: torchrun on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]

TRAIN = """
import json, sys
import torch, torch.distributed as dist
from regionlib.config import from_mapping
from regionlib.training.loop import DistributedContext, TrainJob, train_loop
torch.set_num_threads(1)
dist.init_process_group("gloo")
try:
    train_loop(from_mapping(TrainJob, json.loads(open(sys.argv[1]).read())), DistributedContext(sys.argv[2]))
finally:
    dist.destroy_process_group()
"""


def torchrun(tmp: Path, script: str, *args: str, nproc: int = 2) -> str:
    """Run ``script`` on ``nproc`` gloo ranks with torchrun on 127.0.0.1; its stdout (asserts success)."""
    path = tmp / "script.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
                          "127.0.0.1", "--master-port", str(port), str(path), *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-4000:]
    return res.stdout


def train_ranks(tmp: Path, cfg, out: Path, nproc: int = 2) -> str:
    """``train_loop(cfg)`` (a `TrainJob`) on ``nproc`` ranks (`DistributedContext`), checkpoints under ``out``."""
    from regionlib.config import to_dict

    path = tmp / f"{out.name}.json"
    path.write_text(json.dumps(to_dict(cfg)))
    return torchrun(tmp, TRAIN, str(path), str(out), nproc=nproc)


def weights(checkpoint: Path) -> dict:
    return load_file(str(checkpoint / "model.safetensors"))


def assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)
