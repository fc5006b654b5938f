"""Fixtures of the evaluation tests: the reference data (`reference_data`: REGIONLIB_REFERENCE_DATA,
default ``<repo root>/../shared/reference-data``; tests skip with the reason when it is absent) and an
isolated judge answer cache per test."""

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """The reference-data directory (REGIONLIB_REFERENCE_DATA or ``../shared/reference-data`` beside the clone)."""
    root = Path(os.environ.get("REGIONLIB_REFERENCE_DATA",
                               Path(__file__).resolve().parents[2].parent / "shared" / "reference-data"))
    if not (root / "dlc_bench").is_dir():
        pytest.skip(f"reference data not found at {root} (set REGIONLIB_REFERENCE_DATA)")
    return root


@pytest.fixture(scope="session")
def load_reference(reference_data):
    """``load_reference(name)``: the parsed JSON of ``reference_data / "dlc_bench" / name``."""
    def load(name: str):
        return json.loads((reference_data / "dlc_bench" / name).read_text())

    return load


@pytest.fixture(scope="session")
def dam_descriptions(load_reference):
    """Real DAM-3B descriptions of the DLC-Bench regions: (v1, joint_v1), keyed by annotation id."""
    return load_reference("dam_3b_v1.json"), load_reference("dam_3b_joint_v1.json")


@pytest.fixture(autouse=True)
def judge_cache_in_tmp(tmp_path, monkeypatch):
    """Judges built without an explicit cache write into this test's directory, never into ~/.cache."""
    monkeypatch.setenv("REGIONLIB_JUDGE_CACHE", str(tmp_path / "default_judge_cache.sqlite"))
