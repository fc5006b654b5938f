"""Self-labeling on Ray Data: DLC-SDP (seed 003 §4, App. H.1; REFERENCE §2) and seed 001's parse-and-filter.

Local (RegionWorld's unlabeled pool, a captioner trained by ``ray_jobs/train.py``):
    python ray_jobs/self_label.py --regionworld 200 --checkpoint outputs/runs/dam/checkpoint_000003 \\
        --out outputs/self_labels --actors 2
Cluster (SAM proposals on a directory of photographs, GPU actors):
    ray job submit --working-dir . -- python ray_jobs/self_label.py --images /data/sa1b/images \\
        --proposals sam --sam-preset vit_h --sam-checkpoint /ckpt/sam_vit_h_4b8939.pth \\
        --captioner /ckpt/dam_regionlib --actors 16 --gpus-per-actor 1 --out /shared/self_labels

Three stages (``--stage``):

* ``keywords`` — DLC-SDP stage 1, keyword expansion: every *annotated* region (RegionWorld's
  class-labeled regions, or a COCO-format ``--coco`` annotation file over ``--images``) is shown
  to a VLM as a CROPPED and a SEGMENTED image (`regionlib.selflabel.stage1_images`) with seed 003
  Tab. A.7's prompt naming its class; the reply becomes its detailed caption. ``--vlm openai``
  sends both images to an OpenAI-compatible VLM endpoint (vLLM serving VILA, Qwen-VL, ...;
  ``--vlm-url`` / ``--vlm-model`` or ``REGIONLIB_VLM_BASE_URL`` / ``REGIONLIB_VLM_MODEL``),
  through the persistent answer cache; ``--vlm regionworld-oracle`` answers with RegionWorld's own
  grammar caption (the embedded world's annotator, like the rule judge).
* ``describe`` (default) — DLC-SDP stage 2, described below.
* ``phrases`` — seed 001 §2: noun phrases parsed (spaCy) from each image's caption
  (RegionWorld: its regions' captions; ``--captions`` JSON ``{image id: caption}`` for
  ``--images``); each phrase is scored against every proposal (``--similarity captioner``: the
  trained captioner's mean log-probability of the phrase given the region; ``clip:PATH``: CLIP /
  SigLIP cosine similarity, seed 001's choice) and grounded to the best one; after all
  shards, the lowest ``--drop-fraction`` of phrases over the whole dataset is dropped
  (`drop_lowest_fraction`) into ``filtered.jsonl``.

Stage 2, per image: region proposals (``regionworld``: the generator's own instance masks and class
names, standing in for DAM's detector; ``sam``: class-agnostic `SamAutomaticMaskGenerator`
masks with SAM's predicted IoU) -> a description of every proposal by the trained captioner ->
confidences (caption mean log-probability per token, SAM's predicted IoU, detector score when
the source has one) -> `regionlib.selflabel.passes_thresholds` -> at most ``--max-per-image``
regions per image, of different classes (`select_per_image`) -> JSON-lines shards (one record
per kept region: id ``"{image_id}_{k}"``, class, caption, box, COCO-RLE mask, confidences, and
where the image comes from) with a checksummed manifest. A rerun skips finished shards; a
worker that dies mid-shard leaves no partial file and its shard is recomputed, so no record is
lost or duplicated. Read the output with `regionlib.shards.read_jsonl_shards`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `regionlib` importable under `ray job submit`

from regionlib.distributed import init_ray, run_shards  # noqa: E402
from regionlib.errors import ConfigError  # noqa: E402
from regionlib.shards import ShardedWriter, plan_shards  # noqa: E402


def load_captioner(config: dict):
    """The captioner named by the job config: a train.py checkpoint, a saved RegionModel or a preset."""
    if config.get("checkpoint"):
        from regionlib.train_tasks import load_trained_model

        return load_trained_model(config["checkpoint"])
    if config.get("captioner"):
        from regionlib.models import RegionModel

        return RegionModel.from_pretrained(config["captioner"]).eval()
    from regionlib.data.grammar import caption_words
    from regionlib.models import create_model
    from regionlib.models.tokenizer import builtin_tokenizer

    return create_model(config["preset"], tokenizer=builtin_tokenizer([" ".join(caption_words())])).eval()


def image_source(config: dict):
    """``(ids, load)``: the image ids to label and ``load(id) -> (image_id, image, proposals or None, origin)``."""
    if config.get("regionworld"):
        from regionlib.data.regionworld import SPLITS, generate_sample

        seed, split = int(config["world_seed"]), config["split"]

        def load(i):
            s = generate_sample((seed, SPLITS[split], int(i)), split=split)
            return s.image_id, s.image, s.regions, {"regionworld": [seed, split, int(i)]}

        return list(range(int(config["regionworld"]))), load
    if config.get("coco"):
        from regionlib.data.readers.coco import read_coco

        records = {str(r.image_id): r for r in read_coco(config["coco"], config["images"])}

        def load(image_id):
            r = records[image_id]
            return image_id, r.load_image(), r.regions, {"path": str(r.image_path)}

        return sorted(records), load
    from ray_jobs.cache_features import list_images
    from regionlib.images import load_image

    paths = list_images(Path(config["images"]))

    def load(image_id):
        return image_id, load_image(paths[image_id]), None, {"path": paths[image_id]}

    return list(paths), load


def _record(region_id: str, image_id: str, k: int, regions, caption: str, class_name, scores: dict, origin: dict,
            **extra) -> dict:
    from regionlib.masks import encode_rle

    r = regions[k]
    return {"id": region_id, "image_id": image_id, "index": k, "class_name": class_name, "caption": caption,
            "box_xyxy": [float(v) for v in r.boxes_xyxy[0]], "mask": encode_rle(r.masks)[0],
            "image_size": list(regions.image_size), "scores": scores, "image": origin, **extra}


class LabelWorker:
    """One actor's shard worker for ``config["stage"]``; models load once, in the actor."""

    def __init__(self, config: dict):
        import torch

        self.config = config
        self.device = "cuda" if config["gpus_per_actor"] > 0 and torch.cuda.is_available() else "cpu"
        torch.set_num_threads(max(1, int(config["cpus_per_actor"])))  # actors sharing a node do not oversubscribe it
        _, self.load = image_source(config)
        self.model = self.segmenter = self.vlm = self.nlp = None
        if config["stage"] == "describe" or (config["stage"] == "phrases" and config["similarity"] == "captioner"):
            self.model = load_captioner(config).to(self.device)
        if config["proposals"] == "sam" and config["stage"] != "keywords":
            from regionlib.sam import SamSegmenter, build_sam

            self.segmenter = SamSegmenter(build_sam(config["sam_preset"], checkpoint=config["sam_checkpoint"]).to(self.device))
        if config["stage"] == "keywords" and config["vlm"] == "openai":
            from regionlib.evaluation.judges import OpenAICompatibleVLM

            self.vlm = OpenAICompatibleVLM(base_url=config["vlm_url"], model=config["vlm_model"], cache=config["cache"],
                                           concurrency=config["vlm_concurrency"], max_tokens=config["vlm_max_tokens"])
        if config["stage"] == "phrases":
            from regionlib.selflabel import CaptionerSimilarity, CLIPSimilarity, spacy_pipeline

            self.nlp = spacy_pipeline(config["spacy"])
            if config["similarity"] == "captioner":
                self.similarity = CaptionerSimilarity(self.model, batch_size=config["batch_size"])
            else:  # clip:PATH (a CLIP or SigLIP checkpoint)
                self.similarity = CLIPSimilarity.from_pretrained(config["similarity"].split(":", 1)[1])

    def __call__(self, spec, shard_path) -> int:
        from regionlib.shards import atomic_write_bytes

        fail, marker = self.config.get("fail_shard"), self.config.get("fail_marker")
        if fail is not None and spec.index == int(fail) and marker and not os.path.exists(marker):
            Path(marker).write_text(f"actor killed in shard {spec.index}")
            os._exit(1)  # injected fault: the actor process dies mid-shard, before writing
        label = getattr(self, self.config["stage"])
        records = [rec for i in spec.ids for rec in label(i)]
        atomic_write_bytes(shard_path, "".join(json.dumps(r) + "\n" for r in records).encode())
        return len(records)

    # ------------------------------------------------------------------ the stages
    def _proposals(self, image, regions):
        if self.segmenter is not None:
            return self.segmenter.propose(image, points_per_side=self.config["points_per_side"])
        if regions is None:
            raise ConfigError("--proposals regionworld needs annotated images (--regionworld or --coco); use --proposals sam")
        return regions

    def _region_batches(self, image, regions):
        from regionlib.train_tasks import collate_inputs, region_inputs

        inputs = region_inputs(self.model, image, regions)
        bs = self.config["batch_size"]
        return [collate_inputs(inputs[k: k + bs], self.device) for k in range(0, len(inputs), bs)]

    def keywords(self, i) -> list[dict]:
        """DLC-SDP stage 1: a VLM expands each annotated region's class name into a detailed caption."""
        from regionlib.evaluation.judges import multimodal_prompt
        from regionlib.images import encode_png
        from regionlib.selflabel import keyword_expansion_prompt, stage1_images

        image_id, image, regions, origin = self.load(i)
        if regions is None or regions.labels is None:
            raise ConfigError("--stage keywords needs class-annotated regions (--regionworld or --coco)")
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
        return [_record(str(ids[k]), image_id, k, regions, captions[k], regions.labels[k], {}, origin,
                        keyword=regions.labels[k]) for k in range(len(regions)) if captions[k]]

    def describe(self, i) -> list[dict]:
        """DLC-SDP stage 2: describe proposals, filter by confidence, keep <= N per image of different classes."""
        import torch

        from regionlib.selflabel import ConfidenceThresholds, Proposal, passes_thresholds, select_per_image

        image_id, image, regions, origin = self.load(i)
        regions = self._proposals(image, regions)
        if len(regions) == 0:
            return []
        captions, logps = [], []
        with torch.no_grad():
            head = self.model.lm_head
            for batch in self._region_batches(image, regions):
                prefix = self.model.prefix(batch)  # one vision pass serves generation and scoring
                caps = head.generate(prefix, max_new_tokens=self.config["max_new_tokens"])
                captions += caps
                logps += head.mean_log_prob(prefix, caps).tolist()
        classes = regions.labels if regions.labels is not None else [None] * len(regions)
        proposals = []
        for k in range(len(regions)):
            scores = {"logprob": float(logps[k])}
            if self.segmenter is not None:
                scores["predicted_iou"] = float(regions.scores[k])
            proposals.append(Proposal(image_id, f"{image_id}_{k}", classes[k], captions[k], scores))
        thresholds = ConfidenceThresholds(predicted_iou=self.config["min_predicted_iou"],
                                          logprob=self.config["min_logprob"])
        kept = select_per_image([p for p in proposals if passes_thresholds(p, thresholds)],
                                max_per_image=self.config["max_per_image"],
                                rank_by="predicted_iou" if self.segmenter is not None else "logprob")
        return [_record(p.region_id, image_id, int(p.region_id.rsplit("_", 1)[1]), regions, p.caption, p.class_name,
                        p.scores, origin) for p in kept]

    def phrases(self, i) -> list[dict]:
        """Seed 001: noun phrases of the image's caption, each grounded to its best-scoring proposal."""
        from regionlib.selflabel import ground_phrases, noun_phrases

        image_id, image, regions, origin = self.load(i)
        caption = self.config["captions"].get(image_id) if self.config.get("captions") else None
        if caption is None:
            if regions is None or regions.captions is None:
                raise ConfigError(f"no caption for image {image_id!r}: pass --captions JSON for --images")
            caption = " ".join(regions.captions)
        regions = self._proposals(image, regions)
        phrases = sorted(set(noun_phrases([caption], self.nlp)[0]))
        if len(regions) == 0 or not phrases:
            return []
        best, score = ground_phrases(phrases, image, regions.masks, self.similarity)
        return [_record(f"{image_id}_p{j}", image_id, int(best[j]), regions, phrase, None,
                        {"phrase_score": float(score[j])}, origin, source_caption=caption)
                for j, phrase in enumerate(phrases)]


