import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def free_port():
    """A function returning a free TCP port on 127.0.0.1."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


@pytest.fixture
def ray_head(free_port):
    """A real `ray start --head` on 127.0.0.1 with free ports: ``.dashboard`` (URL for `ray job submit`),
    ``.gcs`` (address for a driver), ``.env`` (its environment, auth off) and ``.temp_dir`` (its logs)."""
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
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: `--node-ip-address=127.0.0.1` stays 127.0.0.1 (else Ray swaps in the
    # machine's address and listens on every interface), for the head and for drivers run with this environment
    env = dict(os.environ, PATH=path, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    for secret in ("REGIONLIB_JUDGE_API_KEY", "OPENAI_API_KEY"):
        env.pop(secret, None)
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
        yield SimpleNamespace(dashboard=url, gcs=f"127.0.0.1:{port}", env=env, temp_dir=Path(temp_dir))
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def local_ray():
    """One local Ray instance (127.0.0.1, 2 CPUs) shared by the in-process job tests."""
    import ray

    from regionlib.runtime.distributed import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory):
    """Five scikit-image photographs written as PNG files (downscaled to 96 px)."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("images")
    for name in ["astronaut", "chelsea", "coffee", "rocket", "camera"]:
        img = Image.fromarray(getattr(data, name)())
        img.thumbnail((96, 96))
        img.save(root / f"{name}.png")
    return root
