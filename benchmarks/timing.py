"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import time


def best_of(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` wall-clock runs of ``fn()``, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
