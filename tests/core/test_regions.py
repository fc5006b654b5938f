import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from regionlib.errors import DataFormatError, InvalidMaskError, RegionLibError
from regionlib.regions import Regions


def make_regions():
    m = np.zeros((3, 20, 30), bool)
    m[0, 2:6, 3:9] = True
    m[1, 10:20, 0:5] = True
    m[2, 0:1, 29:30] = True
    return m, Regions.from_masks(
        m, captions=["a", "b", "c"], labels=["x", "y", "z"], ids=[10, 11, 12], scores=[0.1, 0.2, 0.3],
        data={"predicted_iou": np.array([0.5, 0.6, 0.7])},
    )


def test_fields_and_lazy_masks():
    m, r = make_regions()
    assert len(r) == 3 and r.image_size == (20, 30)
    assert r.boxes_xyxy.tolist() == [[3, 2, 9, 6], [0, 10, 5, 20], [29, 0, 30, 1]]
    fresh = Regions(image_size=(20, 30), boxes_xyxy=r.boxes_xyxy, masks_rle=r.masks_rle)
    np.testing.assert_array_equal(fresh.masks, m)


def test_indexing_returns_new_regions():
    m, r = make_regions()
    one = r[1]
    assert len(one) == 1 and one.captions == ["b"] and one.ids == [11]
    np.testing.assert_array_equal(one.masks, m[1:2])
    sl = r[1:]
    assert sl.labels == ["y", "z"] and sl.scores.tolist() == [0.2, 0.3]
    sel = r[np.array([True, False, True])]
    assert sel.ids == [10, 12] and sel.data["predicted_iou"].tolist() == [0.5, 0.7]
    assert r[np.array([2, 0])].captions == ["c", "a"]
    assert r[-1].ids == [12]
    with pytest.raises(IndexError):
        r[3]
    with pytest.raises(RegionLibError, match="boolean index"):
        r[np.array([True, False])]


def test_concat_and_validation():
    _, r = make_regions()
    both = Regions.concat([r[:1], r[1:]])
    assert both.captions == r.captions and both.boxes_xyxy.tolist() == r.boxes_xyxy.tolist()
    with pytest.raises(RegionLibError, match="image size"):
        Regions.concat([r, Regions.from_boxes([[0, 0, 1, 1]], image_size=(5, 5))])
    with pytest.raises(RegionLibError, match="one entry per region"):
        Regions.from_boxes([[0, 0, 1, 1]], image_size=(5, 5), captions=["a", "b"])
    with pytest.raises(RegionLibError, match=r"captions\[0\] must be str"):
        Regions.from_boxes([[0, 0, 1, 1]], image_size=(5, 5), captions=[3])
    with pytest.raises(InvalidMaskError, match="image size"):
        Regions(image_size=(21, 30), boxes_xyxy=r.boxes_xyxy, masks_rle=r.masks_rle)
    with pytest.raises(InvalidMaskError, match="no masks"):
        Regions.from_boxes([[0, 0, 1, 1]], image_size=(5, 5)).masks


def test_rows_round_trip_through_json_and_hf_datasets():
    import datasets

    m, r = make_regions()
    rows = json.loads(json.dumps(r.to_rows()))
    back = Regions.from_rows(rows)
    np.testing.assert_array_equal(back.masks, m)
    assert back.captions == r.captions and back.ids == r.ids
    assert back.data["predicted_iou"] == [0.5, 0.6, 0.7]
    ds = datasets.Dataset.from_list(r.to_rows())
    back2 = Regions.from_rows(ds)
    np.testing.assert_array_equal(back2.masks, m)


