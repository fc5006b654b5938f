"""Benchmark of training steps (issue 11): samples/s, peak memory per worker and the input pipeline's share.

For tiny-dam and tiny-sca: ``train_loop`` on 1 and 2 workers (torchrun subprocesses on 127.0.0.1, gloo,
one thread per worker), DDP and FSDP2 (``run.strategy``), the same per-worker batch (weak scaling: the
global batch grows with the workers). Per configuration, over the steps after the first (warm-up):

* samples/s of the global batch (median step time), the ratio to 1 worker measured in the same run;
* peak memory per worker: ``resource.getrusage`` max RSS of each worker process (CPU: the tensors live
  there), the largest worker reported;
* the input pipeline's share of a step: time in ``task.collate`` (images loaded, augmented, encoded —
  SCA: the frozen SAM encoder unless cached — region inputs built) over the whole step, rank 0;
* SCA with ``task.feature_cache`` (SAM embeddings read from a `FeatureCache`) beside it, 1 worker.

The machine (CPU model, threads, load average before and after) is recorded with the rows; the CPU is
shared and noisy, so read the ratios, measured side by side. GPU rows (dam-3b- / sca-gpt2-large-shaped
bf16 steps: tokens/s, peak memory, MFU) are listed as not measured when no GPU is present.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKER = """
import json, resource, sys
import torch, torch.distributed as dist
from regionlib.training.loop import DistributedContext, load_config, train_loop
torch.set_num_threads(1)
dist.init_process_group("gloo")
cfg = load_config(None, json.loads(sys.argv[2]))
train_loop(cfg, DistributedContext(sys.argv[1]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
every = [None] * dist.get_world_size()
dist.all_gather_object(every, peak)
if dist.get_rank() == 0:
    print("PEAK_RSS_MB " + json.dumps(every))
dist.destroy_process_group()
"""


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"cpu_model": cpu, "cpus": os.cpu_count(), "threads": len(os.sched_getaffinity(0)),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def run_config(tmp: Path, name: str, overrides: list[str], workers: int) -> dict:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    overrides = [*overrides, f"run.storage={tmp}", f"run.name={name}"]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(workers),
                          "--master-addr", "127.0.0.1", "--master-port", str(port), str(script), str(tmp / name),
                          json.dumps(overrides)], env=env, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    peaks = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("PEAK_RSS_MB"))[12:])
    log = [json.loads(line) for line in (tmp / name / "metrics.jsonl").read_text().splitlines()][1:]  # warm-up out
    step_s = statistics.median(r["step_s"] for r in log)
    collate_s = statistics.median(r["collate_s"] for r in log)
    return {"step_s": step_s, "collate_s": collate_s, "input_share": sum(r["collate_s"] for r in log) /
            sum(r["step_s"] for r in log), "peak_rss_mb_per_worker": max(peaks), "steps_timed": len(log)}


def write_cache(tmp: Path, overrides: list[str]) -> Path:
    """SAM embeddings of the training images by the training model's own SAM (as cache_features.py writes)."""
    import torch

    from regionlib.runtime.feature_cache import write_feature_shard
    from regionlib.runtime.shards import ShardedWriter, plan_shards
    from regionlib.training.loop import load_config
    from regionlib.training.tasks import create_task

    cfg = load_config(None, overrides)
    torch.manual_seed(cfg.train.seed)
    task = create_task(cfg.task, seed=cfg.train.seed)
    model = task.build_model()
    task.epoch_samples(0)
    items = {str(it.image_id): it for src in task._sources for it in src.items}
    root = tmp / "sam_cache"
    writer = ShardedWriter(root, kind="sam_image_embeddings", config={"encoder": "sam"}, suffix=".safetensors")
    for spec in plan_shards(sorted(items), 16):
        with torch.no_grad():
            feats = {i: model.encode_image(items[i].load()).tensors["image_embeddings"][0] for i in spec.ids}
        write_feature_shard(writer.shard_path(spec), spec, feats)
        writer.record(spec, count=len(feats))
    writer.compact()
    return root


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 timed steps instead of 10")
    parser.add_argument("--batch-size", type=int, default=8, help="regions per worker per step")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    steps = 5 if args.quick else 11
    before = machine()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for preset in ("tiny-dam", "tiny-sca"):
            base = [f"task.preset={preset}", "task.n_images=48", "task.n_val=0", "recipe.warmup_steps=1",
                    f"train.batch_size={args.batch_size}", f"train.max_steps={steps}",
                    f"train.checkpoint_every={10 * steps}"]
            configs = [(1, "ddp", []), (2, "ddp", []), (2, "fsdp", [])]
            if preset == "tiny-sca":
                configs.append((1, "ddp", [f"task.feature_cache={write_cache(tmp, base)}"]))
            one = None
            for workers, strategy, extra in configs:
                name = f"{preset}-{workers}w-{strategy}{'-cache' if extra else ''}"
                r = run_config(tmp, name, [*base, f"run.strategy={strategy}", *extra], workers)
                samples_per_s = args.batch_size * workers / r["step_s"]
                if one is None:
                    one = samples_per_s
                what = (f"{preset} step, {workers} worker{'s' if workers > 1 else ''} {strategy.upper()}, "
                        f"{args.batch_size} regions/worker" + (", SAM from the feature cache" if extra else ""))
                rows.append({"what": what, **r, "samples_per_s": samples_per_s, "baseline": "1 worker DDP",
                             "ratio": samples_per_s / one, "workers": workers, "strategy": strategy})
    for shape in ("dam-3b", "sca-gpt2-large"):
        rows.append({"what": f"{shape}-shaped bf16 step on a GPU (tokens/s, peak memory, MFU)",
                     "skipped": "no GPU lent to this task: not measured"})
    after = machine()
    info = {**before, "load_average_after": after["load_average"], "torch_threads_per_worker": 1}
    for r in rows:
        r["machine"] = info
    print(f"machine: {info['cpu_model']}, {info['cpus']} CPUs, {info['threads']} threads available, 1 torch "
          f"thread per worker, load average {info['load_average']} -> {info['load_average_after']}")
    print(f"  {'configuration':<70} {'samples/s':>9} {'vs 1w':>6} {'step s':>7} {'input':>6} {'peak MiB/w':>10}")
    for r in rows:
        if "skipped" in r:
            print(f"  {r['what']:<70} {r['skipped']}")
            continue
        print(f"  {r['what']:<70} {r['samples_per_s']:9.2f} {r['ratio']:5.2f}x {r['step_s']:7.3f} "
              f"{r['input_share']:6.1%} {r['peak_rss_mb_per_worker']:10.0f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
