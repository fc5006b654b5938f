"""What the training loop (`regionlib.training.loop`) trains: named tasks bundling a model preset with its data.

A task provides ``build_model()``, ``epoch_samples(epoch)`` (the region references of one epoch,
the same on every rank), ``collate(samples, device, step=)`` (the model inputs of a batch, built
on the fly: images loaded, augmented, encoded through the model's ``encode_image`` /
``region_inputs`` / ``collate``), ``loss(model, batch)`` (through the — possibly DDP-wrapped —
model's ``forward``) and ``evaluate(model)`` (validation metrics through `RegionPredictor`).
Registered:

* ``region-captioner`` — a captioning preset (DAM, SCA, the pooled captioner; ``preset`` plus
  config ``overrides``) trained to caption the regions of its ``sources``
  (`regionlib.training.data`: any reader, weighted mixtures) — by default ``n_images`` RegionWorld
  training images (``world_seed``), plus, with ``self_labels``, a self-labeling output — with the
  ``augment`` recipe (SCA Tab. 1: large-scale jitter + horizontal flip; DAM App. H.2: prompt
  augmentation), validated with CIDEr-D on the regions of ``n_val`` RegionWorld validation images.
  Each region is given as `Regions` (mask and box); the model's ``region_inputs`` turns it into
  its own prompt (DAM: the variant's focal prompt; SCA: the box). With no pixel augmentation the
  (frozen, region-independent) image encodings of up to ``state_cache`` images are kept.

  ``feature_cache: DIR`` (SCA): the frozen SAM's image embeddings come from a feature cache
  (`regionlib.runtime.feature_cache.FeatureCache`, written by ``ray_jobs/cache_features.py`` /
  `regionlib.runtime.feature_cache.cache_sam_features`) instead of
  running SAM's image encoder: ``cache[image_id]`` ``(C, g, g)`` per image, keyed by the source
  items' ``image_id`` (`regionlib.training.data.ImageItem`), shape-checked against the model's SAM
  embedding; a missing id or another shape is a `DataFormatError` naming the image. The image's
  pixels are not read then (only its size, from the regions). The cache must have been written by
  the same SAM weights over the same images *with the same ids*: ``cache_features.py --images DIR``
  names each image by its path relative to DIR without suffix, so use it on a folder whose file
  names are the reader's image ids (RegionWorld: `RegionWorldSample.image_id`; COCO / LVIS: the
  image id; ...). Only without pixel augmentation (large-scale
  jitter / flip change the pixels the cache stands for): refused with ``augment.lsj`` / ``hflip``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Settings, setting
from ..errors import ConfigError
from .data import Augmentation

__all__ = ["TASKS", "create_task", "load_trained_model", "RegionCaptionConfig", "RegionCaptionTask"]


@dataclass(frozen=True)
class RegionCaptionConfig(Settings):
    """The ``task`` section of a training job: what `RegionCaptionTask` trains (module docstring)."""

    name: str = setting("region-captioner", choices=("region-captioner",), help="a key of TASKS")
    preset: str = setting("tiny-dam", help="a model preset (regionlib.models.list_presets())")
    base: str | None = setting(None, help="a pretrained base (regionlib.models.bases): 'regionworld' or a directory")
    sources: list[dict] | None = setting(None, help="source specs (regionlib.training.data); None: RegionWorld's "
                                                    "n_images")
    n_images: int = setting(32, min=1)
    n_val: int = setting(4, min=0)
    world_seed: int = setting(0, min=0)
    label_smoothing: float | None = setting(None, min=0, max=0.999, help="None: the recipe's")
    max_new_tokens: int = setting(40, min=1)
    self_labels: str | None = setting(None, help="a self-labeling output directory to train on as well")
    augment: Augmentation = field(default_factory=Augmentation)
    epoch_size: int | None = setting(None, min=1)
    state_cache: int = setting(256, min=0, help="image encodings kept (no pixel augmentation)")
    feature_cache: str | None = setting(None, help="a FeatureCache directory of SAM embeddings (SCA)")
    overrides: dict = setting({}, help="create_model overrides of the preset (vision__path=..., lm__lora_r=...)")
    # start from this checkpoint directory instead of the preset: regionlib's own or a released DAM / SCA
    # (RegionModel.from_pretrained converts it); init_lora: LMHead.add_lora's arguments ({}: full fine-tuning)
    init_from: str | None = None
    init_lora: dict = setting({})

    def __post_init__(self):
        super().__post_init__()
        if self.init_from is not None and (self.base is not None or self.overrides):
            raise ConfigError(f"task.init_from={self.init_from!r} brings its own architecture and weights: drop "
                              "task.base and task.overrides (the preset's)")
        if self.init_lora and self.init_from is None:
            raise ConfigError("task.init_lora applies to task.init_from; a preset takes LoRA as "
                              "task.overrides.lm__lora_r")
        if self.feature_cache is not None and self.augment.changes_pixels:
            raise ConfigError(f"task.feature_cache={self.feature_cache!r} stands for the unaugmented images: it "
                              "cannot be used with pixel augmentation (augment.lsj / augment.hflip); drop one")


class RegionCaptionTask:
    """The runtime of a `RegionCaptionConfig`: the model, the sources, the cached image encodings."""

    def __init__(self, config: RegionCaptionConfig, *, seed: int = 0):
        self.config, self.seed = config, seed
        self._model = None
        self._sources: list | None = None
        self._states: dict = {}  # (source, image) -> ImageState
        self._features = None

    def build_model(self):
        """The preset (a real LM by ``lm__path`` brings its own tokenizer; the tiny ones learn RegionWorld's words),
        or the checkpoint ``init_from`` (with LoRA adapters when ``init_lora``)."""
        from ..data.grammar import caption_words
        from ..models import RegionModel, create_model

        if self.config.init_from is not None:
            self._model = RegionModel.from_pretrained(self.config.init_from).train()
            if self.config.init_lora:
                try:
                    self._model.lm_head.add_lora(**self.config.init_lora)
                except TypeError as exc:
                    raise ConfigError(f"task.init_lora: {exc}") from exc
            return self._model
        self._model = create_model(self.config.preset, tokenizer_texts=[" ".join(caption_words())], seed=self.seed,
                                   base=self.config.base, **self.config.overrides)
        return self._model

    def _specs(self) -> list[dict]:
        specs = list(self.config.sources) if self.config.sources else [
            {"reader": "regionworld", "n_images": self.config.n_images, "seed": self.config.world_seed}]
        if self.config.self_labels:
            specs.append({"reader": "self_labels", "path": self.config.self_labels})
        return specs

    def epoch_samples(self, epoch: int) -> list[tuple]:
        """``(source, image, region)`` references of epoch ``epoch`` (`regionlib.training.data.epoch_order`)."""
        from .data import build_sources, epoch_order

        if self._sources is None:
            self._sources = build_sources(self._specs())
        return epoch_order(self._sources, epoch, self.seed, self.config.epoch_size)

    def collate(self, samples, device="cpu", *, step: int = 0) -> dict:
        """Model inputs of ``samples`` (`epoch_samples` entries), grouped by image, on the model's device;
        augmentations drawn from ``(seed, step, image)``."""
        model = self._model
        by_image: dict[tuple, list[int]] = {}
        for s, i, k in samples:
            by_image.setdefault((int(s), int(i)), []).append(int(k))
        batches = []
        for (s, i), ks in by_image.items():
            item = self._sources[s].items[i]
            regions = item.regions[np.asarray(ks)]
            prompts = None
            with torch.no_grad():
                if self.config.augment.changes_pixels or self.config.augment.prompt_aug:
                    rng = np.random.default_rng([self.seed, step, s, i])
                    image, regions, prompts = self.config.augment(item.load(), regions, rng)
                    if len(regions) == 0:  # every sampled region left the jittered crop
                        continue
                if self.config.augment.changes_pixels:
                    state = model.encode_image(image)
                else:
                    state = self._states.get((s, i))
                    if state is None:
                        state = (self._cached_state(item, regions) if self.config.feature_cache is not None
                                 else model.encode_image(item.load()))
                        if len(self._states) < self.config.state_cache:
                            self._states[(s, i)] = state
            kwargs = {} if prompts is None else {"prompts": prompts}
            batches.append(model.region_inputs(state, regions, **kwargs))
        if not batches:
            raise ConfigError("a batch lost every region to augmentation; widen augment.lsj.scale_range")
        return model.collate(batches)

    def _cached_state(self, item, regions):
        """The `ImageState` of ``item`` from the feature cache (the model's `EmbeddingCacheable` side)."""
        from ..errors import DataFormatError
        from ..models.interface import EmbeddingCacheable
        from ..runtime.feature_cache import FeatureCache

        model = self._model
        if not isinstance(model, EmbeddingCacheable):
            raise ConfigError(f"task.feature_cache holds SAM image embeddings; preset {self.config.preset!r} has no SAM")
        if self._features is None:
            self._features = FeatureCache(self.config.feature_cache)
        key = str(item.image_id)
        if key not in self._features:
            raise DataFormatError(f"image {key!r} is not in the feature cache {self.config.feature_cache} "
                                  f"({len(self._features)} images): it must be written over the same images with "
                                  "the same ids (ray_jobs/cache_features.py --images DIR names them by path)")
        emb = self._features[key]
        if tuple(emb.shape) != model.embedding_shape:
            raise DataFormatError(f"image {key!r}: the feature cache {self.config.feature_cache} holds a "
                                  f"{tuple(emb.shape)} embedding, the model's SAM makes {model.embedding_shape}: "
                                  "another SAM")
        return model.state_from_embedding(emb, regions.image_size)

    def loss(self, model, batch, *, label_smoothing: float | None = None, reduction: str = "mean") -> torch.Tensor:
        """The loss through ``model``'s ``forward`` (DDP / FSDP synchronise gradients there); the task's
        label smoothing, else ``label_smoothing`` (the recipe's)."""
        ls = self.config.label_smoothing if self.config.label_smoothing is not None else label_smoothing
        return model(batch, label_smoothing=ls, reduction=reduction).loss

    def evaluate(self, model) -> dict:
        """CIDEr-D of greedy captions of the validation regions, through `RegionPredictor`, on the PTB
        tokens of the final evaluation (`regionlib.evaluation.ptb`: pycocoevalcap's tokens)."""
        from ..data.regionworld import generate_regionworld
        from ..evaluation import fast_captions, ptb
        from ..predictor import RegionPredictor

        was_training = model.training
        predictor = RegionPredictor(model)
        preds, refs = [], []
        for s in generate_regionworld(self.config.n_val, seed=self.config.world_seed, split="val"):
            predictor.set_image(s.image)
            preds += predictor.caption(s.regions, max_new_tokens=self.config.max_new_tokens)
            refs += list(s.regions.captions)
        model.train(was_training)
        hyp, ref = ptb.tokenize_groups([preds, refs])
        return {"CIDEr": fast_captions.cider_d(hyp, [[r] for r in ref])[0]}


TASKS = {"region-captioner": RegionCaptionTask}


def create_task(config: RegionCaptionConfig, *, seed: int = 0) -> RegionCaptionTask:
    """The runtime of the task ``config.name`` (a mapping is read as a `RegionCaptionConfig` first)."""
    from ..config import from_mapping

    if not isinstance(config, RegionCaptionConfig):
        config = from_mapping(RegionCaptionConfig, config, where="task")
    return TASKS[config.name](config, seed=seed)


def load_trained_model(checkpoint_dir):
    """The model of a training checkpoint (a `RegionModel.save_pretrained` directory plus training state)."""
    from ..models import RegionModel

    return RegionModel.from_pretrained(checkpoint_dir).eval()
