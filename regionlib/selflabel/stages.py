"""DLC-SDP and seed 001 self-labeling stages as Ray Data shard workers (REFERENCE §2).

The job's documentation and command line are `regionlib.selflabel.cli` (``ray_jobs/self_label.py``
is its launcher; its settings `regionlib.selflabel.config.SelfLabelJob`). `LabelWorker` runs one stage
on one shard of images inside an actor: models load once per actor, regions are captioned and scored
through `RegionPredictor`, and each shard of `SelfLabelRecord` lines is written atomically
(`regionlib.runtime.shards`), so a rerun skips finished shards and a dead actor's shard is recomputed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .config import LabelSettings, SelfLabelJob
from .records import SelfLabelRecord, read_records, regionworld_origin, write_records

__all__ = ["load_captioner", "image_source", "LabelWorker", "make_label_work", "filter_phrases"]


def load_captioner(label: LabelSettings):
    """The captioner named by the settings: a train.py checkpoint, a saved RegionModel or a preset."""
    from ..models import RegionModel

    path = label.checkpoint or label.captioner
    if path:  # a training checkpoint is a save_pretrained directory too
        return RegionModel.from_pretrained(path).eval()
    from ..data.grammar import caption_words
    from ..models import create_model

    return create_model(label.preset, tokenizer_texts=[" ".join(caption_words())]).eval()


def image_source(label: LabelSettings):
    """``(ids, load)``: the image ids to label and ``load(id) -> (image_id, image, proposals or None, origin)``
    (origin: a record's ``image``)."""
    if label.regionworld is not None:
        from ..data.regionworld import SPLITS, RegionWorldConfig, generate_sample

        seed, split, size = label.world_seed, label.split, label.image_size
        world = RegionWorldConfig(image_size=size) if size else None

        def load(i):
            s = generate_sample((seed, SPLITS[split], int(i)), split=split, config=world)
            return s.image_id, s.image, s.regions, regionworld_origin(seed, split, i, size)

        return list(range(label.regionworld)), load
    if label.coco:
        from ..data.readers.coco import read_coco

        records = {str(r.image_id): r for r in read_coco(label.coco, label.images)}

        def load(image_id):
            r = records[image_id]
            return image_id, r.load_image(), r.regions, {"path": str(r.image_path)}

        return sorted(records), load
    from ..data.image_folder import list_images
    from ..images import load_image

    paths = list_images(Path(label.images))

    def load(image_id):
        return image_id, load_image(paths[image_id]), None, {"path": paths[image_id]}

    return list(paths), load


class LabelWorker:
    """One actor's shard worker for ``job.label.stage``; models load once, in the actor. ``api_key``: the
    VLM endpoint's (`ApiKey`, resolved on the driver)."""

    def __init__(self, job: SelfLabelJob, api_key=None):
        import torch

        self.label, self.run = job.label, job.run
        cfg, run = job.label, job.run
        self.device = "cuda" if run.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        torch.set_num_threads(max(1, int(run.cpus_per_actor)))  # actors sharing a node do not oversubscribe it
        _, self.load = image_source(cfg)
        self.model = self.segmenter = self.vlm = self.nlp = None
        if cfg.stage == "describe" or (cfg.stage == "phrases" and cfg.similarity == "captioner"):
            from ..predictor import RegionPredictor

            self.model = load_captioner(cfg).to(self.device)
            self.predictor = RegionPredictor(self.model, batch_size=cfg.batch_size)
        self.detector = self.clip = None
        if cfg.proposals in ("sam", "boxes", "detector") and cfg.stage != "keywords":
            from ..sam import SamSegmenter, build_sam

            self.segmenter = SamSegmenter(build_sam(cfg.sam_preset, checkpoint=cfg.sam_checkpoint).to(self.device))
        if cfg.proposals == "detector" and cfg.stage != "keywords":
            from .stage2 import OwlV2Detector

            self.detector = OwlV2Detector(cfg.detector, device=self.device, max_detections=cfg.max_detections,
                                          nms_iou=cfg.nms_iou)
        if cfg.clip and cfg.stage == "describe":
            from .filters import CLIPSimilarity

            self.clip = CLIPSimilarity.from_pretrained(cfg.clip, device=self.device)
        if cfg.stage == "keywords" and cfg.vlm == "openai":
            from ..evaluation.judges import OpenAICompatibleVLM

            self.vlm = OpenAICompatibleVLM(base_url=run.vlm_url, model=cfg.vlm_model, cache=run.cache,
                                           concurrency=run.vlm_concurrency, max_tokens=cfg.vlm_max_tokens,
                                           api_key=api_key)
        if cfg.stage == "phrases":
            from .filters import CaptionerSimilarity, CLIPSimilarity, spacy_pipeline

            self.nlp = spacy_pipeline(cfg.spacy)
            if cfg.similarity == "captioner":
                self.similarity = CaptionerSimilarity(self.model, batch_size=cfg.batch_size)
            else:  # clip:PATH (a CLIP or SigLIP checkpoint)
                self.similarity = CLIPSimilarity.from_pretrained(cfg.similarity.split(":", 1)[1])

    def __call__(self, spec, shard_path) -> int:
        fail, marker = self.run.fail_shard, self.run.fail_marker
        if fail is not None and spec.index == fail and marker and not os.path.exists(marker):
            Path(marker).write_text(f"actor killed in shard {spec.index}")
            os._exit(1)  # injected fault: the actor process dies mid-shard, before writing
        label = getattr(self, self.label.stage)
        return write_records(shard_path, [rec for i in spec.ids for rec in label(i)])

    # ------------------------------------------------------------------ the stages
    def _proposals(self, image, regions):
        """Stage-2 / phrase proposals of one image (`Regions` with masks; crowd annotations never among them).

        ``regionworld``: the annotations' own masks and class names (RegionWorld's generator, or a COCO
        file's non-crowd instances); ``boxes``: SAM masks for the annotations' boxes; ``detector``: SAM
        masks for OWLv2's boxes of ``classes``; ``sam``: class-agnostic automatic masks. Detector and
        SAM proposals lying mostly inside a crowd annotation are dropped (COCO's convention)."""
        from .stage2 import crowd_masks, drop_inside_crowd, non_crowd, segment_boxes

        mode = self.label.proposals
        crowd = crowd_masks(regions)
        objects = non_crowd(regions)
        if mode in ("regionworld", "boxes") and objects is None:
            raise ConfigError(f"--proposals {mode} needs annotated images (--regionworld or --coco); "
                              "use --detector or --proposals sam")
        if mode == "regionworld":
            return objects
        if mode == "boxes":
            return segment_boxes(self.segmenter, image, objects) if len(objects) else objects
        if mode == "detector":
            props = segment_boxes(self.segmenter, image, self.detector(image, list(self.label.classes)))
        else:
            props = self.segmenter.propose(image, points_per_side=self.label.points_per_side)
        if crowd is not None and len(props):
            props = props[drop_inside_crowd(props.masks, crowd)]
        return props

    def keywords(self, i) -> list[SelfLabelRecord]:
        """DLC-SDP stage 1: a VLM expands each annotated region's class name into a detailed caption."""
        from ..evaluation.judges import multimodal_prompt
        from ..images import encode_png
        from .filters import keyword_expansion_prompt, stage1_images

        from .stage2 import non_crowd

        image_id, image, regions, origin = self.load(i)
        if regions is None or regions.labels is None:
            raise ConfigError("--stage keywords needs class-annotated regions (--regionworld or --coco)")
        regions = non_crowd(regions)  # a crowd annotation is not an object to describe
        if len(regions) == 0:
            return []
        if self.vlm is None:  # RegionWorld's annotator: its grammar caption of the region
            captions = list(regions.captions)
        else:
            prompts = []
            for k in range(len(regions)):
                cropped, segmented = stage1_images(image, regions.masks[k])
                head, tail = keyword_expansion_prompt(regions.labels[k]).rsplit("Here is the SEGMENTED image", 1)
                prompts.append(multimodal_prompt([head + "Here is the CROPPED image:", encode_png(cropped),
                                                  "Here is the SEGMENTED image" + tail, encode_png(segmented)]))
            captions = [c.strip() for c in self.vlm.ask(prompts)]
        ids = regions.ids or [f"{image_id}_{k}" for k in range(len(regions))]
        return [SelfLabelRecord.of_region(regions, k, region_id=str(ids[k]), image_id=image_id, index=k,
                                          caption=captions[k], class_name=regions.labels[k], scores={}, image=origin,
                                          keyword=regions.labels[k]) for k in range(len(regions)) if captions[k]]

    def describe(self, i) -> list[SelfLabelRecord]:
        """DLC-SDP stage 2 (REFERENCE §2): proposals -> masks -> descriptions given the class name ->
        confidence filters (detector, SAM predicted IoU, caption log-probability, crop-text
        similarity) -> at most ``max_per_image`` regions per image, of different classes."""
        from .filters import ConfidenceThresholds, Proposal, filter_proposals, select_per_image
        from .stage2 import describe_given_class

        cfg = self.label
        image_id, image, regions, origin = self.load(i)
        regions = self._proposals(image, regions)
        if len(regions) == 0:
            return []
        thresholds = ConfidenceThresholds(detector=cfg.min_detector, predicted_iou=cfg.min_predicted_iou,
                                          logprob=cfg.min_logprob, similarity=cfg.min_similarity)
        n = len(regions)
        scores = [{} for _ in range(n)]
        for k in range(n):
            if "detector_score" in regions.data:
                scores[k]["detector"] = float(regions.data["detector_score"][k])
            if "predicted_iou" in regions.data:
                scores[k]["predicted_iou"] = float(regions.data["predicted_iou"][k])
        # the detector and SAM filters first: a region they drop is never captioned
        early = ConfidenceThresholds(detector=thresholds.detector, predicted_iou=thresholds.predicted_iou,
                                     logprob=None, similarity=None)
        alive = np.asarray([all(np.isfinite(scores[k].get(key, 0.0)) and scores[k].get(key, minimum) >= minimum
                                for key, minimum in early.items()) for k in range(n)], dtype=bool)
        if not alive.any():
            return []
        index = np.flatnonzero(alive)
        regions, scores = regions[alive], [scores[k] for k in index]
        self.predictor.set_image(image)
        if regions.labels is not None:  # class names: the captioner describes the region given its class
            captions, logps, how = describe_given_class(self.predictor, regions, regions.labels,
                                                        candidates=cfg.candidates,
                                                        max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        else:  # class-agnostic proposals (SAM automatic masks)
            described = self.predictor.describe(regions, max_new_tokens=cfg.max_new_tokens)
            captions, logps, how = described.captions, described.data["caption_logprob"], "none"
        has_text = [k for k in range(len(regions)) if captions[k].strip()]
        sims = {}
        if self.clip is not None and has_text:
            sim = self.clip.paired(image, regions[np.asarray(has_text, dtype=np.int64)].masks,
                                   [captions[k] for k in has_text])
            sims = dict(zip(has_text, sim.tolist()))
        classes = regions.labels if regions.labels is not None else [None] * len(regions)
        proposals, local = [], {}  # local: region id -> its index in `regions` (the alive proposals)
        for k in has_text:
            sc = dict(scores[k], logprob=float(logps[k]))
            if k in sims:
                sc["similarity"] = float(sims[k])
            rid = f"{image_id}_{int(index[k])}"
            local[rid] = k
            proposals.append(Proposal(image_id, rid, classes[k], captions[k], sc))
        passed, _ = filter_proposals(proposals, thresholds)
        rank_by = ("detector" if cfg.proposals == "detector" else
                   "predicted_iou" if "predicted_iou" in regions.data else "logprob")
        kept = select_per_image(passed, max_per_image=cfg.max_per_image, rank_by=rank_by)
        # index: the proposal's index among all of the image's proposals (as in its id)
        return [SelfLabelRecord.of_region(regions, local[p.region_id], region_id=p.region_id, image_id=image_id,
                                          index=int(index[local[p.region_id]]), caption=p.caption,
                                          class_name=p.class_name, scores=p.scores, image=origin,
                                          proposals=cfg.proposals, conditioning=how) for p in kept]

    def phrases(self, i) -> list[SelfLabelRecord]:
        """Seed 001: noun phrases of the image's caption, each grounded to its best-scoring proposal."""
        from .filters import ground_phrases, noun_phrases

        image_id, image, regions, origin = self.load(i)
        caption = self.label.captions.get(image_id) if self.label.captions else None
        if caption is None:
            if regions is None or regions.captions is None:
                raise ConfigError(f"no caption for image {image_id!r}: pass --captions JSON for --images")
            caption = " ".join(regions.captions)
        regions = self._proposals(image, regions)  # never a crowd annotation
        phrases = sorted(set(noun_phrases([caption], self.nlp)[0]))
        if len(regions) == 0 or not phrases:
            return []
        best, score = ground_phrases(phrases, image, regions.masks, self.similarity)
        return [SelfLabelRecord.of_region(regions, int(best[j]), region_id=f"{image_id}_p{j}", image_id=image_id,
                                          index=int(best[j]), caption=phrase, class_name=None,
                                          scores={"phrase_score": float(score[j])}, image=origin,
                                          source_caption=caption) for j, phrase in enumerate(phrases)]


def make_label_work(job: SelfLabelJob, api_key=None):
    """Factory run once per actor (Ray Data): builds the `LabelWorker` there."""

    def build():
        return LabelWorker(job, api_key)

    return build


def filter_phrases(out: Path, fraction: float) -> dict:
    """Seed 001's dataset-wide filter: drop the lowest ``fraction`` of phrase scores -> ``filtered.jsonl``."""
    from .filters import drop_lowest_fraction

    records = sorted(read_records(out), key=lambda r: r.id)
    keep = drop_lowest_fraction([r.scores["phrase_score"] for r in records], fraction) if records else []
    kept = write_records(out / "filtered.jsonl", [r for r, k in zip(records, keep) if k])
    return {"phrases": len(records), "kept": kept}


