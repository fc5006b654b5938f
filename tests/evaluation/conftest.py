import json
import os
from pathlib import Path

import pytest

REFERENCE = Path(os.environ.get("REGIONLIB_REFERENCE_DATA", Path(__file__).resolve().parents[3] / "shared" / "reference-data"))


def load_reference(name: str):
    path = REFERENCE / "dlc_bench" / name
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (set REGIONLIB_REFERENCE_DATA)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def dam_descriptions():
    """Real DAM-3B descriptions of the DLC-Bench regions: (v1, joint_v1) keyed by annotation id."""
    return load_reference("dam_3b_v1.json"), load_reference("dam_3b_joint_v1.json")
