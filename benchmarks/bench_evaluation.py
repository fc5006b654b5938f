"""Caption evaluation end to end: regionlib vs. pycocoevalcap 1.2 on the same raw text (issue 12).

N regions x 3 references of real text: each caption is one or two sentences of DAM's DLC-Bench
descriptions (the reference data) as written — capitals, commas, periods, slashes, quotes —
drawn at random. Side by side in one process:

* **baseline** — what ``COCOEvalCap`` does: pycocoevalcap's ``PTBTokenizer`` (Java) on the
  references and on the predictions, then its ``Bleu(4)``, ``Rouge``, ``Cider`` (and ``Meteor``);
* **regionlib** — ``caption_scores(predictions, references, metrics=...)`` with its defaults
  (in-process PTB tokenizer: rules, then CoreNLP's lexer in process, Java only for what the lexer
  refuses; fast BLEU / ROUGE-L / CIDEr-D with shared n-grams and token numbers, METEOR in parallel
  worker processes).

Rows, for each N: the end-to-end time without and with METEOR (regionlib's best of two runs and
its first run; METEOR runs once each side), then each stage on its own; ``ratio`` = baseline_s /
fast_s, ``cpu_ratio`` the same for the CPU seconds spent (the Java programs' included: a busy
shared machine stretches wall times more than CPU times), and ``max_abs_diff`` the largest
difference of the per-sample scores of every metric (0 means identical numbers). The end-to-end
row also counts the texts (predictions and references) by tokenizer path: ``rules_texts``,
``lexer_texts`` (CoreNLP's PTBLexer run in process), ``java_texts`` (a JVM), and
``java_texts_before``: the texts outside the rules, which went to Java before the in-process
lexer. Each row also records the machine: CPU model, CPU / thread counts, the BLAS kernel numpy
uses, the load average before and after. ``--regions`` sets N, one or more (default 5,000 and
20,000; ``--quick``: 2,000); ``--no-meteor`` skips the METEOR rows; ``--out`` writes the rows as
JSON.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import machine  # noqa: E402
REFERENCE = Path(os.environ.get("REGIONLIB_REFERENCE_DATA", ROOT.parent / "shared" / "reference-data"))
METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")


def corpus(n: int, seed: int = 0) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``n`` predictions and ``n`` x 3 references (id -> text) from the DAM descriptions' sentences, as written."""
    texts = []
    for name in ("dam_3b_v1.json", "dam_3b_joint_v1.json"):
        path = REFERENCE / "dlc_bench" / name
        if not path.exists():
            raise SystemExit(f"reference data not found at {path} (set REGIONLIB_REFERENCE_DATA)")
        texts += json.loads(path.read_text()).values()
    sentences = [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    rng = np.random.default_rng(seed)

    def caption() -> str:
        return " ".join(sentences[i] for i in rng.integers(0, len(sentences), rng.integers(1, 3)))

    ids = [str(i) for i in range(n)]
    return {i: caption() for i in ids}, {i: [caption() for _ in range(3)] for i in ids}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the Java programs) so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_timed(fn):
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    cpu = cpu_seconds()
    out, wall = timed(fn)
    return out, wall, cpu_seconds() - cpu


def reference_pipeline(preds: dict, refs: dict, meteor: bool) -> tuple[dict, dict]:
    """COCOEvalCap's steps: PTBTokenizer on gts and on res, then the scorers -> (scores, stage times)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    times, cpu, out = {}, {}, {}
    (gts, res), times["tokenise"], cpu["tokenise"] = cpu_timed(lambda: (
        PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()}),
        PTBTokenizer().tokenize({k: [{"caption": preds[k]}] for k in refs})))
    (c, s), times["BLEU-1..4"], cpu["BLEU-1..4"] = cpu_timed(lambda: Bleu(4).compute_score(gts, res, verbose=0))
    out.update({f"BLEU-{k + 1}": np.asarray(s[k]) for k in range(4)})
    (c, s), times["ROUGE-L"], cpu["ROUGE-L"] = cpu_timed(lambda: Rouge().compute_score(gts, res))
    out["ROUGE-L"] = np.asarray(s)
    (c, s), times["CIDEr-D"], cpu["CIDEr-D"] = cpu_timed(lambda: Cider().compute_score(gts, res))
    out["CIDEr"] = np.asarray(s)
    if meteor:
        (c, s), times["METEOR"], cpu["METEOR"] = cpu_timed(lambda: Meteor().compute_score(gts, res))
        out["METEOR"] = np.asarray(s)
    return out, times, cpu


def regionlib_stages(preds: dict, refs: dict, meteor: bool) -> dict:
    """regionlib's stages on their own (same inputs): tokeniser, then each metric on its tokens."""
    from regionlib.evaluation import fast_captions, ptb
    from regionlib.evaluation.meteor import meteor_scores

    ids = list(refs)
    (p, flat), times = timed(lambda: ptb.tokenize_groups([[preds[k] for k in ids], [c for k in ids for c in refs[k]]]))
    times = {"tokenise": times}
    r = [flat[3 * k:3 * k + 3] for k in range(len(ids))]
    _, times["BLEU-1..4"] = timed(lambda: fast_captions.bleu(p, r))
    _, times["ROUGE-L"] = timed(lambda: fast_captions.rouge_l(p, r))
    _, times["CIDEr-D"] = timed(lambda: fast_captions.cider_d(p, r))
    _, times["BLEU-1..4 + CIDEr-D (n-grams once)"] = timed(
        lambda: (lambda ng: (fast_captions.bleu(p, r, ngrams=ng), fast_captions.cider_d(p, r, ngrams=ng)))(
            fast_captions.count_ngrams(p, r)))
    if meteor:
        _, times["METEOR"] = timed(lambda: meteor_scores(p, r))
    return times


