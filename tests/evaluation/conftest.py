"""Fixtures of the evaluation tests: files of the reference data (through ``tests/conftest.py``'s
`reference_data`, the one place that finds it) and an isolated judge answer cache per test."""

import json

import pytest


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
