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
