"""The main job: a replication in miniature of the seeds' ablations on RegionWorld, on local Ray.

    python ray_jobs/replicate.py --out outputs/replication            # default, <= 20 min on 2 cores
    python ray_jobs/replicate.py --out outputs/replication --quick    # CI-sized, a few minutes
    python ray_jobs/replicate.py --out outputs/replication --study    # more seeds, data and steps (hours)
    ray job submit --working-dir . -- python ray_jobs/replicate.py --out /shared/replication \\
        --vision-path /ckpt/siglip-so400m --lm-path /ckpt/llama-3b --sam-checkpoint /ckpt/sam_vit_h.pth --steps 20000

What it runs and writes: `regionlib.replication` (``--help`` for the options).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.replication import main  # noqa: E402

if __name__ == "__main__":
    main()
