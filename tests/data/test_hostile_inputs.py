"""Hostile-input harness (issue 14): bad files and values thrown at the public reader, `Regions`,
mask, image and pooling API. Each case must end in a typed `RegionLibError` (or, for the cases
with a ``check``, in the correct result) - never a bare Python exception, a silently wrong result,
a segfault or a hang.

Every case that can reach a C extension (pycocotools, PIL) runs in a forked child with an address-
space limit and a timeout, so a crash or a hang is recorded as one, not fatal to the suite.
Outcomes: ``typed`` / ``correct`` (pass), ``bare`` (another exception), ``silent-wrong`` (no error
where one is due, or a wrong result), ``crash`` (signal, hang, memory limit).

As a script it prints the table (``tried / typed / correct / bare / silent-wrong / crash``) of the
``regionlib`` it imports, so the same file measures the code before and after a fix::

    PYTHONPATH=<a copy of the old package> python tests/data/test_hostile_inputs.py
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import pickle
import resource
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from regionlib.errors import RegionLibError

try:
    from .conftest import png_header, rect_mask, rle_of, write_image
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import png_header, rect_mask, rle_of, write_image

H, W = 40, 60
CASES: dict[str, tuple[Callable[[Path], Any], Callable[[Any], bool] | None, bool]] = {}


def case(name: str, fn: Callable[[Path], Any], check: Callable[[Any], bool] | None = None, *, isolate: bool = True):
    """Register a case: ``fn(tmp_dir)``; ``check(result)`` when a result (not an error) is due."""
    assert name not in CASES, name
    CASES[name] = (fn, check, isolate)


# ------------------------------------------------------------------------------ COCO / LVIS files
def _ann(**changes) -> dict:
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [5, 5, 10, 10], "area": 50.0,
           "segmentation": [[5, 5, 15, 5, 5, 15]]}
    ann.update(changes)
    return ann


def _coco(tmp: Path, *, images=None, annotations=None, categories=None, raw: bytes | None = None,
          on_error: str = "raise", lvis: bool = False, decode: bool = True):
    from regionlib.data.readers.base import ReadReport
    from regionlib.data.readers.coco import read_coco

    write_image(tmp / "img" / "a.jpg", H, W)
    path = tmp / "instances.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        data = {"images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}] if images is None else images,
                "annotations": [_ann()] if annotations is None else annotations,
                "categories": [{"id": 1, "name": "cat"}] if categories is None else categories}
        path.write_text(json.dumps(data))
    report = ReadReport()
    recs = list(read_coco(path, tmp / "img", on_error=on_error, report=report, lvis=lvis, check_images=False))
    if decode:  # masks are decoded on demand: a corrupt RLE must fail here at the latest
        for r in recs:
            if len(r.regions):
                r.regions.masks
    return recs, report


def _skipped_one(result) -> bool:
    recs, report = result
    return len(report) >= 1 and all(isinstance(r.regions.boxes_xyxy, np.ndarray) for r in recs)


def _image(**changes) -> list:
    return [dict({"id": 1, "file_name": "a.jpg", "height": H, "width": W}, **changes)]


nan, inf = float("nan"), float("inf")
poly_cases = {
    "nan coordinate": [[5, nan, 15, 5, 5, 15]], "inf coordinate": [[5, 5, inf, 5, 5, 15]],
    "1e9 coordinate": [[5, 5, 1e9, 5, 5, 15]], "-1e9 coordinate": [[-1e9, 5, 15, 5, 5, 1e9]],
    "1e300 coordinate": [[5, 5, 1e300, 5, 5, 15]], "string coordinates": [["a", "b", "c", "d", "e", "f"]],
    "bool coordinates": [[True, False, True, True, False, True]], "nested points": [[[5, 5], [15, 5], [5, 15]]],
    "odd length": [[5, 5, 15, 5, 5]], "two points": [[5, 5, 15, 5]], "no polygon": [],
    "polygon not a list": ["5 5 15 5 5 15"], "null coordinate": [[5, None, 15, 5, 5, 15]],
}
for what, seg in poly_cases.items():
    case(f"coco polygon: {what}", lambda t, seg=seg: _coco(t, annotations=[_ann(segmentation=seg)]))
for what in ("nan coordinate", "1e9 coordinate", "-1e9 coordinate", "string coordinates"):
    case(f"coco polygon (skip mode): {what}",
         lambda t, seg=poly_cases[what]: _coco(t, annotations=[_ann(segmentation=seg)], on_error="skip"), _skipped_one)

big = 100_000
full = rect_mask(H, W, 0, 0, W, H)
rle_cases = {
    "no counts": {"size": [H, W]}, "no size": {"counts": rle_of(full)["counts"]},
    "counts an int": {"size": [H, W], "counts": 5}, "counts null": {"size": [H, W], "counts": None},
    "counts outside the alphabet": {"size": [H, W], "counts": "!!~~\x7f"},
    "counts non-ascii": {"size": [H, W], "counts": "é5"},
    "counts of a larger mask": {"size": [H, W],
    "counts": rle_of(rect_mask(4 * H, 2 * W, 0, 0, 2 * W, 4 * H))["counts"]},
    "counts of a smaller mask": {"size": [H, W], "counts": rle_of(rect_mask(H // 2, W, 0, 0, W, H // 2))["counts"]},
    "counts truncated mid-run": {"size": [H, W], "counts": rle_of(rect_mask(H, W, 3, 4, 30, 20))["counts"] + "g"},
    "uncompressed negative run": {"size": [H, W], "counts": [-5, H * W + 5]},
    "uncompressed strings": {"size": [H, W], "counts": ["a", "b"]},
    "uncompressed floats": {"size": [H, W], "counts": [0.5, H * W - 0.5]},
    "size strings": {"size": [str(H), str(W)], "counts": rle_of(full)["counts"]},
    "size of three": {"size": [H, W, 1], "counts": rle_of(full)["counts"]},
    "size 100000 x 100000": {"size": [big, big], "counts": ""},
}
for what, seg in rle_cases.items():
    case(f"coco RLE: {what}", lambda t, seg=seg: _coco(t, annotations=[_ann(segmentation=seg, bbox=[0, 0, 1, 1])]))
for what in ("counts of a larger mask", "counts outside the alphabet", "no counts"):
    case(f"coco RLE (skip mode): {what}",
         lambda t, seg=rle_cases[what]: _coco(t, annotations=[_ann(segmentation=seg, bbox=[0, 0, 1, 1])],
                                              on_error="skip"),
         _skipped_one)
case("coco RLE: 100000 x 100000 image and uncompressed RLE",
     lambda t: _coco(t, images=_image(height=big, width=big),
                     annotations=[_ann(segmentation={"size": [big, big], "counts": [0, big * big]},
                                       bbox=[0, 0, 1, 1])]))
case("coco RLE (skip mode): 100000 x 100000 image",
     lambda t: _coco(t, images=_image(height=big, width=big),
                     annotations=[_ann(segmentation={"size": [big, big], "counts": [0, big * big]}, bbox=[0, 0, 1, 1])],
                     on_error="skip"), lambda r: len(r[1]) >= 1 and r[0] == [])

field_cases = {
    "annotation not an object": dict(annotations=[5]), "annotation id a list": dict(annotations=[_ann(id=[1])]),
    "annotation image_id a list": dict(annotations=[_ann(image_id=[1])]),
    "annotation category_id a list": dict(annotations=[_ann(category_id=[1])]),
    "annotation category_id an object": dict(annotations=[_ann(category_id={"a": 1})]),
    "segmentation null": dict(annotations=[_ann(segmentation=None)]),
    "segmentation a number": dict(annotations=[_ann(segmentation=7)]),
    "bbox strings": dict(annotations=[_ann(bbox=["a", "b", "c", "d"])]),
    "bbox NaN": dict(annotations=[_ann(bbox=[nan, 5, 10, 10])]), "bbox of 3": dict(annotations=[_ann(bbox=[5, 5, 10])]),
    "iscrowd a word": dict(annotations=[_ann(iscrowd="yes")]), "iscrowd a list": dict(annotations=[_ann(iscrowd=[1])]),
    "area a word": dict(annotations=[_ann(area="big")]),
    "image not an object": dict(images=[3], annotations=[]),
    "image id a list": dict(images=_image(id=[1]), annotations=[]),
    "image height a string": dict(images=_image(height="40")), "image height negative": dict(images=_image(height=-40)),
    "image height fractional": dict(images=_image(height=40.5)),
    "image 100000 x 100000": dict(images=_image(height=big, width=big), annotations=[]),
    "image file name escapes the root": dict(images=_image(file_name="../../etc/passwd"), annotations=[]),
    "image file name absolute": dict(images=_image(file_name="/etc/passwd"), annotations=[]),
    "image file name a number": dict(images=_image(file_name=5), annotations=[]),
    "category not an object": dict(categories=["cat"]),
    "category id a list": dict(categories=[{"id": [1], "name": "c"}]),
    "annotations not a list": dict(annotations={"1": _ann()}),
}
for what, kwargs in field_cases.items():
    case(f"coco field: {what}", lambda t, kw=kwargs: _coco(t, **kw))
for what in ("annotation not an object", "annotation id a list", "image 100000 x 100000", "iscrowd a word"):
    case(f"coco field (skip mode): {what}", lambda t, kw=field_cases[what]: _coco(t, on_error="skip", **kw),
         _skipped_one)
case("lvis: coco_url a number",
     lambda t: _coco(t, images=[{"id": 1, "coco_url": 5, "height": H, "width": W}], lvis=True))
case("lvis: no file name", lambda t: _coco(t, images=[{"id": 1, "height": H, "width": W}], lvis=True))
file_cases = {
    "top level a list": b"[]", "truncated": b'{"images": [{"id": 1, "file_na', "empty": b"",
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000, "not UTF-8": b'{"images": "\xff\xfe"}',
    "NaN everywhere": b'{"images": NaN, "annotations": NaN, "categories": NaN}',
}
for what, raw in file_cases.items():
    case(f"coco file: {what}", lambda t, raw=raw: _coco(t, raw=raw))
case("coco file: a folder", lambda t: (t / "dir.json").mkdir() or
     __import__("regionlib.data.readers.coco", fromlist=["read_coco"]).read_coco(t / "dir.json", t))


# ------------------------------------------------------------------------------ Visual Genome
def _vg(tmp: Path, *, regions=None, image_data=None, split_ids=None, graphs=None, rels=None):
    from regionlib.data.readers.visual_genome import read_vg_scene_graphs, read_visual_genome

    write_image(tmp / "VG_100K" / "1.jpg", H, W)
    (tmp / "image_data.json").write_text(json.dumps(
        [{"image_id": 1, "width": W, "height": H, "url": "https://x/VG_100K/1.jpg"}]
        if image_data is None else image_data))
    region = {"region_id": 10, "image_id": 1, "phrase": "a car", "x": 5, "y": 5, "width": 20, "height": 10}
    (tmp / "region_descriptions.json").write_text(json.dumps(
        [{"id": 1, "regions": [region]}] if regions is None else regions))
    if graphs is not None:
        (tmp / "attributes.json").write_text(json.dumps([{"image_id": 1, "attributes": graphs}]))
        (tmp / "relationships.json").write_text(json.dumps([{"image_id": 1, "relationships": rels or []}]))
        return list(read_vg_scene_graphs(tmp))
    if split_ids is not None:
        (tmp / "splits.json").write_text(json.dumps({"train": split_ids}))
        return list(read_visual_genome(tmp, split="train", densecap_splits=tmp / "splits.json"))
    return list(read_visual_genome(tmp))


def _region(**changes):
    return [{"id": 1, "regions": [dict({"region_id": 10, "phrase": "a car", "x": 5, "y": 5, "width": 20, "height": 10},
                                       **changes)]}]


def _obj(**changes):
    return [dict({"object_id": 100, "names": ["man"], "x": 0, "y": 0, "w": 10, "h": 20, "attributes": ["tall"]},
                 **changes)]


vg_cases = {
    "region not an object": dict(regions=[{"id": 1, "regions": ["a car"]}]),
    "region_id a list": dict(regions=_region(region_id=[10])), "x a word": dict(regions=_region(x="left")),
    "x NaN": dict(regions=_region(x=nan)), "width negative": dict(regions=_region(width=-20)),
    "width infinite": dict(regions=_region(width=inf)), "box entirely outside": dict(regions=_region(x=1e9)),
    "image id a list": dict(regions=[{"id": [1], "regions": []}]),
    "entry not an object": dict(regions=[[1, 2]]),
    "image 100000 x 100000": dict(image_data=[{"image_id": 1, "width": big, "height": big}]),
    "image_data an object": dict(image_data={"image_id": 1}), "image_data entry a number": dict(image_data=[1]),
    "image_data image_id a list": dict(image_data=[{"image_id": [1], "width": W, "height": H}]),
    "image_data height a word": dict(image_data=[{"image_id": 1, "width": W, "height": "tall"}]),
    "densecap split of lists": dict(split_ids=[[1]]),
    "scene graph names a string": dict(graphs=_obj(names="man")),
    "scene graph attributes a string": dict(graphs=_obj(attributes="tall")),
    "scene graph object_id a list": dict(graphs=_obj(object_id=[100])),
    "scene graph relationship a string": dict(graphs=_obj(), rels=["man wearing hat"]),
    "scene graph names of numbers": dict(graphs=_obj(names=[1, 2])),
}
for what, kwargs in vg_cases.items():
    case(f"visual genome: {what}", lambda t, kw=kwargs: _vg(t, **kw))


# ------------------------------------------------------------------------------ SA-1B
def _sa1b(tmp: Path, *, image=None, ann=None, raw=None, layout: bool = True):
    from regionlib.data.readers.sa1b import read_sa1b

    if layout:
        write_image(tmp / "sa_1.jpg", H, W)
        data = {"image": {"image_id": 1, "file_name": "sa_1.jpg", "height": H, "width": W} if image is None else image,
                "annotations": [dict({"id": 1, "segmentation": rle_of(rect_mask(H, W, 0, 0, 10, 10)),
                                      "bbox": [0, 0, 10, 10], "predicted_iou": 0.9, "stability_score": 0.9},
                                     **(ann or {}))]}
        (tmp / "sa_1.json").write_text(json.dumps(data) if raw is None else raw)
    return [r.regions.masks for r in read_sa1b(tmp)]


sa_cases = {
    "annotation id a list": dict(ann={"id": [1]}), "image 100000 x 100000": dict(image={
        "image_id": 1, "file_name": "sa_1.jpg", "height": big, "width": big}),
    "segmentation without counts": dict(ann={"segmentation": {"size": [H, W]}}),
    "segmentation counts garbage": dict(ann={"segmentation": {"size": [H, W], "counts": "\x01\x02zz"}}),
    "predicted_iou a word": dict(ann={"predicted_iou": "high"}),
    "file name escapes the folder": dict(image={"image_id": 1, "file_name": "../sa_1.jpg", "height": H, "width": W}),
    "image not an object": dict(image=[1]), "not JSON": dict(raw="{'image': 1}"),
    "a root with nothing readable": dict(layout=False),
}
for what, kwargs in sa_cases.items():
    case(f"sa-1b: {what}", lambda t, kw=kwargs: _sa1b(t, **kw))


# ------------------------------------------------------------------------------ COCO panoptic
def _panoptic(tmp: Path, *, png: bytes | None = None, segments=None, image=None, ann_file="p.png"):
    from regionlib.data.readers.panoptic import id2rgb, read_coco_panoptic

    (tmp / "pan").mkdir()
    ids = np.zeros((H, W), np.int64)
    ids[:10, :20] = 4
    if png is None:
        Image.fromarray(id2rgb(ids)).save(tmp / "pan" / "p.png")
    else:
        (tmp / "pan" / "p.png").write_bytes(png)
    data = {"images": [{"id": 9, "file_name": "i.jpg", "height": H, "width": W}] if image is None else [image],
            "annotations": [{"image_id": 9, "file_name": ann_file, "segments_info": [
                {"id": 4, "category_id": 1, "iscrowd": 0}] if segments is None else segments}],
            "categories": [{"id": 1, "name": "zebu", "isthing": 1}]}
    (tmp / "p.json").write_text(json.dumps(data))
    return list(read_coco_panoptic(tmp / "p.json", tmp / "pan", tmp, check_images=False))


pan_cases = {
    "PNG header of 20000 x 20000 (bomb), image entry alike": dict(
        png=png_header(20000, 20000), image={"id": 9, "file_name": "i.jpg", "height": 20000, "width": 20000}),
    "PNG header of 12000 x 12000, image entry 40 x 60": dict(png=png_header(12000, 12000)),
    "PNG bytes corrupt": dict(png=b"\x89PNG\r\n\x1a\n" + os.urandom(64)),
    "segment not an object": dict(segments=["4"]), "segment id a list": dict(segments=[{"id": [4], "category_id": 1}]),
    "image entry without height": dict(image={"id": 9, "file_name": "i.jpg", "width": W}),
    "image entry not an object": dict(image="i.jpg"), "annotation file_name a number": dict(ann_file=5),
    "annotation file_name escapes the root": dict(ann_file="../../p.png"),
}
for what, kwargs in pan_cases.items():
    case(f"panoptic: {what}", lambda t, kw=kwargs: _panoptic(t, **kw))


# ------------------------------------------------------------------------------ MaskGroups-HQ, RefCOCO, DLC-Bench
def _mghq(tmp: Path, **changes):
    from regionlib.data.readers.maskgroups_hq import read_maskgroups_hq

    write_image(tmp / "a.jpg", H, W)
    gt = [rle_of(rect_mask(H, W, 0, 0, 10, 10))]
    sample = dict({"image": "a.jpg", "mask_pool": gt, "gt_mask_pool": gt, "gt_mask_group": [[0]],
                   "conversations": [{"from": "human", "value": "<image>\nthe box"}]}, **changes)
    (tmp / "mg.json").write_text(json.dumps([sample]))
    return [r.regions.masks for r in read_maskgroups_hq(tmp / "mg.json", tmp)]


mg_cases = {
    "gt_mask_pool a number": dict(gt_mask_pool=3),
    "RLE size strings": dict(gt_mask_pool=[{"size": ["a", "b"], "counts": ""}]),
    "image escapes the root": dict(image="../../a.jpg"),
    "RLE counts garbage": dict(gt_mask_pool=[{"size": [H, W], "counts": "\x01zz"}]),
    "RLE 100000 x 100000": dict(gt_mask_pool=[{"size": [big, big], "counts": [0, big * big]}], mask_pool=[]),
    "group index a word": dict(gt_mask_group=[["0"]]),
}
for what, kwargs in mg_cases.items():
    case(f"maskgroups-hq: {what}", lambda t, kw=kwargs: _mghq(t, **kw))


def _refcoco(tmp: Path, *, ref=None, image=None, refs=None):
    from regionlib.data.readers.refcoco import read_refcoco

    folder = tmp / "refcoco"
    folder.mkdir()
    write_image(tmp / "img" / "a.jpg", H, W)
    (folder / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W} if image is None else image],
        "annotations": [_ann()], "categories": [{"id": 1, "name": "cat"}]}))
    base = {"ref_id": 0, "ann_id": 1, "image_id": 1, "category_id": 1, "split": "train",
            "sentences": [{"sent": "the cat"}]}
    (folder / "refs(unc).p").write_bytes(pickle.dumps([dict(base, **(ref or {}))] if refs is None else refs))
    return list(read_refcoco(tmp, image_root=tmp / "img"))


ref_cases = {
    "ref_id a list": dict(ref={"ref_id": [0]}), "image_id a list": dict(ref={"image_id": [1]}),
    "ann_id a list": dict(ref={"ann_id": [1]}),
    "image entry without height": dict(image={"id": 1, "file_name": "a.jpg"}),
    "refs an object": dict(refs={"ref_id": 0}), "sentences a string": dict(ref={"sentences": "the cat"}),
}
for what, kwargs in ref_cases.items():
    case(f"refcoco: {what}", lambda t, kw=kwargs: _refcoco(t, **kw))


def _dlc(tmp: Path, *, qa=None, names=None):
    from regionlib.data.readers.dlc_bench import read_dlc_bench

    write_image(tmp / "images" / "a.jpg", H, W)
    (tmp / "annotations.json").write_text(json.dumps({
        "images": _image(), "annotations": [_ann(id=7, segmentation=rle_of(rect_mask(H, W, 0, 0, 9, 9)))],
        "categories": [{"id": 1, "name": "object"}]}))
    question = {"question": "Is it red?", "choices": [["red", 1], ["blue", -1]], "type": "positive"}
    (tmp / "qa.json").write_text(json.dumps({"7": [question]} if qa is None else qa))
    (tmp / "class_names.json").write_text(json.dumps({"7": "cup"} if names is None else names))
    (tmp / "annotations").mkdir()  # an annotations/ folder without files must not hide the flat release layout
    return list(read_dlc_bench(tmp))


dlc_cases = {
    "qa a list": dict(qa=[]), "class name an object": dict(names={"7": {"name": "cup"}}),
    "question a string": dict(qa={"7": ["Is it red?"]}), "score off the scale": dict(
        qa={"7": [{"question": "q", "choices": [["a", 0.3]], "type": "positive"}]}),
}
for what, kwargs in dlc_cases.items():
    case(f"dlc-bench: {what}", lambda t, kw=kwargs: _dlc(t, **kw))


# ------------------------------------------------------------------------------ Regions
def _regions(**fields):
    from regionlib.regions import Regions

    kwargs = dict(image_size=(H, W), boxes_xyxy=np.array([[0, 0, 10, 10], [5, 5, 20, 20]], float))
    kwargs.update(fields)
    return Regions(**kwargs)


def _masks_of(**fields):
    return _regions(**fields).masks


good_rle = rle_of(rect_mask(H, W, 0, 0, 10, 10))
regions_cases = {
    "captions a string": lambda t: _regions(captions="ab"), "labels a string": lambda t: _regions(labels="xy"),
    "captions numbers": lambda t: _regions(captions=[1, 2]), "ids lists": lambda t: _regions(ids=[[1], [2]]),
    "ids a string": lambda t: _regions(ids="ab"), "ids a dict": lambda t: _regions(ids={1: 0, 2: 0}),
    "scores words": lambda t: _regions(scores=["a", "b"]), "scores of one": lambda t: _regions(scores=[1.0]),
    "boxes None": lambda t: _regions(boxes_xyxy=None), "boxes NaN": lambda t: _regions(boxes_xyxy=[[0, 0, nan, 1]]),
    "boxes a string": lambda t: _regions(boxes_xyxy="abcd"),
    "boxes ragged": lambda t: _regions(boxes_xyxy=[[0, 0, 1], [1]]),
    "image_size a string": lambda t: _regions(image_size="ab"),
    "image_size zero": lambda t: _regions(image_size=(0, 5)),
    "data a number": lambda t: _regions(data=5), "data value a number": lambda t: _regions(data={"x": 5}),
    "data value a string": lambda t: _regions(data={"x": "ab"}),
    "masks_rle of another size": lambda t: _masks_of(masks_rle=[rle_of(rect_mask(H + 1, W, 0, 0, 5, 5))] * 2),
    "masks_rle numbers": lambda t: _masks_of(masks_rle=[5, 6]),
    "masks_rle counts of a larger mask": lambda t: _masks_of(masks_rle=[rle_cases["counts of a larger mask"]] * 2),
    "masks_rle counts garbage": lambda t: _masks_of(masks_rle=[{"size": [H, W], "counts": "\x05\x06"}] * 2),
    "index out of range": lambda t: _regions()[5], "index a word": lambda t: _regions()["a"],
    "index a float": lambda t: _regions()[1.5],
    "bool index of the wrong length": lambda t: _regions()[np.array([True])],
}


def _from_rows(rows):
    from regionlib.regions import Regions

    return Regions.from_rows(rows)


row = {"id": 1, "box_xyxy": [0, 0, 5, 5], "mask_rle": None, "score": None, "caption": None, "label": None,
       "image_height": H, "image_width": W}
regions_cases.update({
    "from_rows missing keys": lambda t: _from_rows([{"id": 1}]),
    "from_rows height a word": lambda t: _from_rows([dict(row, image_height="tall")]),
    "from_rows ragged box": lambda t: _from_rows([dict(row, box_xyxy=[0, 0, 5])]),
    "from_rows row a string": lambda t: _from_rows(["row"]),
    "from_rows score a word": lambda t: _from_rows([dict(row, score="high")]),
})


def _regions_api(name, *args, **kwargs):
    from regionlib.regions import Regions

    return getattr(Regions, name)(*args, **kwargs)


regions_cases.update({
    "from_sam record a string": lambda t: _regions_api("from_sam", ["mask"], image_size=(H, W)),
    "from_sam predicted_iou a word": lambda t: _regions_api(
        "from_sam", [{"segmentation": good_rle, "predicted_iou": "high"}], image_size=(H, W)),
    "from_coco annotation a number": lambda t: _regions_api("from_coco", [3], image_size=(H, W)),
    "from_coco 100000 x 100000 image": lambda t: _regions_api("from_coco", [_ann()], image_size=(big, big)).masks,
    "from_coco polygon 1e9": lambda t: _regions_api("from_coco", [_ann(segmentation=[[0, 0, 1e9, 0, 0, 1e9]])],
                                                    image_size=(H, W)),
    "from_masks values 2": lambda t: _regions_api("from_masks", np.full((1, H, W), 2)),
    "concat of two sizes": lambda t: _regions_api("concat", [_regions(), _regions(image_size=(H + 1, W))]),
})
for what, fn in regions_cases.items():
    case(f"Regions: {what}", fn)


# ------------------------------------------------------------------------------ masks
def _masks(name, *args, **kwargs):
    from regionlib import masks

    return getattr(masks, name)(*args, **kwargs)


mask_cases = {
    "decode_rle a number": lambda t: _masks("decode_rle", 5),
    "decode_rle 100000 x 100000": lambda t: _masks("decode_rle", {"size": [big, big], "counts": "0"}),
    "decode_rle size words": lambda t: _masks("decode_rle", {"size": ["a", "b"], "counts": ""}),
    "decode_rle counts garbage": lambda t: _masks("decode_rle", {"size": [H, W], "counts": "\x01\x02"}),
    "decode_rle counts of a larger mask": lambda t: _masks("decode_rle", rle_cases["counts of a larger mask"]),
    "decode_rle counts truncated": lambda t: _masks("decode_rle", rle_cases["counts truncated mid-run"]),
    "decode_rle counts of a smaller mask": lambda t: _masks("decode_rle", rle_cases["counts of a smaller mask"]),
    "decode_rle no counts": lambda t: _masks("decode_rle", {"size": [H, W]}),
    "decode_rle negative size": lambda t: _masks("decode_rle", {"size": [-H, W], "counts": ""}),
    "rle_size of a list": lambda t: _masks("rle_size", [H, W]),
    "encode_rle of strings": lambda t: _masks("encode_rle", np.array([["a", "b"]])),
    "as_mask_batch ragged": lambda t: _masks("as_mask_batch", [[1, 0], [1]]),
    "resize_masks size a word": lambda t: _masks("resize_masks", np.ones((1, 4, 4), bool), "ab"),
    "resize_masks size zero": lambda t: _masks("resize_masks", np.ones((1, 4, 4), bool), (0, 3)),
    "mask_iou of two shapes": lambda t: _masks("mask_iou", np.ones((1, 4, 4), bool), np.ones((1, 4, 5), bool)),
    "masks_to_boxes of an empty mask": lambda t: _masks("masks_to_boxes", np.zeros((1, 4, 4), bool)),
    "boxes_to_masks 100000 x 100000": lambda t: _masks("boxes_to_masks", [[0, 0, 5, 5]], (big, big)),
    "boxes_to_masks image_size a word": lambda t: _masks("boxes_to_masks", [[0, 0, 5, 5]], "ab"),
    "boxes_to_masks NaN box": lambda t: _masks("boxes_to_masks", [[0, 0, nan, 5]], (H, W)),
    "union_masks of a number": lambda t: _masks("union_masks", 3),
}
for what, fn in mask_cases.items():
    case(f"masks: {what}", fn)


def _boxes(name, *args, **kwargs):
    from regionlib import boxes

    return getattr(boxes, name)(*args, **kwargs)


box_cases = {
    "validate_boxes image_size a word": lambda t: _boxes("validate_boxes", [[0, 0, 1, 1]], image_size="ab"),
    "validate_boxes image_size a number": lambda t: _boxes("validate_boxes", [[0, 0, 1, 1]], image_size=5),
    "validate_boxes image_size NaN": lambda t: _boxes("validate_boxes", [[0, 0, 1, 1]], image_size=(nan, 4)),
    "clip_boxes image_size a word": lambda t: _boxes("clip_boxes", [[0, 0, 1, 1]], "ab"),
    "scale_boxes scale a word": lambda t: _boxes("scale_boxes", [[0, 0, 1, 1]], "x"),
    "scale_boxes scale of three": lambda t: _boxes("scale_boxes", [[0, 0, 1, 1]], (1, 2, 3)),
    "box_iou of None": lambda t: _boxes("box_iou", [[0, 0, 1, 1]], None),
}
for what, fn in box_cases.items():
    case(f"boxes: {what}", fn, isolate=False)


# ------------------------------------------------------------------------------ images
def _tiff(tmp: Path, arr: np.ndarray) -> Path:
    path = tmp / "x.tif"
    Image.fromarray(arr).save(path)
    return path


def _load(source, **kwargs):
    from regionlib.images import load_image

    return load_image(source, **kwargs)


def _to_rgb(value):
    from regionlib.images import to_rgb_uint8

    return to_rgb_uint8(value)


ramp = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


image_cases = {
    "float TIFF outside [0, 1]": lambda t: _load(_tiff(t, ramp * 255)),
    "float TIFF with NaN": lambda t: _load(_tiff(t, np.where(ramp > 0.5, np.float32(nan), ramp))),
    "int32 TIFF with negative values": lambda t: _load(_tiff(t, (ramp * 1000 - 500).astype(np.int32))),
    "PNG header 100000 x 100000": lambda t: _load(png_header(big, big)),
    "PNG header 12000 x 12000": lambda t: _load(png_header(12000, 12000)),
    "PNG header 20000 x 20000, max_pixels raised": lambda t: _load(png_header(20000, 20000), max_pixels=10**9),
    "PNG truncated": lambda t: _load(_png(np.zeros((H, W, 3), np.uint8))[:60]),
    "random bytes": lambda t: _load(os.urandom(256)), "empty bytes": lambda t: _load(b""),
    "a number": lambda t: _load(123), "None": lambda t: _load(None), "a folder": lambda t: _load(t),
    "a text file": lambda t: (t / "a.png").write_text("not an image") and _load(t / "a.png"),
    "array of objects": lambda t: _to_rgb(np.array([[object()]])), "a string": lambda t: _to_rgb("abc"),
    "bool array": lambda t: _to_rgb(np.ones((4, 4), bool)), "int64 array": lambda t: _to_rgb(np.ones((4, 4), np.int64)),
    "empty array": lambda t: _to_rgb(np.zeros((0, 0, 3), np.uint8)),
    "two channels": lambda t: _to_rgb(np.zeros((4, 4, 2))),
    "float NaN array": lambda t: _to_rgb(np.full((4, 4), nan)),
    "complex array": lambda t: _to_rgb(np.ones((4, 4), complex)),
    "image_size_of None": lambda t: __import__("regionlib.images", fromlist=["x"]).image_size_of(None),
}
for what, fn in image_cases.items():
    case(f"images: {what}", fn)
case("images: float TIFF in [0, 1] loads (not black)", lambda t: _load(_tiff(t, ramp)),
     lambda img: img.shape == (H, W, 3) and abs(float(img.mean()) - 127.5) < 1.0 and int(img.max()) == 255)


def _record_size_mismatch(t: Path):
    from regionlib.data.readers.base import ImageRecord
    from regionlib.regions import Regions

    write_image(t / "a.jpg", H, W)
    record = ImageRecord(image_id=1, image_path=t / "a.jpg", image_size=(H + 1, W), regions=Regions.empty((H + 1, W)))
    return record.load_image()


case("images: record whose file disagrees with its size", _record_size_mismatch)


# ------------------------------------------------------------------------------ mask pooling (torch only: in-process)
def _pool(features, masks=None, **kwargs):
    from regionlib.pooling import mask_pool

    if masks is None:
        masks = np.stack([rect_mask(16, 16, 0, 0, 8, 8), rect_mask(16, 16, 8, 8, 16, 16)])
    return mask_pool(features, masks, **kwargs)


feats = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
expected = torch.stack([feats[:, :2, :2].mean((1, 2)), feats[:, 2:, 2:].mean((1, 2))])
nan_outside = feats.clone()
nan_outside[:, 0, 3] = nan  # covered by neither mask
nan_inside = feats.clone()
nan_inside[1, 0, 0] = nan
pool_checks = {
    "integer features": (lambda t: _pool(feats.long()), lambda r: torch.allclose(r.tokens, expected)),
    "bool features": (lambda t: _pool(feats > 10), lambda r: torch.isfinite(r.tokens).all().item()
                      and torch.allclose(r.tokens, torch.stack([(feats > 10)[:, :2, :2].float().mean((1, 2)),
                                                                 (feats > 10)[:, 2:, 2:].float().mean((1, 2))]))),
    "NaN outside every mask": (lambda t: _pool(nan_outside), lambda r: torch.allclose(r.tokens, expected)),
    "inf outside every mask (nearest)": (lambda t: _pool(torch.where(torch.isnan(nan_outside), inf, nan_outside),
                                                         weights="nearest"),
                                         lambda r: torch.allclose(r.tokens, expected)),
    "NaN outside the masks of a batch": (
        lambda t: _pool(torch.stack([feats, nan_outside]), batch_index=[1, 1]),
        lambda r: torch.allclose(r.tokens, expected)),
}
for what, (fn, check) in pool_checks.items():
    case(f"mask_pool: {what}", fn, check, isolate=False)
pool_cases = {
    "NaN inside a mask": lambda t: _pool(nan_inside), "numpy features": lambda t: _pool(feats.numpy()),
    "2-d features": lambda t: _pool(feats[0]), "empty mask": lambda t: _pool(feats, np.zeros((1, 16, 16), bool)),
    "4-d without batch_index": lambda t: _pool(feats[None]),
    "batch_index out of range": lambda t: _pool(feats[None], batch_index=[0, 3]),
    "batch_index words": lambda t: _pool(feats[None], batch_index=["a", "b"]),
    "complex features": lambda t: _pool(feats.to(torch.complex64)),
    "non-binary masks": lambda t: _pool(feats, np.full((1, 16, 16), 0.5)),
}
for what, fn in pool_cases.items():
    case(f"mask_pool: {what}", fn, isolate=False)


# ------------------------------------------------------------------------------ runner
def _evaluate(name: str, tmp: Path) -> tuple[str, str]:
    fn, check, _ = CASES[name]
    try:
        result = fn(tmp)
    except RegionLibError as exc:
        return ("typed", str(exc)[:300]) if check is None else ("silent-wrong", f"refused: {exc}"[:300])
    except BaseException as exc:  # noqa: BLE001 - classifying every other exception is the point
        return "bare", f"{type(exc).__name__}: {exc}"[:300]
    if check is None:
        return "silent-wrong", f"no error; returned {type(result).__name__}"
    try:
        return ("correct", "") if check(result) else ("silent-wrong", "wrong result")
    except BaseException as exc:  # noqa: BLE001
        return "silent-wrong", f"result unusable ({type(exc).__name__}: {exc})"[:300]


def _child(name: str, tmp: str, conn) -> None:
    with open("/proc/self/statm") as f:
        vsize = int(f.read().split()[0]) * resource.getpagesize()
    limit = vsize + (3 << 30)  # 3 GiB above what the (forked) process already maps
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(_evaluate(name, Path(tmp)))
    conn.close()
    os._exit(0)


def run_case(name: str, timeout: float = 20.0) -> tuple[str, str]:
    """``(outcome, detail)`` of one case; C-risky cases run in a forked child (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        if not CASES[name][2]:
            return _evaluate(name, Path(tmp))
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(name, tmp, send))
        proc.start()
        send.close()
        try:
            if not recv.poll(timeout):
                proc.kill()
                proc.join()
                return "crash", f"hang: no result after {timeout:.0f} s"
            try:
                return recv.recv()
            except EOFError:
                proc.join()
                signal = -proc.exitcode if proc.exitcode and proc.exitcode < 0 else "-"
                return "crash", f"child died (exit code {proc.exitcode}: signal {signal})"
        finally:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_gives_a_typed_error_or_the_right_result(name):
    """Bugs caught (issue 14): segfaults / hangs inside pycocotools on NaN, 1e9 or 100000 x 100000 inputs (also
    in skip mode), bare AttributeError / TypeError / KeyError / DecompressionBombError from bad records,
    silently wrong results (``Regions(captions="ab")``, black float TIFFs, NaN tokens)."""
    outcome, detail = run_case(name)
    assert outcome in ("typed", "correct"), f"{name}: {outcome}: {detail}"


