"""RegionWorld: determinism, structure, grammar, DLC-Bench question format, the resolution property,
identical distractors, HF and DLC-Bench round trips."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from regionlib.data import grammar
from regionlib.data.regionworld import (
    RegionWorldConfig, generate_regionworld, generate_sample, generate_splits, load_regionworld, pattern_visibility,
    save_regionworld, to_dlc_bench,
)
from regionlib.errors import ConfigError


@pytest.fixture(scope="module")
def world():
    return generate_regionworld(24, seed=5)


def _digest(samples):
    return [(s.image.tobytes(), [r["counts"] for r in s.regions.masks_rle], s.regions.captions,
             json.dumps(s.regions.data["questions"])) for s in samples]


def test_same_seed_identical_bytes_other_seed_differs(world):
    again = generate_regionworld(24, seed=5)
    assert _digest(again) == _digest(world)
    other = generate_regionworld(3, seed=6)
    assert all(a.image.tobytes() != b.image.tobytes() for a, b in zip(other, world))
    single = generate_sample((5, 0, 3))
    assert single.image.tobytes() == world[3].image.tobytes()


def test_splits_are_disjoint_and_reproducible():
    splits = generate_splits(n_train=4, n_val=2, n_test=2, seed=1)
    ids = [s.image_id for v in splits.values() for s in v]
    assert len(ids) == len(set(ids)) == 8
    assert [s.split for s in splits["val"]] == ["val", "val"]
    assert splits["test"][1].image.tobytes() == generate_regionworld(2, seed=1, split="test")[1].image.tobytes()


def test_structure_and_occlusion(world):
    for s in world:
        r = s.regions
        assert s.image.shape == (256, 256, 3) and s.image.dtype == np.uint8
        assert 2 <= len(r) <= 6
        masks = r.masks
        assert (masks.sum(0) <= 1).all()  # visible parts are disjoint
        for k, a in enumerate(r.data["attributes"]):
            assert a["occluded_fraction"] <= 0.6 + 1e-9 and masks[k].any()
            lo, hi = grammar.SIZES[a["size"]]
            assert lo <= a["size_px"] <= hi
            assert a["pattern_period"] == s.config.periods[a["size"]]
            assert r.labels[k] == a["shape"] == r.data["keyword"][k]


CAPTION = re.compile(
    r"^A (tiny|small|medium|large) (\w+) (solid|striped|dotted|checkered) (\w+)( with a dark outline)? in the "
    r"(top|middle|bottom) (left|center|right) of the image(, (to the left of|to the right of|above|below|next to|"
    r"in front of|behind) the (\w+) (\w+))?\.$")


def test_captions_follow_the_grammar(world):
    words = set(grammar.caption_words())
    for s in world:
        for cap, a, phrase in zip(s.regions.captions, s.regions.data["attributes"], s.regions.data["phrase"]):
            m = CAPTION.match(cap)
            assert m, cap
            assert (m.group(1), m.group(2), m.group(3), m.group(4)) == (a["size"], a["color"], a["pattern"], a["shape"])
            assert f"{m.group(6)} {m.group(7)}" == a["position"] and bool(m.group(5)) == a["outline"]
            assert phrase == f"{a['color']} {a['pattern']} {a['shape']}"
            assert set(cap.lower().replace(",", " , ").replace(".", " . ").split()) <= words
            target = s.regions.data["attributes"][a["relation_target_index"]]
            assert a["relation_target"] == f"{target['color']} {target['shape']}"


def test_relations_match_geometry(world):
    for s in world:
        attrs = s.regions.data["attributes"]
        for k, a in enumerate(attrs):
            (x, y), (tx, ty) = a["center_xy"], attrs[a["relation_target_index"]]["center_xy"]
            if a["relation"] == "to the left of":
                assert x < tx
            elif a["relation"] == "above":
                assert y < ty
            elif a["relation"] == "in front of":
                assert k > a["relation_target_index"]


def test_identical_distractors_differ_only_by_location(world):
    found = 0
    for s in world:
        attrs = s.regions.data["attributes"]
        for i in range(len(attrs)):
            for j in range(i + 1, len(attrs)):
                keys = ("shape", "color", "pattern", "size", "size_px", "outline")
                if all(attrs[i][k] == attrs[j][k] for k in keys):
                    found += 1
                    assert attrs[i]["center_xy"] != attrs[j]["center_xy"]
                    assert s.regions.data["phrase"][i] == s.regions.data["phrase"][j]
    assert found >= 3


def test_questions_have_the_released_format(world, reference_data):
    ref = json.loads((reference_data / "dlc_bench" / "dam_3b_v1_eval.json").read_text())
    ref_q = next(v for v in ref.values() if isinstance(v, dict))
    ref_keys = {"question", "choices", "type", "subtype"}
    for s in world[:6]:
        for q in s.regions.data["questions"]:
            assert set(q) == {"details_recognition", "details_positives", "details_negatives"}
            assert q["details_recognition"][0]["choices"] == [list(c) for c in ref_q["details_recognition"][0]["choices"]]
            for p in q["details_positives"]:
                assert set(p) <= ref_keys and p["type"] == "positive"
                assert p["question"] == ref_q["details_positives"][0]["question"]
                assert sorted(sc for _, sc in p["choices"]) == [-1, 0, 0.5, 1]
            for n in q["details_negatives"]:
                assert set(n) <= ref_keys and n["type"] == "negative"
                assert {sc for _, sc in n["choices"]} <= {-1, 0, 1}


def test_dlc_scorer_runs_on_regionworld(world):
    from regionlib.evaluation.dlc_bench import evaluate_dlc_bench
    from regionlib.evaluation.judges import RuleJudge

    judge = RuleJudge(grammar.VOCABULARY)
    questions = {rid: q for s in world[:5] for rid, q in zip(s.regions.ids, s.regions.data["questions"])}
    truth = {rid: c for s in world[:5] for rid, c in zip(s.regions.ids, s.regions.captions)}
    scores, _ = evaluate_dlc_bench(truth, questions, judge)
    assert scores.pos == pytest.approx(1.0) and scores.neg == pytest.approx(1.0)
    keyword_only = {rid: f"A {s.regions.labels[k]}." for s in world[:5] for k, rid in enumerate(s.regions.ids)}
    scores, _ = evaluate_dlc_bench(keyword_only, questions, judge)
    assert scores.pos == pytest.approx(0.5) and scores.neg == pytest.approx(1.0)


def test_fine_patterns_vanish_in_the_full_view_but_survive_the_focal_crop(world):
    """64-px encoder, 256-px images: fine period 6 px -> 1.5 px in the full view, 2.7 px in the crop."""
    assert world[0].config.periods == {"tiny": 6, "small": 6, "medium": 10, "large": 10}
    fine_full, fine_focal, coarse_full = [], [], []
    for s in world[:16]:
        v = pattern_visibility(s)
        for a, f, c in zip(s.regions.data["attributes"], v["full"], v["focal"]):
            if a["pattern"] == "solid":
                assert np.isnan(f) and np.isnan(c)
            elif a["size"] in ("tiny", "small"):
                fine_full.append(f)
                fine_focal.append(c)
            else:
                coarse_full.append(f)
    fine_full, fine_focal = np.array(fine_full), np.array(fine_focal)
    assert len(fine_full) >= 15 and len(coarse_full) >= 10
    assert np.median(fine_full) < 0.25 and np.median(fine_focal) > 0.5
    assert np.mean(fine_focal > 2 * fine_full) > 0.8
    assert np.median(coarse_full) > 0.4  # large objects' coarse patterns stay visible everywhere


def test_solid_twin_and_mean_colour_hide_the_pattern():
    cfg = RegionWorldConfig()
    s = generate_sample(11, config=cfg)
    from dataclasses import replace

    twin = generate_sample(11, config=replace(cfg, draw_patterns=False))
    assert s.regions.captions == twin.regions.captions
    diff = s.image.astype(int) - twin.image.astype(int)
    for k, a in enumerate(s.regions.data["attributes"]):
        inside = diff[s.regions.masks[k]]
        if a["pattern"] == "solid":
            assert not inside.any()
        elif a["occluded_fraction"] == 0 and not a["outline"] and a["size"] == "large":
            assert abs(inside.mean()) < 6  # tones average to the named colour


def test_config_checks_and_encoder_sizes():
    assert RegionWorldConfig.for_encoder(224).image_size == 320  # 2 px * 224 / S <= 1.5 -> S >= 299
    assert RegionWorldConfig.for_encoder(224).periods["tiny"] == 2
    with pytest.raises(ConfigError, match="encoder_size=224"):
        RegionWorldConfig(encoder_size=224)
    with pytest.raises(ConfigError, match="size_p"):
        RegionWorldConfig(size_p=(0.5, 0.5, 0.5, 0.0))
    with pytest.raises(ConfigError, match="unknown"):
        generate_regionworld(1, colour="red")


def test_hf_round_trip(world, tmp_path):
    save_regionworld({"train": world[:3], "val": world[3:4]}, tmp_path / "ds")
    back = load_regionworld(tmp_path / "ds")
    assert {k: len(v) for k, v in back.items()} == {"train": 3, "val": 1}
    for a, b in zip(world[:3], back["train"]):
        assert b.image_id == a.image_id and b.seed == a.seed and b.config == a.config
        np.testing.assert_array_equal(b.image, a.image)
        np.testing.assert_array_equal(b.regions.masks, a.regions.masks)
        assert b.regions.captions == a.regions.captions and b.regions.ids == a.regions.ids
        assert b.regions.data["questions"] == a.regions.data["questions"]
        assert b.regions.data["attributes"] == a.regions.data["attributes"]
    assert len(load_regionworld(tmp_path / "ds", split="val")) == 1


def test_dlc_bench_export_reads_back(world, tmp_path):
    from regionlib.data.readers.dlc_bench import read_dlc_bench

    to_dlc_bench(world[:2], tmp_path)
    recs = list(read_dlc_bench(tmp_path))
    assert [len(r.regions) for r in recs] == [len(s.regions) for s in world[:2]]
    for r, s in zip(recs, world[:2]):
        np.testing.assert_array_equal(r.regions.masks, s.regions.masks)
        np.testing.assert_array_equal(r.load_image(), s.image)
        assert [q["details_positives"] for q in r.regions.data["questions"]] == \
            [q["details_positives"] for q in s.regions.data["questions"]]
        assert r.regions.data["class_name"] == s.regions.labels


def test_dlc_bench_export_stays_inside_its_root(world, tmp_path):
    """Bug caught: `to_dlc_bench` wrote ``<root>/annotations/images/<image_id>.png`` with the image id unchecked,
    so ``image_id="../../x"`` wrote outside the output root."""
    import dataclasses

    from regionlib.data.readers.dlc_bench import read_dlc_bench

    hostile = [dataclasses.replace(world[0], image_id="../../../escaped"),
               dataclasses.replace(world[1], image_id="a/../../../../escaped_too")]  # both land in tmp_path today
    root = tmp_path / "out"
    to_dlc_bench(hostile, root)
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()}
    assert written and all(root.resolve() in p.parents for p in written)
    assert [len(r.regions) for r in read_dlc_bench(root)] == [len(s.regions) for s in hostile]
