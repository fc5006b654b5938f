"""Self-label records: one JSON line per labeled region, written by the stages, read back for training.

A record (one line of a shard of a `regionlib.runtime.shards` output), keys in this order::

    {"id": region id, "image_id", "index": the region's index among the image's proposals,
     "class_name": str | null, "caption", "box_xyxy": [x0, y0, x1, y1], "mask": COCO RLE of the
     (H, W) mask, "image_size": [H, W], "scores": {confidence: float},
     "image": {"path": image file} | {"regionworld": [seed, split, index] (+ [image size] when not 256)},
     + the stage's own: "keyword" (keywords), "proposals", "conditioning" (describe), "source_caption" (phrases)}

`SelfLabelRecord` is one record (its `to_json` is that line, byte for byte); `write_records` /
`read_records` write a shard / read a whole output (each shard verified); `self_labeled_regions`
groups an output per image, with its pixels and decoded masks, for training.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataFormatError

__all__ = ["SelfLabelRecord", "regionworld_origin", "write_records", "read_records", "self_labeled_regions"]


def regionworld_origin(seed: int, split: str, index: int, image_size: int | None = None) -> dict:
    """The ``image`` of a record labeled on RegionWorld image ``index`` of ``split`` (how to regenerate it)."""
    return {"regionworld": [int(seed), split, int(index)] + ([int(image_size)] if image_size else [])}


@dataclass(frozen=True)
class SelfLabelRecord:
    """One self-labeled region (module docstring); the stage's own fields are None in other stages."""

    id: str
    image_id: str
    index: int
    class_name: str | None
    caption: str
    box_xyxy: tuple[float, float, float, float]
    mask: dict
    image_size: tuple[int, int]
    scores: dict
    image: dict
    keyword: str | None = None
    proposals: str | None = None
    conditioning: str | None = None
    source_caption: str | None = None

    @classmethod
    def of_region(cls, regions, k: int, *, region_id: str, image_id: str, index: int, caption: str,
                  class_name: str | None, scores: dict, image: dict, **stage) -> "SelfLabelRecord":
        """The record of region ``k`` of ``regions`` (its box, its mask as COCO RLE, the image size)."""
        from ..masks import encode_rle

        r = regions[k]
        return cls(id=region_id, image_id=image_id, index=index, class_name=class_name, caption=caption,
                   box_xyxy=tuple(float(v) for v in r.boxes_xyxy[0]), mask=encode_rle(r.masks)[0],
                   image_size=tuple(regions.image_size), scores=scores, image=image, **stage)

    @classmethod
    def from_json(cls, data: dict, where: str = "") -> "SelfLabelRecord":
        """The record of a decoded JSON line; a missing or unknown key is a `DataFormatError`."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in data]
        unknown = [k for k in data if k not in fields]
        problems = ([f"missing {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else [])
        if problems:
            raise DataFormatError(f"{where}: self-label record {data.get('id')!r}: {'; '.join(problems)}")
        return cls(**{**data, "box_xyxy": tuple(data["box_xyxy"]), "image_size": tuple(data["image_size"])})

    def to_json(self) -> str:
        """The record's JSON line (no newline): every field in order, the stage's own only when set."""
        return json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                           if f.default is dataclasses.MISSING or getattr(self, f.name) is not None})

    def regionworld_sample(self):
        """The `RegionWorldSample` a record of RegionWorld was labeled on (its image and ground truth)."""
        from ..data.regionworld import SPLITS, RegionWorldConfig, generate_sample

        if "regionworld" not in self.image:
            raise DataFormatError(f"record {self.id}: not labeled on RegionWorld (image {self.image})")
        seed, split, index, *size = self.image["regionworld"]
        world = RegionWorldConfig(image_size=int(size[0])) if size else None
        return generate_sample((seed, SPLITS[split], index), split=split, config=world)

    def load_image(self) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 image the region was labeled on: regenerated from its RegionWorld seeds
        or read from its file; an image of another size than ``image_size`` is a `DataFormatError`."""
        from ..images import load_image

        if "regionworld" in self.image:
            image = self.regionworld_sample().image
        elif "path" in self.image:
            image = load_image(self.image["path"])
        else:
            raise DataFormatError(f"record {self.id} says neither where its image is (image.path) nor how to "
                                  "regenerate it (image.regionworld)")
        if tuple(image.shape[:2]) != tuple(self.image_size):
            raise DataFormatError(f"record {self.id} was labeled on a {tuple(self.image_size)} image, its image "
                                  f"{self.image} is {tuple(image.shape[:2])}")
        return image


def write_records(path: str | Path, records: Iterable[SelfLabelRecord]) -> int:
    """Write ``records`` as one JSON-lines file, atomically (`atomic_write_bytes`); returns their number."""
    from ..runtime.shards import atomic_write_bytes

    lines = [r.to_json() + "\n" for r in records]
    atomic_write_bytes(path, "".join(lines).encode())
    return len(lines)


def read_records(directory: str | Path) -> list[SelfLabelRecord]:
    """Every record of a self-labeling output, in shard order (each shard verified as it is read)."""
    from ..runtime.shards import read_jsonl_shards

    return [SelfLabelRecord.from_json(r, where=str(directory)) for r in read_jsonl_shards(directory)]


def self_labeled_regions(directory: str | Path) -> list[tuple]:
    """A self-labeling output as ``[(image_id, image (H, W, 3) uint8, Regions), ...]``, one per labeled
    image in id order, its regions in ``index`` order: masks from the RLE, ``captions``, ``labels``
    (class names) and ``ids`` from the records."""
    from ..masks import decode_rle
    from ..regions import Regions

    by_image: dict[str, list[SelfLabelRecord]] = {}
    for rec in read_records(directory):
        by_image.setdefault(rec.image_id, []).append(rec)
    out = []
    for image_id in sorted(by_image):
        recs = sorted(by_image[image_id], key=lambda r: r.index)
        masks = decode_rle([r.mask for r in recs])
        out.append((image_id, recs[0].load_image(), Regions.from_masks(
            masks, captions=[r.caption for r in recs], labels=[r.class_name for r in recs], ids=[r.id for r in recs])))
    return out
