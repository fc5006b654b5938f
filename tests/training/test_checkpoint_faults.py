"""Faults around training checkpoints and the metrics log: nothing lost, nothing logged twice."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from regionlib.training.loop import LocalContext, load_config, newest_checkpoint, train_local


def _cfg(tmp: Path, name: str, steps: int):
    return load_config(None, ["task.preset=tiny-pooled", "task.n_images=2", "task.n_val=0", "train.batch_size=2",
                              f"train.max_steps={steps}", "train.checkpoint_every=2", f"run.storage={tmp}",
                              f"run.name={name}"])


def _steps(tmp: Path, name: str) -> list[int]:
    return [json.loads(line)["step"] for line in (tmp / name / "metrics.jsonl").read_text().splitlines()]


def test_a_resume_after_a_kill_between_a_log_line_and_its_checkpoint_logs_each_step_once(tmp_path):
    """Bug caught: steps logged after the last checkpoint, then logged again by the resumed run (two lines for
    step 3 in metrics.jsonl: a loss curve with a loop in it)."""
    out = tmp_path / "ckpts"
    train_local(_cfg(tmp_path, "run", 3), str(out))  # checkpoints at 2 and 3, log 1..3
    shutil.rmtree(out / "checkpoint_000003")  # as if killed after step 3's log line, before its checkpoint
    resumed = dataclasses.replace(_cfg(tmp_path, "run", 4), resume_from=str(out / "checkpoint_000002"))
    train_local(resumed, str(out))
    assert _steps(tmp_path, "run") == [1, 2, 3, 4]


def test_a_truncated_checkpoint_is_never_chosen_to_resume_from(tmp_path):
    """Bug caught: a disk that fills while a checkpoint is copied leaves a folder with a complete state.json and a
    0-byte (or cut) model.safetensors; `newest_checkpoint` took it over the intact previous one and the resume
    died with a bare SafetensorError."""
    out = tmp_path / "ckpts"
    train_local(_cfg(tmp_path, "run", 4), str(out))
    assert newest_checkpoint(out) == out / "checkpoint_000004"
    model = out / "checkpoint_000004" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-7])  # cut short
    with pytest.warns(UserWarning, match="checkpoint_000004.*truncated"):
        assert newest_checkpoint(out) == out / "checkpoint_000002"
    model.write_bytes(b"")
    with pytest.warns(UserWarning, match="truncated"):
        assert newest_checkpoint(out) == out / "checkpoint_000002"


def test_a_checkpoint_copy_that_fails_leaves_no_checkpoint_folder(tmp_path, monkeypatch):
    """Bug caught: a copy interrupted half-way (disk full) leaving ``checkpoint_*`` with some of its files: only a
    hidden ``.checkpoint_*.partial`` may remain, and the previous checkpoint stays the newest."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "state.json").write_text(json.dumps({"step": 2}))
    (src / "model.safetensors").write_bytes(b"x" * 10)
    ctx = LocalContext(str(tmp_path / "out"))

    def full_disk(s, d, **kw):
        Path(d).mkdir(parents=True)
        (Path(d) / "state.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", full_disk)
    with pytest.raises(OSError, match="No space"):
        ctx.report({"step": 2}, str(src))
    assert not (tmp_path / "out" / "checkpoint_000002").exists() and ctx.last is None
