"""What every reader shares: `ImageRecord`, error policy with `ReadReport`, JSON helpers, checks.

Error handling: every reader takes ``on_error="raise" | "skip"`` and an optional `ReadReport`.
With ``"raise"`` the first bad record raises `DataFormatError` naming the file and the record;
with ``"skip"`` the bad record is left out and appended to the report (``report.skipped``),
never dropped silently. Problems with a whole file (missing, truncated JSON, wrong top-level
type) always raise: there is nothing left to read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ...errors import DataFormatError, RegionLibError
from ...regions import Regions

__all__ = ["ImageRecord", "SkippedRecord", "ReadReport", "ErrorPolicy", "read_json", "iter_json_array",
           "iter_json_lines", "check_box_xywh", "check_unique", "require_file"]


@dataclass
class ImageRecord:
    """One image of a dataset and its regions.

    Attributes:
        image_id: the dataset's image id. image_path: where the image file is (None if in memory).
        image_size: ``(H, W)``. regions: `Regions` (masks stay RLE until ``.masks`` is read).
        extra: per-image extras of the format (expressions, groups, grounded captions, ...).
        image: the decoded image when it is held in memory (HF rows with embedded images).
    """

    image_id: Any
    image_path: Path | None
    image_size: tuple[int, int]
    regions: Regions
    extra: dict = field(default_factory=dict)
    image: np.ndarray | None = None

    def load_image(self, *, max_pixels: int | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8 (checked against ``image_size``)."""
        from ...images import DEFAULT_MAX_PIXELS, load_image

        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise DataFormatError(f"image {self.image_id!r} has neither a path nor pixels")
        if not Path(self.image_path).is_file():
            raise DataFormatError(f"image {self.image_id!r}: file {self.image_path} does not exist")
        img = load_image(self.image_path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        if img.shape[:2] != tuple(self.image_size):
            raise DataFormatError(f"{self.image_path}: image is {img.shape[:2]}, annotations say {tuple(self.image_size)}")
        return img


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out in skip mode: the file, the record (id or index) and why."""

    file: str
    record: str
    reason: str


@dataclass
class ReadReport:
    """Collects what a reader skipped (``on_error="skip"``) and what it read."""

    skipped: list[SkippedRecord] = field(default_factory=list)
    n_images: int = 0
    n_regions: int = 0

    def __len__(self) -> int:
        return len(self.skipped)

    def reasons(self) -> list[str]:
        return [s.reason for s in self.skipped]

    def summary(self) -> str:
        lines = [f"read {self.n_images} images, {self.n_regions} regions; skipped {len(self.skipped)} records"]
        lines += [f"  {s.file} [{s.record}]: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


class ErrorPolicy:
    """Raise or record a bad record (see the module docstring)."""

    def __init__(self, on_error: str = "raise", report: ReadReport | None = None):
        if on_error not in ("raise", "skip"):
            raise RegionLibError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.report = report if report is not None else ReadReport()

    def fail(self, file, record, reason: str) -> None:
        """Raise `DataFormatError` (raise mode) or append to the report (skip mode)."""
        if self.on_error == "raise":
            raise DataFormatError(f"{file}: record {record}: {reason}")
        self.report.skipped.append(SkippedRecord(str(file), str(record), reason))

    def error(self, exc: DataFormatError, file, record) -> None:
        """Route an error raised by a helper (e.g. `Regions.from_coco`)."""
        if self.on_error == "raise":
            raise exc
        self.report.skipped.append(SkippedRecord(str(file), str(record), str(exc)))

    def count(self, record: ImageRecord) -> ImageRecord:
        self.report.n_images += 1
        self.report.n_regions += len(record.regions)
        return record


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{what} {path} does not exist")
    return path


def read_json(path: str | Path, what: str = "annotation file", *, expect: type | tuple = (dict, list)):
    """Load a whole JSON file; missing / truncated / wrongly typed files raise `DataFormatError`."""
    path = require_file(path, what)
    try:
        with open(path, "rb") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not valid JSON (truncated or corrupt): {exc}") from exc
    if not isinstance(obj, expect):
        names = expect.__name__ if isinstance(expect, type) else " or ".join(t.__name__ for t in expect)
        raise DataFormatError(f"{path}: top level must be a JSON {names}, got {type(obj).__name__}")
    return obj


def iter_json_array(path: str | Path, what: str = "annotation file", *, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Stream the elements of a top-level JSON array without loading the file (constant memory
    per element). A truncated file raises `DataFormatError` naming the element index."""
    path = require_file(path, what)
    decoder = json.JSONDecoder()
    with open(path, "r", encoding="utf-8") as f:
        buf, pos, index, started = "", 0, 0, False

        def fill() -> bool:  # drop what was consumed, append the next chunk; False at the end of the file
            nonlocal buf, pos
            chunk = f.read(chunk_size)
            buf = buf[pos:] + chunk
            pos = 0
            return bool(chunk)

        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                if buf[pos] == "," and not started:
                    raise DataFormatError(f"{path}: expected '[' at the start of a JSON array")
                pos += 1
            if pos >= len(buf):
                if not fill():
                    raise DataFormatError(f"{path}: truncated JSON array after element {index}")
                continue
            if not started:
                if buf[pos] != "[":
                    raise DataFormatError(f"{path}: top level must be a JSON array")
                started, pos = True, pos + 1
                continue
            if buf[pos] == "]":
                if (buf[pos + 1 :] + f.read()).strip():
                    raise DataFormatError(f"{path}: trailing data after the JSON array")
                return
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if fill():
                    continue
                raise DataFormatError(f"{path}: element {index} is truncated or not valid JSON: {exc.msg}") from exc
            if end == len(buf) and isinstance(value, (int, float)) and fill():
                continue  # a number may continue in the next chunk
            yield value
            index += 1
            pos = end


def iter_json_lines(path: str | Path, what: str = "annotation file") -> Iterator[tuple[int, Any]]:
    """``(line_number, value)`` for each non-empty line of a JSON-lines file."""
    path = require_file(path, what)
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(f"{path}: line {n} is not valid JSON (truncated?): {exc.msg}") from exc


def check_box_xywh(box, image_size: tuple[int, int], *, tolerance: float = 1.0) -> str | None:
    """Why an XYWH box is bad for an image of ``(H, W)`` (None if it is fine)."""
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return f"box {box!r} is not 4 numbers"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"box {box!r} is not finite"
    if w < 0 or h < 0:
        return f"box {box!r} has a negative width or height"
    H, W = image_size
    if x < -tolerance or y < -tolerance or x + w > W + tolerance or y + h > H + tolerance:
        return f"box {[x, y, w, h]} (XYWH) lies outside the image of size (H, W) = ({H}, {W})"
    return None


def check_unique(ids, file, what: str, policy: ErrorPolicy) -> set:
    """The set of duplicated ids (each reported once through ``policy``)."""
    seen, dups = set(), set()
    for i in ids:
        if i in seen and i not in dups:
            dups.add(i)
            policy.fail(file, f"{what}={i!r}", f"duplicate {what} {i!r}")
        seen.add(i)
    return dups


def as_mapping(obj, path, record, policy: ErrorPolicy) -> Mapping | None:
    if isinstance(obj, Mapping):
        return obj
    policy.fail(path, record, f"expected a JSON object, got {type(obj).__name__}")
    return None
