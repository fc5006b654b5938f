"""A real local head (`ray start --head` on 127.0.0.1, the `ray_head` fixture) and a job submitted to it with `ray job submit`."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def test_job_submitted_to_a_running_head(ray_head, sample_images, tmp_path):
    url, env, temp_dir = ray_head.dashboard, ray_head.env, ray_head.temp_dir
    out = tmp_path / "cache"
    cmd = [RAY, "job", "submit", "--address", url, "--working-dir", str(REPO), "--",
           "python", "ray_jobs/cache_features.py", "--images", str(sample_images), "--out", str(out), "--shard-size", "3"]
    deadline = time.time() + 180
    while True:  # the head's job agent comes up a little after the dashboard answers
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        if "No available agent" not in proc.stderr + proc.stdout or time.time() > deadline:
            break
        time.sleep(3)
    agent_log = "".join(p.read_text(errors="replace")[-2000:] for p in temp_dir.glob("session_*/logs/dashboard_agent.log"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + "\nagent log:\n" + agent_log
    assert "succeeded" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(i for e in manifest["shards"].values() for i in e["ids"]) == sorted(p.stem for p in sample_images.glob("*.png"))
