"""Visual Genome, RefCOCO, gRefCOCO, panoptic, PanCap, SA-1B, DLC-Bench, MaskGroups-HQ readers on
fixture files written here in each format; bad input raises DataFormatError, skip mode reports it."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regionlib.data.readers.base import ReadReport, iter_json_array
from regionlib.errors import DataFormatError

from .conftest import png_header, rect_mask, rle_of, write_image


# ------------------------------------------------------------------------------ JSON streaming
def test_iter_json_array_streams_and_detects_truncation(tmp_path):
    items = [{"id": i, "text": "x" * (i * 7), "v": [1.5, -2e-3, None, True]} for i in range(50)]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(items))
    assert list(iter_json_array(p, chunk_size=16)) == items
    p.write_text(json.dumps(items)[:-40])
    with pytest.raises(DataFormatError, match="a.json"):
        list(iter_json_array(p, chunk_size=16))
    p.write_text("[1, 2, 345]")
    assert list(iter_json_array(p, chunk_size=2)) == [1, 2, 345]
    p.write_text('{"a": 1}')
    with pytest.raises(DataFormatError, match="array"):
        list(iter_json_array(p))


# ------------------------------------------------------------------------------ Visual Genome
def _vg(root: Path):
    write_image(root / "VG_100K" / "1.jpg", 40, 60)
    write_image(root / "VG_100K_2" / "2.jpg", 30, 50)
    (root / "image_data.json").write_text(json.dumps([
        {"image_id": 1, "width": 60, "height": 40, "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg"},
        {"image_id": 2, "width": 50, "height": 30, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/2.jpg"}]))
    regions = [
        {"id": 1, "regions": [{"region_id": 10, "image_id": 1, "phrase": "a red car", "x": 5, "y": 5, "width": 20, "height": 10},
                              {"region_id": 11, "image_id": 1, "phrase": "sky ", "x": 0, "y": 0, "width": 60, "height": 8}]},
        {"id": 2, "regions": [{"region_id": 20, "image_id": 2, "phrase": "grass", "x": 0, "y": 20, "width": 50, "height": 10}]},
    ]
    (root / "region_descriptions.json").write_text(json.dumps(regions))
    (root / "densecap_splits.json").write_text(json.dumps({"train": [1], "val": [2], "test": []}))
    objs = [{"image_id": 1, "attributes": [
        {"object_id": 100, "names": ["man"], "x": 0, "y": 0, "w": 10, "h": 20, "attributes": ["Tall"]},
        {"object_id": 101, "names": ["hat"], "x": 2, "y": 0, "w": 5, "h": 4},
        {"object_id": 102, "names": ["shirt"], "x": 0, "y": 8, "w": 10, "h": 8, "attributes": ["blue"]}]},
        {"image_id": 2, "attributes": []}]
    rels = [{"image_id": 1, "relationships": [
        {"relationship_id": 1, "predicate": "wearing", "subject": {"object_id": 100}, "object": {"object_id": 101}},
        {"relationship_id": 2, "predicate": "WEARING", "subject": {"object_id": 100}, "object": {"object_id": 102}}]},
        {"image_id": 2, "relationships": []}]
    (root / "attributes.json").write_text(json.dumps(objs))
    (root / "relationships.json").write_text(json.dumps(rels))
    return regions, objs, rels


def test_visual_genome_regions_and_split(tmp_path):
    from regionlib.data.readers.visual_genome import read_visual_genome

    _vg(tmp_path)
    recs = list(read_visual_genome(tmp_path))
    assert [r.image_id for r in recs] == [1, 2] and [len(r.regions) for r in recs] == [2, 1]
    assert recs[0].regions.captions == ["a red car", "sky"] and recs[0].regions.ids == [10, 11]
    np.testing.assert_array_equal(recs[0].regions.boxes_xyxy[0], [5, 5, 25, 15])
    assert recs[1].image_path.parent.name == "VG_100K_2" and not recs[0].regions.has_masks
    val = list(read_visual_genome(tmp_path, split="val", densecap_splits=tmp_path / "densecap_splits.json"))
    assert [r.image_id for r in val] == [2]


def test_visual_genome_bad_records(tmp_path):
    from regionlib.data.readers.visual_genome import read_visual_genome

    regions, _, _ = _vg(tmp_path)
    regions[0]["regions"][0]["x"] = 65  # box entirely outside the 60-px image
    regions[1]["id"] = 3  # not in image_data.json
    (tmp_path / "region_descriptions.json").write_text(json.dumps(regions))
    with pytest.raises(DataFormatError, match="outside the image"):
        list(read_visual_genome(tmp_path))
    report = ReadReport()
    recs = list(read_visual_genome(tmp_path, on_error="skip", report=report))
    assert [len(r.regions) for r in recs] == [1]
    assert len(report) == 2 and "image_data.json" in report.reasons()[1]
    text = json.dumps(regions)
    (tmp_path / "region_descriptions.json").write_text(text[: len(text) - 30])
    with pytest.raises(DataFormatError, match="truncated"):
        list(read_visual_genome(tmp_path, on_error="skip"))


def test_visual_genome_clamps_boxes_past_the_border_and_counts_them(tmp_path):
    """Bug caught: the VG reader stopped at the first box past the image border (the release has many);
    densecap's preprocess.py clamps such boxes to the image and counts them."""
    from regionlib.data.readers.visual_genome import read_visual_genome, read_vg_scene_graphs

    regions, objs, rels = _vg(tmp_path)
    regions[0]["regions"][0].update(x=55, width=20)  # right edge 75 > W = 60
    regions[0]["regions"][1].update(x=-3, y=-2, height=50)  # left, top and bottom edges outside (H = 40)
    regions[1]["regions"][0].update(height=1e9)  # a hostile height: clamped too, never a 1e9 box
    (tmp_path / "region_descriptions.json").write_text(json.dumps(regions))
    report = ReadReport()
    recs = list(read_visual_genome(tmp_path, report=report))
    assert [len(r.regions) for r in recs] == [2, 1] and len(report) == 0
    np.testing.assert_array_equal(recs[0].regions.boxes_xyxy, [[55, 5, 60, 15], [0, 0, 57, 40]])
    np.testing.assert_array_equal(recs[1].regions.boxes_xyxy, [[0, 20, 50, 30]])
    assert report.stats == {"clamped_boxes": 3} and "clamped_boxes: 3" in report.summary()
    objs[0]["attributes"][0].update(w=100)
    (tmp_path / "attributes.json").write_text(json.dumps(objs))
    graphs = ReadReport()
    (g1, _) = list(read_vg_scene_graphs(tmp_path, report=graphs))
    assert g1.regions.boxes_xyxy[0].tolist() == [0, 0, 60, 20] and graphs.stats == {"clamped_boxes": 1}


