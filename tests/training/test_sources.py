"""Training on the real formats' files (fixtures in each release's documented layout), mixed by weight."""

import json
from collections import Counter

import numpy as np
import pytest

from regionlib.errors import ConfigError
from regionlib.training.data import build_sources, epoch_order
from regionlib.training.loop import load_config, train_local
from tests.data.conftest import CocoFixture, rect_mask, rle_of, write_image


def _vg(root):
    """Visual Genome v1.2: image_data.json + region_descriptions.json, images in VG_100K / VG_100K_2."""
    write_image(root / "VG_100K" / "1.jpg", 40, 60)
    (root / "image_data.json").write_text(json.dumps([
        {"image_id": 1, "width": 60, "height": 40, "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg"}]))
    (root / "region_descriptions.json").write_text(json.dumps([{"id": 1, "regions": [
        {"region_id": 10, "image_id": 1, "phrase": "a red car", "x": 5, "y": 5, "width": 20, "height": 10},
        {"region_id": 11, "image_id": 1, "phrase": "blue sky", "x": 0, "y": 0, "width": 60, "height": 8}]}]))


def _refcoco(root, images):
    """RefCOCO (refer's layout): <root>/refcoco/instances.json + refs(unc).p over COCO train2014 images."""
    import pickle

    write_image(images / "COCO_train2014_000000000001.jpg", 40, 60)
    d = root / "refcoco"
    d.mkdir(parents=True)
    (d / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 40, "width": 60}],
        "annotations": [{"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 10, 10],
                         "segmentation": rle_of(rect_mask(40, 60, 0, 0, 10, 10))}],
        "categories": [{"id": 1, "name": "person"}]}))
    refs = [{"ref_id": 0, "ann_id": 11, "image_id": 1, "category_id": 1, "split": "train", "sent_ids": [0],
             "file_name": "COCO_train2014_000000000001_11.jpg",
             "sentences": [{"sent_id": 0, "sent": "left guy", "raw": "Left guy", "tokens": ["left", "guy"]}]}]
    (d / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))


@pytest.fixture
def specs(tmp_path):
    coco = CocoFixture(tmp_path / "coco")
    _vg(tmp_path / "vg")
    _refcoco(tmp_path / "refer", tmp_path / "train2014")
    return [{"reader": "coco", "annotations": str(coco.path), "images": str(coco.image_root), "weight": 1.0},
            {"reader": "visual_genome", "root": str(tmp_path / "vg"), "weight": 1.0},
            {"reader": "refcoco", "root": str(tmp_path / "refer"), "images": str(tmp_path / "train2014"),
             "split": "train", "weight": 1.0},
            {"reader": "regionworld", "n_images": 2, "weight": 2.0}]


def test_sources_read_each_format_with_its_targets_and_never_train_on_crowds(specs):
    """Bugs caught: a reader's regions dropped or given the wrong text (COCO class names, VG phrases,
    RefCOCO expressions), a crowd region trained on as an object."""
    sources = build_sources(specs)
    texts = {src.name: sorted(c for it in src.items for c in it.regions.captions) for src in sources}
    assert texts["coco"] == ["cat", "cat", "dog"]  # annotation 4 is iscrowd = 1: never a target
    assert texts["visual_genome"] == ["a red car", "blue sky"]
    assert texts["refcoco"] == ["left guy"]
    assert len(texts["regionworld"]) >= 4


def test_mixture_weights_and_one_order_per_epoch(specs):
    """Bug caught: a mixture ignoring its weights, or ranks / restarts seeing different orders."""
    sources = build_sources(specs)
    order = epoch_order(sources, epoch=0, seed=0, epoch_size=4000)
    share = Counter(s for s, _, _ in order)
    assert abs(share[3] / 4000 - 0.4) < 0.03 and abs(share[0] / 4000 - 0.2) < 0.03  # weights 1:1:1:2
    assert order == epoch_order(sources, epoch=0, seed=0, epoch_size=4000)
    assert order != epoch_order(sources, epoch=1, seed=0, epoch_size=4000)
    seen = {(s, i, k) for s, i, k in order}
    assert len(seen) == sum(src.n_regions for src in sources)  # every region drawn


