"""`Regions`: N regions of one image as validated parallel fields (DESIGN.md "The core type").

Fields (all optional except ``image_size`` and one of boxes / masks):

* ``boxes_xyxy`` — ``(N, 4)`` float64 XYXY absolute pixels (derived from the masks when
  only masks are given: the tight half-open box);
* ``masks_rle`` — list of N COCO RLE dicts ``{"size": [H, W], "counts": str}``, decoded to
  ``(N, H, W)`` bool on demand by `Regions.masks` (decoded once, then cached); construction checks
  each dict and its size, decoding checks the runs (`regionlib.masks.check_rle`);
* ``scores`` ``(N,)`` float, ``captions`` / ``labels`` lists of N str, ``ids`` list of N
  hashable ids, ``data`` dict of per-region extras (each a length-N list or array, e.g.
  SAM's ``predicted_iou`` and ``stability_score``).

Indexing with an int, slice, bool mask or int array returns a new `Regions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .boxes import validate_boxes
from .errors import DataFormatError, InvalidMaskError, RegionIndexError, RegionLibError
from .masks import (as_mask_batch, check_rle, check_rle_header, decode_rle, encode_rle, masks_to_boxes,
                    polygons_to_rle)

__all__ = ["Regions"]

_ROW_KEYS = ("id", "box_xyxy", "mask_rle", "score", "caption", "label", "image_height", "image_width")


def _check_len(values, n: int, name: str):
    if values is None:
        return
    try:
        length = len(values)
    except TypeError as exc:
        raise RegionLibError(f"{name} must be a sequence with one entry per region (N = {n}), "
                             f"got {type(values).__name__}") from exc
    if length != n:
        raise RegionLibError(f"{name} must have one entry per region (N = {n}), got {length}")


def _as_list(values, n: int, name: str) -> list:
    """A per-region list field: a list, tuple or 1-d array of N entries (a str is refused, not split)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise RegionLibError(f"{name} must be a list of N = {n} entries, got {type(values).__name__}")
    _check_len(values, n, name)
    return list(values)


