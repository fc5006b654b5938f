"""Checkpoints of regionlib models: one self-contained directory that opens anywhere.

`RegionModel` is the base class of the DAM / SCA / RAS / pooled captioner modules.
``save_pretrained(dir)`` writes::

    dir/config.json            {"format": "regionlib/2", "kind", "config" (the regionlib config dataclass;
                                the paths in it are provenance only), "lora", "parts", "trainable_only"}
    dir/model.safetensors      every weight (tied weights once)
    dir/tokenizer/             the LM's tokenizer (``save_pretrained``, incl. added special tokens and chat template)
    dir/lm/config.json         the LM's own transformers config (+ generation_config.json)
    dir/vision/ or vision_<k>/ each vision encoder's own config.json and preprocessor_config.json
                               (``vision`` for one encoder; ``vision_<k>`` in config order for several)

SAM's architecture is its preset; config.json records the preset's `SamConfig` fields under ``"sam"``
(a preset unknown where the checkpoint is opened is registered from them; one defined differently
there is a `CheckpointError`).

``from_pretrained(dir)`` rebuilds every sub-module from those saved configs — the config's
``vision.path`` / ``lm.path`` are replaced by the saved sub-directories and ``sam_checkpoint`` by
None (SAM's architecture is its preset), random init, then ``model.safetensors`` is loaded — so it
never touches the original paths: move the directory, delete the sources, it still opens. The
loaded model's ``config`` names the saved sub-directories; ``source_config`` keeps the original
one, and saving again records that as provenance. A training checkpoint is this directory plus
files beside it (``optimizer.safetensors``, ``rng.safetensors``, ``state.json``, ...), which
``from_pretrained`` ignores.

Hygiene: pickle files are refused; a corrupt safetensors header, a tensor whose shape or dtype
kind disagrees with the rebuilt model (``F32`` stored as ``I32``; float precisions are cast), a
missing or unexpected tensor: `CheckpointError` naming them.

Small checkpoints (optional): ``save_pretrained(dir, trainable_only=True)`` leaves out the frozen
weights that can be re-read from a named base — a vision encoder / LM loaded from a path, a SAM
loaded from ``sam_checkpoint`` — and records those paths under ``"base"``. ``from_pretrained``
then rebuilds the model from the original config *with* its paths (so the base must be
available: else `CheckpointError` naming the missing path) and loads the stored weights over it.
An SCA with a frozen SAM ViT-H then stores only its mixer, queries, task tokens and projection.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError
from .interface import ImageState, RegionOutput

__all__ = ["RegionModel", "register_kind", "MODEL_KINDS", "config_to_dict", "config_from_dict", "parameter_report",
           "FORMAT", "read_safetensors_header"]

MODEL_KINDS: dict[str, type] = {}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
FORMAT = "regionlib/2"

_DTYPE_CODES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}
_FLOAT_CODES = {"F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2"}


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


# ---------------------------------------------------------------------------------------------- config tree
def _walk(config, prefix=()):
    """(field path, value) of every nested dataclass node of ``config`` (tuples of dataclasses included)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield (*prefix, f.name), value
            yield from _walk(value, (*prefix, f.name))
        elif isinstance(value, tuple):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    yield (*prefix, f.name, i), v
                    yield from _walk(v, (*prefix, f.name, i))


def _replace_at(config, path, new):
    head, rest = path[0], path[1:]
    if isinstance(config, tuple):
        items = list(config)
        items[head] = new if not rest else _replace_at(items[head], rest, new)
        return tuple(items)
    value = getattr(config, head)
    return dataclasses.replace(config, **{head: new if not rest else _replace_at(value, rest, new)})


def _vision_nodes(config) -> list[tuple[tuple, object]]:
    from .vision import VisionConfig

    return [(p, v) for p, v in _walk(config) if isinstance(v, VisionConfig)]


def _lm_nodes(config) -> list[tuple[tuple, object]]:
    from .lm_head import LMConfig

    return [(p, v) for p, v in _walk(config) if isinstance(v, LMConfig)]