def make_label_work(config: dict):
    """Factory run once per actor (Ray Data): builds the `LabelWorker` there."""

    def build():
        return LabelWorker(config)

    return build


def filter_phrases(out: Path, fraction: float) -> dict:
    """Seed 001's dataset-wide filter: drop the lowest ``fraction`` of phrase scores -> ``filtered.jsonl``."""
    from regionlib.selflabel import drop_lowest_fraction
    from regionlib.shards import atomic_write_bytes, read_jsonl_shards

    records = sorted(read_jsonl_shards(out), key=lambda r: r["id"])
    keep = drop_lowest_fraction([r["scores"]["phrase_score"] for r in records], fraction) if records else []
    kept = [r for r, k in zip(records, keep) if k]
    atomic_write_bytes(out / "filtered.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())
    return {"phrases": len(records), "kept": len(kept)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", choices=["keywords", "describe", "phrases"], default="describe")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--regionworld", type=int, metavar="N", help="label N images of a RegionWorld split")
    src.add_argument("--images", help="directory of image files (SAM proposals, or --coco annotations)")
    p.add_argument("--coco", help="COCO-format instances JSON over --images (class-annotated regions)")
    p.add_argument("--captions", help="JSON {image id: caption} for --stage phrases over --images")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--split", default=None, help="RegionWorld split (default: train for keywords, else unlabeled)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="a ray_jobs/train.py checkpoint directory")
    model.add_argument("--captioner", help="a RegionModel.save_pretrained directory")
    model.add_argument("--preset", help="a model preset, random init (smoke tests only)")
    p.add_argument("--proposals", choices=["regionworld", "sam"], default=None,
                   help="default: the annotations when there are any, else sam")
    p.add_argument("--sam-preset", default="tiny")
    p.add_argument("--sam-checkpoint", default=None)
    p.add_argument("--points-per-side", type=int, default=16)
    p.add_argument("--min-logprob", type=float, default=None, help="minimum mean log-probability per caption token")
    p.add_argument("--min-predicted-iou", type=float, default=0.5, help="minimum SAM predicted IoU (sam proposals)")
    p.add_argument("--max-per-image", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16, help="regions per captioner forward pass")
    p.add_argument("--drop-fraction", type=float, default=0.3, help="seed 001's R: share of phrases dropped")
    p.add_argument("--similarity", default="captioner",
                   help="phrases stage: 'captioner' (phrase log-probability) or 'clip:PATH' (CLIP / SigLIP checkpoint)")
    p.add_argument("--spacy", default=None, help="spaCy pipeline for noun phrases (default en_core_web_sm)")
    p.add_argument("--vlm", choices=["openai", "regionworld-oracle"], default="openai", help="stage 1 backend")
    p.add_argument("--vlm-url", default=None)
    p.add_argument("--vlm-model", default=None)
    p.add_argument("--vlm-concurrency", type=int, default=4)
    p.add_argument("--vlm-max-tokens", type=int, default=300)
    p.add_argument("--cache", default=None, help="VLM answer cache (default: <out>/answers.sqlite)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shard-size", type=int, default=8)
    p.add_argument("--actors", type=int, default=1)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--gpus-per-actor", type=float, default=0)
    p.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local instance)")
    p.add_argument("--fail-shard", type=int, default=None, help=argparse.SUPPRESS)  # fault injection (tests)
    p.add_argument("--fail-marker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    annotated = bool(args.regionworld or args.coco)
    proposals = args.proposals or ("regionworld" if annotated else "sam")
    if proposals == "regionworld" and not annotated:
        raise ConfigError("--proposals regionworld needs annotated images (--regionworld N or --coco); use sam")
    if args.coco and not args.images:
        raise ConfigError("--coco needs --images (the image directory the annotations refer to)")
    needs_captioner = args.stage == "describe" or (args.stage == "phrases" and args.similarity == "captioner")
    if args.similarity != "captioner" and not args.similarity.startswith("clip:"):
        raise ConfigError(f"--similarity must be 'captioner' or 'clip:PATH', got {args.similarity!r}")
    if needs_captioner and not (args.checkpoint or args.captioner or args.preset):
        raise ConfigError(f"--stage {args.stage} needs a captioner: --checkpoint, --captioner or --preset")
    if args.stage == "keywords" and not annotated:
        raise ConfigError("--stage keywords expands annotated regions: use --regionworld or --coco")
    if args.stage == "keywords" and args.vlm == "regionworld-oracle" and not args.regionworld:
        raise ConfigError("--vlm regionworld-oracle answers for RegionWorld regions only")
    if args.max_per_image < 1 or args.shard_size < 1 or args.actors < 1 or not 0 <= args.drop_fraction <= 1:
        raise ConfigError("--max-per-image, --shard-size and --actors must be positive, --drop-fraction in [0, 1]")
    resolve = (lambda v: str(Path(v).resolve()) if v else None)
    captions = None
    if args.captions:
        from regionlib.evaluation.formats import read_json

        captions = {str(k): v for k, v in read_json(args.captions).items()}
    config = {"stage": args.stage, "regionworld": args.regionworld, "images": resolve(args.images),
              "coco": resolve(args.coco), "captions": captions, "world_seed": args.world_seed,
              "split": args.split or ("train" if args.stage == "keywords" else "unlabeled"),
              "checkpoint": resolve(args.checkpoint), "captioner": resolve(args.captioner), "preset": args.preset,
              "proposals": proposals, "sam_preset": args.sam_preset, "sam_checkpoint": resolve(args.sam_checkpoint),
              "points_per_side": args.points_per_side, "min_logprob": args.min_logprob,
              "min_predicted_iou": args.min_predicted_iou, "max_per_image": args.max_per_image,
              "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "shard_size": args.shard_size,
              "vlm": args.vlm if args.stage == "keywords" else None, "vlm_model": args.vlm_model,
              "vlm_max_tokens": args.vlm_max_tokens, "similarity": args.similarity, "spacy": args.spacy}
    writer = ShardedWriter(args.out, kind=f"self_labels:{args.stage}", config=config, suffix=".jsonl")
    ids, _ = image_source(config)
    specs = plan_shards(ids, args.shard_size)
    cache = args.cache or str(args.out.resolve() / "answers.sqlite")
    run_config = dict(config, gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
                      fail_shard=args.fail_shard,
                      fail_marker=args.fail_marker, vlm_url=args.vlm_url, vlm_concurrency=args.vlm_concurrency,
                      cache=cache)  # not part of the manifest's config: where to reach things, not what to compute
    init_ray(args.address)
    t0 = time.perf_counter()
    stats = run_shards(writer, specs, make_label_work(run_config), actors=args.actors,
                       num_cpus=args.cpus_per_actor, num_gpus=args.gpus_per_actor)
    if args.stage == "phrases":
        stats.update(filter_phrases(args.out, args.drop_fraction))
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