def test_visual_genome_scene_graphs(tmp_path):
    from regionlib.data.readers.visual_genome import read_vg_scene_graphs

    _, objs, rels = _vg(tmp_path)
    recs = list(read_vg_scene_graphs(tmp_path))
    r = recs[0]
    assert r.regions.labels == ["man", "hat", "shirt"] and r.regions.data["attributes"] == [["tall"], [], ["blue"]]
    assert r.extra["relationships"] == [(0, "wearing", 1), (0, "wearing", 2)]
    from regionlib.data.mask_groups import attribute_groups, relationship_groups

    (rel,) = relationship_groups(r.regions, r.extra["relationships"])  # VG-style groups, boxes only
    assert (rel.prompt, rel.target, rel.reference) == ("everything the referred man is wearing", (1, 2), 0)
    assert [(g.prompt, g.target) for g in attribute_groups(r.regions, r.regions.data["attributes"], min_size=1)] == [
        ("every blue object", (2,)), ("every tall object", (0,))]
    rels[0]["relationships"][1]["object"]["object_id"] = 999
    (tmp_path / "relationships.json").write_text(json.dumps(rels))
    with pytest.raises(DataFormatError, match="not an object of the image"):
        list(read_vg_scene_graphs(tmp_path))
    report = ReadReport()
    recs = list(read_vg_scene_graphs(tmp_path, on_error="skip", report=report))
    assert recs[0].extra["relationships"] == [(0, "wearing", 1)] and len(report) == 1


