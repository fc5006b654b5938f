"""What every reader shares: `ImageRecord`, error policy with `ReadReport`, JSON helpers, checks.

Error handling: every reader takes ``on_error="raise" | "skip"`` and an optional `ReadReport`.
With ``"raise"`` the first bad record raises `DataFormatError` naming the file and the record;
with ``"skip"`` the bad record is left out and appended to the report (``report.skipped``),
never dropped silently. Problems with a whole file (missing, truncated JSON, wrong top-level
type) always raise: there is nothing left to read; so does a root folder that holds nothing
readable (never 0 records silently). Repairs that keep a record (e.g. Visual Genome boxes clamped
to the image, densecap's convention) are counted in ``report.stats``.

Hostile values are refused before any C extension sees them: ids must be ints or strings (so
they can be dict keys), image sizes obey the same ``max_pixels`` bound as `regionlib.images`, RLEs
and polygons are checked by `regionlib.masks.check_rle` / `polygons_to_rle`, and file names from
the data must stay inside their root folder (`path_inside`). Writers name files through
`safe_file_name`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ...errors import DataFormatError, RegionLibError
from ...regions import Regions

__all__ = ["ImageRecord", "SkippedRecord", "ReadReport", "ErrorPolicy", "read_json", "iter_json_array",
           "iter_json_lines", "check_box_xywh", "check_unique", "require_file", "id_problem", "checked_size",
           "path_inside", "safe_file_name"]


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
    #: counts of repairs that kept the record, e.g. ``{"clamped_boxes": 3}`` (Visual Genome)
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.skipped)

    def reasons(self) -> list[str]:
        return [s.reason for s in self.skipped]

    def note(self, key: str, n: int = 1) -> None:
        """Count ``n`` repairs of kind ``key`` in ``stats``."""
        self.stats[key] = self.stats.get(key, 0) + n

    def summary(self) -> str:
        lines = [f"read {self.n_images} images, {self.n_regions} regions; skipped {len(self.skipped)} records"]
        lines += [f"  {key}: {n}" for key, n in sorted(self.stats.items())]
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

    def error(self, exc: RegionLibError, file, record) -> None:
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
    except RecursionError as exc:
        raise DataFormatError(f"{path}: JSON nested too deeply to read") from exc
    if not isinstance(obj, expect):
        names = expect.__name__ if isinstance(expect, type) else " or ".join(t.__name__ for t in expect)
        raise DataFormatError(f"{path}: top level must be a JSON {names}, got {type(obj).__name__}")
    return obj


def iter_json_array(path: str | Path, what: str = "annotation file", *, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Stream the elements of a top-level JSON array without loading the file (constant memory
    per element). A truncated file raises `DataFormatError` naming the element index."""
    path = require_file(path, what)
    try:
        yield from _json_array(path, chunk_size)
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text (corrupt JSON): {exc}") from exc
    except RecursionError as exc:
        raise DataFormatError(f"{path}: JSON nested too deeply to read") from exc


def _json_array(path: Path, chunk_size: int) -> Iterator[Any]:
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
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise DataFormatError(f"{path}: line {n} is not valid JSON (truncated?): {exc}") from exc
                except RecursionError as exc:
                    raise DataFormatError(f"{path}: line {n}: JSON nested too deeply to read") from exc


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


def id_problem(value, field_name: str) -> str | None:
    """Why ``value`` cannot be an id (None if it can): ids are ints or strings (JSON numbers / text),
    so they can be dict keys; lists, objects, floats, bools and null are refused."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return None
    return f"field {field_name!r} must be an integer or a string id, got {type(value).__name__} {value!r:.60}"


def checked_size(height, width, max_pixels: int | None = None) -> tuple[tuple[int, int] | None, str | None]:
    """``((H, W), None)`` for a usable image entry size, else ``(None, reason)``: two positive
    integers (integral JSON floats such as ``480.0`` pass) with ``H * W <= max_pixels`` (default
    `regionlib.images.DEFAULT_MAX_PIXELS`, the limit `regionlib.images.load_image` applies)."""
    from ...images import DEFAULT_MAX_PIXELS

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    size = []
    for v, key in ((height, "height"), (width, "width")):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            return None, f"field {key!r} must be an integer, got {type(v).__name__} {v!r:.60}"
        if v <= 0:
            return None, f"field {key!r} must be positive, got {v}"
        size.append(v)
    if size[0] * size[1] > limit:
        return None, f"image size {size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds max_pixels={limit}"
    return (size[0], size[1]), None


def path_inside(root: str | Path, name, field_name: str) -> tuple[Path | None, str | None]:
    """``(root / name, None)`` for a relative file name from the data that stays inside ``root``;
    ``(None, reason)`` for a non-string, empty, absolute or ``..``-escaping name."""
    if not isinstance(name, str) or not name.strip():
        return None, f"field {field_name!r} must be a non-empty file name, got {type(name).__name__} {name!r:.60}"
    norm = os.path.normpath(name.replace("\\", "/"))
    if os.path.isabs(norm) or norm == ".." or norm.startswith("../") or "\x00" in name:
        return None, f"field {field_name!r} = {name!r:.100} leaves the folder {root}"
    return Path(root) / norm, None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name, *, max_length: int = 120) -> str:
    """A file name made from a data value (an image id, ...) that cannot leave its folder: every
    run of characters other than letters, digits, ``.``, ``_`` and ``-`` becomes ``_``, leading dots
    are dropped, and the result is cut to ``max_length`` (never empty). Writers that name files from
    data use it; make names unique separately (e.g. prefix an index), as distinct values can map to
    one name."""
    text = _UNSAFE.sub("_", str(name)).lstrip(".")[:max_length]
    return text or "_"


def check_unique(ids, file, what: str, policy: ErrorPolicy) -> set:
    """The set of duplicated ids (each reported once through ``policy``); ids that cannot be ids
    (`id_problem`) are skipped here and must be refused by the caller."""
    seen, dups = set(), set()
    for i in ids:
        if id_problem(i, what) is not None:
            continue
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
