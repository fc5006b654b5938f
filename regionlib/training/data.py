"""Training data: region-caption sources from any reader, weighted mixtures and the papers' augmentations.

A *source* is one dataset read through its reader (`regionlib.data.readers`) into image records
``(image_id, load_image, Regions)``; each region's caption is its ``captions`` entry (Visual
Genome, RefCOCO/+/g, RegionWorld, self-labels) or its class name (``targets: labels``: COCO / LVIS
categories, DLC-Bench keywords). Only annotations are held; images are read when a batch needs
them and model inputs are built from them then (never precomputed per rank). Crowd regions
(COCO ``iscrowd = 1``) and regions without a caption are never training targets.

Source specs (YAML / dict): ``{"reader": name, "weight": w, "targets": "captions" | "labels", **reader
arguments}`` with ``name`` one of `READERS`:

==================  ====================================================================
``regionworld``     ``n_images``, ``seed``, ``split``, ``image_size`` — the embedded RegionWorld
``coco`` / ``lvis`` ``annotations``, ``images`` (`read_coco` / `read_lvis`; targets: labels)
``visual_genome``   ``root``, ``split``, ``densecap_splits`` (region descriptions)
``refcoco``         ``root``, ``dataset``, ``split_by``, ``images``, ``split`` (expressions)
``dlc_bench``       ``root`` (keyword data; targets: labels)
``self_labels``     ``path``: a self-labeling output (DLC-SDP triplets)
``hf``              ``path``: an HF dataset saved with ``save_to_disk`` in the row format of
                    `regionlib.data.readers.hf` (``to_hf_dataset``)
==================  ====================================================================

Mixtures (DAM App. H.2 mixes in general caption data): an epoch of ``epoch_size`` regions (default:
all regions of all sources) draws from source ``s`` with probability ``w_s / sum w``, each source
in its own shuffled order (reshuffled when exhausted), all from ``(seed, epoch)`` — the same on
every rank and after restarts.

Augmentation per image, drawn from ``(seed, step, image)``: SCA Tab. 1's large-scale jitter
(``lsj``: output size and scale range) and horizontal flip (``hflip``: probability; left / right
words swapped in the captions); DAM App. H.2's prompt augmentation (``prompt_aug``: per-region
instructions from `PromptAugmenter`, with the class name when the region has one).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..config import Settings, setting
from ..errors import ConfigError
from ..regions import Regions

__all__ = ["READERS", "ImageItem", "Source", "build_sources", "epoch_order", "Augmentation", "LargeScaleJitter"]


@dataclass
class ImageItem:
    """One training image: its id, a loader of its pixels and its trainable regions (captions set)."""

    image_id: str
    load: Callable[[], np.ndarray]
    regions: Regions


@dataclass
class Source:
    name: str
    items: list[ImageItem]
    weight: float

    @property
    def n_regions(self) -> int:
        return sum(len(it.regions) for it in self.items)


def _regionworld(n_images: int, seed: int = 0, split: str = "train", image_size: int | None = None):
    from ..data.regionworld import generate_regionworld

    return [(s.image_id, (lambda img=s.image: img), s.regions)
            for s in generate_regionworld(int(n_images), seed=int(seed), split=split, image_size=image_size)]


def _records(records):
    return [(str(r.image_id), r.load_image, r.regions) for r in records]


def _coco(annotations, images, **kwargs):
    from ..data.readers.coco import read_coco

    return _records(read_coco(annotations, images, **kwargs))


def _lvis(annotations, images, **kwargs):
    from ..data.readers.coco import read_lvis

    return _records(read_lvis(annotations, images, **kwargs))


def _visual_genome(root, **kwargs):
    from ..data.readers.visual_genome import read_visual_genome

    return _records(read_visual_genome(root, **kwargs))


def _refcoco(root, images, **kwargs):
    from ..data.readers.refcoco import read_refcoco

    return _records(read_refcoco(root, image_root=images, **kwargs))


def _dlc_bench(root, **kwargs):
    from ..data.readers.dlc_bench import read_dlc_bench

    return _records(read_dlc_bench(root, **kwargs))


def _self_labels(path):
    from ..selflabel.records import self_labeled_regions

    return [(image_id, (lambda img=image: img), regions) for image_id, image, regions in self_labeled_regions(path)]


def _hf(path):
    import datasets

    from ..data.readers.hf import from_hf_row

    return _records(from_hf_row(row) for row in datasets.load_from_disk(str(path)))


READERS: dict[str, tuple[Callable, str]] = {  # name -> (reader, default targets)
    "regionworld": (_regionworld, "captions"), "coco": (_coco, "labels"), "lvis": (_lvis, "labels"),
    "visual_genome": (_visual_genome, "captions"), "refcoco": (_refcoco, "captions"),
    "dlc_bench": (_dlc_bench, "labels"), "self_labels": (_self_labels, "captions"), "hf": (_hf, "captions"),
}


def _trainable(regions: Regions, targets: str) -> Regions:
    """The regions with a non-empty target text (crowd regions dropped), ``captions`` = that text."""
    texts = regions.captions if targets == "captions" else regions.labels
    if texts is None:
        return regions[np.zeros(len(regions), dtype=bool)]
    crowd = np.asarray(regions.data.get("iscrowd", np.zeros(len(regions))), dtype=bool)
    keep = np.array([bool(t and str(t).strip()) for t in texts], dtype=bool) & ~crowd
    return regions[keep].with_fields(captions=[str(t).strip() for t, k in zip(texts, keep) if k])


def build_sources(specs: Sequence[dict]) -> list[Source]:
    """`Source`s of ``specs`` (module docstring); a source with no trainable region is an error."""
    if not specs:
        raise ConfigError("task.sources must name at least one source")
    out = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        name = spec.pop("reader", None)
        if name not in READERS:
            raise ConfigError(f"sources[{i}].reader must be one of {sorted(READERS)}, got {name!r}")
        reader, default_targets = READERS[name]
        weight = float(spec.pop("weight", 1.0))
        targets = spec.pop("targets", default_targets)
        if targets not in ("captions", "labels") or not weight > 0:
            raise ConfigError(f"sources[{i}]: targets must be 'captions' or 'labels' and weight > 0, "
                              f"got {targets!r}, {weight!r}")
        try:
            rows = reader(**spec)
        except TypeError as exc:
            raise ConfigError(f"sources[{i}] ({name}): bad reader arguments {sorted(spec)} ({exc})") from exc
        items = [ImageItem(image_id, load, _trainable(regions, targets)) for image_id, load, regions in rows]
        items = [it for it in items if len(it.regions)]
        if not items:
            raise ConfigError(f"sources[{i}] ({name}): no region with a {targets[:-1]} to train on")
        out.append(Source(name, items, weight))
    return out


def epoch_order(sources: Sequence[Source], epoch: int, seed: int, epoch_size: int | None = None) -> list[tuple]:
    """The ``(source, image, region)`` samples of one epoch (module docstring), deterministic in (seed, epoch)."""
    flat = [[(s, i, k) for i, it in enumerate(src.items) for k in range(len(it.regions))]
            for s, src in enumerate(sources)]
    rng = np.random.default_rng([int(seed), int(epoch)])
    n = epoch_size or sum(len(f) for f in flat)
    if len(sources) == 1:
        order = rng.permutation(len(flat[0]))
        return [flat[0][j] for j in np.resize(order, n)]
    w = np.array([src.weight for src in sources], dtype=np.float64)
    picks = rng.choice(len(sources), size=n, p=w / w.sum())
    queues = [list(rng.permutation(len(f))) for f in flat]
    out = []
    for s in picks:
        if not queues[s]:
            queues[s] = list(rng.permutation(len(flat[s])))
        out.append(flat[s][queues[s].pop()])
    return out


@dataclass(frozen=True)
class LargeScaleJitter(Settings):
    """`regionlib.data.augment.large_scale_jitter`'s settings (SCA Tab. 1: 1024 px, scale 0.1-2.0)."""

    output_size: int = setting(1024, min=1)
    scale_range: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self):
        super().__post_init__()
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ConfigError(f"LargeScaleJitter.scale_range: must be 0 < low <= high, got {list(self.scale_range)}")


