"""Typed errors of regionlib.

Every public function validates its inputs and raises one of these with a message that
names the offending argument and what was expected. All derive from `RegionLibError`
(itself a `ValueError`, so generic ``except ValueError`` handlers keep working).
"""

from __future__ import annotations


class RegionLibError(ValueError):
    """Base class of every error regionlib raises on bad input."""


class InvalidMaskError(RegionLibError):
    """A mask is empty, non-binary, of the wrong shape or dtype, or its RLE disagrees."""


class InvalidBoxError(RegionLibError):
    """A box is degenerate (x1 <= x0 or y1 <= y0), non-finite or outside the image."""


class InvalidPromptError(RegionLibError):
    """A point / box / scribble / mask prompt is missing, malformed or out of range."""


class InvalidImageError(RegionLibError):
    """An image has an unsupported dtype, channel count or size, or its bytes are corrupt."""


class ConfigError(RegionLibError):
    """A configuration or preset name is unknown or inconsistent."""


class DataFormatError(RegionLibError):
    """An annotation or dataset file is malformed (names the file and the record)."""


class JudgeError(RegionLibError):
    """A judge backend failed (endpoint down, retries exhausted) or replied unusably."""


class CheckpointError(RegionLibError):
    """A checkpoint is missing, unsafe (pickle) or disagrees with its configuration."""


class RegionIndexError(RegionLibError, IndexError):
    """An index into `Regions` is out of range (also an `IndexError`, as Python's protocols expect)."""


def check_type(value, types, name: str):
    """Raise `RegionLibError` unless ``isinstance(value, types)``; return ``value``."""
    if not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise RegionLibError(f"{name} must be {names}, got {type(value).__name__}")
    return value


class TrainingError(RegionLibError):
    """A training run went wrong in a way that would silently corrupt it (e.g. unsynchronised replicas)."""