# ------------------------------------------------------------------------------ RefCOCO / gRefCOCO
def _instances(path: Path, image_root: Path):
    write_image(image_root / "COCO_train2014_000000000001.jpg", 40, 60)
    anns = [{"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 10, 10],
             "segmentation": rle_of(rect_mask(40, 60, 0, 0, 10, 10))},
            {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [20, 0, 10, 10],
             "segmentation": rle_of(rect_mask(40, 60, 20, 0, 30, 10))},
            {"id": 13, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [0, 20, 60, 20],
             "segmentation": [[0, 20, 59, 20, 59, 39, 0, 39]]}]
    inst = {"images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 40, "width": 60}],
            "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bench"}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(inst))


def _refs():
    return [{"ref_id": 0, "ann_id": 11, "image_id": 1, "category_id": 1, "split": "train", "sent_ids": [0, 1],
             "file_name": "COCO_train2014_000000000001_11.jpg",
             "sentences": [{"sent_id": 0, "sent": "left guy", "raw": "Left guy", "tokens": ["left", "guy"]},
                           {"sent_id": 1, "sent": "man on the left", "raw": "man on the left", "tokens": []}]},
            {"ref_id": 1, "ann_id": 12, "image_id": 1, "category_id": 1, "split": "val", "sent_ids": [2],
             "file_name": "x.jpg", "sentences": [{"sent_id": 2, "sent": "right guy", "raw": "right guy", "tokens": []}]}]


def test_refcoco(tmp_path):
    from regionlib.data.readers.refcoco import read_refcoco

    _instances(tmp_path / "refcoco" / "instances.json", tmp_path / "img")
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(_refs(), f, protocol=2)
    (rec,) = list(read_refcoco(tmp_path, "refcoco", "unc", image_root=tmp_path / "img"))
    assert rec.regions.ids == [0, 1] and rec.regions.captions == ["left guy", "right guy"]
    assert rec.regions.data["sentences"][0] == ["left guy", "man on the left"]
    np.testing.assert_array_equal(rec.regions.masks[1], rect_mask(40, 60, 20, 0, 30, 10))
    (val,) = list(read_refcoco(tmp_path, "refcoco", "unc", image_root=tmp_path / "img", split="val"))
    assert val.regions.ids == [1]


def test_refcoco_refuses_a_pickle_holding_code(tmp_path):
    from regionlib.data.readers.refcoco import load_refs_pickle, read_refcoco

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    _instances(tmp_path / "refcoco" / "instances.json", tmp_path / "img")
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump([{"ref_id": 0, "payload": Evil()}], f, protocol=2)
    with pytest.raises(DataFormatError, match="only plain containers"):
        list(read_refcoco(tmp_path, "refcoco", "unc", image_root=tmp_path / "img"))
    assert not marker.exists()
    with open(tmp_path / "obj.p", "wb") as f:
        pickle.dump({"a": {1, 2}}, f, protocol=2)  # a set needs builtins.set: refused too
    with pytest.raises(DataFormatError, match="set"):
        load_refs_pickle(tmp_path / "obj.p")
    (tmp_path / "trunc.p").write_bytes(pickle.dumps(_refs(), protocol=2)[:50])
    with pytest.raises(DataFormatError, match="truncated"):
        load_refs_pickle(tmp_path / "trunc.p")


def test_refcoco_bad_ref_skipped(tmp_path):
    from regionlib.data.readers.refcoco import read_refcoco

    _instances(tmp_path / "refcoco" / "instances.json", tmp_path / "img")
    refs = _refs()
    refs[1]["ann_id"] = 77
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    with pytest.raises(DataFormatError, match="ann_id 77"):
        list(read_refcoco(tmp_path, image_root=tmp_path / "img"))
    report = ReadReport()
    (rec,) = list(read_refcoco(tmp_path, image_root=tmp_path / "img", on_error="skip", report=report))
    assert rec.regions.ids == [0] and len(report) == 1