def test_the_harness_is_large_enough():
    assert len(CASES) >= 100


# ------------------------------------------------------------------------------ property-based
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(counts=st.one_of(st.text(max_size=40), st.binary(max_size=40)), h=st.integers(0, 30), w=st.integers(0, 30))
def test_random_compressed_counts_are_checked_before_pycocotools(counts, h, w):
    """Arbitrary bytes as compressed RLE counts: a typed error, or a mask of exactly (H, W) equal to
    pycocotools' own decoding (the checks let through only counts that sum to H * W)."""
    from pycocotools import mask as coco_mask

    from regionlib.errors import InvalidMaskError
    from regionlib.masks import decode_rle

    rle = {"size": [h, w], "counts": counts}
    try:
        out = decode_rle(rle)
    except InvalidMaskError:
        return
    raw = counts.encode("ascii") if isinstance(counts, str) else counts
    np.testing.assert_array_equal(out[0], coco_mask.decode({"size": [h, w], "counts": raw}).astype(bool))


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(),
                                     st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                           max_leaves=12)
field_names = st.sampled_from(["id", "image_id", "category_id", "segmentation", "bbox", "iscrowd", "area"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(field_names, json_values, min_size=1, max_size=3), skip=st.booleans())
def test_random_annotation_fields_give_records_or_typed_errors(tmp_path, changes, skip):
    """Random JSON values in any annotation field: records or `DataFormatError`, in both error modes."""
    from regionlib.data.readers.base import ReadReport
    from regionlib.data.readers.coco import read_coco

    data = {"images": _image(), "annotations": [_ann(**changes)], "categories": [{"id": 1, "name": "cat"}]}
    path = tmp_path / "random.json"
    path.write_text(json.dumps(data))
    try:
        for rec in read_coco(path, tmp_path, on_error="skip" if skip else "raise", report=ReadReport(),
                             check_images=False):
            if len(rec.regions):
                assert rec.regions.masks.shape[1:] == (H, W)
    except RegionLibError:
        assert not skip, "skip mode must leave a bad annotation out (reported), not raise"


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(["captions", "labels", "ids", "scores", "boxes_xyxy", "masks_rle", "data", "image_size"]),
       value=json_values)
def test_random_regions_fields_give_regions_or_typed_errors(field, value):
    """Random values for any `Regions` field: a valid `Regions` or a `RegionLibError`, nothing else."""
    try:
        r = _regions(**{field: value})
    except RegionLibError:
        return
    if field in ("captions", "labels") and value is not None:
        assert all(isinstance(c, str) for c in getattr(r, field)) and len(getattr(r, field)) == len(r)


# ------------------------------------------------------------------------------ the table
def table() -> tuple[Counter, dict[str, tuple[str, str]]]:
    results = {name: run_case(name) for name in sorted(CASES)}
    return Counter(outcome for outcome, _ in results.values()), results


if __name__ == "__main__":
    counts, results = table()
    for name, (outcome, detail) in results.items():
        if outcome not in ("typed", "correct") or "-v" in sys.argv:
            print(f"{outcome:13s} {name}: {detail[:160]}")
    cols = ("typed", "correct", "bare", "silent-wrong", "crash")
    print("\n| tried | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    print(f"| {len(results)} | " + " | ".join(str(counts.get(c, 0)) for c in cols) + " |")
