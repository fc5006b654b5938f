"""Run every benchmark of the project in one process and write ``results.json`` + ``results.md``.

Each ``benchmarks/bench_*.py`` exposes ``main(argv) -> list[dict]`` whose rows hold at least
``what``, ``baseline`` and ``ratio`` (plus absolute times ``*_s``); all are measured side by side
within one run. ``--quick`` passes ``--quick`` to the benchmarks that support a smaller setting.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NOTE_KEYS = ("goal", "max_abs_diff", "parameters", "trainable_parameters", "image_gflops", "region_gflops", "unit")


def markdown(rows: list[dict], info: dict) -> str:
    lines = [f"Machine: {info['cpus']} CPUs, {info['platform']}, torch {info['torch']}, GPU: {info['cuda'] or 'none'}", "",
             "| benchmark | what | baseline | ratio | measured | baseline time | notes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        measured = next((v for k, v in r.items() if k.endswith("_s") and not k.startswith("baseline")), None)
        fmt = lambda v: "" if v is None else (f"{v:.4g} s" if isinstance(v, (int, float)) else str(v))  # noqa: E731
        ratio = r.get("ratio")
        notes = ", ".join(f"{k}: {r[k]:.4g}" if isinstance(r[k], float) else f"{k}: {r[k]:,}" if isinstance(r[k], int)
                          else f"{k}: {r[k]}" for k in NOTE_KEYS if r.get(k) is not None)
        lines.append(f"| {r['bench']} | {r['what']} | {r.get('baseline', '')} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} | {fmt(measured)} | {fmt(r.get('baseline_s'))} | {notes} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    parser.add_argument("--only", nargs="*", help="bench names to run (e.g. core models)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        result = load(path).main(["--out", str(args.out / f"{name}.json")])
        for r in result:
            rows.append({"bench": name, **r})
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    info = machine()
    (args.out / "results.json").write_text(json.dumps({"machine": info, "results": rows}, indent=2, default=str))
    (args.out / "results.md").write_text(markdown(rows, info))
    print(markdown(rows, info))
    return rows


if __name__ == "__main__":
    main()
