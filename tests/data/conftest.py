"""Fixture files in each reader's exact on-disk format, written by the tests themselves."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask


def write_image(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return img


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB but whose pixel data is a few bytes: opening it
    reads the size; decoding it would allocate the full image (then fail as truncated)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def rle_of(mask: np.ndarray) -> dict:
    r = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def rect_mask(h, w, x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


class CocoFixture:
    """Two images (40x60 and 30x50) with a polygon, a compressed RLE and a crowd (uncompressed) RLE.

    COCO: ``<root>/images/<file_name>``. LVIS v1 (its documented layout): no ``file_name``, the image
    comes from ``coco_url`` and lives under the COCO root in its split folder: image 1 in
    ``train2017/``, image 7 in ``val2017/`` (LVIS val draws on both COCO splits)."""

    def __init__(self, root: Path, *, lvis: bool = False):
        self.root = root
        self.image_root = root / "images"
        self.lvis = lvis
        self.masks = {2: rect_mask(40, 60, 10, 5, 30, 25), 3: rect_mask(30, 50, 0, 0, 8, 6)}
        crowd = rect_mask(30, 50, 20, 10, 45, 28)
        self.masks[4] = crowd
        crowd_counts = coco_mask.frPyObjects(  # uncompressed counts, as COCO's crowd annotations
            {"size": [30, 50], "counts": self._uncompressed(crowd)}, 30, 50)
        assert coco_mask.decode(crowd_counts).astype(bool).tolist() == crowd.tolist()
        images = [{"id": 1, "height": 40, "width": 60}, {"id": 7, "height": 30, "width": 50}]
        for img, split in zip(images, ("train2017", "val2017")):
            name = f"{img['id']:012d}.jpg"
            if lvis:
                img["coco_url"] = f"http://images.cocodataset.org/{split}/{name}"
                img["neg_category_ids"] = [3]
                img["not_exhaustive_category_ids"] = []
                name = f"{split}/{name}"
            else:
                img["file_name"] = name
            write_image(self.image_root / name, img["height"], img["width"], seed=img["id"])
        self.data = {
            "images": images,
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [5, 5, 10, 10], "area": 50.0,
                 "segmentation": [[5, 5, 15, 5, 5, 15]]},
                {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [10, 5, 20, 20], "area": 400.0,
                 "segmentation": rle_of(self.masks[2])},
                {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 8, 6], "area": 48.0,
                 "segmentation": rle_of(self.masks[3])},
                {"id": 4, "image_id": 7, "category_id": 2, "iscrowd": 1, "bbox": [20, 10, 25, 18], "area": 450.0,
                 "segmentation": {"size": [30, 50], "counts": self._uncompressed(crowd)}},
            ],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}],
        }
        self.path = root / "instances.json"
        self.write()

    @staticmethod
    def _uncompressed(mask: np.ndarray) -> list[int]:
        flat = mask.T.reshape(-1).astype(np.uint8)  # column-major, as COCO
        counts, current, run = [], 0, 0
        for v in flat:
            if v != current:
                counts.append(run)
                current, run = v, 0
            run += 1
        counts.append(run)
        return counts

    def write(self):
        self.path.write_text(json.dumps(self.data))
        return self.path


@pytest.fixture
def coco(tmp_path) -> CocoFixture:
    return CocoFixture(tmp_path)


@pytest.fixture
def lvis(tmp_path) -> CocoFixture:
    return CocoFixture(tmp_path, lvis=True)
