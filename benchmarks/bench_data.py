"""Benchmarks of the data layer (issue 2/6): RegionWorld generation speed and its resolution property.

* Generating 1,000 RegionWorld images (256 px, 2-6 objects, masks RLE-encoded, captions and
  DLC-Bench questions) — wall time and images per second (``--quick``: 200 images).
* Saving them as an HF dataset (PNG images + RLE rows) and loading them back.
* The resolution property, measured with `pattern_visibility` (retention of the pattern's
  contrast through DAM's full-image view and focal crop), for the 64-px default and a
  224-px encoder (320-px images): medians over fine-pattern (tiny / small) and coarse-pattern
  (medium / large) objects, and the focal / full ratio for the fine ones.

Prints the numbers and writes them to ``--out`` (JSON) when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench_generation(n: int) -> list[dict]:
    from regionlib.data.regionworld import generate_regionworld, load_regionworld, save_regionworld

    generate_regionworld(2, seed=99)  # load the photographs once (cached per process)
    t = time.perf_counter()
    samples = generate_regionworld(n, seed=0)
    gen_s = time.perf_counter() - t
    n_regions = sum(len(s.regions) for s in samples)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        save_regionworld(samples, Path(d) / "rw")
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        back = load_regionworld(Path(d) / "rw")
        load_s = time.perf_counter() - t
    assert len(back) == n
    return [
        {"what": f"generate {n} RegionWorld images ({n_regions} regions)", "generate_s": gen_s,
         "ms_per_image": 1e3 * gen_s / n, "images_per_s": n / gen_s},
        {"what": f"save {n} images as an HF dataset", "save_s": save_s, "ms_per_image": 1e3 * save_s / n},
        {"what": f"load {n} images back as Regions", "load_s": load_s, "ms_per_image": 1e3 * load_s / n},
    ]


def bench_visibility(n: int, encoder_size: int) -> dict:
    from regionlib.data.regionworld import RegionWorldConfig, generate_regionworld, pattern_visibility

    cfg = RegionWorldConfig.for_encoder(encoder_size)
    fine_full, fine_focal, coarse_full, coarse_focal = [], [], [], []
    t = time.perf_counter()
    for s in generate_regionworld(n, seed=1, config=cfg):
        v = pattern_visibility(s)
        for a, f, c in zip(s.regions.data["attributes"], v["full"], v["focal"]):
            if a["pattern"] == "solid":
                continue
            if a["size"] in ("tiny", "small"):
                fine_full.append(f)
                fine_focal.append(c)
            else:
                coarse_full.append(f)
                coarse_focal.append(c)
    med = lambda v: float(np.nanmedian(v))  # noqa: E731
    return {"what": f"pattern retention, {encoder_size}-px encoder, {cfg.image_size}-px images, periods {cfg.periods}",
            "fine_full_median": med(fine_full), "fine_focal_median": med(fine_focal),
            "coarse_full_median": med(coarse_full), "coarse_focal_median": med(coarse_focal),
            "baseline": "full-image view", "ratio": med(fine_focal) / med(fine_full), "n_fine": len(fine_full),
            "measure_s": time.perf_counter() - t}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 images instead of 1,000")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n = 200 if args.quick else 1000
    rows = bench_generation(n)
    rows += [bench_visibility(10 if args.quick else 30, e) for e in (64, 224)]
    for r in rows:
        print("  " + r["what"] + ": " + ", ".join(f"{k}={v:.3g}" for k, v in r.items()
                                                    if isinstance(v, float) and k != "what"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
