"""Caption-metric fast path vs. pycocoevalcap's scorers on the same tokens (issue 4/6).

Per-sample CIDEr-D, BLEU-1..4 and ROUGE-L on N regions x 3 references of real text (sentences
of DAM's DLC-Bench descriptions, recombined), measured side by side in one run, with the
largest absolute difference. ``--regions`` sets N (default 20,000).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np

REFERENCE = Path(os.environ.get("REGIONLIB_REFERENCE_DATA", Path(__file__).resolve().parents[2] / "shared" / "reference-data"))


def corpus(n: int, seed: int = 0):
    texts = []
    for name in ("dam_3b_v1.json", "dam_3b_joint_v1.json"):
        texts += json.loads((REFERENCE / "dlc_bench" / name).read_text()).values()
    sentences = [" ".join(re.findall(r"[a-z0-9']+", s.lower())) for t in texts for s in t.split(".")]
    sentences = [s for s in sentences if s]
    rng = np.random.default_rng(seed)

    def caption():
        return " ".join(sentences[i] for i in rng.integers(0, len(sentences), rng.integers(1, 3)))

    preds = [caption() for _ in range(n)]
    refs = [[caption() for _ in range(3)] for _ in range(n)]
    return preds, refs


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None) -> list[dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from regionlib.evaluation.fast_captions import bleu, cider_d, rouge_l

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=20000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    preds, refs = corpus(args.regions)
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    rows = []
    for name, fast, slow in [
        ("CIDEr-D", lambda: cider_d(preds, refs)[1], lambda: np.asarray(Cider().compute_score(gts, res)[1])),
        ("BLEU-1..4", lambda: bleu(preds, refs)[1], lambda: np.asarray(Bleu(4).compute_score(gts, res, verbose=0)[1])),
        ("ROUGE-L", lambda: rouge_l(preds, refs)[1], lambda: np.asarray(Rouge().compute_score(gts, res)[1])),
    ]:
        f, tf = timed(fast)
        s, ts = timed(slow)
        rows.append({"what": f"per-sample {name}, {args.regions} regions x 3 refs", "baseline": "pycocoevalcap",
                     "fast_s": tf, "baseline_s": ts, "ratio": ts / tf, "max_abs_diff": float(np.abs(f - s).max())})
        print(f"{name}: {ts / tf:.1f}x faster ({tf:.2f} s vs {ts:.2f} s), max |diff| {rows[-1]['max_abs_diff']:.2e}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
