"""Fixtures of the evaluation tests: the reference data (REGIONLIB_REFERENCE_DATA, default
``<repo root>/../shared/reference-data``; tests skip with the reason when it is absent) and an
isolated judge answer cache per test."""

import json
import os
from pathlib import Path

import pytest

REFERENCE = Path(os.environ.get("REGIONLIB_REFERENCE_DATA",
                                Path(__file__).resolve().parents[2].parent / "shared" / "reference-data"))


def load_reference(name: str):
    path = REFERENCE / "dlc_bench" / name
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (set REGIONLIB_REFERENCE_DATA)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def dam_descriptions():
    """Real DAM-3B descriptions of the DLC-Bench regions: (v1, joint_v1), keyed by annotation id."""
    return load_reference("dam_3b_v1.json"), load_reference("dam_3b_joint_v1.json")


@pytest.fixture(autouse=True)
def judge_cache_in_tmp(tmp_path, monkeypatch):
    """Judges built without an explicit cache write into this test's directory, never into ~/.cache."""
    monkeypatch.setenv("REGIONLIB_JUDGE_CACHE", str(tmp_path / "default_judge_cache.sqlite"))
