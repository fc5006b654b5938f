"""METEOR 1.5 (Denkowski & Lavie 2014) through pycocoevalcap 1.2's jar, in parallel worker processes.

pycocoevalcap's ``Meteor`` runs ``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`` and, per
sample, writes one ``SCORE ||| ref 1 ||| ... ||| ref n ||| hypothesis`` line and waits for its
statistics line; then one ``EVAL ||| stats 1 ||| ... ||| stats N`` line returns the N
per-sample scores and the corpus score (computed from the pooled statistics, not the mean).
`meteor_scores` sends the same lines but splits the SCORE lines over ``workers`` processes of
the same program, each fed by a writer thread (no round trip per sample), and sends the EVAL line
with all statistics, in sample order, to one of them: per-sample and corpus scores are
pycocoevalcap's (a sample's statistics depend on that sample only).
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Sequence

from ..errors import RegionLibError
from .ptb import require_java

__all__ = ["meteor_scores"]


def _meteor_dir() -> Path:
    import pycocoevalcap.meteor.meteor as meteor

    return Path(meteor.__file__).parent


class _MeteorProcess:
    """One METEOR program in ``-stdio`` mode (pycocoevalcap's command line)."""

    def __init__(self):
        self.proc = subprocess.Popen(["java", "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en",
                                      "-norm"], cwd=_meteor_dir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    def ask(self, lines: Sequence[str], n_replies: int) -> list[str]:
        """Write ``lines`` from a thread while reading ``n_replies`` reply lines."""
        error: list[BaseException] = []

        def write():
            try:
                for line in lines:
                    self.proc.stdin.write(f"{line}\n".encode())
                self.proc.stdin.flush()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                error.append(exc)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        replies = [self.proc.stdout.readline().decode().strip() for _ in range(n_replies)]
        writer.join()
        if error or any(not r for r in replies):
            raise RegionLibError(f"the METEOR program stopped answering ({error[0] if error else 'empty reply'})")
        return replies

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


def meteor_scores(predictions: Sequence[str], references: Sequence[Sequence[str]], *,
                  workers: int | None = None) -> tuple[float, list[float]]:
    """METEOR of tokenised ``predictions[i]`` against ``references[i]`` -> (corpus score, per-sample scores),
    equal to pycocoevalcap's ``Meteor().compute_score``.

    Args:
        workers: METEOR processes (each a JVM with a 2 GB heap that keeps about two CPUs busy with
            its compiler and collector threads; default: one per two CPUs, at most 4 and at most
            one per 2,000 samples).
    """
    if len(predictions) != len(references) or not len(predictions):
        raise RegionLibError(f"need equally many predictions and reference lists (> 0), got {len(predictions)} "
                             f"and {len(references)}")
    require_java()
    n = len(predictions)
    if workers is None:
        workers = max(1, min((os.cpu_count() or 1) // 2, 4, n // 2000))
    lines = [" ||| ".join(("SCORE", " ||| ".join(refs), hyp.replace("|||", "").replace("  ", " ")))
             for hyp, refs in zip(predictions, references)]
    bounds = [n * k // workers for k in range(workers + 1)]
    procs = [_MeteorProcess() for _ in range(workers)]
    try:
        stats: list[list[str]] = [[] for _ in range(workers)]

        def run(k: int) -> None:
            stats[k] = procs[k].ask(lines[bounds[k]:bounds[k + 1]], bounds[k + 1] - bounds[k])

        threads = [threading.Thread(target=run, args=(k,)) for k in range(1, workers)]
        for t in threads:
            t.start()
        run(0)
        for t in threads:
            t.join()
        all_stats = [s for chunk in stats for s in chunk]
        if len(all_stats) != n:
            raise RegionLibError(f"METEOR returned {len(all_stats)} statistics lines for {n} samples")
        replies = procs[0].ask(["EVAL ||| " + " ||| ".join(all_stats)], n + 1)
    finally:
        for p in procs:
            p.close()
    return float(replies[-1]), [float(r) for r in replies[:-1]]
