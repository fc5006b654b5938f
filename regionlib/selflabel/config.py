"""The self-labeling job's settings (`SelfLabelJob`), in the one config convention (`regionlib.config`).

Sections: ``label`` (`LabelSettings`: what the shards hold — the stage, the images, the captioner,
the proposals, the filters; its `to_dict` is the output manifest's ``config``, so a rerun with the
same values resumes and one with other values is refused) and ``run`` (`RunSettings`: where the job
runs and reaches things — the output, the actors, Ray, the VLM endpoint; a rerun may change them);
``drop_fraction`` filters the phrases stage's records after all shards. The command line
(`regionlib.selflabel.cli`) sets ``label.max_per_image`` with ``--max-per-image``.

Defaults that depend on other settings (``split``, ``proposals``, ``classes``, ``vlm``,
``min_detector``) are resolved and paths made absolute when an instance is made, so the manifest
says what ran; wrong names, types, ranges and combinations are a `ConfigError` before Ray starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Settings, setting
from ..errors import ConfigError

__all__ = ["LabelSettings", "RunSettings", "SelfLabelJob", "STAGES", "PROPOSALS", "VLMS"]

STAGES = ("keywords", "describe", "phrases")
PROPOSALS = ("regionworld", "boxes", "detector", "sam")
VLMS = ("openai", "regionworld-oracle")
_PATHS = ("images", "coco", "checkpoint", "captioner", "sam_checkpoint", "detector", "clip")


@dataclass(frozen=True)
class LabelSettings(Settings):
    """What one self-labeling output holds: one stage over one image source (`regionlib.selflabel.cli`)."""

    stage: str = setting("describe", choices=STAGES,
                         help="keywords: DLC-SDP stage 1; describe: stage 2; phrases: seed 001's parse-and-filter")
    regionworld: int | None = setting(None, min=1, help="label N images of a RegionWorld split (or: images)")
    images: str | None = setting(None, help="directory of image files (SAM proposals, or coco annotations)")
    coco: str | None = setting(None, help="COCO-format instances JSON over images (class-annotated regions)")
    captions: dict[str, str] | None = setting(None, help="{image id: caption} for stage phrases over images "
                                                         "(--captions FILE.json)")
    world_seed: int = setting(0, min=0)
    image_size: int | None = setting(None, help="RegionWorld image size (None: the world's 256)")
    split: str | None = setting(None, help="RegionWorld split (None: train for keywords, else unlabeled)")
    checkpoint: str | None = setting(None, help="captioner: a ray_jobs/train.py checkpoint directory")
    captioner: str | None = setting(None, help="captioner: a RegionModel.save_pretrained directory")
    preset: str | None = setting(None, help="captioner: a model preset, random init (smoke tests only)")
    proposals: str | None = setting(None, choices=PROPOSALS, help=(
        "regionworld: the annotations' masks; boxes: SAM masks for the annotations' boxes; detector: SAM masks for "
        "OWLv2 boxes; sam: automatic masks. None: detector with detector, else the annotations when there are "
        "any, else sam"))
    sam_preset: str = "tiny"
    sam_checkpoint: str | None = None
    points_per_side: int = setting(16, min=1, help="SAM automatic masks' point grid")
    min_logprob: float | None = setting(None, max=0, help="minimum mean log-probability per caption token")
    min_predicted_iou: float = setting(0.5, min=0, max=1, help="minimum SAM predicted IoU")
    max_per_image: int = setting(2, min=1, help="regions kept per image, of different classes")
    max_new_tokens: int = setting(40, min=1)
    batch_size: int = setting(16, min=1, help="regions per captioner forward pass")
    shard_size: int = setting(8, min=1, help="images per shard (the unit of work and of resumption)")
    vlm: str | None = setting("openai", choices=VLMS, help="stage keywords' backend (None in other stages)")
    vlm_model: str | None = setting(None, help="the VLM endpoint's model (None: $REGIONLIB_VLM_MODEL)")
    vlm_max_tokens: int = setting(300, min=1)
    similarity: str = setting("captioner", help="stage phrases: 'captioner' (phrase log-probability) or "
                                                "'clip:PATH' (CLIP / SigLIP checkpoint)")
    spacy: str | None = setting(None, help="spaCy pipeline for noun phrases (None: en_core_web_sm)")
    detector: str | None = setting(None, help="OWLv2 checkpoint directory (Owlv2ForObjectDetection + Owlv2Processor)")
    classes: tuple[str, ...] | None = setting(None, help=(
        "detector class names (--classes a,b,c or @FILE, one per line; None: the COCO file's categories, "
        "or RegionWorld's shapes)"))
    max_detections: int = setting(16, min=1, help="detector boxes per image (after class-wise NMS)")
    nms_iou: float = setting(0.5, min=0, max=1)
    min_detector: float | None = setting(0.1, min=0, max=1, help="minimum detector class score (None without "
                                                                 "detector proposals)")
    clip: str | None = setting(None, help="CLIP / SigLIP checkpoint directory for the crop-text similarity filter")
    min_similarity: float | None = setting(None, min=-1, max=1, help="minimum crop-caption cosine similarity (clip)")
    candidates: int = setting(4, min=1, help="descriptions proposed per region and re-ranked given its class name "
                                             "(1: greedy only)")
    seed: int = setting(0, min=0, help="sampling seed of the extra candidates")

    def __post_init__(self):
        super().__post_init__()
        own = type(self).__name__
        if (self.regionworld is None) == (self.images is None):
            raise ConfigError(f"{own}.regionworld: give one image source: regionworld N or images DIR")
        if self.coco and not self.images:
            raise ConfigError(f"{own}.coco: needs images (the image directory the annotations refer to)")
        if sum(v is not None for v in (self.checkpoint, self.captioner, self.preset)) > 1:
            raise ConfigError(f"{own}.checkpoint: give at most one captioner: checkpoint, captioner or preset")
        annotated = self.regionworld is not None or self.coco is not None
        proposals = self.proposals or ("detector" if self.detector else "regionworld" if annotated else "sam")
        if proposals in ("regionworld", "boxes") and not annotated:
            raise ConfigError(f"{own}.proposals: {proposals!r} needs annotated images (regionworld N or coco); "
                              "use detector or proposals 'sam'")
        if proposals == "detector" and not self.detector:
            raise ConfigError(f"{own}.detector: proposals 'detector' needs an OWLv2 checkpoint directory")
        classes = self._classes() if proposals == "detector" else None
        if self.min_similarity is not None and not self.clip:
            raise ConfigError(f"{own}.min_similarity: needs clip (a CLIP / SigLIP checkpoint)")
        if self.similarity != "captioner" and not self.similarity.startswith("clip:"):
            raise ConfigError(f"{own}.similarity: must be 'captioner' or 'clip:PATH', got {self.similarity!r}")
        needs_captioner = self.stage == "describe" or (self.stage == "phrases" and self.similarity == "captioner")
        if needs_captioner and self.checkpoint is None and self.captioner is None and self.preset is None:
            raise ConfigError(f"{own}.stage: {self.stage} needs a captioner: checkpoint, captioner or preset")
        if self.stage == "keywords" and not annotated:
            raise ConfigError(f"{own}.stage: keywords expands annotated regions: use regionworld or coco")
        if self.stage == "keywords" and self.vlm is None:
            raise ConfigError(f"{own}.vlm: stage keywords needs a VLM, one of {list(VLMS)}")
        if self.stage == "keywords" and self.vlm == "regionworld-oracle" and self.regionworld is None:
            raise ConfigError(f"{own}.vlm: regionworld-oracle answers for RegionWorld regions only")
        split = self.split or ("train" if self.stage == "keywords" else "unlabeled")
        if self.regionworld is not None:
            from ..data.regionworld import SPLITS, RegionWorldConfig

            if split not in SPLITS:
                raise ConfigError(f"{own}.split: must be one of {list(SPLITS)}, got {split!r}")
            if self.image_size is not None:
                try:
                    RegionWorldConfig(image_size=self.image_size)
                except ConfigError as exc:
                    raise ConfigError(f"{own}.image_size: {exc}") from None
        resolved = {name: str(Path(getattr(self, name)).resolve()) for name in _PATHS if getattr(self, name)}
        resolved.update(proposals=proposals, split=split, classes=classes,
                        vlm=self.vlm if self.stage == "keywords" else None,
                        min_detector=self.min_detector if proposals == "detector" else None)
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def _classes(self) -> tuple[str, ...]:
        """Detector class names: ``classes``, else the COCO file's categories, else RegionWorld's shapes."""
        if self.classes is not None:
            names = list(self.classes)
        elif self.coco:
            from ..data.readers.base import read_json

            categories = read_json(self.coco, "COCO annotation file", expect=dict).get("categories", [])
            names = [str(c["name"]) for c in sorted(categories, key=lambda c: c["id"])]
        else:
            from ..data.grammar import SHAPES

            names = list(SHAPES) if self.regionworld is not None else []
        if not names or len(set(names)) != len(names) or not all(n.strip() for n in names):
            raise ConfigError(f"{type(self).__name__}.classes: the detector needs distinct non-empty class names "
                              f"(classes a,b,c, or coco's categories), got {names[:10]}")
        return tuple(names)


@dataclass(frozen=True)
class RunSettings(Settings):
    """Where the job runs and how it reaches things; not in the manifest (a rerun may change them)."""

    out: str = setting(help="the output directory: shards and manifest.json (phrases: filtered.jsonl too)")
    actors: int = setting(1, min=1, help="Ray actors labeling shards in parallel")
    cpus_per_actor: float = setting(1.0, gt=0)
    gpus_per_actor: float = setting(0.0, min=0)
    address: str | None = setting(None, help="Ray address (None: $RAY_ADDRESS or a local instance)")
    vlm_url: str | None = setting(None, help="the VLM endpoint (None: $REGIONLIB_VLM_BASE_URL)")
    vlm_concurrency: int = setting(4, min=1)
    vlm_api_key_file: str | None = setting(None, help=(
        "file holding the VLM endpoint's API key (None: $REGIONLIB_JUDGE_API_KEY / $OPENAI_API_KEY on the "
        "driver); read on the driver and handed to the actors, never logged"))
    cache: str | None = setting(None, help="VLM answer cache directory (None: <out>/answers)")
    fail_shard: int | None = setting(None, min=0, help="tests: an actor dies in this shard, once")
    fail_marker: str | None = setting(None, help="tests: the file that says the fault was injected")

    def __post_init__(self):
        super().__post_init__()
        if self.cache is None:  # resolved on the driver: the actors may run elsewhere
            object.__setattr__(self, "cache", str(Path(self.out).resolve() / "answers"))


@dataclass(frozen=True)
class SelfLabelJob(Settings):
    """Everything one self-labeling run needs (`regionlib.selflabel.cli.run_job`)."""

    label: LabelSettings
    run: RunSettings
    drop_fraction: float = setting(0.3, min=0, max=1, help="stage phrases: seed 001's R, the share of the "
                                                           "output's phrases dropped (filtered.jsonl)")
