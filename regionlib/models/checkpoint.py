"""Checkpoints of regionlib models: ``config.json`` + ``model.safetensors`` + ``tokenizer/``.

`RegionModel` is the base class of the DAM / SCA / RAS / pooled captioner modules. Its
``save_pretrained(dir)`` writes the config dataclass as JSON (with the model ``kind`` and any LoRA
settings), the weights as safetensors and the tokenizer; ``from_pretrained(dir)`` rebuilds the
architecture from the JSON (real sub-checkpoints named by path contribute only their
architecture, never weights) and loads the tensors with weights-only semantics. Pickle files
are refused; a tensor whose shape disagrees with the config raises `CheckpointError` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError

__all__ = ["RegionModel", "register_kind", "MODEL_KINDS", "config_to_dict", "config_from_dict", "parameter_report"]

MODEL_KINDS: dict[str, type] = {}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def register_kind(kind: str):
    def deco(cls):
        cls.kind = kind
        MODEL_KINDS[kind] = cls
        return cls

    return deco


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from `config_to_dict` output; unknown keys -> `ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            value = config_from_dict(hint, value)
        elif origin is tuple and args and dataclasses.is_dataclass(args[0]):
            value = tuple(config_from_dict(args[0], v) for v in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def parameter_report(model: nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts, and trainable counts per top-level child."""
    report = {"total": sum(p.numel() for p in model.parameters()),
              "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    for name, child in model.named_children():
        report[f"trainable.{name}"] = sum(p.numel() for p in child.parameters() if p.requires_grad)
    own = sum(p.numel() for n, p in model.named_parameters(recurse=False) if p.requires_grad)
    if own:
        report["trainable.(own)"] = own
    return report


class RegionModel(nn.Module):
    """Base of regionlib's models: ``config`` (a dataclass), ``lm_head``, checkpoints, parameter report.

    Subclasses set ``kind`` (via `register_kind`), ``config_class`` and ``builder(config, tokenizer, load_weights=)``.
    """

    kind: str = ""
    config_class: type = object
    builder = None

    def parameter_report(self) -> dict[str, int]:
        return parameter_report(self)

    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "config": config_to_dict(self.config), "lora": self.lm_head.lora}
        (d / "config.json").write_text(json.dumps(meta, indent=2))
        save_model(self, str(d / "model.safetensors"))
        self.lm_head.tokenizer.save_pretrained(str(d / "tokenizer"))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> "RegionModel":
        """Load a checkpoint written by `save_pretrained` (any kind when called on `RegionModel`)."""
        from safetensors import safe_open
        from transformers import AutoTokenizer

        d = Path(directory)
        weights = d / "model.safetensors"
        if not weights.is_file():
            pickles = sorted(p.name for p in d.glob("*") if p.suffix in PICKLE_SUFFIXES) if d.is_dir() else []
            why = f"refusing pickle checkpoint(s) {pickles}: only safetensors are loaded" if pickles else "not found"
            raise CheckpointError(f"directory {str(d)!r}: model.safetensors {why}")
        try:
            meta = json.loads((d / "config.json").read_text())
            kind = meta["kind"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"directory {str(d)!r}: config.json missing or malformed ({exc})") from exc
        if kind not in MODEL_KINDS:
            raise CheckpointError(f"config.json kind {kind!r} is not one of {sorted(MODEL_KINDS)}")
        model_cls = MODEL_KINDS[kind]
        if cls is not RegionModel and not issubclass(model_cls, cls):
            raise CheckpointError(f"{str(d)!r} holds a {kind!r} model, not a {cls.__name__}")
        config = config_from_dict(model_cls.config_class, meta["config"])
        tokenizer = AutoTokenizer.from_pretrained(str(d / "tokenizer"))
        model = model_cls.builder(config, tokenizer, load_weights=False)
        if meta.get("lora") and model.lm_head.lora is None:  # attached after building (not via the config)
            lora = meta["lora"]
            model.lm_head.add_lora(target_modules=lora["target_modules"], r=lora["r"], alpha=lora["alpha"],
                                   dropout=lora["dropout"])
        expected = model.state_dict()
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            stored = {k: f.get_slice(k).get_shape() for k in f.keys()}
        missing = [k for k in expected if k not in stored and not _tied(model, k, stored)]
        unexpected = [k for k in stored if k not in expected]
        wrong = [f"{k}: checkpoint {tuple(stored[k])} vs config {tuple(expected[k].shape)}"
                 for k in expected if k in stored and tuple(stored[k]) != tuple(expected[k].shape)]
        if missing or unexpected or wrong:
            raise CheckpointError(f"{str(weights)!r} disagrees with config.json: " + "; ".join(
                ([f"shape mismatch {wrong[:3]}"] if wrong else []) + ([f"missing {missing[:3]}"] if missing else [])
                + ([f"unexpected {unexpected[:3]}"] if unexpected else [])))
        from safetensors.torch import load_model

        load_model(model, str(weights), strict=False, device="cpu")
        return model.to(device).eval()


def _tied(model: nn.Module, key: str, stored: dict) -> bool:
    """True if ``key`` shares storage with a stored tensor (tied embeddings are saved once)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    if key not in params:
        return False
    ptr = params[key].data_ptr()
    return any(k in stored and p.data_ptr() == ptr for k, p in params.items() if k != key)
