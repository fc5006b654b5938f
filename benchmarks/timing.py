"""Timing and machine-description helpers shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from threadpoolctl import threadpool_info


def best_of(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` wall-clock runs of ``fn()``, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def best_of_each(fns: dict, repeats: int = 5) -> dict:
    """The fastest of ``repeats`` wall-clock runs of each ``fns[name]()``, in seconds, the functions taking turns
    round after round (so that a burst of load on a shared machine hits them alike rather than one of them)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: min(v) for name, v in times.items()}


def machine() -> dict:
    """CPU model, CPU and thread counts, numpy's BLAS kernel, load average (1, 5, 15 min)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []  # Linux; elsewhere platform's name
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor() or platform.machine())
    blas = next(({"blas": i.get("internal_api"), "blas_kernel": i.get("architecture"),
                  "blas_threads": i.get("num_threads")} for i in threadpool_info() if i.get("user_api") == "blas"),
                {"blas": None, "blas_kernel": None, "blas_threads": None})
    return {"cpu_model": cpu, "cpus": os.cpu_count(), "threads": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(), **blas,
            "load_average": [round(x, 2) for x in os.getloadavg()]}
