"""DLC-SDP stage 2 as in the paper (REFERENCE §2): OWLv2 boxes -> SAM masks -> captions given the
class name -> detector / predicted-IoU / crop-text-similarity filters -> at most two regions per
image, of different classes -> training triplets that the training task reads back, on a folder of
photographs or a COCO file. Tiny real-format checkpoints are built here (tests/jobs/sdp_fixtures.py)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sdp_fixtures as F  # noqa: E402

from regionlib.masks import decode_rle, encode_rle  # noqa: E402
from regionlib.runtime.shards import read_jsonl_shards  # noqa: E402

CLASSES = "circle,square,triangle"


@pytest.fixture(scope="module")
def sdp(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdp")
    return {"owl": F.save_tiny_owlv2(root / "owlv2"), "clip": F.save_tiny_clip(root / "clip"),
            "sam": F.save_tiny_sam(root / "sam_tiny.pth"), "images": root / "photos",
            "arrays": F.write_photo_folder(root / "photos", 3)}


def _argv(sdp, out, *extra):
    return ["--images", str(sdp["images"]), "--detector", str(sdp["owl"]), "--classes", CLASSES,
            "--sam-preset", "tiny", "--sam-checkpoint", str(sdp["sam"]), "--clip", str(sdp["clip"]),
            "--preset", "tiny-dam", "--min-predicted-iou", "0", "--min-detector", "0.05", "--max-new-tokens", "6",
            "--out", str(out), *extra]


def _worker(argv):
    from regionlib.selflabel.cli import parse_job
    from regionlib.selflabel.stages import LabelWorker

    job = parse_job(argv)
    return LabelWorker(job), job


@pytest.mark.slow
def test_label_then_retrain_on_a_folder_of_photographs(local_ray, sdp, tmp_path, monkeypatch):
    """Bug caught: stage 2 had no open-vocabulary detector, gave the captioner no class name, applied no
    image-text filter, and its output could not be trained on ("only RegionWorld self-labels are
    regenerated"), so label -> retrain closed only on RegionWorld. Here: OWLv2 -> SAM -> captions given
    the class -> filters -> records with the image's path -> `self_labeled_regions` -> `train_local`."""
    from ray_jobs import self_label

    import regionlib.selflabel.records as self_labels
    from regionlib.training.loop import load_config, train_local

    out = tmp_path / "labels"
    stats = self_label.main(_argv(sdp, out, "--shard-size", "2", "--actors", "1", "--cpus-per-actor", "0.5",
                                  "--candidates", "2"))
    assert stats["computed"] == 2 and stats["records"] > 0
    records = read_jsonl_shards(out)
    per_image = Counter(r["image_id"] for r in records)
    assert max(per_image.values()) <= 2
    for image_id in per_image:
        classes = [r["class_name"] for r in records if r["image_id"] == image_id]
        assert len(classes) == len(set(classes)) and set(classes) <= set(CLASSES.split(","))
    for r in records:
        assert set(r["scores"]) == {"detector", "predicted_iou", "logprob", "similarity"}
        assert r["scores"]["detector"] >= 0.05 and r["caption"].strip() and r["conditioning"] == "prefix"
        assert Path(r["image"]["path"]) == sdp["images"] / f"{r['image_id']}.png"
        assert not r["caption"].startswith(r["class_name"] + ",")  # the class prefix is never in the label

    triples = self_labels.self_labeled_regions(out)  # images read back from their files, masks from the RLE
    assert {image_id: len(reg) for image_id, _, reg in triples} == per_image
    by_id = {r["id"]: r for r in records}
    for image_id, image, regions in triples:
        np.testing.assert_array_equal(image, sdp["arrays"][image_id])
        for rid, mask, caption in zip(regions.ids, regions.masks, regions.captions):
            np.testing.assert_array_equal(mask, decode_rle([by_id[rid]["mask"]])[0])
            assert caption == by_id[rid]["caption"]

    read = []
    real = self_labels.self_labeled_regions
    monkeypatch.setattr(self_labels, "self_labeled_regions",
                        lambda d: read.append(d) or (read.extend(real(d)) or read[1:]))
    cfg = load_config(None, [f"task.self_labels={out}", "task.n_images=2", "task.n_val=1", "task.preset=tiny-dam",
                             "train.max_steps=2", "train.batch_size=2", "train.checkpoint_every=2",
                             f"run.storage={tmp_path / 'runs'}", "run.name=retrain"])
    checkpoint = train_local(cfg, str(tmp_path / "runs" / "retrain"))
    assert read and read[0] == str(out), "training never read the self-labels"
    assert Path(checkpoint).is_dir()


def _coco(tmp_path, image: np.ndarray, anns: list[tuple[str, np.ndarray, int]]) -> tuple[Path, Path]:
    """A COCO instances file over one PNG: ``anns`` = (category name, mask, iscrowd)."""
    from PIL import Image

    images = tmp_path / "coco_images"
    images.mkdir()
    Image.fromarray(image).save(images / "img1.png")
    names = sorted({n for n, _, _ in anns})
    out = []
    for k, (name, mask, crowd) in enumerate(anns, 1):
        ys, xs = np.nonzero(mask)
        rle = encode_rle(mask[None])[0]
        seg = {"size": rle["size"], "counts": rle["counts"]}
        out.append({"id": k, "image_id": 1, "category_id": names.index(name) + 1, "iscrowd": crowd,
                    "segmentation": seg, "area": int(mask.sum()),
                    "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]})
    data = {"images": [{"id": 1, "file_name": "img1.png", "height": image.shape[0], "width": image.shape[1]}],
            "annotations": out, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images


def _box_mask(shape, x0, y0, x1, y1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_coco_crowd_regions_are_never_objects(sdp, tmp_path):
    """Bug caught: on a COCO file stage 2 (and stage 1) kept ``iscrowd=1`` annotations as objects. Here
    the only other class is one circle, so the old code's "two regions of different classes" kept the
    crowd 'person' region; now neither the annotation proposals, SAM's masks for the given boxes,
    stage 1's keyword expansion nor a detector proposal lying inside the crowd ever yields it."""
    image = sdp["arrays"]["photo0"]
    shape = image.shape[:2]
    crowd = _box_mask(shape, 100, 100, 250, 250)
    path, images = _coco(tmp_path, image, [("circle", _box_mask(shape, 10, 10, 60, 60), 0),
                                           ("person", crowd, 1)])
    base = ["--coco", str(path), "--images", str(images), "--preset", "tiny-dam", "--max-new-tokens", "4",
            "--candidates", "1", "--min-predicted-iou", "0", "--sam-checkpoint", str(sdp["sam"]),
            "--out", str(tmp_path / "o")]
    for mode in ("regionworld", "boxes"):
        worker, _ = _worker(base + ["--proposals", mode])
        recs = worker.describe("1")
        assert [r.class_name for r in recs] == ["circle"], mode
    worker, _ = _worker(base + ["--stage", "keywords", "--vlm-url", "http://127.0.0.1:9/v1", "--vlm-model", "none"])

    class Echo:
        def ask(self, prompts):
            return ["a detailed thing"] * len(prompts)

    worker.vlm = Echo()
    assert [r.keyword for r in worker.keywords("1")] == ["circle"]
    from regionlib.selflabel.stage2 import drop_inside_crowd

    inside, outside = _box_mask(shape, 120, 120, 200, 200), _box_mask(shape, 0, 0, 90, 90)
    straddle = _box_mask(shape, 60, 60, 140, 140)  # 1/4 inside the crowd
    assert drop_inside_crowd(np.stack([inside, outside, straddle]), crowd[None]).tolist() == [False, True, True]


def test_at_most_two_instances_per_image_of_different_classes(sdp, tmp_path):
    """The two-instance rule through the whole stage (SAM masks for given COCO boxes): three circles and
    two squares give at most one circle and one square; `--max-per-image 1` gives one region."""
    image = sdp["arrays"]["photo1"]
    shape = image.shape[:2]
    anns = [("circle", _box_mask(shape, 10 + 60 * k, 10, 50 + 60 * k, 50), 0) for k in range(3)]
    anns += [("square", _box_mask(shape, 10 + 80 * k, 150, 60 + 80 * k, 200), 0) for k in range(2)]
    path, images = _coco(tmp_path, image, anns)
    argv = ["--coco", str(path), "--images", str(images), "--preset", "tiny-dam", "--max-new-tokens", "4",
            "--candidates", "1", "--min-predicted-iou", "0", "--proposals", "boxes", "--sam-checkpoint", str(sdp["sam"]),
            "--out", str(tmp_path / "o")]
    recs = _worker(argv)[0].describe("1")
    assert sorted(r.class_name for r in recs) == ["circle", "square"]
    assert all("predicted_iou" in r.scores and "detector" not in r.scores for r in recs)
    assert len(_worker(argv + ["--max-per-image", "1"])[0].describe("1")) == 1


@pytest.mark.parametrize("confidence", ["detector", "predicted_iou", "logprob", "similarity"])
def test_each_filter_drops_what_falls_below_it(sdp, tmp_path, confidence):
    """Bug caught: stage 2 filtered on neither the detector's confidence nor the crop-text similarity.
    With no per-image cap, a threshold between the lowest and the next value of one confidence drops the
    regions at the lowest value and keeps every other one; a dropped class's next-best region may take its
    place (stage 2 keeps one region per class), but only one above the threshold."""
    flags = {"detector": "--min-detector", "predicted_iou": "--min-predicted-iou", "logprob": "--min-logprob",
             "similarity": "--min-similarity"}
    argv = _argv(sdp, tmp_path / "o", "--candidates", "1", "--max-per-image", "100", "--min-detector", "0")
    worker, _ = _worker(argv)
    everything = {r.id: r for i in ("photo0", "photo1", "photo2") for r in worker.describe(i)}
    values = sorted({r.scores[confidence] for r in everything.values()})
    assert len(values) >= 2, "need two distinct values to place a threshold"
    cut = (values[0] + values[1]) / 2
    worker, _ = _worker(argv + [flags[confidence], repr(cut)])
    kept = {r.id: r for i in ("photo0", "photo1", "photo2") for r in worker.describe(i)}
    assert all(r.scores[confidence] > cut for r in kept.values())
    assert {k for k, r in everything.items() if r.scores[confidence] > cut} <= set(kept)
    assert any(k not in kept for k in everything)


def test_filter_proposals_counts_each_drop_once():
    from regionlib.selflabel import ConfidenceThresholds, Proposal, filter_proposals

    th = ConfidenceThresholds(detector=0.3, predicted_iou=0.5, logprob=-2.0, similarity=0.2)
    ok = {"detector": 0.9, "predicted_iou": 0.9, "logprob": -1.0, "similarity": 0.5}
    props = [Proposal("a", str(k), "c", "x", dict(ok, **bad)) for k, bad in enumerate(
        [{}, {"detector": 0.1}, {"predicted_iou": 0.2}, {"logprob": -3.0}, {"similarity": 0.1},
         {"detector": 0.1, "similarity": 0.1}, {"similarity": float("nan")}])]
    kept, dropped = filter_proposals(props, th)
    assert [p.region_id for p in kept] == ["0"]
    assert dropped == {"detector": 2, "predicted_iou": 1, "logprob": 1, "similarity": 2}


def test_owlv2_detector_boxes_are_in_image_pixels(sdp):
    """OWLv2 predicts boxes relative to the image padded to a square (bottom / right): the detector must
    scale by the padded side and clip to the image, never by the unpadded height."""
    import torch
    from transformers import Owlv2ForObjectDetection, Owlv2Processor

    from regionlib.selflabel.stage2 import OwlV2Detector

    image = sdp["arrays"]["photo0"][:160]  # 160 x 256: not square
    det = OwlV2Detector(sdp["owl"], max_detections=100, nms_iou=1.0)
    regions = det(image, ["circle", "square"])
    assert len(regions) > 0 and regions.image_size == (160, 256)
    model, proc = Owlv2ForObjectDetection.from_pretrained(sdp["owl"]), Owlv2Processor.from_pretrained(sdp["owl"])
    inputs = proc(text=[["circle", "square"]], images=image, return_tensors="pt", padding="max_length",
                  truncation=True, max_length=16)
    with torch.no_grad():
        out = model(**inputs)
    cxcywh = out.pred_boxes[0].numpy() * 256  # relative to the 256 x 256 padded square
    expected = np.stack([cxcywh[:, 0] - cxcywh[:, 2] / 2, cxcywh[:, 1] - cxcywh[:, 3] / 2,
                         cxcywh[:, 0] + cxcywh[:, 2] / 2, cxcywh[:, 1] + cxcywh[:, 3] / 2], 1)
    expected = np.clip(expected, 0, [256, 160, 256, 160])
    for box in regions.boxes_xyxy:
        assert np.abs(expected - box).max(1).min() < 1e-3
    assert regions.boxes_xyxy[:, 3].max() <= 160
