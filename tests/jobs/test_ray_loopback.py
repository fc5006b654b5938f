"""Local Ray from `init_ray`: loopback only, private files, worker logs on the driver, one retry on start-up."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}

DRIVER = r'''
import json, os, time
import psutil
from regionlib.runtime.distributed import init_ray

ray = init_ray(num_cpus=1)

@ray.remote
def hello():
    print("hello-from-a-ray-worker", flush=True)
    return 1

ray.get(hello.remote())
time.sleep(3)  # the log monitor forwards worker output to this driver
listening = []
for p in psutil.Process().children(recursive=True):
    try:
        listening += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
    except psutil.Error:  # the process ended while being listed: it listens on nothing
        pass
session = ray._private.worker._global_node.get_session_dir_path()
readable = [os.path.join(d, f) for d, _, fs in os.walk(session) for f in fs
            if os.path.isfile(os.path.join(d, f)) and os.stat(os.path.join(d, f)).st_mode & 0o004]
token = os.path.expanduser("~/.ray/auth_token")
print("RESULT " + json.dumps({"listening": listening, "session_mode": os.stat(session).st_mode & 0o777,
                              "token_mode": os.stat(token).st_mode & 0o777 if os.path.exists(token) else None,
                              "world_readable": readable}), flush=True)
ray.shutdown()
'''


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only_keeps_its_files_private_and_forwards_worker_logs(tmp_path):
    """Bug: local Ray's GCS, raylet, workers and agents listened on all interfaces (0.0.0.0 / ::),
    the auth token and session files were world-readable, and jobs ran with log_to_driver=False
    (worker output and errors never reached the driver)."""
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=400,
                          cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    names = {name for name, _, _ in result["listening"]}
    assert len(result["listening"]) >= 4 and {"gcs_server", "raylet"} <= names, result["listening"]
    exposed = [entry for entry in result["listening"] if entry[1] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert result["session_mode"] == 0o700 and result["world_readable"] == []
    assert result["token_mode"] in (None, 0o600)
    assert "hello-from-a-ray-worker" in out  # worker logs reach the driver


def test_local_start_is_retried_once_then_fails_with_a_clear_message(monkeypatch):
    """Bug: on a loaded machine `ray.init` aborted at the first "node timed out during startup";
    start-up is now retried once, and a second failure says what happened and what to do."""
    import ray

    from regionlib.runtime import distributed

    attempts = []

    def slow_init(**kwargs):
        attempts.append(kwargs)
        raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", slow_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    umask = os.umask(0o022)
    os.umask(umask)
    with pytest.raises(RuntimeError, match="local Ray did not start twice .*timed out during startup.*timeout_s"):
        distributed.init_ray(num_cpus=1, timeout_s=300)
    assert len(attempts) == 2 and attempts[0]["include_dashboard"] is False
    assert attempts[0]["_system_config"]["agent_register_timeout_ms"] == 300_000
    assert "log_to_driver" not in attempts[0] or attempts[0]["log_to_driver"]
    assert os.umask(umask) == umask and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # all restored


def test_single_machine_ray_sets_rays_switch_for_the_block_and_restores_it(monkeypatch):
    """Bug caught: the driver left advertising 127.0.0.1 (the private constant or the environment not restored,
    e.g. after a failed start), so a later connection to a cluster breaks."""
    from ray._private import ray_constants

    from regionlib.runtime.distributed import ENV_SWITCH, single_machine_ray

    monkeypatch.setenv(ENV_SWITCH, "1")
    before = ray_constants.ENABLE_RAY_CLUSTER
    with pytest.raises(KeyError):
        with single_machine_ray():
            assert ray_constants.ENABLE_RAY_CLUSTER is False and os.environ[ENV_SWITCH] == "0"
            raise KeyError("a failed start")
    assert ray_constants.ENABLE_RAY_CLUSTER is before and os.environ[ENV_SWITCH] == "1"


def test_a_ray_without_the_private_switch_is_refused_loudly_and_not_started(monkeypatch):
    """Bug caught: a Ray release that renamed ``ray_constants.ENABLE_RAY_CLUSTER``: setting it would only add an
    attribute Ray never reads, and the local instance would silently listen on every interface."""
    import ray
    from ray._private import ray_constants

    from regionlib.runtime import distributed

    started = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(distributed.ENV_SWITCH, raising=False)
    monkeypatch.delattr(ray_constants, "ENABLE_RAY_CLUSTER")
    with pytest.raises(distributed.RayInternalsChanged, match=f"checked it on Ray {distributed.RAY_CHECKED_ON}"):
        distributed.init_ray(num_cpus=1)
    assert not started and distributed.ENV_SWITCH not in os.environ


def test_local_workers_can_import_this_checkout(monkeypatch):
    """Bug caught: since distributed.py moved to regionlib/runtime/, init_ray put regionlib/ (not the checkout)
    on the workers' PYTHONPATH: a job run without PYTHONPATH had every actor die with "No module named
    'regionlib'"."""
    import ray

    from regionlib.runtime import distributed

    def fail(**kwargs):
        raise Exception("not started here")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fail)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    with pytest.raises(RuntimeError, match="not started here"):
        distributed.init_ray(num_cpus=1)
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