def test_training_runs_on_a_mixture_of_real_formats_with_the_sca_recipe_augmentations(specs, tmp_path):
    """Bug caught: the training task wired to RegionWorld only, or LSJ / flip never applied (an
    augmentation that changes nothing would leave the step-1 loss of a flip-only run unchanged)."""
    cfg = load_config(None, ["task.preset=tiny-dam", "task.n_val=0", "train.batch_size=4", "train.max_steps=2",
                             "train.checkpoint_every=2", f"run.storage={tmp_path}", "run.name=mix"],
                      task={"sources": specs, "augment": {"lsj": {"output_size": 96, "scale_range": [0.5, 1.5]},
                                                          "hflip": 0.5}})
    ckpt = train_local(cfg, str(tmp_path / "mix"))
    log = [json.loads(x) for x in (tmp_path / "mix" / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(m["loss"]) for m in log)
    assert (ckpt / "config.json").is_file()
    plain = load_config(None, ["task.preset=tiny-dam", "task.n_val=0", "train.batch_size=4", "train.max_steps=1",
                               "train.checkpoint_every=1", f"run.storage={tmp_path}", "run.name=plain"],
                        task={"sources": specs})
    train_local(plain, str(tmp_path / "plain"))
    first = json.loads((tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] != log[0]["loss"]


def test_bad_source_specs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="reader must be one of"):
        build_sources([{"reader": "imagenet"}])
    with pytest.raises(ConfigError, match="bad reader arguments"):
        build_sources([{"reader": "coco", "annotation": "x"}])
    with pytest.raises(ConfigError, match="weight"):
        build_sources([{"reader": "regionworld", "n_images": 1, "weight": 0}])


@pytest.mark.parametrize("name", ["sca_paper", "dam_paper"])
def test_paper_recipes_run_with_their_augmentations(name, tmp_path):
    """Bug caught: a paper recipe config that no longer parses or whose augmentation / recipe names
    the code does not know (run here at tiny size: same config, tiny preset, RegionWorld)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "ray_jobs" / "configs" / f"{name}.yaml"
    tiny = "tiny-sca" if name.startswith("sca") else "tiny-dam"
    small = ["task.augment.lsj.output_size=128"] if name.startswith("sca") else []
    cfg = load_config(str(path), [f"task.preset={tiny}", "task.overrides={}", "train.batch_size=2",
                                  "train.grad_accum=1", "train.max_steps=1", "train.checkpoint_every=1",
                                  "run.workers=1", "run.use_gpu=false", "run.precision=fp32",
                                  f"run.storage={tmp_path}", "task.sources=[{reader: regionworld, n_images: 2}]",
                                  *small])
    assert cfg.task.augment != type(cfg.task.augment)() and cfg.recipe.name in ("sca", "dam")
    ckpt = train_local(cfg, str(tmp_path / "out"))
    assert (ckpt / "model.safetensors").is_file()


def test_validation_cider_is_the_final_evaluations(tmp_path):
    """Bug caught: validation CIDEr on a regex tokenizer that disagrees with PTB (19 % of captions), so
    validation and final numbers were on different tokens: both now equal `caption_scores`' CIDEr-D."""
    from regionlib.data.regionworld import generate_regionworld
    from regionlib.evaluation.caption_metrics import caption_scores
    from regionlib.predictor import RegionPredictor
    from regionlib.training.tasks import RegionCaptionConfig, RegionCaptionTask

    task = RegionCaptionTask(RegionCaptionConfig(preset="tiny-dam", n_val=2))
    model = task.build_model()
    with __import__("torch").no_grad():  # move off the initial constant caption
        for p in model.lm_head.parameters():
            p.add_(0.05 * __import__("torch").randn_like(p))
    predictor, preds, refs = RegionPredictor(model), {}, {}
    for s in generate_regionworld(2, seed=0, split="val"):
        predictor.set_image(s.image)
        for i, c, ref in zip(s.regions.ids, predictor.caption(s.regions, max_new_tokens=40), s.regions.captions):
            preds[str(i)], refs[str(i)] = c, [ref]
    final = caption_scores(preds, refs, metrics=("CIDEr",), backend="fast").corpus["CIDEr"]
    assert task.evaluate(model)["CIDEr"] == pytest.approx(final, abs=1e-12)