def _grefs():
    return [{"ref_id": 0, "image_id": 1, "ann_id": [11, 12], "no_target": False, "split": "train", "sent_ids": [0],
             "sentences": [{"sent_id": 0, "sent": "both people", "raw": "both people", "tokens": []}], "category_id": [1, 1]},
            {"ref_id": 1, "image_id": 1, "ann_id": [-1], "no_target": True, "split": "train", "sent_ids": [1],
             "sentences": [{"sent_id": 1, "sent": "the dog", "raw": "the dog", "tokens": []}], "category_id": [-1]},
            {"ref_id": 2, "image_id": 1, "ann_id": [13], "no_target": False, "split": "val", "sent_ids": [2],
             "sentences": [{"sent_id": 2, "sent": "bench", "raw": "bench", "tokens": []}], "category_id": [2]}]


def test_grefcoco_no_target_and_multi_target(tmp_path):
    from regionlib.data.mask_groups import referring_groups
    from regionlib.data.readers.grefcoco import read_grefcoco

    _instances(tmp_path / "instances.json", tmp_path / "img")
    (tmp_path / "grefs(unc).json").write_text(json.dumps(_grefs()))
    (rec,) = list(read_grefcoco(tmp_path, image_root=tmp_path / "img"))
    assert len(rec.regions) == 3 and rec.regions.labels == ["person", "person", "bench"]
    ex = rec.extra["expressions"]
    assert [e["target_indices"] for e in ex] == [[0, 1], [], [2]] and [e["no_target"] for e in ex] == [False, True, False]
    groups = referring_groups(rec)
    assert [(g.prompt, g.target) for g in groups] == [("both people", (0, 1)), ("the dog", ()), ("bench", (2,))]
    assert not groups[1].target_mask.any() and groups[0].target_mask.sum() == 200


def test_grefcoco_bad_expressions(tmp_path):
    from regionlib.data.readers.grefcoco import read_grefcoco

    _instances(tmp_path / "instances.json", tmp_path / "img")
    grefs = _grefs()
    grefs[1]["ann_id"] = [11]  # no_target but a target
    grefs[2]["image_id"] = 5  # missing image
    (tmp_path / "grefs(unc).json").write_text(json.dumps(grefs))
    with pytest.raises(DataFormatError, match="no_target is true"):
        list(read_grefcoco(tmp_path, image_root=tmp_path / "img"))
    report = ReadReport()
    (rec,) = list(read_grefcoco(tmp_path, image_root=tmp_path / "img", on_error="skip", report=report))
    assert [e["ref_id"] for e in rec.extra["expressions"]] == [0] and len(report) == 2


# ------------------------------------------------------------------------------ panoptic / PanCap
def _panoptic(root: Path, caption: str | None = None):
    from regionlib.data.readers.panoptic import id2rgb

    ids = np.zeros((30, 40), np.int64)
    ids[:10, :20] = 4
    ids[10:, :] = 6
    ids[:10, 20:30] = 70000  # needs all three channels
    (root / "pan").mkdir(parents=True, exist_ok=True)
    Image.fromarray(id2rgb(ids)).save(root / "pan" / "000000000009.png")
    write_image(root / "img" / "000000000009.jpg", 30, 40)
    ann = {"image_id": 9, "file_name": "000000000009.png", "segments_info": [
        {"id": 4, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 20, 10], "area": 200},
        {"id": 6, "category_id": 2, "iscrowd": 0, "bbox": [0, 10, 40, 20], "area": 800},
        {"id": 70000, "category_id": 1, "iscrowd": 0, "bbox": [20, 0, 10, 10], "area": 100}]}
    if caption is not None:
        ann["caption"] = caption
    data = {"images": [{"id": 9, "file_name": "000000000009.jpg", "height": 30, "width": 40}], "annotations": [ann],
            "categories": [{"id": 1, "name": "zebu", "isthing": 1}, {"id": 2, "name": "grass", "isthing": 0}]}
    (root / "pan.json").write_text(json.dumps(data))
    return data, ids


