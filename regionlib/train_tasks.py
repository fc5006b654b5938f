"""What ``ray_jobs/train.py`` trains: named tasks that bundle a model preset with its data.

A task provides ``build_model()``, ``train_samples()`` (an indexable list of per-region inputs),
``collate(samples, device)``, ``loss(model, batch)`` and ``evaluate(model)`` (validation metrics).
Registered:

* ``regionworld-captioner`` — a DAM or SCA preset (``preset``: any `regionlib.models.PRESETS`
  name of kind ``dam`` / ``sca``, plus config ``overrides``) trained to caption the regions of
  ``n_images`` RegionWorld training images (``world_seed``), validated with CIDEr-D on the
  regions of ``n_val`` validation images. DAM regions are given by their masks (the variant's
  focal prompt); SCA regions by their tight boxes (SCA's box prompt). Each training sample is
  one region with its model inputs precomputed once (the frozen SAM encoder runs once per image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .errors import ConfigError

__all__ = ["TASKS", "create_task", "load_trained_model", "RegionWorldCaptionTask", "region_inputs", "collate_inputs"]


def region_inputs(model, image, regions) -> list[dict]:
    """Per-region model inputs (CPU tensors with a leading axis of 1) for the regions of one image.

    DAM: the focal-prompt tensors of each mask. SCA: the image's SAM embedding with each region's
    tight-box prompt.
    """
    from .prompts import Prompt

    if model.kind == "dam":
        batch = model.prepare(image, regions.masks)
    elif model.kind == "sca":
        with torch.no_grad():
            embedding = model.embed_image(image)[0]
        batch = model.prepare(image, [Prompt(box_xyxy=b) for b in regions.boxes_xyxy], image_embedding=embedding)
        batch["image_embeddings"] = batch["image_embeddings"].expand(len(regions), -1, -1, -1)
        batch["image_index"] = torch.arange(len(regions))
    else:
        raise ConfigError(f"regionworld-captioner trains DAM or SCA presets, got a {model.kind!r} model")
    return [{k: v[i: i + 1].detach().cpu() for k, v in batch.items()} for i in range(len(regions))]


def collate_inputs(samples: Sequence[dict], device="cpu") -> dict:
    """Concatenate per-region inputs along the batch axis (``image_index`` renumbered 0..B-1)."""
    out = {k: torch.cat([s[k] for s in samples]).to(device) for k in samples[0] if k != "image_index"}
    if "image_index" in samples[0]:
        out["image_index"] = torch.arange(len(samples), device=device)
    return out


def _words(text: str) -> str:
    """Lower-cased words, punctuation dropped (PTB-like, no Java needed for a validation metric)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@dataclass
class RegionWorldCaptionTask:
    preset: str = "tiny-dam"
    n_images: int = 32
    n_val: int = 4
    world_seed: int = 0
    label_smoothing: float | None = None
    max_new_tokens: int = 40
    overrides: dict = field(default_factory=dict)
    seed: int = 0

    def build_model(self):
        from .data.grammar import caption_words
        from .models import create_model
        from .models.tokenizer import builtin_tokenizer

        tokenizer = builtin_tokenizer([" ".join(caption_words())])
        self._model = create_model(self.preset, tokenizer=tokenizer, seed=self.seed, **self.overrides)
        return self._model

    def _samples(self, split: str, n: int) -> list[dict]:
        from .data.regionworld import generate_regionworld

        out = []
        for s in generate_regionworld(n, seed=self.world_seed, split=split):
            for inputs, caption in zip(region_inputs(self._model, s.image, s.regions), s.regions.captions):
                out.append({"inputs": inputs, "caption": caption})
        return out

    def train_samples(self) -> list[dict]:
        return self._samples("train", self.n_images)

    def collate(self, samples, device="cpu") -> dict:
        return {"inputs": collate_inputs([s["inputs"] for s in samples], device),
                "captions": [s["caption"] for s in samples]}

    def loss(self, model, batch) -> torch.Tensor:
        module = getattr(model, "module", model)  # DDP-wrapped or not
        return module.loss(batch["inputs"], batch["captions"], label_smoothing=self.label_smoothing)

    def evaluate(self, model) -> dict:
        from .evaluation.fast_captions import cider_d

        samples = self._samples("val", self.n_val)
        was_training = model.training
        model.eval()
        preds = model.generate(self.collate(samples)["inputs"], max_new_tokens=self.max_new_tokens)
        model.train(was_training)
        refs = [[_words(s["caption"])] for s in samples]
        return {"CIDEr": cider_d([_words(p) for p in preds], refs)[0]}


TASKS = {"regionworld-captioner": RegionWorldCaptionTask}


def create_task(config: dict, *, seed: int = 0):
    """Instantiate the task named ``config["name"]`` with the remaining keys as options."""
    options = dict(config)
    name = options.pop("name", None)
    if name not in TASKS:
        raise ConfigError(f"task name must be one of {sorted(TASKS)}, got {name!r}")
    try:
        return TASKS[name](seed=seed, **options)
    except TypeError as exc:
        raise ConfigError(f"bad options for task {name!r}: {exc}") from exc


def load_trained_model(checkpoint_dir):
    """The model of a ``ray_jobs/train.py`` checkpoint (its task config rebuilds it; weights loaded)."""
    import json
    from pathlib import Path

    from .errors import CheckpointError
    from .training import TrainState

    d = Path(checkpoint_dir)
    try:
        cfg = json.loads((d / "state.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{d}: not a ray_jobs/train.py checkpoint (state.json with a config): {exc}") from exc
    task = create_task(cfg["task"], seed=int(cfg["train"]["seed"]))
    model = task.build_model()
    TrainState.load(d, model=model)
    return model.eval()
