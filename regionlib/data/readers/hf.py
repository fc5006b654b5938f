"""HF `datasets` storage of `Regions`: one row per image, regions as a list of structs.

Region struct (``REGION_FEATURES``): ``id`` (JSON text, so int and str ids round-trip),
``box_xyxy`` (4 float64), ``mask_rle`` (``{"size": [H, W], "counts": str}`` or null), ``score``,
``caption``, ``label`` (null where absent) and ``data`` (JSON text of the region's extras).
Image rows (`to_hf_dataset`): ``image_id``, ``image_path`` (or an embedded ``image``),
``image_height``, ``image_width``, ``regions``, ``extra`` (JSON text).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ...errors import DataFormatError
from ...regions import Regions
from .base import ImageRecord

__all__ = ["REGION_FEATURES", "regions_to_struct", "regions_from_struct", "to_hf_dataset", "from_hf_row", "json_default"]


def _region_features():
    import datasets

    return datasets.List({
        "id": datasets.Value("string"), "box_xyxy": datasets.List(datasets.Value("float64"), length=4),
        "mask_rle": {"size": datasets.List(datasets.Value("int64"), length=2), "counts": datasets.Value("string")},
        "score": datasets.Value("float64"), "caption": datasets.Value("string"), "label": datasets.Value("string"),
        "data": datasets.Value("string"),
    })


def __getattr__(name):  # REGION_FEATURES is built lazily so importing this module does not import datasets
    if name == "REGION_FEATURES":
        return _region_features()
    raise AttributeError(name)


def json_default(value):
    """`json.dumps` fallback for numpy scalars / arrays, paths and nested `Regions`
    (``{"__regions__": structs, "image_size": [H, W]}``, restored by `from_hf_row`)."""
    if isinstance(value, Regions):
        return {"__regions__": regions_to_struct(value), "image_size": list(value.image_size)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def regions_to_struct(regions: Regions) -> list[dict]:
    """`Regions.to_rows` reshaped into ``REGION_FEATURES`` structs."""
    out = []
    for row in regions.to_rows():
        extras = {k[5:]: v for k, v in row.items() if k.startswith("data.")}
        out.append({"id": json.dumps(row["id"], default=json_default), "box_xyxy": row["box_xyxy"],
                    "mask_rle": row["mask_rle"], "score": row["score"], "caption": row["caption"],
                    "label": row["label"], "data": json.dumps(extras, default=json_default)})
    return out


def regions_from_struct(structs: Sequence[Mapping], *, image_size: tuple[int, int]) -> Regions:
    """Inverse of `regions_to_struct` (via `Regions.from_rows`); a malformed struct raises
    `DataFormatError` naming the region and the field."""
    rows = []
    for i, s in enumerate(structs):
        try:
            row = {"id": json.loads(s["id"]), "box_xyxy": list(s["box_xyxy"]),
                   "mask_rle": None if s["mask_rle"] is None else {"size": list(s["mask_rle"]["size"]),
                                                                   "counts": s["mask_rle"]["counts"]},
                   "score": s["score"], "caption": s["caption"], "label": s["label"],
                   "image_height": image_size[0], "image_width": image_size[1]}
            row.update({f"data.{k}": v for k, v in json.loads(s["data"]).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            raise DataFormatError(f"regions[{i}]: not a region struct of REGION_FEATURES "
                                  f"({type(exc).__name__}: {exc})") from exc
        rows.append(row)
    return Regions.from_rows(rows, image_size=image_size)


def _record_row(rec: ImageRecord, embed_images: bool) -> dict:
    row = {"image_id": str(rec.image_id), "image_height": rec.image_size[0], "image_width": rec.image_size[1],
           "regions": regions_to_struct(rec.regions), "extra": json.dumps(rec.extra, default=json_default)}
    if embed_images:
        row["image"] = str(rec.image_path)
    else:
        row["image_path"] = None if rec.image_path is None else str(rec.image_path)
    return row


def to_hf_dataset(records: Iterable[ImageRecord], *, embed_images: bool = False, cache_dir: str | None = None):
    """Build an HF dataset from a reader's records, streamed through `Dataset.from_generator`.

    ``embed_images`` stores the image files (an ``Image`` column) instead of their paths.
    """
    import datasets

    features = {"image_id": datasets.Value("string"), "image_height": datasets.Value("int64"),
                "image_width": datasets.Value("int64"), "regions": _region_features(), "extra": datasets.Value("string")}
    features["image" if embed_images else "image_path"] = datasets.Image() if embed_images else datasets.Value("string")
    records = iter(records)

    def gen():
        for rec in records:
            yield _record_row(rec, embed_images)

    # a fresh fingerprint: the records are an iterator (not hashable) and must never hit a stale cache
    return datasets.Dataset.from_generator(gen, features=datasets.Features(features), cache_dir=cache_dir,
                                           fingerprint=uuid.uuid4().hex)


def _restore_regions(obj: dict):
    if "__regions__" in obj:
        return regions_from_struct(obj["__regions__"], image_size=tuple(obj["image_size"]))
    return obj


def from_hf_row(row: Mapping) -> ImageRecord:
    """An `ImageRecord` back from a row of `to_hf_dataset` (its path, or the embedded pixels in ``.image``);
    a malformed row raises `DataFormatError` naming the field."""
    try:
        size = (int(row["image_height"]), int(row["image_width"]))
        extra = json.loads(row["extra"], object_hook=_restore_regions)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"row image_id={row.get('image_id')!r}: needs integer image_height, image_width and "
                              f"JSON text 'extra' ({type(exc).__name__}: {exc})") from exc
    path = row.get("image_path")
    pixels = np.asarray(row["image"].convert("RGB")) if row.get("image") is not None else None
    return ImageRecord(image_id=row["image_id"], image_path=None if path is None else Path(path), image_size=size,
                       regions=regions_from_struct(row["regions"], image_size=size), extra=extra, image=pixels)