@dataclass(frozen=True)
class Augmentation(Settings):
    """Per-image augmentation (module docstring): large-scale jitter (or None), the horizontal-flip
    probability, DAM's prompt augmentation on / off."""

    lsj: LargeScaleJitter | None = None
    hflip: float = setting(0.0, min=0, max=1)
    prompt_aug: bool = False

    @functools.cached_property
    def _prompts(self):
        from ..data.prompt_aug import PromptAugmenter

        return PromptAugmenter(seed=None) if self.prompt_aug else None

    @property
    def changes_pixels(self) -> bool:
        return self.lsj is not None or self.hflip > 0

    def __call__(self, image: np.ndarray, regions: Regions, rng: np.random.Generator):
        """``(image, regions, prompts or None)`` after the augmentations drawn from ``rng``."""
        from ..data.augment import hflip, large_scale_jitter

        if self.lsj is not None:
            image, regions, _ = large_scale_jitter(image, regions, rng=rng, output_size=self.lsj.output_size,
                                                   scale_range=self.lsj.scale_range)
        if self.hflip and rng.random() < self.hflip:
            image, regions = hflip(image, regions)
        prompts = None
        if self._prompts is not None:
            labels = regions.labels or [None] * len(regions)
            prompts = [self._prompts.sample(c, class_name=lab, rng=rng).text for c, lab in zip(regions.captions, labels)]
        return image, regions, prompts