def _vision_dirs(nodes) -> list[str]:
    return ["vision"] if len(nodes) == 1 else [f"vision_{k}" for k in range(len(nodes))]


def read_safetensors_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype code, shape)}`` of a safetensors file; a corrupt file -> `CheckpointError`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            out = {}
            for k in f.keys():
                sl = f.get_slice(k)
                out[k] = (str(sl.get_dtype()), tuple(sl.get_shape()))
            return out
    except Exception as exc:  # SafetensorError, OSError, ValueError: all mean "not a readable safetensors file"
        raise CheckpointError(f"{str(path)!r}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc


def read_auto_config(path: str, owner: str):
    """transformers' ``AutoConfig`` of ``path``; no readable ``config.json`` is a `CheckpointError` naming
    ``owner`` (e.g. ``"LMConfig.path"``)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{owner} {path!r}: no readable transformers config.json ({exc})") from exc


def load_base(model_cls, path: str, owner: str, what: str, *, ignore_unexpected=lambda key: False,
              **kwargs) -> nn.Module:
    """``model_cls.from_pretrained(path, **kwargs)`` in float32, recorded as the base its frozen weights can be
    re-read from (``save_pretrained(trainable_only=True)``). Weights that do not load, or a missing, unexpected
    (unless ``ignore_unexpected(key)``) or mis-shaped weight: a `CheckpointError` naming ``owner`` and ``what``
    (e.g. ``"LMConfig.path"``, ``"the causal LM's"``); a truncated or corrupt ``*.safetensors`` there too."""
    for weights in sorted(Path(path).glob("*.safetensors")):  # transformers would raise a bare SafetensorError
        read_safetensors_header(weights)
    try:
        model, info = model_cls.from_pretrained(path, output_loading_info=True, dtype=torch.float32, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{owner} {path!r}: {what} weights do not load ({exc})") from exc
    unexpected = sorted(k for k in info.get("unexpected_keys") or () if not ignore_unexpected(k))
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing weights (would be random) {sorted(info['missing_keys'])}")
    if unexpected:
        problems.append(f"unexpected weights {unexpected}")
    if info.get("mismatched_keys"):
        problems.append(f"mismatched shapes {sorted(map(str, info['mismatched_keys']))}")
    if info.get("error_msgs"):
        problems.append(f"errors {list(info['error_msgs'])}")
    if problems:
        raise CheckpointError(f"{owner} {path!r} ({type(model).__name__}): " + "; ".join(problems))
    model._regionlib_base = str(path)  # frozen weights can be re-read from here
    model._regionlib_base_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return model


class RegionModel(nn.Module, ABC):
    """Base of regionlib's models: ``config`` (a dataclass), ``lm_head``, checkpoints, parameter report,
    and the interface of `regionlib.models.interface` (the abstract methods below).

    Subclasses set ``kind`` (via `register_kind`), ``config_class`` and ``builder(config, tokenizer, load_weights=)``.
    """

    kind: str = ""
    config_class: type = object
    builder = None

    @abstractmethod
    def encode_image(self, image) -> ImageState:
        """The region-independent work of one image (cached by the predictor and the training task)."""

    @abstractmethod
    def region_inputs(self, state: ImageState, regions, **request) -> dict:
        """The inputs of the regions of ``state``'s image (``targets``: their captions, or None)."""

    @abstractmethod
    def collate(self, batches: Sequence[dict]) -> dict:
        """Batches of several images joined into one."""

    @abstractmethod
    def forward(self, batch: dict, *, label_smoothing: float | None = None, reduction: str = "mean") -> RegionOutput:
        """One pass; ``loss`` when the batch has targets (``reduction``: ``"mean"`` or ``"sum"``)."""

    @abstractmethod
    def n_targets(self, batch: dict) -> int:
        """The number of target tokens ``forward``'s loss averages over (the loop's global normaliser)."""

    def lr_groups(self) -> dict[str, tuple[str, ...]]:
        """Parameter-name patterns (fnmatch) of the parts a pretrained base lacks, by role, for the recipes'
        learning-rate multipliers (timm's ``group_matcher``): none by default."""
        return {}

    def parameter_report(self) -> dict[str, int]:
        return parameter_report(self)

    # ------------------------------------------------------------------ parts
    def _vision_modules(self) -> list[nn.Module]:
        """The vision encoders of ``config``'s `VisionConfig` nodes, in config order."""
        nodes = _vision_nodes(self.config)
        built = [m for m in self.modules() if getattr(m, "regionlib_processor", None) is not None]
        out, used = [], set()
        for _, node in nodes:
            match = next((m for m in built if id(m) not in used and getattr(m, "_regionlib_config", None) == node), None)
            if match is None:
                match = next((m for m in built if id(m) not in used), None)
            if match is None:
                raise CheckpointError(f"{type(self).__name__}: no vision encoder built for config node {node}")
            used.add(id(match))
            out.append(match)
        return out

    def _base_lm(self) -> nn.Module:
        lm = self.lm_head.lm
        return lm.get_base_model() if self.lm_head.lora is not None else lm

    def _frozen_base_keys(self) -> set[str]:
        """state_dict keys that a base (a path the part was loaded from) gives back unchanged."""
        keys: set[str] = set()
        trainable = {n for n, p in self.named_parameters(remove_duplicate=False) if p.requires_grad}
        for prefix, module in self.named_modules(remove_duplicate=False):
            if not getattr(module, "_regionlib_base", None):
                continue
            shapes = getattr(module, "_regionlib_base_shapes", None) or {}
            pre = f"{prefix}." if prefix else ""
            for name, tensor in module.state_dict().items():
                full = pre + name
                base_name = name.replace(".base_layer", "")
                if full in trainable or "lora_" in name:
                    continue
                if shapes and shapes.get(base_name) != tuple(tensor.shape):
                    continue  # e.g. embeddings grown for added tokens: not the base's any more
                keys.add(full)
        return keys

    # ------------------------------------------------------------------ save
    def save_pretrained(self, directory: str | Path, *, trainable_only: bool = False) -> Path:
        """Write the self-contained checkpoint directory (see the module docstring).

        trainable_only: leave out frozen weights re-readable from their base paths (small checkpoints).
        """
        from safetensors.torch import save_file, save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        source = getattr(self, "source_config", None) or self.config
        vision_nodes = _vision_nodes(self.config)
        parts = {}
        for (path, _), sub, module in zip(vision_nodes, _vision_dirs(vision_nodes), self._vision_modules()):
            module.config.save_pretrained(str(d / sub))
            module.regionlib_processor.save_pretrained(d / sub)
            parts[sub] = list(path)
        lm_nodes = _lm_nodes(self.config)
        if lm_nodes:
            base = self._base_lm()
            base.config.save_pretrained(str(d / "lm"))
            if getattr(base, "generation_config", None) is not None:
                base.generation_config.save_pretrained(str(d / "lm"))
            parts["lm"] = list(lm_nodes[0][0])
        meta = {"format": FORMAT, "kind": self.kind, "config": config_to_dict(source), "lora": self.lm_head.lora,
                "parts": parts, "trainable_only": bool(trainable_only), "sam": _sam_architectures(self.config)}
        if trainable_only:
            skip = self._frozen_base_keys()
            meta["base"] = self._base_paths(source)
            state, seen = {}, set()
            for k, v in self.state_dict(keep_vars=False).items():
                if k in skip:
                    continue
                ptr = (v.data_ptr(), tuple(v.shape), v.dtype) if v.numel() else None
                if ptr is not None and ptr in seen:
                    continue  # tied: stored once
                if ptr is not None:
                    seen.add(ptr)
                state[k] = v.detach().contiguous()
            save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
        else:
            save_model(self, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps(meta, indent=2))
        self.lm_head.tokenizer.save_pretrained(str(d / "tokenizer"))
        return d

    @staticmethod
    def _base_paths(config) -> dict:
        base = {}
        for path, node in _vision_nodes(config) + _lm_nodes(config):
            if node.path:
                base[".".join(map(str, path))] = node.path
        for path, node in [((), config)] + list(_walk(config)):
            if getattr(node, "sam_checkpoint", None):
                base[".".join(map(str, (*path, "sam_checkpoint")))] = str(node.sam_checkpoint)
        return base

    # ------------------------------------------------------------------ load
    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu",
                        image_video_joint: bool = False) -> "RegionModel":
        """Load a checkpoint written by `save_pretrained` (any kind when called on `RegionModel`), a
        training checkpoint directory (the same files plus optimizer / RNG state, which are ignored), or
        a released DAM / SCA checkpoint directory (`regionlib.models.released`: converted on the fly;
        ``image_video_joint=True`` for DAM's joint image + video checkpoint, which no config records)."""
        from transformers import AutoTokenizer

        from .released import released_kind

        d = Path(directory)
        released = released_kind(d)
        if released is not None:
            from .released import load_released

            model = load_released(d, image_video_joint=image_video_joint, device=device)
            if cls is not RegionModel and not isinstance(model, cls):
                raise CheckpointError(f"{str(d)!r} holds a released {released!r} model, not a {cls.__name__}")
            return model
        if image_video_joint:
            raise ConfigError("image_video_joint applies to released DAM checkpoints only; a regionlib checkpoint "
                              f"records it in its config ({str(d)!r} is not a released checkpoint)")
        weights = d / "model.safetensors"
        if not weights.is_file():
            pickles = sorted(p.name for p in d.glob("*") if p.suffix in PICKLE_SUFFIXES) if d.is_dir() else []
            why = f"refusing pickle checkpoint(s) {pickles}: only safetensors are loaded" if pickles else "not found"
            raise CheckpointError(f"directory {str(d)!r}: model.safetensors {why}")
        try:
            meta = json.loads((d / "config.json").read_text())
            kind = meta["kind"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"directory {str(d)!r}: config.json missing or malformed ({exc})") from exc
        if kind not in MODEL_KINDS:
            raise CheckpointError(f"config.json kind {kind!r} is not one of {sorted(MODEL_KINDS)}")
        model_cls = MODEL_KINDS[kind]
        if cls is not RegionModel and not issubclass(model_cls, cls):
            raise CheckpointError(f"{str(d)!r} holds a {kind!r} model, not a {cls.__name__}")
        stored = read_safetensors_header(weights)
        migrate = getattr(model_cls.config_class, "migrate", None)  # saved fields of an earlier regionlib
        source = config_from_dict(model_cls.config_class, migrate(meta["config"]) if migrate else meta["config"])
        _check_sam_architectures(meta.get("sam") or {}, d)
        trainable_only = bool(meta.get("trainable_only"))
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(d / "tokenizer"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"directory {str(d)!r}: tokenizer/ missing or unreadable ({exc})") from exc
        if trainable_only:
            for name, path in (meta.get("base") or {}).items():
                if not Path(path).exists():
                    raise CheckpointError(f"{str(d)!r} stores only trainable weights; its base {name} = {path!r} "
                                          "(the frozen weights) is not available")
            model = model_cls.builder(source, tokenizer, load_weights=True)
        else:
            config = cls._saved_config(source, meta.get("parts"), d)
            model = model_cls.builder(config, tokenizer, load_weights=False)
            if config != source:
                model.source_config = source
        if meta.get("lora") and model.lm_head.lora is None:  # attached after building (not via the config)
            lora = meta["lora"]
            model.lm_head.add_lora(target_modules=lora["target_modules"], r=lora["r"], alpha=lora["alpha"],
                                   dropout=lora["dropout"])
        cls._load_checked(model, weights, stored, optional=model._frozen_base_keys() if trainable_only else set())
        return model.to(device).eval()

    @staticmethod
    def _saved_config(source, parts, d: Path):
        """``source`` with every part's path pointing into the checkpoint and no SAM checkpoint to read."""
        config = source
        if parts is not None:  # regionlib/2: every sub-module from its saved config
            for sub, path in parts.items():
                path = tuple(path)
                node = config
                for p in path:
                    node = node[p] if isinstance(node, tuple) else getattr(node, p)
                if not (d / sub / "config.json").is_file():
                    raise CheckpointError(f"directory {str(d)!r}: {sub}/config.json is missing")
                config = _replace_at(config, path, dataclasses.replace(node, path=str(d / sub)))
        for path, node in [((), config)] + list(_walk(config)):
            if getattr(node, "sam_checkpoint", None):
                new = dataclasses.replace(node, sam_checkpoint=None)
                config = new if not path else _replace_at(config, path, new)
        return config

    @staticmethod
    def _load_checked(model: nn.Module, weights: Path, stored: dict, optional: set[str]) -> None:
        from safetensors.torch import load_file

        expected = model.state_dict()
        missing = [k for k in expected if k not in stored and k not in optional and not _tied(model, k, stored)]
        unexpected = [k for k in stored if k not in expected]
        wrong = [f"{k}: checkpoint {stored[k][1]} vs config {tuple(expected[k].shape)}"
                 for k in expected if k in stored and stored[k][1] != tuple(expected[k].shape)]
        dtypes = []
        for k, t in expected.items():
            if k in stored:
                want, got = _DTYPE_CODES.get(t.dtype, str(t.dtype)), stored[k][0]
                if want != got and not (want in _FLOAT_CODES and got in _FLOAT_CODES):
                    dtypes.append(f"{k}: checkpoint {got} vs model {want}")
        if missing or unexpected or wrong or dtypes:
            raise CheckpointError(f"{str(weights)!r} disagrees with config.json: " + "; ".join(
                ([f"shape mismatch {wrong[:5]}"] if wrong else []) + ([f"dtype mismatch {dtypes[:5]}"] if dtypes else [])
                + ([f"missing {missing[:5]}"] if missing else []) + ([f"unexpected {unexpected[:5]}"] if unexpected else [])))
        try:
            state = load_file(str(weights), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{str(weights)!r}: tensors unreadable ({type(exc).__name__}: {exc})") from exc
        model.load_state_dict(state, strict=False)


def _sam_architectures(config) -> dict:
    """``{preset name: SamConfig fields}`` of the SAM presets ``config`` names (saved with the checkpoint)."""
    from ..sam import SAM_PRESETS

    out = {}
    for _, node in [((), config)] + list(_walk(config)):
        name = getattr(node, "sam_preset", None)
        if isinstance(name, str) and name in SAM_PRESETS:
            out[name] = dataclasses.asdict(SAM_PRESETS[name])
    return out


def _check_sam_architectures(saved: dict, d: Path) -> None:
    """A SAM preset unknown here is registered from the checkpoint; one defined differently is an error."""
    from ..sam import SAM_PRESETS, SamConfig

    for name, fields in saved.items():
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        try:
            cfg = SamConfig(**fields)
        except TypeError as exc:
            raise CheckpointError(f"{str(d)!r}: config.json's SAM preset {name!r} is malformed ({exc})") from exc
        if name not in SAM_PRESETS:
            SAM_PRESETS[name] = cfg
        elif SAM_PRESETS[name] != cfg:
            raise CheckpointError(f"{str(d)!r} was saved with SAM preset {name!r} = {cfg}, but here it is "
                                  f"{SAM_PRESETS[name]}")


def _tied(model: nn.Module, key: str, stored: dict) -> bool:
    """True if ``key`` shares storage with a stored tensor (tied embeddings are saved once)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    if key not in params:
        return False
    ptr = params[key].data_ptr()
    return any(k in stored and p.data_ptr() == ptr for k, p in params.items() if k != key)