def test_from_coco_polygons_rle_and_crowd():
    h, w = 20, 30
    dense = np.zeros((h, w), np.uint8)
    dense[5:10, 5:15] = 1
    compressed = coco_mask.encode(np.asfortranarray(dense))
    anns = [
        {"id": 1, "category_id": 3, "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]], "iscrowd": 0},
        {"id": 2, "category_id": 5, "segmentation": {"size": [h, w], "counts": compressed["counts"].decode()}, "iscrowd": 1},
        {"id": 3, "category_id": 3, "segmentation": {"size": [h, w], "counts": [25, 5, 570]}, "iscrowd": 1},
    ]
    r = Regions.from_coco(anns, image_size=(h, w), categories={3: "cat", 5: "dog"})
    assert r.labels == ["cat", "dog", "cat"] and r.data["iscrowd"].tolist() == [0, 1, 1]
    np.testing.assert_array_equal(r.masks[1], dense.astype(bool))
    assert r.boxes_xyxy[1].tolist() == [5, 5, 15, 10]
    assert r.masks[2].sum() == 5 and r.boxes_xyxy[2].tolist() == [1, 5, 2, 10]
    ref = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([anns[0]["segmentation"][0]], h, w)))
    np.testing.assert_array_equal(r.masks[0], ref.astype(bool))
    with pytest.raises(DataFormatError, match="id=9.*3 points"):
        Regions.from_coco([{"id": 9, "segmentation": [[1, 1, 2, 2]]}], image_size=(h, w))
    with pytest.raises(DataFormatError, match="unknown category_id 7"):
        Regions.from_coco([dict(anns[0], category_id=7)], image_size=(h, w), categories={3: "cat"})
    with pytest.raises(DataFormatError, match="differs from the image size"):
        Regions.from_coco([anns[1]], image_size=(h + 1, w))


def test_from_sam_keeps_iou_and_stability():
    m = np.zeros((2, 8, 8), bool)
    m[0, 1:3, 1:3] = True
    m[1, 4:, 4:] = True
    records = [
        {"segmentation": m[i], "predicted_iou": 0.9 - i / 10, "stability_score": 0.95, "point_coords": [[1, 1]],
         "crop_box": [0, 0, 8, 8], "bbox": [0, 0, 1, 1], "area": int(m[i].sum())}
        for i in range(2)
    ]
    r = Regions.from_sam(records)
    assert r.data["predicted_iou"].tolist() == [0.9, 0.8] and r.scores.tolist() == [0.9, 0.8]
    assert r.data["stability_score"].tolist() == [0.95, 0.95]
    assert r.boxes_xyxy.tolist() == [[1, 1, 3, 3], [4, 4, 8, 8]]


def test_string_fields_are_refused_not_split():
    """Bug caught: Regions(captions="ab") became ['a', 'b'] (likewise labels, ids); unhashable ids, a str data
    value and a data value without a length passed or raised bare TypeErrors."""
    boxes = np.array([[0, 0, 5, 5], [1, 1, 6, 6]], float)
    for field, value in (("captions", "ab"), ("labels", "xy"), ("ids", "ab"), ("ids", [[1], [2]]),
                         ("data", {"x": "ab"}), ("data", {"x": 5}), ("data", 5), ("scores", ["a", "b"])):
        with pytest.raises(RegionLibError, match=field.rstrip("s") if field != "data" else "data"):
            Regions(image_size=(10, 10), boxes_xyxy=boxes, **{field: value})
    assert Regions(image_size=(10, 10), boxes_xyxy=boxes, captions=("a", "b")).captions == ["a", "b"]


def test_out_of_range_index_is_typed_and_an_index_error():
    """Bug caught: an out-of-range index raised a bare IndexError (now a RegionLibError that is also an IndexError)."""
    _, r = make_regions()
    for index in (5, -4, np.array([0, 7])):
        with pytest.raises(RegionLibError, match="out of range") as info:
            r[index]
        assert isinstance(info.value, IndexError)
    assert [len(x) for x in r] == [1, 1, 1]


def test_from_coco_refuses_non_objects_and_huge_images():
    """Bug caught: a non-dict annotation raised AttributeError; a 100000 x 100000 image reached pycocotools."""
    with pytest.raises(DataFormatError, match="annotation 0 must be a JSON object"):
        Regions.from_coco([3], image_size=(10, 10))
    with pytest.raises(DataFormatError, match="max_pixels"):
        Regions.from_coco([{"id": 1, "segmentation": [[0, 0, 5, 0, 0, 5]]}], image_size=(100_000, 100_000))