@dataclass(frozen=True, eq=False)
class Regions:
    """N regions of one image of size ``image_size = (H, W)``; see the module docstring."""

    image_size: tuple[int, int]
    boxes_xyxy: np.ndarray
    masks_rle: list[dict] | None = None
    scores: np.ndarray | None = None
    captions: list[str] | None = None
    labels: list[str] | None = None
    ids: list | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        try:
            h, w = (int(v) for v in self.image_size)
        except (TypeError, ValueError) as exc:
            raise RegionLibError(f"image_size must be (H, W), got {self.image_size!r}") from exc
        if h <= 0 or w <= 0:
            raise RegionLibError(f"image_size must be positive (H, W), got {self.image_size!r}")
        set_ = object.__setattr__
        set_(self, "image_size", (h, w))
        boxes = self.boxes_xyxy
        if isinstance(boxes, (list, tuple, np.ndarray)) and len(boxes) == 0:
            boxes = np.zeros((0, 4))
        set_(self, "boxes_xyxy", validate_boxes(boxes, "boxes_xyxy", image_size=(h, w)).reshape(-1, 4))
        n = len(self.boxes_xyxy)
        if self.masks_rle is not None:
            rles = _as_list(self.masks_rle, n, "masks_rle")
            for i, r in enumerate(rles):  # the runs are checked where they are decoded (`decode_rle`)
                check_rle_header(r, f"masks_rle[{i}]", image_size=(h, w))
            set_(self, "masks_rle", rles)
        if self.scores is not None:
            try:
                scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise RegionLibError(f"scores must be N = {n} numbers: {exc}") from exc
            _check_len(scores, n, "scores")
            set_(self, "scores", scores)
        for name in ("captions", "labels"):
            values = getattr(self, name)
            if values is not None:
                values = _as_list(values, n, name)
                for i, v in enumerate(values):
                    if not isinstance(v, str):
                        raise RegionLibError(f"{name}[{i}] must be str, got {type(v).__name__}")
                set_(self, name, values)
        if self.ids is not None:
            ids = _as_list(self.ids, n, "ids")
            for i, v in enumerate(ids):
                try:
                    hash(v)
                except TypeError as exc:
                    raise RegionLibError(f"ids[{i}] must be hashable (an int or str id), "
                                         f"got {type(v).__name__}") from exc
            set_(self, "ids", ids)
        if not isinstance(self.data, Mapping):
            raise RegionLibError(f"data must be a dict of per-region extras, got {type(self.data).__name__}")
        data = dict(self.data)
        for key, values in data.items():
            if isinstance(values, (str, bytes)):
                raise RegionLibError(f"data[{key!r}] must be a list or array of N = {n} entries, got str")
            _check_len(values, n, f"data[{key!r}]")
        set_(self, "data", data)
        set_(self, "_masks_cache", None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_masks(cls, masks, *, image_size: tuple[int, int] | None = None, **fields) -> "Regions":
        """Build from ``(N, H, W)`` binary masks (non-empty); boxes are the tight boxes."""
        batch = as_mask_batch(masks, "masks", image_size=image_size)
        regions = cls(
            image_size=batch.shape[1:],
            boxes_xyxy=masks_to_boxes(batch) if len(batch) else np.zeros((0, 4)),
            masks_rle=encode_rle(batch),
            **fields,
        )
        object.__setattr__(regions, "_masks_cache", batch)
        return regions

    @classmethod
    def from_boxes(cls, boxes_xyxy, *, image_size: tuple[int, int], **fields) -> "Regions":
        """Build from ``(N, 4)`` XYXY boxes without masks."""
        return cls(image_size=image_size, boxes_xyxy=boxes_xyxy, **fields)

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> "Regions":
        return cls(image_size=image_size, boxes_xyxy=np.zeros((0, 4)))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.boxes_xyxy)

    @property
    def has_masks(self) -> bool:
        return self.masks_rle is not None

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool masks, decoded from RLE on first access."""
        if self.masks_rle is None:
            raise InvalidMaskError("these Regions have no masks (built from boxes only)")
        if self._masks_cache is None:
            object.__setattr__(self, "_masks_cache", decode_rle(self.masks_rle, "masks_rle", image_size=self.image_size))
        return self._masks_cache

    def __getitem__(self, index) -> "Regions":
        n = len(self)
        if isinstance(index, (int, np.integer)):
            if not -n <= index < n:
                raise RegionIndexError(f"region index {index} out of range for {n} regions")
            idx = np.array([index % n])
        elif isinstance(index, slice):
            idx = np.arange(n)[index]
        else:
            arr = np.asarray(index)
            if arr.dtype == bool:
                if arr.shape != (n,):
                    raise RegionLibError(f"boolean index must have shape ({n},), got {arr.shape}")
                idx = np.flatnonzero(arr)
            elif arr.dtype.kind in "iu" and arr.ndim == 1:
                if arr.size and (arr.max() >= n or arr.min() < -n):
                    raise RegionIndexError(f"region index out of range for {n} regions")
                idx = arr % n if n else arr
            else:
                raise RegionLibError(f"index must be int, slice, bool array or int array, got {type(index).__name__}")
        take = lambda v: None if v is None else [v[i] for i in idx]  # noqa: E731
        out = Regions(
            image_size=self.image_size,
            boxes_xyxy=self.boxes_xyxy[idx],
            masks_rle=take(self.masks_rle),
            scores=None if self.scores is None else self.scores[idx],
            captions=take(self.captions),
            labels=take(self.labels),
            ids=take(self.ids),
            data={k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]) for k, v in self.data.items()},
        )
        if self._masks_cache is not None:
            object.__setattr__(out, "_masks_cache", self._masks_cache[idx])
        return out

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        parts = [f"n={len(self)}", f"image_size={self.image_size}"]
        for name in ("masks_rle", "scores", "captions", "labels", "ids"):
            if getattr(self, name) is not None:
                parts.append(name)
        if self.data:
            parts.append(f"data={sorted(self.data)}")
        return f"Regions({', '.join(parts)})"

    def with_fields(self, **changes) -> "Regions":
        """A copy with some fields replaced (``data`` entries are merged)."""
        data = {**self.data, **changes.pop("data", {})}
        kwargs = dict(
            image_size=self.image_size, boxes_xyxy=self.boxes_xyxy, masks_rle=self.masks_rle, scores=self.scores,
            captions=self.captions, labels=self.labels, ids=self.ids, data=data,
        )
        kwargs.update(changes)
        out = Regions(**kwargs)
        if "masks_rle" not in changes and self._masks_cache is not None:
            object.__setattr__(out, "_masks_cache", self._masks_cache)
        return out

    # ------------------------------------------------------------------ concatenation
    @staticmethod
    def concat(parts: Sequence["Regions"]) -> "Regions":
        """Concatenate Regions of one image; optional fields must be present in all or none."""
        parts = list(parts)
        if not parts:
            raise RegionLibError("concat needs at least one Regions")
        sizes = {p.image_size for p in parts}
        if len(sizes) != 1:
            raise RegionLibError(f"concat needs Regions of one image size, got {sorted(sizes)}")

        def joined(name):
            values = [getattr(p, name) for p in parts]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise RegionLibError(f"concat: field {name!r} is set in some parts and missing in others")
            return [x for v in values for x in v]

        keys = set(parts[0].data)
        for p in parts[1:]:
            if set(p.data) != keys:
                raise RegionLibError(f"concat: data keys differ ({sorted(keys)} vs {sorted(p.data)})")
        scores = joined("scores")
        return Regions(
            image_size=parts[0].image_size,
            boxes_xyxy=np.concatenate([p.boxes_xyxy for p in parts]) if parts else np.zeros((0, 4)),
            masks_rle=joined("masks_rle"),
            scores=None if scores is None else np.asarray(scores),
            captions=joined("captions"),
            labels=joined("labels"),
            ids=joined("ids"),
            data={k: [x for p in parts for x in p.data[k]] for k in keys},
        )

    # ------------------------------------------------------------------ adapters
    @classmethod
    def from_sam(cls, records: Sequence[Mapping], *, image_size: tuple[int, int] | None = None) -> "Regions":
        """From `SamAutomaticMaskGenerator.generate` output (``binary_mask`` or ``coco_rle`` mode).

        Keeps ``predicted_iou`` (also as ``scores``), ``stability_score``, ``point_coords``
        and ``crop_box`` (XYWH, as SAM gives it) in ``data``. Boxes are recomputed from the
        masks (half-open), not taken from SAM's XYWH ``bbox``.
        """
        rles, masks = [], []
        records = list(records)
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise DataFormatError(f"records[{i}] must be a dict (a SAM mask record), got {type(r).__name__}")
            seg = r.get("segmentation")
            if isinstance(seg, dict):
                rles.append(seg)
            elif seg is not None:
                masks.append(as_mask_batch(seg, f"records[{i}]['segmentation']")[0])
            else:
                raise DataFormatError(f"records[{i}] has no 'segmentation'")
        if rles and masks:
            raise DataFormatError("records mix RLE and binary segmentations")
        if masks:
            batch = np.stack(masks)
        elif rles:
            batch = decode_rle(rles, "segmentation", image_size=image_size)
        else:
            if image_size is None:
                raise RegionLibError("image_size is required when records is empty")
            return cls.empty(image_size)
        data = {
            "predicted_iou": _floats(records, "predicted_iou", "records"),
            "stability_score": _floats(records, "stability_score", "records"),
            "point_coords": [r.get("point_coords") for r in records],
            "crop_box": [r.get("crop_box") for r in records],
        }
        return cls.from_masks(batch, image_size=image_size, scores=data["predicted_iou"], data=data)

    @classmethod
    def from_coco(
        cls,
        annotations: Sequence[Mapping],
        *,
        image_size: tuple[int, int],
        categories: Mapping[int, str] | None = None,
        source: str = "annotations",
    ) -> "Regions":
        """From COCO-style annotations of one image (polygons, uncompressed or compressed RLE).

        ``categories`` maps category id -> name (becomes ``labels``); ``iscrowd`` and
        ``category_id`` go to ``data``. Masks are encoded to RLE straight from the
        polygons (never rasterised to dense arrays here). Boxes are the masks' tight boxes.
        Malformed records raise `DataFormatError` naming ``source`` and the annotation id.
        """
        from pycocotools import mask as coco_mask

        from .images import DEFAULT_MAX_PIXELS

        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError) as exc:
            raise DataFormatError(f"{source}: image_size must be (H, W), got {image_size!r}") from exc
        if h <= 0 or w <= 0 or h * w > DEFAULT_MAX_PIXELS:
            raise DataFormatError(f"{source}: image size ({h}, {w}) must be positive with H*W <= "
                                  f"max_pixels={DEFAULT_MAX_PIXELS}")
        rles, ids, cats, crowd = [], [], [], []
        for k, ann in enumerate(annotations):
            if not isinstance(ann, Mapping):
                raise DataFormatError(f"{source}: annotation {k} must be a JSON object, got {type(ann).__name__}")
            ref = f"{source}: annotation id={ann.get('id', k)!r}"
            seg = ann.get("segmentation")
            try:
                if isinstance(seg, list):
                    rle = polygons_to_rle(seg, (h, w), "segmentation")
                elif isinstance(seg, dict):
                    rle = check_rle(seg, "segmentation", image_size=(h, w))
                else:
                    raise DataFormatError(f"{ref}: field 'segmentation' must be polygons or RLE, "
                                          f"got {type(seg).__name__}")
            except InvalidMaskError as exc:
                raise DataFormatError(f"{ref}: {exc}") from exc
            if int(coco_mask.area(rle)) == 0:
                raise DataFormatError(f"{ref}: the mask is empty")
            iscrowd = ann.get("iscrowd", 0)
            if iscrowd not in (0, 1):
                raise DataFormatError(f"{ref}: field 'iscrowd' must be 0 or 1, got {iscrowd!r}")
            counts = rle["counts"]
            rles.append({"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts})
            ids.append(ann.get("id", k))
            cats.append(ann.get("category_id"))
            crowd.append(int(iscrowd))
        labels = None
        if categories is not None:
            labels = []
            for ann_id, c in zip(ids, cats):
                if not isinstance(c, (int, str)) or c not in categories:
                    raise DataFormatError(f"{source}: annotation id={ann_id} has unknown category_id {c!r}")
                labels.append(categories[c])
        if not rles:
            return cls.empty((h, w))
        try:
            return cls(image_size=(h, w), boxes_xyxy=_rle_boxes(rles), masks_rle=rles, labels=labels, ids=ids,
                       data={"category_id": cats, "iscrowd": np.array(crowd)})
        except DataFormatError:
            raise
        except RegionLibError as exc:
            raise DataFormatError(f"{source}: {exc}") from exc

    def to_rows(self) -> list[dict]:
        """One plain dict per region (JSON / Arrow friendly) for Ray Data and HF datasets.

        Keys: ``id, box_xyxy, mask_rle, score, caption, label, image_height, image_width``
        (``None`` where absent) plus ``data.<key>`` for each extra.
        """
        rows = []
        for i in range(len(self)):
            row = {
                "id": None if self.ids is None else self.ids[i],
                "box_xyxy": [float(v) for v in self.boxes_xyxy[i]],
                "mask_rle": None if self.masks_rle is None else dict(self.masks_rle[i]),
                "score": None if self.scores is None else float(self.scores[i]),
                "caption": None if self.captions is None else self.captions[i],
                "label": None if self.labels is None else self.labels[i],
                "image_height": self.image_size[0],
                "image_width": self.image_size[1],
            }
            for key, values in self.data.items():
                v = values[i]
                row[f"data.{key}"] = v.item() if isinstance(v, np.generic) else v
            rows.append(row)
        return rows

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], *, image_size: tuple[int, int] | None = None) -> "Regions":
        """Inverse of `to_rows` (rows of one image; accepts Ray Data / HF dataset rows)."""
        rows = list(rows)
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise DataFormatError(f"rows[{i}] must be a dict (a row of Regions.to_rows), got {type(r).__name__}")
        rows = [dict(r) for r in rows]
        if not rows:
            if image_size is None:
                raise RegionLibError("image_size is required when rows is empty")
            return cls.empty(image_size)
        for i, r in enumerate(rows):
            missing = [k for k in _ROW_KEYS if k not in r]
            if missing:
                raise DataFormatError(f"rows[{i}] lacks keys {missing}")
        try:
            sizes = {(int(r["image_height"]), int(r["image_width"])) for r in rows}
        except (TypeError, ValueError) as exc:
            raise DataFormatError(f"rows: image_height and image_width must be integers ({exc})") from exc
        if len(sizes) != 1:
            raise DataFormatError(f"rows come from several image sizes {sorted(sizes)}; group them per image")

        def column(key):
            values = [r.get(key) for r in rows]
            return None if all(v is None for v in values) else values

        scores = column("score")
        data_keys = [k for k in rows[0] if k.startswith("data.")]
        return cls(
            image_size=sizes.pop(),
            boxes_xyxy=validate_boxes([r["box_xyxy"] for r in rows], "rows[*]['box_xyxy']"),
            masks_rle=column("mask_rle"),
            scores=scores,
            captions=column("caption"),
            labels=column("label"),
            ids=column("id"),
            data={k[5:]: [r[k] for r in rows] for k in data_keys},
        )


def _floats(records, key: str, name: str) -> np.ndarray:
    """``records[i][key]`` as float64 (NaN where absent); a non-number raises `DataFormatError`."""
    try:
        return np.array([float(r.get(key, np.nan)) for r in records], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{name}[*][{key!r}] must be numbers ({exc})") from exc


def _rle_boxes(rles: list[dict]) -> np.ndarray:
    """Tight half-open XYXY boxes of non-empty RLEs, without decoding (pycocotools toBbox)."""
    from pycocotools import mask as coco_mask

    objs = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    xywh = coco_mask.toBbox(objs).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
