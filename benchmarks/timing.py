"""Timing and machine-description helpers shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` wall-clock runs of ``fn()``, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def machine() -> dict:
    """CPU model, CPU and thread counts, numpy's BLAS kernel, load average (1, 5, 15 min)."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = {}
    try:
        from threadpoolctl import threadpool_info

        blas = next(({"blas": i.get("internal_api"), "blas_kernel": i.get("architecture"),
                      "blas_threads": i.get("num_threads")} for i in threadpool_info() if i.get("user_api") == "blas"),
                    {})
    except ImportError:
        config = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
        info = config.get("Build Dependencies", {}).get("blas", {}) if isinstance(config, dict) else {}
        blas = {"blas": info.get("name"), "blas_kernel": None, "blas_threads": None}
    return {"cpu_model": cpu, "cpus": os.cpu_count(), "threads": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(), **blas,
            "load_average": [round(x, 2) for x in os.getloadavg()]}
