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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A function returning a free TCP port on 127.0.0.1."""
    return _free_port


# ------------------------------------------------------------------ shared clusters, stopped after their last user
# A Ray cluster costs ~15-20 s to start on 2 cores and, left running, 5-12 % of a core while idle. Each is
# started by the first test that names its fixture and stopped right after the last test of the session
# that names it (`pytest_runtest_teardown` below), not at the end of the session: the rest of the suite
# (models, notebooks, training) does not run beside an idle cluster. A pytest "package" scope would not do
# that here: tests/jobs is not a Python package, so it lasts the whole session.
_RUNNING: dict[str, tuple[object, object]] = {}  # fixture name -> (value, stop function)


def _shared(name: str, start):
    if name not in _RUNNING:
        _RUNNING[name] = start()
    return _RUNNING[name][0]


def _stop(name: str) -> None:
    if name in _RUNNING:
        _RUNNING.pop(name)[1]()


def pytest_runtest_teardown(item, nextitem):
    last = getattr(item.session, "_regionlib_last_users", None)
    if last is None:  # fixture name -> the last test in the run that uses it
        last = {n: it for it in item.session.items for n in _SHARED_FIXTURES if n in it.fixturenames}
        item.session._regionlib_last_users = last
    for name, it in last.items():
        if it is item:
            _stop(name)


def pytest_sessionfinish(session):
    for name in list(_RUNNING):  # an interrupted run (-x, Ctrl-C) never reached the last user
        _stop(name)


@pytest.fixture
def ray_head():
    """A real `ray start --head` on 127.0.0.1 with free ports: ``.dashboard`` (URL for `ray job submit`),
    ``.gcs`` (address for a driver), ``.env`` (its environment, auth off) and ``.temp_dir`` (its logs).

    One head shared by the tests that need a real one (a job submitted with `ray job submit`, a driver
    joining with ``--address``): none depends on being its only user."""
    return _shared("ray_head", _start_head)


@pytest.fixture
def local_ray():
    """One local Ray instance (`init_ray`: 127.0.0.1, 2 CPUs) shared by the in-process job tests."""
    import ray

    from regionlib.runtime.distributed import init_ray

    if "local_ray" in _RUNNING and not ray.is_initialized():  # a test shut it down
        _RUNNING.pop("local_ray")
    return _shared("local_ray", lambda: (init_ray(num_cpus=2), ray.shutdown))


_SHARED_FIXTURES = ("ray_head", "local_ray")


def _start_head():
    free_port = _free_port
    port, dash = free_port(), free_port()
    # every port of the head explicit: another local Ray in this test session (`local_ray`) may already
    # hold the defaults, e.g. the dashboard agent's 52365, and a head whose agent cannot bind never
    # accepts jobs ("No available agent to submit job")
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

    def stop():
        _kill_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)

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
    except BaseException:
        stop()
        raise
    return SimpleNamespace(dashboard=url, gcs=f"127.0.0.1:{port}", env=env, temp_dir=Path(temp_dir)), stop


def _kill_head(head: subprocess.Popen) -> None:
    """Stop a `ray start --head --block` at once: SIGKILL to its process group (the GCS, raylet, dashboard,
    agents and workers all run in it: ``start_new_session=True``), then to any descendant that left it.
    A SIGTERM makes Ray stop gracefully, which took 35-60 s on 2 cores and proves nothing here (the
    head's temp dir is deleted next). Never `ray stop`: it stops every Ray on the machine."""
    import psutil

    try:
        descendants = psutil.Process(head.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in descendants:
        try:
            p.kill()  # psutil refuses a pid that was reused by another process
        except psutil.Error:
            pass
    head.wait(timeout=30)
    psutil.wait_procs(descendants, timeout=10)


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
