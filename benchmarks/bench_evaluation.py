"""Caption-metric fast path vs. pycocoevalcap's scorers on the same tokens (issue 4/6).

Per-sample CIDEr-D, BLEU-1..4 and ROUGE-L on N regions x 3 references of real text: every
caption is one or two sentences of DAM's DLC-Bench descriptions (the reference data), drawn at
random and lower-cased without punctuation, as the PTB tokenizer would leave them. Each fast
function and its pycocoevalcap counterpart run side by side in one process on the same input.
The fast path runs three times: ``fast_first_s`` is its first (cold) call, ``fast_s`` the best of
the three; pycocoevalcap runs once (``baseline_s``). Rows give ``ratio`` = baseline_s / fast_s,
``ratio_first`` = baseline_s / fast_first_s and the largest absolute difference of the
per-sample scores. ``--regions`` sets N (default 20,000; ``--quick``: 2,000); ``--out`` writes
the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = Path(os.environ.get("REGIONLIB_REFERENCE_DATA", ROOT.parent / "shared" / "reference-data"))


def corpus(n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """``n`` candidate captions and ``n`` x 3 references built from the DAM descriptions' sentences."""
    texts = []
    for name in ("dam_3b_v1.json", "dam_3b_joint_v1.json"):
        path = REFERENCE / "dlc_bench" / name
        if not path.exists():
            raise SystemExit(f"reference data not found at {path} (set REGIONLIB_REFERENCE_DATA)")
        texts += json.loads(path.read_text()).values()
    sentences = [" ".join(re.findall(r"[a-z0-9']+", s.lower())) for t in texts for s in t.split(".")]
    sentences = [s for s in sentences if s]
    rng = np.random.default_rng(seed)

    def caption() -> str:
        return " ".join(sentences[i] for i in rng.integers(0, len(sentences), rng.integers(1, 3)))

    return [caption() for _ in range(n)], [[caption() for _ in range(3)] for _ in range(n)]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> list[dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from regionlib.evaluation.fast_captions import bleu, cider_d, rouge_l

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="2,000 regions")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n = 2000 if args.quick else args.regions
    preds, refs = corpus(n)
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    rows = []
    for name, fast, reference in [
        ("CIDEr-D", lambda: cider_d(preds, refs)[1], lambda: np.asarray(Cider().compute_score(gts, res)[1])),
        ("BLEU-1..4", lambda: bleu(preds, refs)[1], lambda: np.asarray(Bleu(4).compute_score(gts, res, verbose=0)[1])),
        ("ROUGE-L", lambda: rouge_l(preds, refs)[1], lambda: np.asarray(Rouge().compute_score(gts, res)[1])),
    ]:
        ours, fast_first_s = timed(fast)
        fast_s = min(fast_first_s, *(timed(fast)[1] for _ in range(2)))
        theirs, baseline_s = timed(reference)
        diff = float(np.abs(ours - theirs).max())
        rows.append({"what": f"per-sample {name}, {n} regions x 3 refs", "baseline": "pycocoevalcap 1.2",
                     "fast_s": fast_s, "fast_first_s": fast_first_s, "baseline_s": baseline_s,
                     "ratio": baseline_s / fast_s, "ratio_first": baseline_s / fast_first_s, "max_abs_diff": diff})
        print(f"{name}: {baseline_s / fast_s:.1f}x (best of 3 {fast_s:.2f} s, first call {fast_first_s:.2f} s "
              f"= {baseline_s / fast_first_s:.1f}x; pycocoevalcap {baseline_s:.2f} s), max |diff| {diff:.2e}",
              flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
