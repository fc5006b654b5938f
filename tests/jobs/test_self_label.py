"""Self-labeling job (DLC-SDP stage 2) on a local Ray: an actor killed mid-run loses and duplicates nothing."""

from collections import Counter

import pytest

from regionlib.masks import decode_rle
from regionlib.shards import read_jsonl_shards

pytestmark = pytest.mark.slow


def label(out, *extra):
    from ray_jobs import self_label

    return self_label.main(["--regionworld", "6", "--preset", "tiny-dam", "--out", str(out), "--shard-size", "2",
                            "--actors", "2", "--cpus-per-actor", "0.5", "--max-new-tokens", "6", *extra])


def test_self_label_survives_a_killed_actor(local_ray, tmp_path):
    clean = label(tmp_path / "clean")
    marker = tmp_path / "killed"
    faulty = label(tmp_path / "faulty", "--fail-shard", "1", "--fail-marker", str(marker))
    assert marker.exists(), "the fault was not injected"
    assert clean["computed"] == faulty["computed"] == 3
    a, b = read_jsonl_shards(tmp_path / "clean"), read_jsonl_shards(tmp_path / "faulty")
    ids = [r["id"] for r in b]
    assert len(ids) == len(set(ids)), "duplicated records"
    assert sorted(ids) == sorted(r["id"] for r in a)
    # at most two regions per image, of different classes; masks decode to the stated image size
    per_image = Counter(r["image_id"] for r in b)
    assert len(per_image) == 6 and max(per_image.values()) <= 2
    for image_id in per_image:
        classes = [r["class_name"] for r in b if r["image_id"] == image_id]
        assert len(classes) == len(set(classes))
    m = decode_rle([b[0]["mask"]])
    assert m.shape == (1, *b[0]["image_size"]) and m.any()
    assert all(r["caption"] and r["scores"]["logprob"] <= 0 for r in b)
    rerun = label(tmp_path / "faulty")
    assert rerun["skipped"] == 3 and rerun["computed"] == 0


def test_thresholds_drop_low_confidence_captions(local_ray, tmp_path):
    stats = label(tmp_path / "strict", "--min-logprob", "-0.01")  # an untrained captioner is never that sure
    assert stats["computed"] == 3 and stats["records"] == 0
