"""What ``ray_jobs/train.py`` trains: named tasks that bundle a model preset with its data.

A task provides ``build_model()``, ``train_samples()`` (an indexable list), ``collate(samples,
device)``, ``loss(model, batch)`` and ``evaluate(model)`` (validation metrics). Registered:

* ``regionworld-captioner`` — a captioner preset (``preset``: any `regionlib.models.PRESETS`
  name, plus config ``overrides``) trained on ``n_images`` RegionWorld images (``world_seed``),
  validated on ``n_val`` held-out images with CIDEr-D.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError

__all__ = ["TASKS", "create_task", "RegionWorldCaptionTask"]


@dataclass
class RegionWorldCaptionTask:
    preset: str = "tiny-dam"
    n_images: int = 32
    n_val: int = 4
    world_seed: int = 0
    label_smoothing: float = 0.0
    overrides: dict = field(default_factory=dict)
    seed: int = 0

    def build_model(self):
        from .models import create_model

        self._model = create_model(self.preset, seed=self.seed, **self.overrides)
        return self._model

    def _examples(self, offset: int, n: int):
        from .data.regionworld import generate_sample
        from .models.examples import region_examples

        samples = [generate_sample(self.world_seed * 1_000_003 + offset + i) for i in range(n)]
        segmenter = None
        if self._model.config.kind == "sca":
            from .sam import SamSegmenter

            segmenter = SamSegmenter(self._model.encoder.sam)
        return region_examples([s.image for s in samples], [s.regions for s in samples], self._model.config,
                               segmenter=segmenter)

    def train_samples(self):
        return self._examples(0, self.n_images)

    def collate(self, samples, device="cpu"):
        from .models import collate

        return collate(samples, device=device)

    def loss(self, model, batch):
        return model(batch, label_smoothing=self.label_smoothing)

    def evaluate(self, model) -> dict:
        from .evaluation.fast_captions import cider_d

        examples = self._examples(self.n_images, self.n_val)
        preds = model.generate(self.collate(examples), max_new_tokens=40)
        refs = [[" ".join(e["caption"].lower().replace(",", " ,").replace(".", " .").split())] for e in examples]
        return {"CIDEr": cider_d([p or "empty" for p in preds], refs)[0]}


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
