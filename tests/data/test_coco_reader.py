"""COCO / LVIS reader: counts, decoded masks, labels, crowd RLE; every bad-input case, raise and skip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionlib.data.readers.base import ReadReport
from regionlib.data.readers.coco import read_coco, read_lvis
from regionlib.errors import DataFormatError


def test_reads_counts_masks_labels(coco):
    recs = list(read_coco(coco.path, coco.image_root))
    assert [r.image_id for r in recs] == [1, 7]
    assert [len(r.regions) for r in recs] == [2, 2]
    r1, r7 = recs
    assert r1.regions.labels == ["cat", "dog"] and r7.regions.labels == ["cat", "dog"]
    assert r1.regions.ids == [1, 2]
    np.testing.assert_array_equal(r1.regions.masks[1], coco.masks[2])
    np.testing.assert_array_equal(r7.regions.masks[0], coco.masks[3])
    np.testing.assert_array_equal(r7.regions.masks[1], coco.masks[4])  # crowd, uncompressed counts
    assert r7.regions.data["iscrowd"].tolist() == [0, 1]
    np.testing.assert_array_equal(r1.regions.boxes_xyxy[1], [10, 5, 30, 25])
    assert r1.load_image().shape == (40, 60, 3)
    # the polygon triangle (5,5)-(15,5)-(5,15): area close to 50 px, inside its box
    poly = r1.regions.masks[0]
    assert 40 <= poly.sum() <= 75 and not poly[:4].any() and not poly[:, 16:].any()


def test_lvis_file_names_and_extras(lvis):
    """Bug caught: LVIS image paths dropped the COCO split folder of ``coco_url`` (train2017/, val2017/),
    so no image of the real release was found under the COCO root."""
    recs = list(read_lvis(lvis.path, lvis.image_root))
    assert [r.image_path.relative_to(lvis.image_root).as_posix() for r in recs] == \
        ["train2017/000000000001.jpg", "val2017/000000000007.jpg"]
    assert recs[0].load_image().shape == (40, 60, 3) and recs[1].load_image().shape == (30, 50, 3)
    assert recs[0].extra["neg_category_ids"] == [3]


def _corrupt(coco, case: str):
    d = coco.data
    if case == "ann points at missing image":
        d["annotations"][0]["image_id"] = 99
    elif case == "polygon < 3 points":
        d["annotations"][0]["segmentation"] = [[5, 5, 15, 5]]
    elif case == "RLE size != image size":
        d["annotations"][1]["segmentation"]["size"] = [41, 60]
    elif case == "box outside the image":
        d["annotations"][0]["bbox"] = [50, 30, 20, 20]
    elif case == "duplicate ids":
        d["annotations"][1]["id"] = 1
    elif case == "unknown category":
        d["annotations"][0]["category_id"] = 42
    elif case == "missing image file":
        (coco.image_root / "000000000001.jpg").unlink()
    coco.write()


BAD = {
    "ann points at missing image": "not in 'images'",
    "polygon < 3 points": ">= 3 points",
    "RLE size != image size": "RLE size",
    "box outside the image": "outside the image",
    "duplicate ids": "duplicate annotation id",
    "unknown category": "unknown category_id",
    "missing image file": "does not exist",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_and_skip_reports(coco, case):
    _corrupt(coco, case)
    with pytest.raises(DataFormatError, match=BAD[case]) as info:
        list(read_coco(coco.path, coco.image_root))
    assert "instances.json" in str(info.value)
    report = ReadReport()
    recs = list(read_coco(coco.path, coco.image_root, on_error="skip", report=report))
    assert len(report) >= 1 and any(BAD[case] in r for r in report.reasons())
    assert all(s.file.endswith("instances.json") for s in report.skipped)
    n_regions = sum(len(r.regions) for r in recs)
    dropped = 2 if case in ("duplicate ids", "missing image file") else 1
    assert n_regions == 4 - dropped  # only the bad record is left out, and it is reported
    assert report.n_regions == n_regions


def test_missing_and_truncated_annotation_file(coco, tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        read_coco(tmp_path / "nope.json", coco.image_root)
    text = coco.path.read_text()
    coco.path.write_text(text[: len(text) // 2])
    with pytest.raises(DataFormatError, match="truncated"):
        read_coco(coco.path, coco.image_root, on_error="skip")


def test_on_error_value_is_checked(coco):
    with pytest.raises(Exception, match="on_error"):
        read_coco(coco.path, coco.image_root, on_error="ignore")


def test_hf_round_trip_of_reader_records(coco, tmp_path):
    from regionlib.data.readers.hf import from_hf_row, to_hf_dataset

    recs = list(read_coco(coco.path, coco.image_root))
    ds = to_hf_dataset(iter(recs), cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 2
    back = [from_hf_row(row) for row in ds]
    for a, b in zip(recs, back):
        assert b.image_id == str(a.image_id) and b.image_path == a.image_path
        assert b.regions.ids == a.regions.ids  # int ids survive (JSON-encoded)
        assert b.regions.labels == a.regions.labels
        np.testing.assert_array_equal(b.regions.masks, a.regions.masks)
        np.testing.assert_allclose(b.regions.boxes_xyxy, a.regions.boxes_xyxy)
        assert b.regions.data["category_id"] == list(a.regions.data["category_id"])
    emb = to_hf_dataset(iter(recs), embed_images=True, cache_dir=str(tmp_path / "cache2"))
    rec = from_hf_row(emb[0])
    np.testing.assert_array_equal(rec.load_image(), recs[0].load_image())
    assert json.loads(emb[0]["extra"]) == {}
