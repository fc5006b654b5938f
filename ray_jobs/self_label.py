"""Self-labeling on Ray Data: DLC-SDP (seed 003 §4) and seed 001's parse-and-filter.

    python ray_jobs/self_label.py --regionworld 200 --checkpoint outputs/runs/dam/checkpoint_000003 --out labels
    ray job submit --working-dir . -- python ray_jobs/self_label.py --images /data/sa1b/images --proposals sam ...

The stages, their options and their outputs: `regionlib.selflabel.cli` (``--help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.selflabel.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
