"""Self-labeling on Ray Data (the command line of ``ray_jobs/self_label.py``): DLC-SDP (seed 003 §4, App. H.1; REFERENCE §2) and seed 001's parse-and-filter.

Local (RegionWorld's unlabeled pool, a captioner trained by ``ray_jobs/train.py``):
    python ray_jobs/self_label.py --regionworld 200 --checkpoint outputs/runs/dam/checkpoint_000003 \\
        --out outputs/self_labels --actors 2
Cluster (class-agnostic SAM proposals on a directory of photographs, GPU actors):
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

Stage 2 (REFERENCE §2), per image: category proposals (``--detector PATH``: OWLv2 boxes of
``--classes`` — default the COCO file's categories or RegionWorld's shapes — through transformers'
``Owlv2ForObjectDetection`` + ``Owlv2Processor``, class-wise NMS, ``--max-detections``; ``--proposals
boxes``: the COCO / RegionWorld annotations' boxes; ``regionworld``: the annotations' own masks and
class names, standing in for the detector; ``sam``: class-agnostic `SamAutomaticMaskGenerator` masks)
-> SAM masks for the boxes (box prompts, SAM's predicted IoU kept; ``--sam-preset`` /
``--sam-checkpoint``) -> a description of every region by the stage-1 captioner *given its class
name* (`regionlib.selflabel.stage2.describe_given_class`: ``--candidates`` descriptions re-ranked by
the captioner's score of the class-prefixed text, the prefix never in the label) -> confidences:
the detector's class score (``--min-detector``), SAM's predicted IoU (``--min-predicted-iou``), the
caption's class-conditioned mean log-probability per token (``--min-logprob``) and the CLIP / SigLIP
cosine similarity of the region crop and the caption (``--clip PATH``, ``--min-similarity``) ->
`regionlib.selflabel.filter_proposals` -> at most ``--max-per-image`` regions per image, of
different classes (`select_per_image`) -> JSON-lines shards, one training triplet per kept region:
id ``"{image_id}_{k}"``, class, caption, box, COCO-RLE mask, image size, confidences, and where the
image comes from (``image.path``, or ``image.regionworld`` seeds), which
`regionlib.training.tasks.self_labeled_regions` reads directly (so label -> retrain -> relabel runs
on a folder of images or a COCO file). COCO crowd annotations (``iscrowd=1``) are never objects:
not proposals, not stage-1 regions, and a detector / SAM proposal lying mostly inside one is dropped.

Each finished shard appends one line to the manifest (`regionlib.runtime.shards`). A rerun skips finished
shards; a worker that dies mid-shard leaves no partial file and its shard is recomputed, so no record
is lost or duplicated. Read the output with `regionlib.runtime.shards.read_jsonl_shards` (each shard verified
as it is read).

Example (a folder of photographs, all checkpoints from paths)::

    python ray_jobs/self_label.py --images /data/photos --detector /ckpt/owlv2-base-patch16-ensemble \
        --classes @classes.txt --sam-preset vit_h --sam-checkpoint /ckpt/sam_vit_h_4b8939.pth \
        --clip /ckpt/siglip-so400m --min-similarity 0.1 --checkpoint outputs/runs/dam/checkpoint_000003 \
        --out outputs/self_labels
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..runtime.distributed import init_ray, run_shards
from ..errors import ConfigError
from ..runtime.shards import ShardedWriter, plan_shards
from .stages import filter_phrases, image_source, make_label_work

__all__ = ["parse_args", "job_config", "main"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", choices=["keywords", "describe", "phrases"], default="describe")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--regionworld", type=int, metavar="N", help="label N images of a RegionWorld split")
    src.add_argument("--images", help="directory of image files (SAM proposals, or --coco annotations)")
    p.add_argument("--coco", help="COCO-format instances JSON over --images (class-annotated regions)")
    p.add_argument("--captions", help="JSON {image id: caption} for --stage phrases over --images")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None, help="RegionWorld image size (default: the world's 256)")
    p.add_argument("--split", default=None, help="RegionWorld split (default: train for keywords, else unlabeled)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="a ray_jobs/train.py checkpoint directory")
    model.add_argument("--captioner", help="a RegionModel.save_pretrained directory")
    model.add_argument("--preset", help="a model preset, random init (smoke tests only)")
    p.add_argument("--proposals", choices=["regionworld", "boxes", "detector", "sam"], default=None,
                   help="regionworld: the annotations' masks; boxes: SAM masks for the annotations' boxes; detector: "
                        "SAM masks for OWLv2 boxes (--detector); sam: automatic masks. Default: detector with "
                        "--detector, else the annotations when there are any, else sam")
    p.add_argument("--detector", help="OWLv2 checkpoint directory (Owlv2ForObjectDetection + Owlv2Processor)")
    p.add_argument("--classes", help="detector class names: comma-separated, or @FILE with one per line "
                                     "(default: the COCO file's categories, or RegionWorld's shapes)")
    p.add_argument("--max-detections", type=int, default=16, help="detector boxes per image (after class-wise NMS)")
    p.add_argument("--nms-iou", type=float, default=0.5)
    p.add_argument("--min-detector", type=float, default=0.1, help="minimum detector class score")
    p.add_argument("--clip", help="CLIP / SigLIP checkpoint directory for the crop-text similarity filter")
    p.add_argument("--min-similarity", type=float, default=None, help="minimum crop-caption cosine similarity (--clip)")
    p.add_argument("--candidates", type=int, default=4,
                   help="descriptions proposed per region and re-ranked given its class name (1: greedy only)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the extra candidates")
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
    p.add_argument("--vlm-api-key-file", default=None,
                   help="file holding the VLM endpoint's API key (default: $REGIONLIB_JUDGE_API_KEY / $OPENAI_API_KEY "
                        "on the driver); read here and handed to the actors, never logged")
    p.add_argument("--cache", default=None, help="VLM answer cache directory (default: <out>/answers)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shard-size", type=int, default=8)
    p.add_argument("--actors", type=int, default=1)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--gpus-per-actor", type=float, default=0)
    p.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local instance)")
    p.add_argument("--fail-shard", type=int, default=None, help=argparse.SUPPRESS)  # fault injection (tests)
    p.add_argument("--fail-marker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _classes(args) -> list[str] | None:
    """Detector class names: --classes, else the COCO file's categories, else RegionWorld's shapes."""
    if args.classes:
        text = Path(args.classes[1:]).read_text() if args.classes.startswith("@") else args.classes.replace(",", "\n")
        names = [c.strip() for c in text.splitlines() if c.strip()]
    elif args.coco:
        from ..data.readers.base import read_json

        names = [str(c["name"]) for c in sorted(read_json(args.coco, "COCO annotation file", expect=dict).get("categories", []), key=lambda c: c["id"])]
    elif args.regionworld:
        from ..data.grammar import SHAPES

        names = list(SHAPES)
    else:
        return None
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"detector classes must be distinct non-empty names, got {names[:10]}")
    return names


def job_config(argv=None) -> tuple:
    """``(args, config, run_config)`` of a command line, checked: ``config`` (what is computed) goes into
    the manifest; ``run_config`` adds where to reach things (what `LabelWorker` is built from)."""
    args = parse_args(argv)
    annotated = bool(args.regionworld or args.coco)
    proposals = args.proposals or ("detector" if args.detector else "regionworld" if annotated else "sam")
    if proposals in ("regionworld", "boxes") and not annotated:
        raise ConfigError(f"--proposals {proposals} needs annotated images (--regionworld N or --coco); "
                          "use --detector or --proposals sam")
    if proposals == "detector" and not args.detector:
        raise ConfigError("--proposals detector needs --detector PATH (an OWLv2 checkpoint directory)")
    classes = _classes(args) if proposals == "detector" else None
    if proposals == "detector" and not classes:
        raise ConfigError("--detector needs class names: --classes a,b,c (or --coco, whose categories are used)")
    if args.min_similarity is not None and not args.clip:
        raise ConfigError("--min-similarity needs --clip PATH (a CLIP / SigLIP checkpoint)")
    if args.candidates < 1 or args.max_detections < 1:
        raise ConfigError("--candidates and --max-detections must be positive")
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
        from ..data.readers.base import read_json

        captions = {str(k): v for k, v in read_json(args.captions, "captions file", expect=dict).items()}
    config = {"stage": args.stage, "regionworld": args.regionworld, "images": resolve(args.images),
              "coco": resolve(args.coco), "captions": captions, "world_seed": args.world_seed,
              "image_size": args.image_size,
              "split": args.split or ("train" if args.stage == "keywords" else "unlabeled"),
              "checkpoint": resolve(args.checkpoint), "captioner": resolve(args.captioner), "preset": args.preset,
              "proposals": proposals, "sam_preset": args.sam_preset, "sam_checkpoint": resolve(args.sam_checkpoint),
              "points_per_side": args.points_per_side, "min_logprob": args.min_logprob,
              "min_predicted_iou": args.min_predicted_iou, "max_per_image": args.max_per_image,
              "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "shard_size": args.shard_size,
              "vlm": args.vlm if args.stage == "keywords" else None, "vlm_model": args.vlm_model,
              "vlm_max_tokens": args.vlm_max_tokens, "similarity": args.similarity, "spacy": args.spacy,
              "detector": resolve(args.detector), "classes": classes, "max_detections": args.max_detections,
              "nms_iou": args.nms_iou, "min_detector": args.min_detector if proposals == "detector" else None,
              "clip": resolve(args.clip), "min_similarity": args.min_similarity, "candidates": args.candidates,
              "seed": args.seed}
    cache = args.cache or str(args.out.resolve() / "answers")
    vlm_key = None
    if config["vlm"] == "openai":  # read on the driver: actors on a running cluster get the raylet's environment
        from ..evaluation.judges.openai_compatible import ApiKey

        vlm_key = ApiKey.resolve(args.vlm_api_key_file)
    run_config = dict(config, gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
                      fail_shard=args.fail_shard,
                      fail_marker=args.fail_marker, vlm_url=args.vlm_url, vlm_concurrency=args.vlm_concurrency,
                      vlm_api_key=vlm_key,
                      cache=cache)  # not part of the manifest's config: where to reach things, not what to compute
    return args, config, run_config


def main(argv=None) -> dict:
    args, config, run_config = job_config(argv)
    writer = ShardedWriter(args.out, kind=f"self_labels:{args.stage}", config=config, suffix=".jsonl")
    ids, _ = image_source(config)
    specs = plan_shards(ids, args.shard_size)
    init_ray(args.address)
    t0 = time.perf_counter()
    stats = run_shards(writer, specs, make_label_work(run_config), actors=args.actors,
                       num_cpus=args.cpus_per_actor, num_gpus=args.gpus_per_actor)
    writer.compact()  # the per-shard manifest log folded into manifest.json, once
    if args.stage == "phrases":
        stats.update(filter_phrases(args.out, args.drop_fraction))
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(stats))
    return stats
