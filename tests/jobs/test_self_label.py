"""Self-labeling job (DLC-SDP stage 2) on a local Ray: an actor killed mid-run loses and duplicates nothing."""

import json
from collections import Counter

import pytest

from regionlib.masks import decode_rle
from regionlib.runtime.shards import read_jsonl_shards

pytestmark = pytest.mark.slow


def label(out, *extra):
    from ray_jobs import self_label

    return self_label.main(["--regionworld", "6", "--preset", "tiny-dam", "--out", str(out), "--shard-size", "2",
                            "--actors", "2", "--cpus-per-actor", "0.5", "--max-new-tokens", "6", *extra])


def test_self_label_survives_a_killed_actor(local_ray, tmp_path):
    clean = label(tmp_path / "clean", "--actors", "1")  # the reference: its records do not depend on the pool
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
    """Bug caught: --min-logprob ignored (every image's regions would be kept, as in the test above). Two
    images, one shard, one actor: the threshold is per caption, more images would prove no more."""
    stats = label(tmp_path / "strict", "--min-logprob", "-0.01",  # an untrained captioner is never that sure
                  "--regionworld", "2", "--actors", "1")
    assert stats["computed"] == 1 and stats["records"] == 0


def test_keyword_expansion_through_a_vlm_endpoint(local_ray, tmp_path):
    """Stage 1: both images of every annotated region reach the VLM endpoint; replies become captions."""
    import re

    from ray_jobs import self_label

    from regionlib.data.regionworld import generate_regionworld
    from regionlib.evaluation.judges import Judge
    from regionlib.evaluation.judges.serve import Faults, serve_judge

    class Describer(Judge):
        backend = "test-describer"

        def _complete(self, prompt):
            category = re.search(r"describe the (\w+) in the provided SEGMENTED", prompt)[1]
            return f"a detailed {category}"

    samples = generate_regionworld(3, split="train")
    n_regions = sum(len(s.regions) for s in samples)
    with serve_judge(Describer(model="vlm", cache=tmp_path / "server.sqlite"), faults=Faults(fail_every=5)) as server:
        argv = ["--stage", "keywords", "--regionworld", "3", "--vlm", "openai", "--vlm-url", server.url,
                "--vlm-model", "vila", "--out", str(tmp_path / "kw"), "--shard-size", "2"]
        stats = self_label.main(argv)
        assert stats["records"] == n_regions and server.images == 2 * (server.requests - server.requests // 5)
        records = read_jsonl_shards(tmp_path / "kw")
        by_id = {r["id"]: r for r in records}
        for s in samples:
            for rid, label in zip(s.regions.ids, s.regions.labels):
                assert by_id[str(rid)]["caption"] == f"a detailed {label}"
        requests = server.requests
        (tmp_path / "kw" / "manifest.json").unlink()
        again = self_label.main(argv)  # every shard recomputed, every answer from the cache
        assert again["records"] == n_regions and server.requests == requests


def test_regionworld_oracle_and_phrase_filtering(local_ray, tmp_path):
    from ray_jobs import self_label

    from regionlib.data.regionworld import generate_regionworld

    samples = generate_regionworld(2, split="train")
    stats = self_label.main(["--stage", "keywords", "--regionworld", "2", "--vlm", "regionworld-oracle",
                             "--out", str(tmp_path / "oracle")])
    captions = {r["id"]: r["caption"] for r in read_jsonl_shards(tmp_path / "oracle")}
    assert captions == {str(i): c for s in samples for i, c in zip(s.regions.ids, s.regions.captions)}
    assert stats["records"] == len(captions)

    phr = self_label.main(["--stage", "phrases", "--regionworld", "2", "--preset", "tiny-dam",
                           "--drop-fraction", "0.5", "--out", str(tmp_path / "phrases")])
    assert phr["phrases"] > 0 and phr["kept"] == phr["phrases"] - int(0.5 * phr["phrases"])
    kept = [json.loads(line) for line in (tmp_path / "phrases" / "filtered.jsonl").read_text().splitlines()]
    assert len(kept) == phr["kept"]
    dropped_max = max(r["scores"]["phrase_score"] for r in read_jsonl_shards(tmp_path / "phrases")
                      if r["id"] not in {k["id"] for k in kept})
    assert all(r["scores"]["phrase_score"] >= dropped_max for r in kept)  # the lowest half went
    assert all(set(r["caption"].split()) <= set(r["source_caption"].lower().replace(",", " ").replace(".", " ").split())
               for r in kept)