def max_diff(ours, theirs: dict) -> dict:
    """``max_abs_diff`` (over all metrics) and ``max_abs_diff_per_metric`` of the per-sample scores (0.0: identical)."""
    per = {m: float(np.abs(ours.per_sample[m] - theirs[m]).max()) for m in theirs}
    return {"max_abs_diff": max(per.values()), "max_abs_diff_per_metric": per}


def tokenizer_paths(preds: dict, refs: dict) -> dict:
    """How many texts each tokenizer path takes in ``caption_scores`` (predictions and references)."""
    from regionlib.evaluation import ptb

    before = dict(ptb.counts)
    ptb.tokenize_groups([list(preds.values()), [c for v in refs.values() for c in v]])
    now = {k: ptb.counts[k] - before.get(k, 0) for k in ("rules", "lexer", "java")}
    outside = sum(ptb.in_process(ptb.normalize_line_ends(t)) is None
                  for t in [*preds.values(), *(c for v in refs.values() for c in v)])
    return {"rules_texts": now["rules"], "lexer_texts": now["lexer"], "java_texts": now["java"],
            "java_texts_before": outside}


def run(n: int, meteor: bool) -> list[dict]:
    """The rows for N = ``n`` regions."""
    from regionlib.evaluation.caption_metrics import caption_scores

    preds, refs = corpus(n)
    before = machine()
    rows = []
    what = f"{n} regions x 3 refs, raw text"

    def row(name, fast_s, baseline_s, **extra):
        rows.append({"what": f"{name}, {what}", "baseline": "pycocoevalcap 1.2 (PTBTokenizer + scorers)",
                     "fast_s": fast_s, "baseline_s": baseline_s, "ratio": baseline_s / fast_s, **extra})
        r = rows[-1]
        print(f"{name} [{n}]: {r['ratio']:.1f}x (regionlib {fast_s:.2f} s, pycocoevalcap {baseline_s:.2f} s)"
              + "".join(f", {k} {v:.3g}" if isinstance(v, float) else f", {k} {v}" for k, v in extra.items()
                        if k != "max_abs_diff_per_metric")
              + (f"\n    per-sample max |diff|: {extra['max_abs_diff_per_metric']}"
                 if "max_abs_diff_per_metric" in extra else ""),
              flush=True)

    theirs, base_times, base_cpu = reference_pipeline(preds, refs, meteor)
    base_fast = sum(v for k, v in base_times.items() if k != "METEOR")
    base_fast_cpu = sum(v for k, v in base_cpu.items() if k != "METEOR")
    ours, first_s, first_cpu = cpu_timed(lambda: caption_scores(preds, refs, metrics=METRICS))
    _, again_s, again_cpu = cpu_timed(lambda: caption_scores(preds, refs, metrics=METRICS))
    best_s, best_cpu = min(first_s, again_s), min(first_cpu, again_cpu)
    row("end to end: tokenise + BLEU-1..4 + ROUGE-L + CIDEr-D", best_s, base_fast, fast_first_s=first_s,
        ratio_first=base_fast / first_s, fast_cpu_s=best_cpu, baseline_cpu_s=base_fast_cpu,
        cpu_ratio=base_fast_cpu / best_cpu, **max_diff(ours, {m: theirs[m] for m in METRICS}),
        **tokenizer_paths(preds, refs), goal=">= 20x")
    if meteor:
        ours_m, m_s, m_cpu = cpu_timed(lambda: caption_scores(preds, refs, metrics=(*METRICS, "METEOR")))
        row("end to end with METEOR", m_s, sum(base_times.values()), fast_cpu_s=m_cpu,
            baseline_cpu_s=sum(base_cpu.values()), cpu_ratio=sum(base_cpu.values()) / m_cpu,
            **max_diff(ours_m, theirs), goal=">= 4x")
    for stage, s in regionlib_stages(preds, refs, meteor).items():
        base = (base_times["BLEU-1..4"] + base_times["CIDEr-D"] if stage.startswith("BLEU-1..4 +")
                else base_times[stage])
        row(f"stage {stage}", s, base)
    after = machine()
    for r in rows:
        r.update({k: v for k, v in before.items() if k != "load_average"},
                 load_average_before=before["load_average"], load_average_after=after["load_average"])
    print(f"machine: {before['cpu_model']}, {before['cpus']} CPUs, {before['threads']} threads, BLAS "
          f"{before.get('blas')} ({before.get('blas_kernel')}, {before.get('blas_threads')} threads), load "
          f"{before['load_average']} -> {after['load_average']}", flush=True)
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--quick", action="store_true", help="2,000 regions")
    parser.add_argument("--no-meteor", action="store_true", help="skip the METEOR rows")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = [r for n in ([2000] if args.quick else args.regions) for r in run(n, not args.no_meteor)]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
