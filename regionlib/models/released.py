"""The seeds' released checkpoints, opened directly (REFERENCE §1b, §4b).

`RegionModel.from_pretrained(path)` calls `released_kind` on every directory: a ``config.json`` whose
``model_type`` is ``llava_llama`` (NVlabs/describe-anything: ``nvidia/DAM-3B``, ``DAM-3B-Video``, the
joint and self-contained variants) or ``sca`` (xk-huang/segment-caption-anything's
``ScaMultitaskV2Model``) is converted on the fly by `regionlib.models.released_dam` /
`regionlib.models.released_sca` into regionlib's own model; ``python -m regionlib.models.convert SRC DST``
writes the result once in regionlib's ``save_pretrained`` format.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ConfigError

__all__ = ["RELEASED_MODEL_TYPES", "released_kind", "load_released"]

# config.json model_type of a released checkpoint -> the regionlib model kind it converts to
RELEASED_MODEL_TYPES = {"llava_llama": "dam", "sca": "sca"}


def released_kind(path: str | Path) -> str | None:
    """``"dam"`` / ``"sca"`` when ``path`` is a released checkpoint directory, else None (also for a
    regionlib checkpoint, a file, or a directory without a readable ``config.json``)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "format" in data:  # regionlib's own config.json names its format
        return None
    return RELEASED_MODEL_TYPES.get(data.get("model_type"))


def load_released(path: str | Path, *, image_video_joint: bool = False, device: str | torch.device = "cpu"):
    """The regionlib model of the released checkpoint at ``path`` (see `released_kind`)."""
    kind = released_kind(path)
    if kind == "dam":
        from .released_dam import load_released_dam

        return load_released_dam(path, image_video_joint=image_video_joint, device=device)
    if image_video_joint:
        raise ConfigError(f"image_video_joint applies to released DAM checkpoints, {str(path)!r} is a {kind!r} one")
    if kind == "sca":
        from .released_sca import load_released_sca

        return load_released_sca(path, device=device)
    raise ConfigError(f"{str(path)!r} is not a released DAM or SCA checkpoint directory (config.json model_type "
                      f"one of {sorted(RELEASED_MODEL_TYPES)})")
