"""Shared test fixtures: a photograph, the tiny SAM, the reference-data location."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ two test processes (`make test`: pytest-xdist -n 2)
# Tests are spread over the processes one by one (`--dist loadgroup`), except those of the real `ray start
# --head` (the `ray_head` fixture of tests/jobs): they share one head, so they run in one process (xdist
# group "ray-head"), and tests/jobs/conftest.py stops it after the last of them. Each process starts its
# own `local_ray` when a test there first asks for it: two local Rays run side by side on 127.0.0.1, as for
# two users of one machine (each picks free ports for its GCS, raylet and agents; only one can have the
# dashboard agent's default HTTP port, which `init_ray`'s instances, dashboard off, do not serve).
XDIST_GROUPS = {"ray_head": "ray-head"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the xdist_group mark into the scheduling key
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, group in XDIST_GROUPS.items():
            if fixture in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker (not a pytest run by a test, which inherits its environment)
        # two processes on 2 cores: one torch thread each, not two
        import torch

        torch.set_num_threads(1)
        config.pluginmanager.register(_GroupsApplied(), "regionlib-xdist-groups-applied")


class _GroupsApplied:
    """Refuses a run where xdist's loadgroup silently did nothing (pytest-dev/pytest-xdist#1386: with pytest 9.2
    the ``@group`` suffix it puts on node ids is dropped: a group's tests would be spread over the processes)."""

    @pytest.hookimpl(trylast=True)  # after xdist's hook, which suffixes the node ids of grouped tests
    def pytest_collection_modifyitems(self, config, items):
        if config.getvalue("loadgroup"):
            for it in items:  # each such test fails at setup, saying why (an error raised here would only
                if it.get_closest_marker("xdist_group") and "@" not in it.nodeid:  # crash xdist's scheduler)
                    it.stash[_GROUP_LOST] = True


_GROUP_LOST = pytest.StashKey[bool]()


def pytest_runtest_setup(item):
    if item.stash.get(_GROUP_LOST, False):
        pytest.fail(f"pytest-xdist --dist loadgroup did not group this test: pytest {pytest.__version__} drops the "
                    "@group suffix of node ids (pytest-dev/pytest-xdist#1386), so the tests sharing one Ray head would "
                    "start one in each process; use the pytest of requirements/lock.txt")


def reference_data_dir() -> Path:
    """`../shared/reference-data` beside the clone, or $REGIONLIB_REFERENCE_DATA (use the fixture)."""
    return Path(os.environ.get("REGIONLIB_REFERENCE_DATA", REPO_ROOT.parent / "shared" / "reference-data"))


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """The bundled reference data (released DLC-Bench evaluator caches, see its NOTICE.md).

    Found at $REGIONLIB_REFERENCE_DATA, default ``<repo>/../shared/reference-data``. Absent: the
    test is skipped with a message saying where to get it, except under ``CI=true`` (set by
    ``.ci/run``), where it fails: CI must never pass by skipping these tests."""
    root = reference_data_dir()
    if not (root / "dlc_bench").is_dir():
        missing_shared_data(f"reference data not found at {root}: it is the project's shared/reference-data folder "
                            "(NVlabs/describe-anything's evaluation/model_outputs_cache files, see its NOTICE.md); put "
                            "the project's shared/ folder beside the clone or set REGIONLIB_REFERENCE_DATA to its path")
    return root


def missing_shared_data(message: str):
    """Skip a test whose data from ``../shared`` is absent, saying where to get it; fail under ``CI=true``."""
    skip_unless_ci(message)


def skip_unless_ci(message: str):
    """Skip with ``message`` (say how to get what is missing); under ``CI=true`` fail instead, so
    CI never passes by skipping (shared data, the browser of tests/notebooks/test_browser.py)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """scikit-image's astronaut, downscaled to 128x128 RGB uint8."""
    from skimage import data
    from skimage.transform import resize

    return (resize(data.astronaut(), (128, 128), anti_aliasing=True) * 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_sam():
    from regionlib.sam import build_sam

    return build_sam("tiny", seed=0)
