"""Notebook 01 in a real browser: headless Chromium opens JupyterLab, runs the notebook, clicks the
click-to-segment figure at the centre of a ground-truth region, and the kernel's result is checked.

What a user does, end to end: JupyterLab (started here on 127.0.0.1, a free port, a fresh token,
temporary Jupyter config / data / runtime / settings folders and a temporary copy of the notebook)
runs every cell from the Run menu; ipympl draws the figure; Selenium clicks the most interior pixel
(`regionlib.interior_points`) of the last-drawn, unoccluded ground-truth region. The notebook's
`record_clicks` (enabled by ``REGIONLIB_CLICK_LOG``) writes what the kernel computed for that
click — the mask as RLE and the caption — and the test checks it against RegionWorld's ground
truth, regenerated here from the image's seed: the mask's IoU > 0.5 (the pretrained tiny SAM) and
a non-empty caption. It also checks that the figure is shown once (one ipympl canvas, no static
copy) and that the click reached the kernel at the pixel aimed at.

A screenshot of the figure after the click is kept in ``$REGIONLIB_TEST_ARTIFACTS`` (default
``outputs/test-artifacts/``), with the page, the server log and the click log on failure.

Needs Debian's ``chromium`` + ``chromium-driver`` and ``selenium`` (in requirements/lock.txt);
without them the test skips saying how to install them, except under ``CI=true`` (``.ci/run``
installs them), where it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, skip_unless_ci

NOTEBOOK = REPO_ROOT / "notebooks" / "01_regions_and_prompts.ipynb"
FIGURE_LABEL = "click to segment"  # the notebook's fig.canvas.manager.set_window_title(...)
MIN_IOU = 0.5
START_TIMEOUT = 120  # s: Jupyter server up / notebook open / kernel idle, each (a loaded 2-core machine)
RUN_TIMEOUT = 300  # s: every cell of the notebook executed
CLICK_TIMEOUT = 120  # s: the click's segmentation + caption written and drawn


def artifacts_dir() -> Path:
    path = Path(os.environ.get("REGIONLIB_TEST_ARTIFACTS", REPO_ROOT / "outputs" / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def browser_tools() -> tuple[str, str]:
    """(chromium, chromedriver) executables; skip (fail under CI=true) saying how to install what is missing."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pinned in requirements/lock.txt: `make env`, or "
                       "`pip install $(grep '^selenium==' requirements/lock.txt)`)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing.append("Chromium and its driver (Debian: `apt-get install -y chromium chromium-driver`)")
    if missing:
        skip_unless_ci("the browser test needs " + " and ".join(missing))
    return chromium, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_leftovers(marker: str) -> None:
    """Kill processes this test started that outlived their parent (a kernel runs in its own
    session): those whose command line names ``marker``, a temporary folder of this test."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] != os.getpid() and any(marker in arg for arg in proc.info["cmdline"] or ()):
            try:
                proc.kill()
            except psutil.Error:
                pass


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group of ``proc`` (started with a new session), SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def lab_env(tmp: Path, click_log: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: every Jupyter folder under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k not in ("REGIONLIB_SMOKE", "MPLBACKEND")}
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"), ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
                     ("IPYTHONDIR", "ipython")]:
        (tmp / sub).mkdir()
        env[var] = str(tmp / sub)
    # no news / update toasts over the page
    settings = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["REGIONLIB_CLICK_LOG"] = str(click_log)
    return env


@contextmanager
def jupyter_lab(root: Path, env: dict[str, str], log_path: Path):
    """JupyterLab serving ``root`` on 127.0.0.1 (free port, fresh token); yields (base URL, token).
    On exit: the server's shutdown API (it stops its kernels), then its process group is killed."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.getuid() == 0:
        cmd.append("--allow-root")
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        try:
            shutdown = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(shutdown, timeout=10)
            proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop_group(proc)


def kernel_connected(base: str, token: str) -> bool:
    """The server runs exactly one kernel, idle, with a client connected (the page)."""
    try:
        with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=10) as r:
            kernels = json.load(r)
    except OSError:
        return False
    return len(kernels) == 1 and kernels[0]["execution_state"] == "idle" and kernels[0]["connections"] >= 1


