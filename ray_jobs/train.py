"""Distributed training on Ray Train (`TorchTrainer`): one YAML config plus command-line overrides.

Local:    python ray_jobs/train.py --config ray_jobs/configs/dam_tiny.yaml --set train.max_steps=50
Cluster:  ray job submit --working-dir . -- python ray_jobs/train.py --config ray_jobs/configs/dam_tiny.yaml \\
              --set run.workers=8 --set run.use_gpu=true --set run.storage=/shared/runs

The settings are `regionlib.training.config.TrainJob`'s (listed below); an unknown key, a wrong type
or an out-of-range value stops here, before Ray starts. ``--resume PATH`` resumes a stopped run from
a checkpoint directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.config import describe  # noqa: E402
from regionlib.training.config import TrainJob, load_config  # noqa: E402
from regionlib.training.loop import run_trainer  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="settings (--set section.key=value):\n" + describe(TrainJob))
    parser.add_argument("--config", help="YAML config (see ray_jobs/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--resume", help="checkpoint directory to resume from")
    parser.add_argument("--address", default=None)
    args = parser.parse_args(argv)
    extra = {"resume_from": str(Path(args.resume).resolve())} if args.resume else {}
    cfg = load_config(args.config, args.set, **extra)
    result = run_trainer(cfg, address=args.address)
    print(json.dumps({"metrics": result.metrics, "checkpoint": result.checkpoint.path if result.checkpoint else None},
                     default=str))
    return result


if __name__ == "__main__":
    main()
