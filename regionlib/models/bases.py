"""Pretrained bases the tiny presets start from: ``create_model("tiny-dam", base="regionworld")``.

A base is a directory written by `regionlib.training.pretrain` (``make pretrain``):

* ``sam.safetensors`` — a tiny segment-anything SAM (preset ``"tiny"``) in the released SAM
  state-dict layout, trained for promptable segmentation;
* ``vl/`` — a vision encoder + projector + LM with its tokenizer (`RegionModel.save_pretrained` of
  a ``tiny-dam-full`` captioner whose mask embedding stayed zero): an image captioner;
* ``manifest.json`` — the command, seeds and steps that made it, its measured quality, file hashes.

``"regionworld"`` is shipped in the package (``regionlib/models/pretrained/regionworld``, trained on
RegionWorld alone); any other base is given by its directory. Starting from a base is what the seeds
do: DAM adds its zero-initialised mask embedding and cross-attention adapters to a pretrained VLM
(seed 003 §3.2) — here the vision encoder, projector and LM come from ``vl/`` and the new parts keep
their zero init; SCA trains its mixer over a *frozen pretrained* SAM and a pretrained LM (seed 000
§3) — here ``sam.safetensors`` through ``sam_checkpoint`` and the LM from ``vl/``.

Real checkpoints replace a base by path (``vision__path``, ``lm__path``, ``sam_checkpoint``); a base
and a path for the same part together are a `ConfigError`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError

__all__ = ["BASES", "base_directory", "base_manifest", "load_base_sam", "load_base_captioner", "apply_base"]

#: bases shipped with the package, by name
BASES = {"regionworld": Path(__file__).resolve().parent / "pretrained" / "regionworld"}


def base_directory(base: str | Path) -> Path:
    """The directory of ``base`` (a name of `BASES` or a path), checked to hold a complete base."""
    if isinstance(base, str) and base in BASES:
        d = BASES[base]
    elif isinstance(base, (str, Path)) and Path(base).is_dir():
        d = Path(base)
    else:
        raise ConfigError(f"base must be one of {sorted(BASES)} or a directory written by "
                          f"`python -m regionlib.training.pretrain --out DIR`, got {base!r}")
    missing = [f for f in ("manifest.json", "sam.safetensors", "vl/model.safetensors") if not (d / f).is_file()]
    if missing:
        raise CheckpointError(f"base {str(d)!r} lacks {missing}; rebuild it with `make pretrain`")
    return d


def base_manifest(base: str | Path = "regionworld") -> dict:
    """The base's ``manifest.json`` (command, settings, measured quality, file hashes)."""
    d = base_directory(base)
    try:
        return json.loads((d / "manifest.json").read_text())
    except ValueError as exc:
        raise CheckpointError(f"{d / 'manifest.json'}: not valid JSON ({exc})") from exc


def load_base_sam(base: str | Path = "regionworld"):
    """The base's pretrained tiny SAM (a segment-anything `Sam`, eval mode)."""
    from ..sam import build_sam

    return build_sam("tiny", checkpoint=base_directory(base) / "sam.safetensors")


def load_base_captioner(base: str | Path = "regionworld", *, device: str | torch.device = "cpu"):
    """The base's image captioner itself (a ``tiny-dam-full`` `DAM`; its mask embedding is zero)."""
    from .checkpoint import RegionModel

    return RegionModel.from_pretrained(base_directory(base) / "vl", device=device)


def _load_part(target: torch.nn.Module, source: torch.nn.Module, part: str, preset: str, base: Path) -> None:
    """Copy ``source``'s weights into ``target`` exactly: every key present, every shape equal."""
    want, have = target.state_dict(), source.state_dict()
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = [f"{k}: base {tuple(have[k].shape)} vs preset {tuple(v.shape)}" for k, v in want.items()
             if k in have and have[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"base {str(base)!r} does not fit preset {preset!r} in its {part}: "
            + "; ".join([f"missing {missing[:5]}"] * bool(missing) + [f"unexpected {unexpected[:5]}"] * bool(unexpected)
                        + [f"shape mismatch {wrong[:5]}"] * bool(wrong))
            + " (bases fit the tiny-dam* and tiny-sca* presets with their default vision encoder and LM)")
    target.load_state_dict(have, strict=True)


def apply_base(kind: str, config, base: str | Path, *, preset: str, tokenizer=None, tokenizer_texts=()):
    """``(config, tokenizer, finish)`` for building preset ``preset`` from ``base``: the config names the
    base's SAM (SCA), the tokenizer is the base's, and ``finish(model)`` copies the base's pretrained
    parts into the built model (the parts a preset adds keep their initialisation)."""
    import dataclasses

    d = base_directory(base)
    if kind not in ("dam", "sca"):
        raise ConfigError(f"preset {preset!r} is a {kind!r} model; base= applies to DAM and SCA presets only")
    if config.lm.path is not None or getattr(getattr(config, "vision", None), "path", None) is not None:
        raise ConfigError(f"preset {preset!r}: base={base!r} and a vision / LM path are exclusive: a path "
                          "replaces the base's part")
    if kind == "sca":
        if config.sam_checkpoint is not None:
            raise ConfigError(f"preset {preset!r}: base={base!r} and sam_checkpoint are exclusive")
        if config.sam_preset != "tiny":
            raise ConfigError(f"preset {preset!r}: the base's SAM is preset 'tiny', not {config.sam_preset!r}")
        config = dataclasses.replace(config, sam_checkpoint=str(d / "sam.safetensors"))
    source = load_base_captioner(d)
    base_tok = source.lm_head.tokenizer
    if tokenizer is not None and tokenizer.get_vocab() != base_tok.get_vocab():
        raise CheckpointError(f"preset {preset!r}: the tokenizer passed differs from base {str(d)!r}'s; "
                              "leave tokenizer=None to use the base's")
    vocab = base_tok.get_vocab()
    unknown = sorted({w for text in tokenizer_texts for w in base_tok.tokenize(text)
                      if w not in vocab or w == base_tok.unk_token})
    if unknown:
        raise ConfigError(f"base {str(d)!r}'s tokenizer lacks words of tokenizer_texts: {unknown[:10]}")

    def finish(model):
        _load_part(model.lm_head, source.lm_head, "LM", preset, d)
        if kind == "dam":
            _load_part(model.backbone.vision, source.backbone.vision, "vision encoder", preset, d)
            _load_part(model.projector, source.projector, "projector", preset, d)
        return model

    return config, base_tok, finish