def test_rgb2id_matches_panopticapi_formula():
    from regionlib.data.readers.panoptic import id2rgb, rgb2id

    assert rgb2id(np.array([[[1, 2, 3]]], np.uint8))[0, 0] == 1 + 2 * 256 + 3 * 65536
    ids = np.array([[0, 255, 256, 70000, 16777215]])
    np.testing.assert_array_equal(rgb2id(id2rgb(ids)), ids)


def test_coco_panoptic(tmp_path):
    from regionlib.data.readers.panoptic import read_coco_panoptic

    data, ids = _panoptic(tmp_path)
    (rec,) = list(read_coco_panoptic(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img"))
    assert rec.regions.ids == [4, 6, 70000] and rec.regions.labels == ["zebu", "grass", "zebu"]
    assert rec.regions.data["isthing"] == [True, False, True]
    for k, sid in enumerate([4, 6, 70000]):
        np.testing.assert_array_equal(rec.regions.masks[k], ids == sid)
    data["annotations"][0]["segments_info"][2]["id"] = 5  # not in the PNG
    data["annotations"][0]["segments_info"][1]["category_id"] = 99
    (tmp_path / "pan.json").write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="unknown category_id"):
        list(read_coco_panoptic(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img"))
    report = ReadReport()
    (rec,) = list(read_coco_panoptic(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img", on_error="skip",
                                     report=report))
    assert rec.regions.ids == [4] and len(report) == 2 and "does not occur in the PNG" in report.reasons()[1]
    (tmp_path / "pan" / "000000000009.png").unlink()
    with pytest.raises(DataFormatError, match="PNG"):
        list(read_coco_panoptic(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img"))


def test_panoptic_png_size_is_checked_before_decoding(tmp_path, monkeypatch):
    """Bug caught: the panoptic reader decoded a 144-MP PNG (a decompression bomb) before any size check."""
    from regionlib.data.readers.panoptic import read_coco_panoptic

    data, _ = _panoptic(tmp_path)
    data["images"][0].update(height=12000, width=12000)
    (tmp_path / "pan.json").write_text(json.dumps(data))
    (tmp_path / "pan" / "000000000009.png").write_bytes(png_header(12000, 12000))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: decoded.append(self.size))
    report = ReadReport()
    assert list(read_coco_panoptic(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img", on_error="skip",
                                   report=report, check_images=False)) == []
    assert decoded == [] and "max_pixels" in report.reasons()[0]  # the image entry itself is refused
    data["images"][0].update(height=30, width=40)  # entry fine, PNG header disagrees: refused, not decoded
    (tmp_path / "pan.json").write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"image_id=9.*\(12000, 12000\).*not decoded"):
        list(read_coco_panoptic(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img"))
    assert decoded == []


def test_parse_grounded_caption():
    from regionlib.data.readers.pancap import parse_grounded_caption

    g = parse_grounded_caption("A <4:large zebu> stands near <6,7,8:eight boys> on grass.")
    assert g.text == "A large zebu stands near eight boys on grass."
    assert [(p.ids, p.phrase) for p in g.phrases] == [((4,), "large zebu"), ((6, 7, 8), "eight boys")]
    for p in g.phrases:
        assert g.text[p.start : p.end] == p.phrase
    assert parse_grounded_caption("no tags here").phrases == ()


@pytest.mark.parametrize("text, why", [
    ("A <4:large zebu stands", "never closed"),
    ("A 4:large zebu> stands", "without '<'"),
    ("A <4 large zebu> stands", "no ':'"),
    ("A <x,4:zebu> stands", "integers"),
    ("A <4,:zebu> stands", "integers"),
    ("A <4: > stands", "empty phrase"),
    ("A <4:big <5:zebu>> stands", "nested"),
])
def test_malformed_pancap_tags(text, why):
    from regionlib.data.readers.pancap import parse_grounded_caption

    with pytest.raises(DataFormatError, match=why):
        parse_grounded_caption(text)


def test_pancap_reader(tmp_path):
    from regionlib.data.readers.pancap import read_pancap

    _panoptic(tmp_path, "A <4:large zebu> and <70000:a calf> on <6:grass>.")
    (rec,) = list(read_pancap(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img"))
    assert rec.extra["caption"] == "A large zebu and a calf on grass."
    assert rec.regions.captions == ["large zebu", "grass", "a calf"]
    _panoptic(tmp_path, "A <4:large zebu and <6:grass>.")
    with pytest.raises(DataFormatError, match="pan.json.*image_id=9.*nested"):
        list(read_pancap(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img"))
    report = ReadReport()
    assert list(read_pancap(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img", on_error="skip", report=report)) == []
    assert len(report) == 1 and "malformed" in report.reasons()[0]
    _panoptic(tmp_path, "A <5:ghost>.")
    with pytest.raises(DataFormatError, match=r"segment ids \[5\]"):
        list(read_pancap(tmp_path / "pan.json", tmp_path / "pan", tmp_path / "img"))


# ------------------------------------------------------------------------------ SA-1B
def _sa1b(root: Path, n: int, size=(30, 40)):
    write_image(root / f"sa_{n}.jpg", *size)
    masks = [rect_mask(*size, 0, 0, 10, 10), rect_mask(*size, 5, 5, 40, 30)]
    anns = [{"id": n * 10 + k, "segmentation": rle_of(m), "bbox": [0, 0, 10, 10], "area": int(m.sum()),
             "predicted_iou": 0.9 - 0.1 * k, "stability_score": 0.95, "point_coords": [[5.0, 5.0]],
             "crop_box": [0, 0, size[1], size[0]]} for k, m in enumerate(masks)]
    data = {"image": {"image_id": n, "file_name": f"sa_{n}.jpg", "height": size[0], "width": size[1]}, "annotations": anns}
    (root / f"sa_{n}.json").write_text(json.dumps(data))
    return data, masks


def test_sa1b(tmp_path):
    from regionlib.data.readers.sa1b import read_sa1b

    _, masks = _sa1b(tmp_path, 1)
    data, _ = _sa1b(tmp_path, 2)
    recs = list(read_sa1b(tmp_path))
    assert [r.image_id for r in recs] == [1, 2] and [len(r.regions) for r in recs] == [2, 2]
    np.testing.assert_array_equal(recs[0].regions.masks[1], masks[1])
    np.testing.assert_allclose(recs[0].regions.scores, [0.9, 0.8])
    data["annotations"][1]["segmentation"]["size"] = [31, 40]
    (tmp_path / "sa_2.json").write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="sa_2.json.*RLE size"):
        list(read_sa1b(tmp_path))
    report = ReadReport()
    recs = list(read_sa1b(tmp_path, on_error="skip", report=report))
    assert [len(r.regions) for r in recs] == [2, 1] and len(report) == 1
    (tmp_path / "sa_1.jpg").unlink()
    with pytest.raises(DataFormatError, match="does not exist"):
        list(read_sa1b(tmp_path))


def test_sa1b_root_of_per_tar_folders(tmp_path):
    """Bug caught: an SA-1B root holding one folder per extracted tar (sa_000000/sa_1.jpg + sa_1.json, the
    release as downloaded) yielded 0 records silently; and a root with nothing readable must raise."""
    from regionlib.data.readers.sa1b import read_sa1b

    _, masks = _sa1b(tmp_path / "sa_000000", 1)
    _sa1b(tmp_path / "sa_000000", 2)
    _sa1b(tmp_path / "sa_000001", 3, size=(20, 24))
    recs = list(read_sa1b(tmp_path))
    assert [r.image_id for r in recs] == [1, 2, 3] and [len(r.regions) for r in recs] == [2, 2, 2]
    assert recs[2].image_path == tmp_path / "sa_000001" / "sa_3.jpg" and recs[2].image_size == (20, 24)
    np.testing.assert_array_equal(recs[0].regions.masks[1], masks[1])
    empty = tmp_path / "empty"
    (empty / "sa_000002").mkdir(parents=True)
    (empty / "notes.txt").write_text("no annotations here")
    with pytest.raises(DataFormatError, match="holds no sa_\\*.json"):
        read_sa1b(empty)


# ------------------------------------------------------------------------------ DLC-Bench (real questions)
@pytest.mark.parametrize("layout", ["release (flat)", "annotations/ folder"])
def test_dlc_bench_reader_with_released_questions(tmp_path, reference_data, layout):
    """Bug caught: the reader wanted an annotations/ subfolder, while the DLC-Bench release has its
    files flat at the root (annotations.json, qa.json, class_names.json, images/); both are read."""
    from regionlib.data.readers.dlc_bench import load_dlc_questions, read_dlc_bench

    ref = json.loads((reference_data / "dlc_bench" / "dam_3b_v1_eval.json").read_text())
    keys = ["2580323", "12348080"]  # a singular ("picture/frame") and a plural ("scissors") class
    keep = ("question", "choices", "type", "subtype")
    qa, names = {}, {}
    for k in keys:
        qa[k] = [{f: q[f] for f in keep if f in q} for q in ref[k]["details_positives"] + ref[k]["details_negatives"]]
        rq = ref[k]["details_recognition"][0]["question"]
        names[k] = rq.split(" is a ", 1)[1].split(" or an object")[0] if " is a " in rq else \
            rq.split(" are ", 1)[1].split(" or objects")[0]
    ann = tmp_path if layout.startswith("release") else tmp_path / "annotations"
    write_image(ann / "images" / "a.jpg", 40, 60)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 60}],
            "annotations": [{"id": int(k), "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 10, 10],
                             "segmentation": rle_of(rect_mask(40, 60, 0, 0, 10 + i, 10))} for i, k in enumerate(keys)],
            "categories": [{"id": 1, "name": "object"}]}
    (ann / "annotations.json").write_text(json.dumps(coco))
    (ann / "qa.json").write_text(json.dumps(qa))
    (ann / "class_names.json").write_text(json.dumps(names))
    (rec,) = list(read_dlc_bench(tmp_path))
    assert rec.regions.ids == keys and rec.regions.data["class_name"] == ["picture/frame", "scissors"]
    for k, q in zip(keys, rec.regions.data["questions"]):
        assert q["details_recognition"][0]["question"] == ref[k]["details_recognition"][0]["question"]
        assert len(q["details_positives"]) == len(ref[k]["details_positives"])
        assert len(q["details_negatives"]) == len(ref[k]["details_negatives"])
    assert set(load_dlc_questions(tmp_path)) == set(keys)
    qa[keys[1]][0]["choices"][0][1] = 0.25  # not a DLC-Bench score
    (ann / "qa.json").write_text(json.dumps(qa))
    with pytest.raises(DataFormatError, match="qa.json.*12348080"):
        list(read_dlc_bench(tmp_path))
    report = ReadReport()
    (rec,) = list(read_dlc_bench(tmp_path, on_error="skip", report=report))
    assert rec.regions.ids == keys[:1] and len(report) == 2  # the bad question set, then its annotation
    (ann / "qa.json").unlink()
    with pytest.raises(DataFormatError, match="nothing to read"):
        list(read_dlc_bench(tmp_path))


# ------------------------------------------------------------------------------ MaskGroups-HQ
def _mghq(root: Path, *, jsonl: bool):
    write_image(root / "img" / "a.jpg", 30, 40)
    gt = [rle_of(rect_mask(30, 40, 0, 0, 10, 10)), rle_of(rect_mask(30, 40, 20, 0, 30, 10)),
          rle_of(rect_mask(30, 40, 0, 20, 40, 30))]
    pool = [rle_of(rect_mask(30, 40, 0, 0, 12, 12))]
    samples = [{"image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\n<mask_pool>\nthe two boxes on top"},
                                                    {"from": "gpt", "value": "<mask>"}],
                "mask_pool": pool, "gt_mask_pool": gt, "gt_mask_group": [[0, 1]]},
               {"image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nthe floor"}],
                "mask_pool": pool, "gt_mask_pool": gt, "gt_mask_group": [[2]]}]
    path = root / ("mg.jsonl" if jsonl else "mg.json")
    path.write_text("\n".join(json.dumps(s) for s in samples) if jsonl else json.dumps(samples))
    return path, samples


@pytest.mark.parametrize("jsonl", [False, True])
def test_maskgroups_hq(tmp_path, jsonl):
    from regionlib.data.mask_groups import maskgroups_hq_groups
    from regionlib.data.readers.maskgroups_hq import read_maskgroups_hq

    path, samples = _mghq(tmp_path, jsonl=jsonl)
    recs = list(read_maskgroups_hq(path, tmp_path / "img"))
    assert [r.extra["query"] for r in recs] == ["the two boxes on top", "the floor"]
    assert len(recs[0].regions) == 3 and len(recs[0].extra["candidates"]) == 1
    (g,) = maskgroups_hq_groups(recs[0])
    assert g.target == (0, 1) and g.target_mask.sum() == 200
    samples[1]["gt_mask_group"] = [[3]]
    path.write_text("\n".join(json.dumps(s) for s in samples) if jsonl else json.dumps(samples))
    with pytest.raises(DataFormatError, match="gt_mask_group"):
        list(read_maskgroups_hq(path, tmp_path / "img"))
    report = ReadReport()
    assert len(list(read_maskgroups_hq(path, tmp_path / "img", on_error="skip", report=report))) == 1
    assert len(report) == 1


def test_maskgroups_hq_extra_regions_survive_hf(tmp_path):
    from regionlib.data.readers.hf import from_hf_row, to_hf_dataset
    from regionlib.data.readers.maskgroups_hq import read_maskgroups_hq

    path, _ = _mghq(tmp_path, jsonl=False)
    ds = to_hf_dataset(read_maskgroups_hq(path, tmp_path / "img"), cache_dir=str(tmp_path / "c"))
    rec = from_hf_row(ds[0])
    assert rec.extra["groups"] == [[0, 1]]
    np.testing.assert_array_equal(rec.extra["candidates"].masks[0], rect_mask(30, 40, 0, 0, 12, 12))


# ------------------------------------------------------------------------------ file names from data
def test_file_names_from_data_stay_inside_their_root(tmp_path):
    """Bug caught: file names from annotations were joined unchecked ("../../x" or "/etc/passwd" left the
    image root); `safe_file_name` gives writers a name that cannot leave their folder."""
    from regionlib.data.readers.base import path_inside, safe_file_name

    assert path_inside(tmp_path, "train2017/a.jpg", "file_name") == (tmp_path / "train2017" / "a.jpg", None)
    for name in ("../../x.jpg", "/etc/passwd", "a/../../x", "..", "", None, 5, "a\\..\\..\\x"):
        file, why = path_inside(tmp_path, name, "file_name")
        assert file is None and "file_name" in why
    for value in ("../../x", "/abs/path", "a\\b", "..", "", "x" * 500, "img 1:2"):
        name = safe_file_name(value)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and 0 < len(name) <= 120
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert safe_file_name("000000391895") == "000000391895"


@pytest.mark.slow
def test_reference_data_fixture_skips_with_a_hint_and_fails_under_ci(tmp_path):
    """Bug caught: a fresh clone without ../shared failed with FileNotFoundError; now the `reference_data`
    fixture skips saying where to get the data, and fails (not skips) under CI=true."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    test = "tests/data/test_readers.py::test_dlc_bench_reader_with_released_questions"
    for ci, expect_rc, expect in (("", 0, "2 skipped"), ("true", 1, "reference data not found")):
        env = dict(os.environ, REGIONLIB_REFERENCE_DATA=str(tmp_path / "absent"), CI=ci)
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
                             cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == expect_rc and expect in out.stdout, out.stdout[-2000:]
        assert "REGIONLIB_REFERENCE_DATA" in out.stdout
