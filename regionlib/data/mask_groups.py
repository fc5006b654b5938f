"""Mask-group samples for RAS (seed 004, REFERENCE §7): a prompt, candidate masks, a target group.

RAS's MaskGroups-2M builds groups from annotated regions; the builders here do the same from
any `Regions` of one image (COCO / LVIS / Visual Genome records of `regionlib.data.readers`,
or RegionWorld samples). Candidates are all regions of the image; the target is a tuple of
candidate indices (empty for a no-target expression); some groups carry a *reference*
region (encoded with ``<mask-ref-pre>`` by RAS).

* category groups — every instance of a label with >= ``min_size`` (2) instances:
  ``"every {label}"``;
* attribute groups — regions sharing an attribute (``"every {attribute} object"``, >= 2) and
  instances of a label with an attribute (``"every {attribute} {label}"``) when that picks out
  a proper, non-empty subset of the label's instances;
* position groups — instances of a label (>= 2 instances) whose box centre lies in the
  left / right / top / bottom half of the image (``"every {label} in the left half of the
  image"``), or beyond a reference region's box (``"every {label} to the left of the
  referred {ref}"``: centre x < the reference's x0; right: > x1; above: y < y0; below: y > y1);
  kept when non-empty and not all instances;
* relationship groups — (subject, predicate) with >= ``min_size`` objects (``"everything
  the referred {subject} is {predicate}"``, reference = subject) and (predicate, object)
  with >= ``min_size`` subjects (``"every object that is {predicate} the referred {object}"``);
* referring groups — RefCOCO (one mask), gRefCOCO (zero, one or many masks), MaskGroups-HQ.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import RegionLibError
from ..regions import Regions

__all__ = ["MaskGroupSample", "category_groups", "attribute_groups", "position_groups", "relationship_groups",
           "referring_groups", "regionworld_mask_groups", "maskgroups_hq_groups"]


@dataclass(frozen=True)
class MaskGroupSample:
    """One selection sample: ``prompt``, the image's ``candidates`` (`Regions`), the ``target``
    group (sorted candidate indices), an optional ``reference`` candidate index, the group
    ``kind`` and ``image_id``."""

    image_id: Any
    kind: str
    prompt: str
    candidates: Regions
    target: tuple[int, ...]
    reference: int | None = None

    @property
    def reference_mask_rle(self) -> dict | None:
        return None if self.reference is None else self.candidates.masks_rle[self.reference]

    @property
    def target_mask(self) -> np.ndarray:
        """``(H, W)`` bool union of the target masks (all False for an empty group)."""
        out = np.zeros(self.candidates.image_size, bool)
        for i in self.target:
            out |= self.candidates.masks[i]
        return out


def _labels(regions: Regions) -> list[str]:
    if regions.labels is None:
        raise RegionLibError("mask groups need regions with labels")
    return regions.labels


def _by_label(regions: Regions) -> dict[str, list[int]]:
    groups = defaultdict(list)
    for i, label in enumerate(_labels(regions)):
        groups[label].append(i)
    return groups


def category_groups(regions: Regions, *, image_id=None, min_size: int = 2) -> list[MaskGroupSample]:
    return [MaskGroupSample(image_id, "category", f"every {label}", regions, tuple(idx))
            for label, idx in sorted(_by_label(regions).items()) if len(idx) >= min_size]


def attribute_groups(regions: Regions, attributes: Sequence[Sequence[str]], *, image_id=None,
                     min_size: int = 2) -> list[MaskGroupSample]:
    """``attributes[i]``: the attribute words of region i (e.g. VG's ``data["attributes"]``)."""
    if len(attributes) != len(regions):
        raise RegionLibError(f"attributes must have one entry per region ({len(regions)}), got {len(attributes)}")
    labels = _labels(regions)
    by_attr, by_attr_label = defaultdict(set), defaultdict(set)
    for i, attrs in enumerate(attributes):
        for a in set(attrs):
            by_attr[a].add(i)
            by_attr_label[(a, labels[i])].add(i)
    out = [MaskGroupSample(image_id, "attribute", f"every {a} object", regions, tuple(sorted(idx)))
           for a, idx in sorted(by_attr.items()) if len(idx) >= min_size]
    per_label = _by_label(regions)
    for (a, label), idx in sorted(by_attr_label.items()):
        if 0 < len(idx) < len(per_label[label]):
            out.append(MaskGroupSample(image_id, "attribute", f"every {a} {label}", regions, tuple(sorted(idx))))
    return out


def position_groups(regions: Regions, *, image_id=None, relative: bool = True) -> list[MaskGroupSample]:
    h, w = regions.image_size
    b = regions.boxes_xyxy
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    labels = _labels(regions)
    out = []
    for label, idx in sorted(_by_label(regions).items()):
        if len(idx) < 2:
            continue
        idx = np.asarray(idx)
        halves = {"left": cx[idx] < w / 2, "right": cx[idx] >= w / 2, "top": cy[idx] < h / 2, "bottom": cy[idx] >= h / 2}
        for side, sel in halves.items():
            if 0 < sel.sum() < len(idx):
                out.append(MaskGroupSample(image_id, "position", f"every {label} in the {side} half of the image",
                                           regions, tuple(int(i) for i in idx[sel])))
        if not relative:
            continue
        for r in range(len(regions)):
            others = idx[idx != r]
            if len(others) < 2:
                continue
            sides = {"to the left of": cx[others] < b[r, 0], "to the right of": cx[others] > b[r, 2],
                     "above": cy[others] < b[r, 1], "below": cy[others] > b[r, 3]}
            for rel, sel in sides.items():
                if 0 < sel.sum() < len(others):
                    out.append(MaskGroupSample(image_id, "position", f"every {label} {rel} the referred {labels[r]}",
                                               regions, tuple(int(i) for i in others[sel]), reference=r))
    return out


def relationship_groups(regions: Regions, relationships: Sequence[tuple[int, str, int]], *, image_id=None,
                        min_size: int = 2) -> list[MaskGroupSample]:
    """``relationships``: ``(subject_index, predicate, object_index)`` triples (VG's scene graph)."""
    labels = _labels(regions)
    by_subject, by_object = defaultdict(set), defaultdict(set)
    for s, pred, o in relationships:
        if not (0 <= s < len(regions) and 0 <= o < len(regions)):
            raise RegionLibError(f"relationship {(s, pred, o)} indexes outside the {len(regions)} regions")
        by_subject[(s, pred)].add(o)
        by_object[(pred, o)].add(s)
    out = [MaskGroupSample(image_id, "relationship", f"everything the referred {labels[s]} is {pred}", regions,
                           tuple(sorted(objs)), reference=s)
           for (s, pred), objs in sorted(by_subject.items()) if len(objs) >= min_size]
    out += [MaskGroupSample(image_id, "relationship", f"every object that is {pred} the referred {labels[o]}", regions,
                            tuple(sorted(subs)), reference=o)
            for (pred, o), subs in sorted(by_object.items()) if len(subs) >= min_size]
    return out


def referring_groups(record) -> list[MaskGroupSample]:
    """One sample per sentence of a RefCOCO record (one target) or gRefCOCO record (0, 1 or many)."""
    out = []
    if "expressions" in record.extra:
        for e in record.extra["expressions"]:
            for sent in e["sentences"]:
                out.append(MaskGroupSample(record.image_id, "referring", sent, record.regions, tuple(sorted(e["target_indices"]))))
        return out
    if "sentences" not in record.regions.data:
        raise RegionLibError("referring_groups needs a RefCOCO or gRefCOCO record")
    for i, sents in enumerate(record.regions.data["sentences"]):
        for sent in sents:
            out.append(MaskGroupSample(record.image_id, "referring", sent, record.regions, (i,)))
    return out


def maskgroups_hq_groups(record) -> list[MaskGroupSample]:
    """The MaskGroups-HQ sample of a `readers.maskgroups_hq` record (candidates = the GT pool)."""
    return [MaskGroupSample(record.image_id, "referring", record.extra["query"], record.regions, tuple(sorted(g)))
            for g in record.extra["groups"]]


def regionworld_mask_groups(sample) -> list[MaskGroupSample]:
    """All group kinds for a `RegionWorldSample`: shapes (category), colour / pattern / size
    (attribute), halves and relative positions, and its neighbour relations (min size 1)."""
    r = sample.regions
    attrs = r.data["attributes"]
    words = [[a["color"], a["pattern"], a["size"]] for a in attrs]
    rels = [(k, a["relation"], a["relation_target_index"]) for k, a in enumerate(attrs) if a["relation"]]
    return (category_groups(r, image_id=sample.image_id) + attribute_groups(r, words, image_id=sample.image_id)
            + position_groups(r, image_id=sample.image_id)
            + relationship_groups(r, rels, image_id=sample.image_id, min_size=1))
