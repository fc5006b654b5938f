"""A real local head (`ray start --head` on 127.0.0.1) and a job submitted to it with `ray job submit`."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def ray_head(free_port):
    port, dash = free_port(), free_port()
    # every port of the head explicit: another local Ray in this test session (the package-scoped
    # `local_ray`) already holds the defaults, e.g. the dashboard agent's 52365, and a head whose
    # agent cannot bind never accepts jobs ("No available agent to submit job")
    ports = {"dashboard-agent-listen-port": free_port(), "dashboard-agent-grpc-port": free_port(),
             "metrics-export-port": free_port(), "runtime-env-agent-port": free_port(),
             "ray-client-server-port": free_port(), "node-manager-port": free_port(),
             "object-manager-port": free_port()}
    temp_dir = tempfile.mkdtemp(prefix="rl-ray-", dir="/tmp")  # short: Ray's unix sockets live here
    # as a user with the environment activated: `python` and `ray` resolve to this venv's
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats", *[f"--{k}={v}" for k, v in ports.items()]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)
                break
            except OSError:
                if time.time() > deadline or head.poll() is not None:
                    raise RuntimeError("the Ray head did not come up")
                time.sleep(1)
        yield url, env, Path(temp_dir)
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_job_submitted_to_a_running_head(ray_head, sample_images, tmp_path):
    url, env, temp_dir = ray_head
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
