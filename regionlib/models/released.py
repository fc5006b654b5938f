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
from typing import Iterator

import torch

from ..errors import CheckpointError, ConfigError

__all__ = ["RELEASED_MODEL_TYPES", "WeightFolder", "released_kind", "load_released"]

# config.json model_type of a released checkpoint -> the regionlib model kind it converts to
RELEASED_MODEL_TYPES = {"llava_llama": "dam", "sca": "sca"}


class WeightFolder:
    """The tensors of one released weights folder, read lazily (one at a time: a 3B checkpoint never sits in
    memory twice). The first of ``model.safetensors``, its sharded ``model.safetensors.index.json``,
    ``pytorch_model.bin`` or its ``pytorch_model.bin.index.json`` (transformers' order); names and shapes of
    safetensors come from their headers, ``.bin`` files are loaded once with ``weights_only=True``
    (`regionlib.sam.load_state_dict`). A shard holding a key its index maps elsewhere, an index naming a
    key no shard holds, and a missing, corrupt or truncated file are `CheckpointError`s naming the file.

    Attributes: folder; source: the weights file or index read (for messages); shapes: ``{name: shape}``.
    """

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.folder, self.files, self.shapes, self._eager = folder, {}, {}, {}
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (folder / name).is_file():
                self.source = folder / name
                self._add(folder / name, None)
                return
            index = folder / f"{name}.index.json"
            if index.is_file():
                self.source = index
                try:
                    weight_map = json.loads(index.read_text())["weight_map"]
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise CheckpointError(f"{str(index)!r}: not a shard index with a weight_map ({exc})") from exc
                if not isinstance(weight_map, dict) or not weight_map:
                    raise CheckpointError(f"{str(index)!r}: its weight_map is empty or not a mapping")
                for shard in sorted(set(map(str, weight_map.values()))):
                    self._add(folder / shard, weight_map)
                lost = sorted(set(weight_map) - set(self.shapes))
                if lost:
                    raise CheckpointError(f"{str(index)!r} maps {lost[:10]} to shards that do not hold them")
                return
        raise CheckpointError(f"{str(folder)!r}: no weights (model.safetensors, pytorch_model.bin or their "
                              ".index.json shards)")

    def _add(self, file: Path, weight_map: dict | None) -> None:
        from ..sam import load_state_dict
        from .checkpoint import read_safetensors_header

        if file.suffix == ".safetensors":
            shapes = {k: shape for k, (_, shape) in read_safetensors_header(file).items()}
        else:
            tensors = load_state_dict(file)
            self._eager.update(tensors)
            shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        stray = sorted(k for k in shapes if weight_map is not None and weight_map.get(k) != file.name)
        if stray:
            raise CheckpointError(f"{str(file)!r}: keys {stray[:10]} are not mapped to it by its index")
        self.shapes.update(shapes)
        self.files.update(dict.fromkeys(shapes, file))

    def keys(self) -> list[str]:
        return list(self.shapes)

    def tensors(self, keys) -> Iterator[tuple[str, torch.Tensor]]:
        """``(key, tensor as stored)`` for ``keys``, each safetensors file opened once (its own dtype: the
        caller casts)."""
        from safetensors import safe_open

        keys = list(keys)
        for key in keys:
            if key in self._eager:
                yield key, self._eager[key]
        by_file: dict[Path, list[str]] = {}
        for key in keys:
            if key not in self._eager:
                by_file.setdefault(self.files[key], []).append(key)
        for file, names in by_file.items():
            try:
                with safe_open(str(file), framework="pt", device="cpu") as f:
                    for key in names:
                        yield key, f.get_tensor(key)
            except Exception as exc:  # SafetensorError, OSError: data truncated after the header
                raise CheckpointError(f"{str(file)!r}: tensors unreadable ({type(exc).__name__}: {exc})") from exc

    def state(self) -> dict[str, torch.Tensor]:
        """Every tensor at once (for models small enough to convert in memory, e.g. SCA)."""
        return dict(self.tensors(self.shapes))


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