@contextmanager
def headless_chromium(chromium: str, driver_path: str, profile: Path):
    """A Selenium driver of headless Chromium (device scale 1, a fresh profile); quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1200",
                "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# JavaScript run in the page --------------------------------------------------------------------

# The ipympl figures whose header shows the label: [{figure, image (the drawn canvas), canvas (the
# one on top, taking the mouse events)}, ...].
_FIND_FIGURES = """
return [...document.querySelectorAll('.jupyter-matplotlib-figure')]
  .filter(f => (f.querySelector('.jupyter-matplotlib-header') || {}).textContent === arguments[0])
  .map(f => { const c = f.querySelectorAll('.jupyter-matplotlib-canvas-div canvas');
              return {figure: f, image: c[0], canvas: c[c.length - 1]}; });
"""
_BUSY_CELLS = """
return [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
  .filter(p => p.textContent.includes('*')).length;
"""
_IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
_ERRORS = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"


class ClickLog:
    """The JSON lines `regionlib.interactive.record_clicks` appends (complete lines only)."""

    def __init__(self, path: Path):
        self.path = path

    def records(self, event: str) -> list[dict]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().split("\n")[:-1]
        return [r for r in map(json.loads, lines) if r["event"] == event]


def run_all_cells(driver, base: str, token: str, log: ClickLog, phases: dict[str, float]) -> dict:
    """Open the notebook, run every cell from the Run menu, wait for the click figure; returns the
    log's ``ready`` record. ``phases`` receives the time at which each step was done."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
    # JupyterLab may start a second kernel and drop the first while the page loads: wait for
    # exactly one kernel, idle and connected to the page, before running cells
    WebDriverWait(driver, START_TIMEOUT, 0.5).until(
        lambda d: kernel_connected(base, token) and d.find_elements(By.CSS_SELECTOR, _IDLE),
        message="the notebook's kernel never became idle and connected")
    phases["kernel ready"] = time.monotonic()
    driver.find_element(By.XPATH, "//li[contains(@class,'lm-MenuBar-item')][.//div[text()='Run']]").click()
    WebDriverWait(driver, 30, 0.5).until(lambda d: d.find_element(
        By.XPATH, "//li[contains(@class,'lm-Menu-item')][.//div[text()='Run All Cells']]")).click()
    WebDriverWait(driver, RUN_TIMEOUT, 0.5).until(
        lambda d: log.records("ready") and d.execute_script(_FIND_FIGURES, FIGURE_LABEL),
        message=f"the {FIGURE_LABEL!r} figure never appeared")
    WebDriverWait(driver, RUN_TIMEOUT, 0.5).until(
        lambda d: d.execute_script(_BUSY_CELLS) == 0 and d.find_elements(By.CSS_SELECTOR, _IDLE),
        message="the notebook did not finish running")
    phases["notebook run"] = time.monotonic()
    errors = driver.find_elements(By.CSS_SELECTOR, _ERRORS)
    assert not errors, "a cell raised: " + errors[0].text[:2000]
    return log.records("ready")[0]


def click_target(ready: dict):
    """The ground truth the notebook's image was made from (regenerated here, checked against the
    image hash the notebook logged), the target region's index and its most interior pixel (x, y).

    The target is the object drawn last: nothing occludes it, so its mask is the whole object and
    a click at its centre means that object alone."""
    from regionlib.data.regionworld import generate_regionworld
    from regionlib.masks import interior_points

    rw = ready["regionworld"]
    sample = generate_regionworld(rw["index"] + 1, seed=rw["seed"], split=rw["split"])[rw["index"]]
    assert hashlib.sha256(np.ascontiguousarray(sample.image).tobytes()).hexdigest() == ready["image_sha256"], \
        "the notebook's image is not the RegionWorld sample its log names"
    truth = sample.regions.masks
    target = int(np.argmax([a["draw_order"] for a in sample.regions.data["attributes"]]))
    x, y = (int(v) for v in interior_points(truth[target])[0])
    return truth, target, x, y


def click_pixel(driver, canvas, ready: dict, x: int, y: int) -> None:
    """Left-click the centre of image pixel (x, y) on the rendered figure."""
    from selenium.webdriver.common.action_chains import ActionChains

    h, w = ready["image_size"]
    left, top, right, bottom = ready["image_box_in_figure"]
    fx, fy = left + (x + 0.5) / w * (right - left), top + (y + 0.5) / h * (bottom - top)
    width, height = canvas.size["width"], canvas.size["height"]
    # selenium's offsets are from the element's centre
    ActionChains(driver).move_to_element_with_offset(canvas, round(fx * width - width / 2),
                                                     round(fy * height - height / 2)).click().perform()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_notebook01_click_in_jupyterlab(tmp_path):
    chromium, chromedriver = browser_tools()
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from regionlib.masks import decode_rle, mask_iou

    started = time.monotonic()
    phases: dict[str, float] = {}
    out = artifacts_dir()
    (tmp_path / "root").mkdir()
    shutil.copy(NOTEBOOK, tmp_path / "root" / NOTEBOOK.name)
    log, server_log = ClickLog(tmp_path / "clicks.jsonl"), tmp_path / "jupyter.log"
    try:
        with jupyter_lab(tmp_path / "root", lab_env(tmp_path, log.path), server_log) as (base, token), \
                headless_chromium(chromium, chromedriver, tmp_path / "chromium-profile") as driver:
            try:
                phases["server + browser up"] = time.monotonic()
                ready = run_all_cells(driver, base, token, log, phases)
                figures = driver.execute_script(_FIND_FIGURES, FIGURE_LABEL)
                assert len(figures) == 1, f"the {FIGURE_LABEL!r} figure is shown {len(figures)} times"
                figure, canvas, image = figures[0]["figure"], figures[0]["canvas"], figures[0]["image"]
                cell = driver.execute_script("return arguments[0].closest('.jp-Cell');", figure)
                assert not cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img"), \
                    "the click cell also shows a static copy of the figure"

                truth, target, x, y = click_target(ready)
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
                WebDriverWait(driver, 30, 0.5).until(lambda d: canvas.size["width"] > 0 and canvas.size["height"] > 0)
                drawn = driver.execute_script("return arguments[0].toDataURL();", image)
                click_pixel(driver, canvas, ready, x, y)
                try:
                    WebDriverWait(driver, CLICK_TIMEOUT, 0.5).until(lambda d: log.records("update"))
                except TimeoutException:
                    pytest.fail(f"no result came back from the kernel within {CLICK_TIMEOUT} s of the click on "
                                f"pixel ({x}, {y})")
                WebDriverWait(driver, CLICK_TIMEOUT, 0.5).until(
                    lambda d: d.execute_script("return arguments[0].toDataURL();", image) != drawn,
                    message="the figure was not redrawn after the click")
                phases["click answered"] = time.monotonic()
                figure.screenshot(str(out / "notebook01_click.png"))
            except BaseException:
                driver.save_screenshot(str(out / "notebook01_failure.png"))
                raise
        updates = log.records("update")
        assert len(updates) == 1, f"one click gave {len(updates)} updates"
        result = updates[0]
        assert result["labels"] == [1] and np.allclose(result["points"], [[x, y]], atol=1.5), \
            f"the click reached the kernel as points {result['points']} labels {result['labels']}, aimed at ({x}, {y})"
        iou = float(mask_iou(decode_rle(result["mask_rle"]), truth[target])[0, 0])
        caption = result["caption"]
        steps = ", ".join(f"{name} {t - started:.1f} s" for name, t in phases.items())
        print(f"\nbrowser test: clicked region {target} at ({x}, {y}): mask IoU {iou:.3f}, caption {caption!r}; "
              f"{steps}, shut down {time.monotonic() - started:.1f} s")
        assert isinstance(caption, str) and caption.strip(), f"empty caption {caption!r}"
        assert iou > MIN_IOU, f"the clicked mask has IoU {iou:.3f} <= {MIN_IOU} with ground-truth region {target}"
    except BaseException:
        for path in (server_log, log.path):
            if path.exists():
                shutil.copy(path, out / f"notebook01_{path.name}")
        raise
    finally:
        kill_leftovers(str(tmp_path))
