"""Training recipes, optimisation and resumable training state (used by `regionlib.training.loop`).

Recipes (REFERENCE §1, §4):

* ``sca`` — SCA Tab. 1: AdamW (0.9, 0.999), lr 1e-4 scaled linearly with the batch size
  relative to 64 and capped at 4e-4, cosine decay after 200 warmup steps, weight decay 1e-4,
  gradient clipping 1.0, label smoothing 0.1.
* ``dam`` — DAM App. H.2: AdamW, lr 1e-4 (3B), cosine decay with warmup ratio 0.03, no weight
  decay, 1 epoch.

`TrainState` saves and restores everything a bit-exact resume needs: weights (safetensors),
optimizer state (tensors in safetensors, the rest in JSON), scheduler state, step, and the
torch / numpy / Python RNG states. Nothing is pickled. FSDP runs (`TrainState.save_sharded` /
`load_sharded`) keep model + optimizer as per-rank ``torch.distributed.checkpoint`` shards under
``sharded/`` (resumable on another worker count) beside the consolidated model directory.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file

from ..config import Settings, from_mapping, setting, to_dict
from ..errors import CheckpointError, ConfigError
from ..runtime.shards import atomic_write_bytes

__all__ = ["Recipe", "RECIPES", "get_recipe", "build_optimizer", "build_scheduler", "TrainState"]


@dataclass(frozen=True)
class Recipe(Settings):
    """Optimisation hyper-parameters (one named set per paper, `RECIPES`); as a config section its
    ``name`` selects the named values and the other keys override them."""

    name: str = setting("dam", help="a key of RECIPES: its values are the defaults of the other fields")
    lr: float = setting(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = setting(1e-8, gt=0)
    weight_decay: float = setting(0.0, min=0)
    warmup_steps: int = setting(0, min=0)
    warmup_ratio: float = setting(0.0, min=0, max=1)
    grad_clip: float | None = setting(1.0, gt=0)
    label_smoothing: float = setting(0.0, min=0, max=0.999)
    lr_batch_reference: int | None = setting(None, min=1, help="scale lr linearly with batch / this, if set")
    lr_cap: float | None = setting(None, gt=0)
    # {fnmatch pattern of parameter names: lr factor}, the first matching pattern wins: a learning-rate
    # group for parts a base lacks (DAM's mask embedding and adapters) and a larger one for the gates
    lr_multipliers: dict[str, float] | None = None
    # {role: lr factor} for the parameter roles the model declares (RegionModel.lr_groups: DAM's "gates",
    # "new"), applied after lr_multipliers in the model's order
    lr_roles: dict[str, float] | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.name not in RECIPES and RECIPES:
            raise ConfigError(f"Recipe.name: must be one of {sorted(RECIPES)}, got {self.name!r}")
        for name in ("lr_multipliers", "lr_roles"):
            for key, factor in (getattr(self, name) or {}).items():
                if not factor > 0:
                    raise ConfigError(f"Recipe.{name}[{key!r}] must be a positive number, got {factor!r}")

    @classmethod
    def named_defaults(cls, data) -> dict:
        """The values of the recipe ``data["name"]`` (default ``dam``)."""
        name = data.get("name", "dam")
        if name not in RECIPES:
            from ..config import _suggest

            raise ConfigError(f"recipe.name: must be one of {sorted(RECIPES)}, got {name!r}{_suggest(name, RECIPES)}")
        return to_dict(RECIPES[name])

    def scaled_lr(self, batch_size: int) -> float:
        lr = self.lr
        if self.lr_batch_reference:
            lr = lr * batch_size / self.lr_batch_reference
        return min(lr, self.lr_cap) if self.lr_cap else lr

    def warmup_for(self, total_steps: int) -> int:
        return self.warmup_steps or int(math.ceil(self.warmup_ratio * total_steps))


RECIPES: dict[str, Recipe] = {}
RECIPES.update({
    "sca": Recipe(name="sca", lr=1e-4, weight_decay=1e-4, warmup_steps=200, grad_clip=1.0, label_smoothing=0.1,
                  lr_batch_reference=64, lr_cap=4e-4),
    "dam": Recipe(name="dam", lr=1e-4, weight_decay=0.0, warmup_ratio=0.03, grad_clip=1.0, label_smoothing=0.0),
})


def get_recipe(name: str, **overrides) -> Recipe:
    """A named recipe with keyword overrides (e.g. ``warmup_steps=5`` for a short run); unknown fields,
    wrong types and out-of-range values are a `ConfigError` naming the field."""
    return from_mapping(Recipe, {"name": name, **overrides}, where="recipe")


def build_optimizer(model: torch.nn.Module, recipe: Recipe, *, batch_size: int) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norms (1-d tensors); per-group
    learning rates ``lr * factor`` from ``recipe.lr_multipliers`` (parameter-name patterns) and
    ``recipe.lr_roles`` (the roles ``model.lr_groups()`` declares; the first matching pattern wins)."""
    from fnmatch import fnmatchcase

    patterns = list((recipe.lr_multipliers or {}).items())
    if recipe.lr_roles:
        from ..models.checkpoint import RegionModel

        declared = model.lr_groups() if isinstance(model, RegionModel) else {}
        unknown = sorted(set(recipe.lr_roles) - set(declared))
        if unknown:
            raise ConfigError(f"recipe.lr_roles {unknown}: a {type(model).__name__} declares the roles "
                              f"{sorted(declared)} (RegionModel.lr_groups)")
        patterns += [(pattern, recipe.lr_roles[role]) for role, group in declared.items() if role in recipe.lr_roles
                     for pattern in group]
    lr = recipe.scaled_lr(batch_size)
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            factor = next((float(f) for pat, f in patterns if fnmatchcase(name, pat)), 1.0)
            groups.setdefault((factor, p.ndim > 1), []).append(p)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    unused = [pat for pat, _ in patterns if not any(fnmatchcase(n, pat) for n, p in model.named_parameters()
                                                    if p.requires_grad)]
    if unused:
        raise ConfigError(f"recipe.lr_multipliers patterns {unused} match no trainable parameter")
    return torch.optim.AdamW([{"params": ps, "lr": lr * factor, "weight_decay": recipe.weight_decay if decay else 0.0}
                              for (factor, decay), ps in sorted(groups.items())],
                             lr=lr, betas=tuple(recipe.betas), eps=recipe.eps)


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, *, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay to 0 over ``total_steps``."""
    warmup = recipe.warmup_for(total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainState:
    """A resumable snapshot: ``step`` plus model / optimizer / scheduler / RNG state.

    The directory is the model's `RegionModel.save_pretrained` output (config, weights, tokenizer)
    with ``optimizer.safetensors``, ``rng.safetensors`` and ``state.json`` beside it.
    """

    step: int

    @staticmethod
    def save(directory: str | Path, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler, config: dict) -> Path:
        d = Path(model.save_pretrained(directory))  # a model directory `RegionModel.from_pretrained` opens
        opt = optimizer.state_dict()
        tensors, plain = {}, {}
        for pid, st in opt["state"].items():
            for name, value in st.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
                else:
                    plain[f"{pid}.{name}"] = value
        save_file(tensors, str(d / "optimizer.safetensors"))
        save_file({"torch_rng": torch.get_rng_state()}, str(d / "rng.safetensors"))
        meta = {
            "step": step,
            "config": config,
            "optimizer_param_groups": opt["param_groups"],
            "optimizer_plain_state": plain,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            **_host_rng(),
        }
        atomic_write_bytes(d / "state.json", json.dumps(meta).encode())
        return d

    @staticmethod
    def save_sharded(directory: str | Path, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler, config: dict, rank: int, consolidate) -> Path:
        """The FSDP checkpoint (collective: every rank calls it with its own ``directory``).

        Every rank writes its shard of the model and optimizer state with ``torch.distributed.checkpoint``
        under ``directory/sharded/`` (rank 0 adds DCP's ``.metadata``); ``consolidate()`` (collective)
        gathers the full weights into an unsharded copy on rank 0, which writes it with
        `RegionModel.save_pretrained` (``model.safetensors`` + config + tokenizer: `from_pretrained`
        opens the checkpoint), then ``rng.safetensors`` and ``state.json`` (``"sharded": true``; no
        ``optimizer.safetensors``: the optimizer state lives in the shards only). The workers'
        directories are merged by the context (`DistributedContext.report`, Ray Train).
        """
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        d = Path(directory)
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(d / "sharded"))
        full = consolidate()
        if rank == 0:
            full.save_pretrained(d)
            save_file({"torch_rng": torch.get_rng_state()}, str(d / "rng.safetensors"))
            meta = {"step": step, "config": config, "sharded": True,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None, **_host_rng()}
            atomic_write_bytes(d / "state.json", json.dumps(meta).encode())
        return d

    @staticmethod
    def load_sharded(directory: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler=None) -> dict:
        """Restore an FSDP-sharded ``model`` and its ``optimizer`` from `save_sharded`'s ``sharded/`` (DCP
        reshards: the checkpoint may come from another worker count); scheduler and RNG from the files
        beside it. Collective. A checkpoint without ``sharded/`` (written by DDP or one process) is a
        `CheckpointError`: resume those with ``run.strategy=ddp``."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        d = Path(directory)
        if not (d / "sharded" / ".metadata").is_file() or not (d / "state.json").is_file():
            raise CheckpointError(f"{d}: no sharded/.metadata or state.json: not a complete FSDP checkpoint "
                                  "(a DDP / one-process checkpoint resumes with run.strategy=ddp)")
        meta = json.loads((d / "state.json").read_text())
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        try:  # partial: parameters that never had a gradient (DAM's unused blocks) have no optimizer state
            dcp.load(state, checkpoint_id=str(d / "sharded"), planner=DefaultLoadPlanner(allow_partial_load=True))
        except Exception as exc:  # DCP raises CheckpointException / RuntimeError on a mismatch
            raise CheckpointError(f"{d}/sharded disagrees with the model or optimizer ({exc})") from exc
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        TrainState._restore_host(d, meta, scheduler)
        return meta

    @staticmethod
    def _restore_host(d: Path, meta: dict, scheduler) -> None:
        if scheduler is not None and meta["scheduler"] is not None:
            scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(load_file(str(d / "rng.safetensors"))["torch_rng"])
        np_rng = meta["numpy_rng"]
        np.random.set_state((np_rng[0], np.array(np_rng[1], dtype=np.uint32), *np_rng[2:]))
        py = meta["python_rng"]
        random.setstate((py[0], tuple(py[1]), py[2]))

    @staticmethod
    def load(directory: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
             scheduler=None) -> dict:
        """Restore in place; returns the saved JSON metadata (``step``, ``config``, ...)."""
        d = Path(directory)
        for name in ("model.safetensors", "state.json"):
            if not (d / name).exists():
                raise CheckpointError(f"{d}: missing {name}")
        meta = json.loads((d / "state.json").read_text())
        if meta.get("sharded") and optimizer is not None:
            raise CheckpointError(f"{d} was written by FSDP (optimizer state in sharded/ only): resume it with "
                                  "run.strategy=fsdp, on any number of workers")
        try:
            load_model(model, str(d / "model.safetensors"), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{d}: weights disagree with the model ({exc})") from exc
        if optimizer is not None:
            tensors = load_file(str(d / "optimizer.safetensors"))
            state: dict = {}
            for key, value in {**tensors, **meta["optimizer_plain_state"]}.items():
                pid, name = key.split(".", 1)
                state.setdefault(int(pid), {})[name] = value
            optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
        TrainState._restore_host(d, meta, scheduler)
        return meta


def _host_rng() -> dict:
    """numpy's and Python's RNG states as JSON."""
    np_state = np.random.get_state()
    return {"numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}

