"""One config convention: frozen dataclasses, built from YAML, ``--set`` and argparse by one helper.

A job's settings are a frozen dataclass deriving from `Settings`; its sections are nested `Settings`
dataclasses. `build` makes one from, in order of precedence (last wins)::

    the dataclass defaults  <-  a YAML file  <-  --set section.key=value overrides  <-  keyword values

and checks everything before any work starts (Ray, training, a model):

* an unknown key is a `ConfigError` naming its path and the nearest valid name
  (``train.max_step: unknown setting; did you mean 'max_steps'?``);
* every value is checked against the field's annotation: ``int`` refuses ``2.5``, ``"2"`` and ``True``;
  ``float`` takes ints and refuses NaN / infinity / words; ``bool`` takes only true / false; ``X | None``,
  ``Literal[...]``, ``tuple[X, ...]``, ``list[X]``, ``dict[str, X]`` and nested dataclasses recurse;
* ranges and choices are declared on the field (`setting`: ``min``, ``max``, ``gt``, ``choices`` — of
  each item of a list —, ``exists``: an existing file or directory) and checked in ``__post_init__``, so a
  dataclass built directly in Python is held to the same rules.

``--set`` values are parsed as YAML (``train.batch_size=8``, ``task.overrides.lm__path=/ckpt/llm``,
``task.sources=[{reader: regionworld}]``); a list item is addressed by its index
(``task.sources.0.path=/data/stage2``). A `Settings` class may start from named defaults
(`Settings.named_defaults`: a recipe's ``name`` selects the recipe's values). `to_dict` is the JSON form
saved with checkpoints; `describe` lists every setting with its default for ``--help``.

A job whose command line is argparse declares one option per setting with `add_options` (its help: the
setting's type, default and range) and builds its settings from the parsed namespace with `from_args`; a
wrong value is then a `ConfigError` naming the option (``--concurrency: must be >= 1, got 0``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union

from .errors import ConfigError

__all__ = ["Settings", "setting", "build", "from_mapping", "load_yaml", "apply_sets", "to_dict", "describe",
           "add_options", "from_args"]

T = TypeVar("T", bound="Settings")
_MISSING = dataclasses.MISSING


def setting(default: Any = _MISSING, *, min: float | None = None, max: float | None = None, gt: float | None = None,
            choices: Sequence | None = None, exists: Literal["file", "dir"] | None = None, help: str = "") -> Any:
    """A dataclass field with its range (``min`` <= v <= ``max``, v > ``gt``), ``choices`` (of each item of a
    list), ``exists`` (the path names an existing file / directory) and ``help``; a list or dict default is
    copied per instance; no default: a required setting."""
    if exists not in (None, "file", "dir"):
        raise TypeError(f"exists must be 'file', 'dir' or None, not {exists!r}")
    meta = {"min": min, "max": max, "gt": gt, "choices": None if choices is None else tuple(choices),
            "exists": exists, "help": help}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Settings:
    """Base of every settings dataclass (declare subclasses ``@dataclass(frozen=True)``): the fields are
    checked against their annotations and `setting` ranges when an instance is made."""

    def __post_init__(self) -> None:
        hints, owner = _hints(type(self)), type(self).__name__
        for f in dataclasses.fields(self):
            value = _check(getattr(self, f.name), hints[f.name], f"{owner}.{f.name}", owner)
            _check_range(value, f, owner)
            object.__setattr__(self, f.name, value)

    @classmethod
    def named_defaults(cls, data: Mapping) -> dict:
        """Defaults that depend on the given values (e.g. a named recipe); default: none."""
        return {}


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str, owner: str = "") -> Any:
    """``value`` checked (and normalised: int -> float, list -> tuple) against annotation ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, where, owner)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}{_suggest(value, args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_mapping(tp, value, where=where)
        raise ConfigError(f"{where}: expected a mapping of {tp.__name__} settings, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a finite number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(_check(v, a, f"{where}.{i}", owner) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_check(v, item, f"{where}.{i}", owner) for i, v in enumerate(value))
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_check(v, item, f"{where}.{i}", owner) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_check(k, kt, f"{where} (key)", owner): _check(v, vt, f"{where}.{k}", owner) for k, v in value.items()}
    raise TypeError(f"config annotation {tp!r} of {owner}.{where} is not supported")  # a bug in the settings class


def _check_range(value: Any, f: dataclasses.Field, owner: str) -> None:
    meta = f.metadata
    if value is None or not meta:
        return
    where = f"{owner}.{f.name}"
    choices = meta.get("choices")
    if choices is not None:
        items = enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, item in items:
            if item not in choices:
                raise ConfigError(f"{where if i is None else f'{where}.{i}'}: must be one of {list(choices)}, "
                                  f"got {item!r}{_suggest(item, choices)}")
    exists = meta.get("exists")
    path = Path(value) if exists else None
    if path and not (path.is_dir() if exists == "dir" else path.is_file()):
        found = "does not exist" if not path.exists() else "is a directory, not a file" if path.is_dir() else \
            f"is not a {'directory' if exists == 'dir' else 'regular file'}"
        raise ConfigError(f"{where}: {value} {found}")
    for key, ok, word in (("min", lambda v, b: v >= b, ">="), ("max", lambda v, b: v <= b, "<="),
                          ("gt", lambda v, b: v > b, ">")):
        bound = meta.get(key)
        if bound is not None and isinstance(value, (int, float)) and not ok(value, bound):
            raise ConfigError(f"{where}: must be {word} {bound}, got {value!r}")


def _suggest(value: Any, names) -> str:
    close = difflib.get_close_matches(str(value), [str(n) for n in names], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def from_mapping(cls: type[T], data: Mapping, *, where: str = "") -> T:
    """An instance of the settings dataclass ``cls`` from ``data``; unknown keys are refused with the
    nearest valid name, missing keys take the defaults (`Settings.named_defaults` first)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping of settings, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{_name(where, str(key))}: unknown setting{_suggest(key, fields)} "
                              f"(valid: {', '.join(fields)})")
    values = dict(cls.named_defaults(data)) if issubclass(cls, Settings) else {}
    values.update(data)
    hints = _hints(cls)
    for name, f in fields.items():
        if name in values and dataclasses.is_dataclass(hints[name]) and isinstance(values[name], Mapping):
            values[name] = from_mapping(hints[name], values[name], where=_name(where, name))
        elif name not in values and dataclasses.is_dataclass(hints[name]) and f.default is _MISSING \
                and f.default_factory is _MISSING:
            values[name] = from_mapping(hints[name], {}, where=_name(where, name))
    try:
        return cls(**values)
    except ConfigError as exc:  # "TrainSettings.max_steps: ..." -> "train.max_steps: ..."
        message, own = str(exc), cls.__name__ + "."
        if where and message.startswith(own):
            raise ConfigError(f"{where}.{message[len(own):]}") from None
        raise


def load_yaml(path: str | Path) -> dict:
    """A YAML file's top-level mapping; a missing file, a parse error, a non-mapping document or a Python
    tag is a `ConfigError` naming the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file" + (" (it is a directory)" if p.is_dir() else ""))
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def apply_sets(data: Mapping, sets: Sequence[str]) -> dict:
    """``data`` (a deep copy) with ``key.sub[.index]=value`` overrides applied (values parsed as YAML)."""
    import copy

    import yaml

    out = copy.deepcopy(dict(data))
    for item in sets:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--set expects key.sub=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({str(exc).splitlines()[0]})") from None
        *parents, leaf = key.strip().split(".")
        target: Any = out
        for depth, part in enumerate(parents):
            if isinstance(target, list):
                target = target[_index(part, target, item)]
            else:
                nxt = (parents + [leaf])[depth + 1]
                if target.get(part) is None and nxt.isdigit():
                    path = ".".join(parents[:depth + 1])
                    raise ConfigError(f"--set {item!r}: {path} is not set, so it has no item {nxt}; give the whole "
                                      f"list, e.g. --set {path}=[...]")
                if target.get(part) is None:
                    target[part] = {}
                target = target[part]
            if not isinstance(target, (dict, list)):
                raise ConfigError(f"--set {item!r}: {'.'.join(parents[:depth + 1])} is {target!r}, not a mapping or list")
        if isinstance(target, list):
            target[_index(leaf, target, item)] = value
        else:
            target[leaf] = value
    return out


def _index(part: str, target: list, item: str) -> int:
    if not part.isdigit() or int(part) >= len(target):
        raise ConfigError(f"--set {item!r}: {part!r} is not an index of a list of {len(target)} items")
    return int(part)


def build(cls: type[T], path: str | Path | None = None, sets: Sequence[str] = (), **values) -> T:
    """``cls`` from its defaults <- the YAML file ``path`` <- ``sets`` <- ``values`` (sections as mappings)."""
    data = load_yaml(path) if path else {}
    data = apply_sets(data, sets)
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return from_mapping(cls, data)


def to_dict(obj: Settings) -> dict:
    """The JSON form (tuples as lists) of a settings dataclass; `from_mapping` reads it back."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not _MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not _MISSING else "(required)"


def _kind(f: dataclasses.Field, tp) -> str:
    """``type; range, choices`` of a field, as `describe` and `add_options` show it."""
    extra = [f"{k} {f.metadata[k]}" for k in ("min", "gt", "max") if f.metadata.get(k) is not None]
    if f.metadata.get("choices"):
        extra.append("one of " + "/".join(map(str, f.metadata["choices"])))
    if f.metadata.get("exists"):
        extra.append(f"an existing {'directory' if f.metadata['exists'] == 'dir' else 'file'}")
    return _type_name(tp) + ("; " + ", ".join(extra) if extra else "")


def describe(cls: type, prefix: str = "") -> str:
    """Every setting of ``cls`` (sections recursed) with its type, default, range and help: ``--help``'s epilog."""
    lines, hints = [], _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(describe(tp, f"{prefix}{f.name}."))
            continue
        help_ = f.metadata.get("help", "")
        lines.append(f"  {prefix}{f.name} = {_default(f)!r}  [{_kind(f, tp)}]" + (f"  {help_}" if help_ else ""))
    return "\n".join(lines)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """An option ``--a-name`` on ``parser`` for each setting ``a_name`` of the flat settings class ``cls``,
    its help the setting's help, type, range and default. A setting without a default is a required
    option; a bool one is ``--name`` / ``--no-name``; a list one takes values separated by spaces or
    commas. An option not given stays out of the namespace: `from_args` takes the default."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            raise TypeError(f"add_options: {cls.__name__}.{f.name} is a section; options are flat")
        required = f.default is _MISSING and f.default_factory is _MISSING
        facts = f"[{_kind(f, tp)}; {'required' if required else f'default {_default(f)!r}'}]"
        help_ = f"{f.metadata.get('help', '')} {facts}".strip().replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "required": required, "help": help_}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if typing.get_origin(_optional(tp)) in (tuple, list):
                kwargs["nargs"] = "+"
            kwargs["metavar"] = {"file": "FILE", "dir": "DIR"}.get(f.metadata.get("exists")) or \
                {int: "N", float: "X"}.get(_optional(tp)) or f.name.upper()
        parser.add_argument(_option(f.name), **kwargs)


def _optional(tp):
    """``X`` of ``X | None``; other annotations unchanged."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (Union, types.UnionType) and len(args) == 1 else tp


def _from_text(text: str, tp) -> Any:
    """Option text as annotation ``tp`` takes it: a string kept as given, anything else read as YAML (what
    YAML cannot read stays text, for the type check to refuse)."""
    import yaml

    if _optional(tp) is str:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def from_args(cls: type[T], args: argparse.Namespace, defaults: Mapping | None = None) -> T:
    """``cls`` from the options `add_options` declared, parsed into ``args``, over ``defaults`` (values of
    settings whose option was not given, e.g. a preset's); a wrong value is a `ConfigError` naming its option."""
    hints, given = _hints(cls), vars(args)
    data = dict(defaults or {})
    for f in dataclasses.fields(cls):
        if f.name not in given:
            continue
        value, tp = given[f.name], _optional(hints[f.name])
        if typing.get_origin(tp) in (tuple, list):  # nargs="+": each argument split at commas
            item = (typing.get_args(tp) or (Any,))[0]
            value = [_from_text(v.strip(), item) for text in value for v in text.split(",") if v.strip()]
        elif isinstance(value, str):  # not a --flag / --no-flag bool
            value = _from_text(value, tp)
        data[f.name] = value
    try:
        return from_mapping(cls, data)
    except ConfigError as exc:  # "JobSettings.max_tokens: ..." -> "--max-tokens: ..."
        message = str(exc)
        for f in dataclasses.fields(cls):
            own = f"{cls.__name__}.{f.name}"
            if message.startswith(own) and message[len(own):len(own) + 1] in (":", "."):
                raise ConfigError(_option(f.name) + message[len(own):]) from None
        raise
