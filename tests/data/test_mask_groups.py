"""Mask-group builders against groups worked out by hand on a five-object fixture."""

from __future__ import annotations

import numpy as np
import pytest

from regionlib.data.mask_groups import (
    attribute_groups, category_groups, position_groups, regionworld_mask_groups, relationship_groups,
)
from regionlib.data.regionworld import generate_regionworld
from regionlib.regions import Regions

#            box (x0, y0, x1, y1)   centre
# 0 cat      (0, 0, 20, 20)        (10, 10)
# 1 cat      (60, 0, 80, 20)       (70, 10)
# 2 dog      (40, 40, 60, 60)      (50, 50)
# 3 cat      (10, 70, 30, 90)      (20, 80)
# 4 dog      (80, 80, 100, 100)    (90, 90)      image 100 x 100
BOXES = [(0, 0, 20, 20), (60, 0, 80, 20), (40, 40, 60, 60), (10, 70, 30, 90), (80, 80, 100, 100)]
LABELS = ["cat", "cat", "dog", "cat", "dog"]
ATTRS = [["black"], ["white"], ["black"], ["black", "small"], []]
RELS = [(2, "chasing", 0), (2, "chasing", 1), (4, "chasing", 0)]


@pytest.fixture
def regions():
    masks = np.zeros((5, 100, 100), bool)
    for m, (x0, y0, x1, y1) in zip(masks, BOXES):
        m[y0:y1, x0:x1] = True
    return Regions.from_masks(masks, labels=LABELS)


def _tuples(groups):
    return {(g.prompt, g.target, g.reference) for g in groups}


def test_category_groups(regions):
    assert _tuples(category_groups(regions)) == {("every cat", (0, 1, 3), None), ("every dog", (2, 4), None)}
    assert len(category_groups(regions, min_size=3)) == 1


def test_attribute_groups(regions):
    assert _tuples(attribute_groups(regions, ATTRS)) == {
        ("every black object", (0, 2, 3), None),
        ("every black cat", (0, 3), None), ("every black dog", (2,), None),
        ("every small cat", (3,), None), ("every white cat", (1,), None)}


def test_position_groups(regions):
    expected = {
        ("every cat in the left half of the image", (0, 3), None), ("every cat in the right half of the image", (1,), None),
        ("every cat in the top half of the image", (0, 1), None), ("every cat in the bottom half of the image", (3,), None),
        ("every cat to the right of the referred cat", (1,), 0), ("every cat below the referred cat", (3,), 0),
        ("every cat below the referred cat", (3,), 1),
        ("every cat to the left of the referred dog", (0, 3), 2), ("every cat to the right of the referred dog", (1,), 2),
        ("every cat above the referred dog", (0, 1), 2), ("every cat below the referred dog", (3,), 2),
        ("every cat to the right of the referred cat", (1,), 3),
        ("every cat above the referred dog", (0, 1), 4),
        ("every dog to the left of the referred cat", (2,), 1), ("every dog to the right of the referred cat", (4,), 1),
        ("every dog above the referred cat", (2,), 3),
    }
    groups = position_groups(regions)
    assert _tuples(groups) == expected and len(groups) == len(expected)
    assert all(g.reference_mask_rle == regions.masks_rle[g.reference] for g in groups if g.reference is not None)


def test_relationship_groups(regions):
    assert _tuples(relationship_groups(regions, RELS)) == {
        ("everything the referred dog is chasing", (0, 1), 2), ("every object that is chasing the referred cat", (2, 4), 0)}
    assert len(relationship_groups(regions, RELS, min_size=1)) == 4  # (2,chasing) (4,chasing) (chasing,0) (chasing,1)
    with pytest.raises(Exception, match="outside"):
        relationship_groups(regions, [(0, "on", 9)])


def test_regionworld_groups_are_consistent():
    s = generate_regionworld(2, seed=4)[1]
    groups = regionworld_mask_groups(s)
    attrs = s.regions.data["attributes"]
    assert groups and {g.kind for g in groups} >= {"attribute", "position", "relationship"}
    for g in groups:
        assert g.candidates is s.regions and all(0 <= i < len(s.regions) for i in g.target)
        if g.kind == "attribute" and g.prompt.endswith(" object"):
            word = g.prompt.split()[1]
            assert set(g.target) == {k for k, a in enumerate(attrs) if word in (a["color"], a["pattern"], a["size"])}
        if g.kind == "relationship" and g.prompt.startswith("everything"):
            assert all(attrs[g.reference]["relation_target_index"] == t for t in g.target)
        assert g.target_mask.sum() == sum(s.regions.masks[i].sum() for i in g.target)  # visible parts are disjoint
