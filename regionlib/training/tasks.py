"""What the training loop (`regionlib.training.loop`) trains: named tasks bundling a model preset with its data.

A task provides ``build_model()``, ``train_samples()`` (an indexable list of region references),
``collate(samples, device)`` (the model inputs of a batch, built on the fly through the model's
``encode_image`` / ``region_inputs`` / ``collate``; each image's encoding is computed once and
kept, since ``encode_image`` never trains), ``loss(model, batch)`` (through the — possibly DDP-
wrapped — model's ``forward``) and ``evaluate(model)`` (validation metrics through
`RegionPredictor`). Registered:

* ``regionworld-captioner`` — a DAM or SCA preset (``preset``: any captioning preset of
  `regionlib.models.PRESETS`, plus config ``overrides``) trained to caption the regions of
  ``n_images`` RegionWorld training images (``world_seed``) — plus, with ``self_labels``, the
  regions of a self-labeling output — validated with CIDEr-D on the regions of ``n_val``
  validation images. Each region is given as `Regions` (mask and box); the model's
  ``region_inputs`` turns it into its own prompt (DAM: the variant's focal prompt; SCA: the box).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError

__all__ = ["TASKS", "create_task", "load_trained_model", "RegionWorldCaptionTask", "self_labeled_regions"]


def _words(text: str) -> str:
    """Lower-cased words, punctuation dropped (PTB-like, no Java needed for a validation metric)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def self_labeled_regions(directory) -> list[tuple]:
    """``ray_jobs/self_label.py`` output -> ``[(image, Regions), ...]`` per labeled image.

    Each record is a training triplet (image reference, COCO-RLE mask, caption) with its class name.
    The image is regenerated from the seeds recorded with a RegionWorld record (``image.regionworld``)
    or read from the file of an image-folder / COCO record (``image.path``); its size must be the
    record's ``image_size``. Masks come from the RLE. Shards are verified as they are read.
    """
    from ..data.regionworld import SPLITS, generate_sample
    from ..errors import DataFormatError
    from ..images import load_image
    from ..masks import decode_rle
    from ..regions import Regions
    from ..shards import read_jsonl_shards

    by_image: dict[str, list[dict]] = {}
    for rec in read_jsonl_shards(directory):
        by_image.setdefault(rec["image_id"], []).append(rec)
    out = []
    for image_id in sorted(by_image):
        recs = sorted(by_image[image_id], key=lambda r: r["index"])
        origin = recs[0].get("image") or {}
        if "regionworld" in origin:
            seed, split, index = origin["regionworld"]
            image = generate_sample((seed, SPLITS[split], index), split=split).image
        elif "path" in origin:
            image = load_image(origin["path"])
        else:
            raise DataFormatError(f"{directory}: record {recs[0]['id']} says neither where its image is "
                                  "(image.path) nor how to regenerate it (image.regionworld)")
        size = tuple(recs[0].get("image_size") or image.shape[:2])
        if tuple(image.shape[:2]) != size:
            raise DataFormatError(f"{directory}: record {recs[0]['id']} was labeled on a {size} image, "
                                  f"its image {origin} is {tuple(image.shape[:2])}")
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
    self_labels: str | None = None  # a self-labeling output directory to train on as well
    overrides: dict = field(default_factory=dict)
    seed: int = 0
    _images: list | None = field(default=None, init=False, repr=False)  # [(image, Regions)] of the training set
    _states: dict = field(default_factory=dict, init=False, repr=False)  # image index -> ImageState

    def build_model(self):
        from ..data.grammar import caption_words
        from ..models import create_model
        from ..models.tokenizer import builtin_tokenizer

        tokenizer = builtin_tokenizer([" ".join(caption_words())])
        self._model = create_model(self.preset, tokenizer=tokenizer, seed=self.seed, **self.overrides)
        return self._model

    def train_samples(self) -> list[tuple[int, int]]:
        """``(image index, region index)`` of every training region (images kept, inputs built per batch)."""
        from ..data.regionworld import generate_regionworld

        self._images = [(s.image, s.regions) for s in generate_regionworld(self.n_images, seed=self.world_seed,
                                                                            split="train")]
        if self.self_labels:
            self._images += self_labeled_regions(self.self_labels)
        return [(i, k) for i, (_, regions) in enumerate(self._images) for k in range(len(regions))]

    def collate(self, samples, device="cpu") -> dict:
        """Model inputs of ``samples`` (`train_samples` entries), grouped by image, on the model's device."""
        import numpy as np

        model = self._model
        by_image: dict[int, list[int]] = {}
        for i, k in samples:
            by_image.setdefault(int(i), []).append(int(k))
        batches = []
        for i, ks in by_image.items():
            image, regions = self._images[i]
            if i not in self._states:
                with torch.no_grad():
                    self._states[i] = model.encode_image(image)
            batches.append(model.region_inputs(self._states[i], regions[np.asarray(ks)]))
        return model.collate(batches)

    def loss(self, model, batch) -> torch.Tensor:
        """The loss through ``model``'s ``forward`` (DDP / FSDP synchronise gradients there)."""
        return model(batch, label_smoothing=self.label_smoothing).loss

    def evaluate(self, model) -> dict:
        """CIDEr-D of greedy captions of the validation regions, through `RegionPredictor`."""
        from ..data.regionworld import generate_regionworld
        from ..evaluation.fast_captions import cider_d
        from ..predictor import RegionPredictor

        was_training = model.training
        predictor = RegionPredictor(model)
        preds, refs = [], []
        for s in generate_regionworld(self.n_val, seed=self.world_seed, split="val"):
            predictor.set_image(s.image)
            preds += predictor.caption(s.regions, max_new_tokens=self.max_new_tokens)
            refs += [[_words(c)] for c in s.regions.captions]
        model.train(was_training)
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
    """The model of a training checkpoint (a `RegionModel.save_pretrained` directory plus training state)."""
    from ..models import RegionModel

    return RegionModel.from_pretrained(checkpoint_dir).eval()
