"""Fixed-seed regression against stored outputs (``expected.json``, made by ``outputs.py``): a change that
alters RegionWorld's bytes or any model family's forward pass at seed 0 — a silently different
initialisation, preprocessing, context layout or generator — fails here until it is meant and the
stored outputs are regenerated."""

import json
from pathlib import Path

import pytest

from tests.regression.outputs import FAMILIES, family_outputs, regionworld_digest

EXPECTED = json.loads((Path(__file__).parent / "expected.json").read_text())


def test_regionworld_bytes_are_unchanged():
    assert regionworld_digest() == EXPECTED["regionworld"]


@pytest.mark.parametrize("preset", FAMILIES)
def test_forward_pass_at_seed_0_is_unchanged(preset):
    got, want = family_outputs(preset), EXPECTED["families"][preset]
    assert got["n"] == want["n"]
    assert got["mean"] == pytest.approx(want["mean"], abs=1e-4)
    assert got["std"] == pytest.approx(want["std"], abs=1e-4)
    assert got["head"] == pytest.approx(want["head"], abs=1e-4)
