"""What ``ray_jobs/train.py`` trains: named tasks that bundle a model preset with its data.

A task provides ``build_model()``, ``train_samples()`` (an indexable list of per-region inputs),
``collate(samples, device)``, ``loss(model, batch)`` and ``evaluate(model)`` (validation metrics).
Registered:

* ``regionworld-captioner`` — a DAM or SCA preset (``preset``: any `regionlib.models.PRESETS`
  name of kind ``dam`` / ``sca``, plus config ``overrides``) trained to caption the regions of
  ``n_images`` RegionWorld training images (``world_seed``) — plus, with ``self_labels``, the
  regions of a ``ray_jobs/self_label.py`` output — validated with CIDEr-D on the regions of
  ``n_val`` validation images. DAM regions are given by their masks (the variant's
  focal prompt); SCA regions by their tight boxes (SCA's box prompt). Each training sample is
  one region with its model inputs precomputed once (the frozen SAM encoder runs once per image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .errors import ConfigError

__all__ = ["TASKS", "create_task", "load_trained_model", "RegionWorldCaptionTask", "SCA_PROMPTS", "sca_prompts",
           "region_inputs", "collate_inputs", "caption_regions", "self_labeled_regions"]


SCA_PROMPTS = ("box", "cpb", "rpb", "rpm")


def sca_prompts(regions, kind: str = "box", *, seed: int = 0) -> list:
    """SCA's prompt of each region (seed 000 Tab. 7): its tight box, or one positive point — the box
    centre (CPB), a random point in the box (RPB) or a random mask pixel (RPM), seeded."""
    from .prompts import Prompt, cpb_points, rpb_points, rpm_points

    boxes = regions.boxes_xyxy
    if kind == "box":
        return [Prompt(box_xyxy=b) for b in boxes]
    points = {"cpb": lambda: cpb_points(boxes), "rpb": lambda: rpb_points(boxes, seed=seed),
              "rpm": lambda: rpm_points(regions.masks, seed=seed)}
    if kind not in points:
        raise ConfigError(f"prompt must be one of {SCA_PROMPTS}, got {kind!r}")
    return [Prompt(points_xy=[p], point_labels=[1]) for p in points[kind]()]


def region_inputs(model, image, regions, *, prompt: str = "box", seed: int = 0) -> list[dict]:
    """Per-region model inputs (CPU tensors with a leading axis of 1) for the regions of one image.

    DAM: the focal-prompt tensors of each mask. SCA: the image's SAM embedding with each region's
    prompt (`sca_prompts`: ``box`` by default).
    """
    if model.kind == "dam":
        batch = model.prepare(image, regions.masks)
    elif model.kind == "sca":
        with torch.no_grad():
            embedding = model.embed_image(image)[0]
        batch = model.prepare(image, sca_prompts(regions, prompt, seed=seed), image_embedding=embedding)
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


@torch.no_grad()
def caption_regions(model, samples, *, prompt: str = "box", batch_size: int = 32, max_new_tokens: int = 40,
                    seed: int = 0) -> dict[str, str]:
    """Greedy captions of every region of RegionWorld-like ``samples`` -> ``{region id: caption}``."""
    model.eval()
    out = {}
    for s in samples:
        inputs = region_inputs(model, s.image, s.regions, prompt=prompt, seed=seed)
        caps = []
        for k in range(0, len(inputs), batch_size):
            caps += model.generate(collate_inputs(inputs[k: k + batch_size], model.lm_head.device),
                                   max_new_tokens=max_new_tokens)
        out.update({str(i): c for i, c in zip(s.regions.ids, caps)})
    return out


def self_labeled_regions(directory) -> list[tuple]:
    """``ray_jobs/self_label.py`` output over RegionWorld -> ``[(image, Regions), ...]`` per labeled image.

    Images are regenerated from the seeds recorded with each region; masks come from the RLE.
    """
    from .data.regionworld import SPLITS, generate_sample
    from .errors import DataFormatError
    from .masks import decode_rle
    from .regions import Regions
    from .shards import read_jsonl_shards

    by_image: dict[str, list[dict]] = {}
    for rec in read_jsonl_shards(directory):
        by_image.setdefault(rec["image_id"], []).append(rec)
    out = []
    for image_id in sorted(by_image):
        recs = sorted(by_image[image_id], key=lambda r: r["index"])
        origin = recs[0]["image"]
        if "regionworld" not in origin:
            raise DataFormatError(f"{directory}: record {recs[0]['id']} has no RegionWorld origin; "
                                  "only RegionWorld self-labels are regenerated here")
        seed, split, index = origin["regionworld"]
        image = generate_sample((seed, SPLITS[split], index), split=split).image
        masks = decode_rle([r["mask"] for r in recs])
        out.append((image, Regions.from_masks(masks, captions=[r["caption"] for r in recs],
                                              labels=[r["class_name"] for r in recs], ids=[r["id"] for r in recs])))
    return out


@dataclass
class RegionWorldCaptionTask:
    preset: str = "tiny-dam"
    n_images: int = 32
    n_val: int = 4
    world_seed: int = 0
    label_smoothing: float | None = None
    max_new_tokens: int = 40
    self_labels: str | None = None  # a ray_jobs/self_label.py output directory to train on as well
    overrides: dict = field(default_factory=dict)
    seed: int = 0
    _val: list | None = field(default=None, init=False, repr=False)  # validation inputs, built on first use

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
        out = self._samples("train", self.n_images)
        if self.self_labels:
            for image, regions in self_labeled_regions(self.self_labels):
                for inputs, caption in zip(region_inputs(self._model, image, regions), regions.captions):
                    out.append({"inputs": inputs, "caption": caption})
        return out

    def collate(self, samples, device="cpu") -> dict:
        return {"inputs": collate_inputs([s["inputs"] for s in samples], device),
                "captions": [s["caption"] for s in samples]}

    def loss(self, model, batch) -> torch.Tensor:
        module = getattr(model, "module", model)  # DDP-wrapped or not
        return module.loss(batch["inputs"], batch["captions"], label_smoothing=self.label_smoothing)

    def evaluate(self, model) -> dict:
        from .evaluation.fast_captions import cider_d

        if self._val is None:
            self._val = self._samples("val", self.n_val)
        samples = self._val
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
