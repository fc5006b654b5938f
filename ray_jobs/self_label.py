"""Self-labeling on Ray Data: DLC-SDP stage 2 (seed 003 §4, App. H.1; REFERENCE §2).

Local (RegionWorld's unlabeled pool, a captioner trained by ``ray_jobs/train.py``):
    python ray_jobs/self_label.py --regionworld 200 --checkpoint outputs/runs/dam/checkpoint_000003 \\
        --out outputs/self_labels --actors 2
Cluster (SAM proposals on a directory of photographs, GPU actors):
    ray job submit --working-dir . -- python ray_jobs/self_label.py --images /data/sa1b/images \\
        --proposals sam --sam-preset vit_h --sam-checkpoint /ckpt/sam_vit_h_4b8939.pth \\
        --captioner /ckpt/dam_regionlib --actors 16 --gpus-per-actor 1 --out /shared/self_labels

Per image: region proposals (``regionworld``: the generator's own instance masks and class
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
    from ray_jobs.cache_features import list_images
    from regionlib.images import load_image

    paths = list_images(Path(config["images"]))

    def load(image_id):
        return image_id, load_image(paths[image_id]), None, {"path": paths[image_id]}

    return list(paths), load


def make_label_work(config: dict):
    """Factory run once per actor: loads the captioner (and SAM) there and returns the shard worker."""

    def build():
        import torch

        from regionlib.masks import encode_rle
        from regionlib.regions import Regions
        from regionlib.selflabel import ConfidenceThresholds, Proposal, passes_thresholds, select_per_image
        from regionlib.shards import atomic_write_bytes
        from regionlib.train_tasks import collate_inputs, region_inputs

        device = "cuda" if config["gpus_per_actor"] > 0 and torch.cuda.is_available() else "cpu"
        model = load_captioner(config).to(device)
        _, load = image_source(config)
        segmenter = None
        if config["proposals"] == "sam":
            from regionlib.sam import SamSegmenter, build_sam

            segmenter = SamSegmenter(build_sam(config["sam_preset"], checkpoint=config["sam_checkpoint"]).to(device))
        thresholds = ConfidenceThresholds(predicted_iou=config["min_predicted_iou"], logprob=config["min_logprob"])

        @torch.no_grad()
        def label_image(i):
            image_id, image, regions, origin = load(i)
            if segmenter is not None:
                regions = segmenter.propose(image, points_per_side=config["points_per_side"])
            elif regions is None:
                raise ConfigError("--proposals regionworld needs a --regionworld source; use --proposals sam")
            if len(regions) == 0:
                return []
            captions, logps = [], []
            inputs = region_inputs(model, image, regions)
            for k in range(0, len(inputs), config["batch_size"]):
                batch = collate_inputs(inputs[k: k + config["batch_size"]], device)
                caps = model.generate(batch, max_new_tokens=config["max_new_tokens"])
                captions += caps
                logps += model.lm_head.mean_log_prob(model.prefix(batch), caps).tolist()
            classes = regions.labels if regions.labels is not None else [None] * len(regions)
            proposals = []
            for k in range(len(regions)):
                scores = {"logprob": float(logps[k])}
                if segmenter is not None:
                    scores["predicted_iou"] = float(regions.scores[k])
                proposals.append(Proposal(image_id, f"{image_id}_{k}", classes[k], captions[k], scores))
            kept = select_per_image([p for p in proposals if passes_thresholds(p, thresholds)],
                                    max_per_image=config["max_per_image"],
                                    rank_by="predicted_iou" if segmenter is not None else "logprob")
            out = []
            for p in kept:
                k = int(p.region_id.rsplit("_", 1)[1])
                r: Regions = regions[k]
                out.append({"id": p.region_id, "image_id": image_id, "index": k, "class_name": p.class_name,
                            "caption": p.caption, "box_xyxy": [float(v) for v in r.boxes_xyxy[0]],
                            "mask": encode_rle(r.masks)[0], "image_size": list(regions.image_size),
                            "scores": p.scores, "image": origin})
            return out

        def work(spec, shard_path):
            fail = config.get("fail_shard")
            marker = config.get("fail_marker")
            if fail is not None and spec.index == int(fail) and marker and not os.path.exists(marker):
                Path(marker).write_text(f"actor killed in shard {spec.index}")
                os._exit(1)  # injected fault: the actor process dies mid-shard, before writing
            records = [rec for i in spec.ids for rec in label_image(i)]
            atomic_write_bytes(shard_path, "".join(json.dumps(r) + "\n" for r in records).encode())
            return len(records)

        return work

    return build


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--regionworld", type=int, metavar="N", help="label N images of RegionWorld's unlabeled pool")
    src.add_argument("--images", help="directory of image files (use --proposals sam)")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--split", default="unlabeled", help="RegionWorld split to draw from (default: unlabeled)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a ray_jobs/train.py checkpoint directory")
    model.add_argument("--captioner", help="a RegionModel.save_pretrained directory")
    model.add_argument("--preset", help="a model preset, random init (smoke tests only)")
    p.add_argument("--proposals", choices=["regionworld", "sam"], default=None,
                   help="default: regionworld for --regionworld, sam for --images")
    p.add_argument("--sam-preset", default="tiny")
    p.add_argument("--sam-checkpoint", default=None)
    p.add_argument("--points-per-side", type=int, default=16)
    p.add_argument("--min-logprob", type=float, default=None, help="minimum mean log-probability per caption token")
    p.add_argument("--min-predicted-iou", type=float, default=0.5, help="minimum SAM predicted IoU (sam proposals)")
    p.add_argument("--max-per-image", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16, help="regions per captioner forward pass")
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
    proposals = args.proposals or ("regionworld" if args.regionworld else "sam")
    if proposals == "regionworld" and not args.regionworld:
        raise ConfigError("--proposals regionworld needs --regionworld N; use --proposals sam with --images")
    if args.max_per_image < 1 or args.shard_size < 1 or args.actors < 1:
        raise ConfigError("--max-per-image, --shard-size and --actors must be positive")
    resolve = (lambda v: str(Path(v).resolve()) if v else None)
    config = {"regionworld": args.regionworld, "images": resolve(args.images), "world_seed": args.world_seed,
              "split": args.split, "checkpoint": resolve(args.checkpoint), "captioner": resolve(args.captioner),
              "preset": args.preset, "proposals": proposals, "sam_preset": args.sam_preset,
              "sam_checkpoint": resolve(args.sam_checkpoint), "points_per_side": args.points_per_side,
              "min_logprob": args.min_logprob, "min_predicted_iou": args.min_predicted_iou,
              "max_per_image": args.max_per_image, "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size, "shard_size": args.shard_size}
    writer = ShardedWriter(args.out, kind="self_labels", config=config, suffix=".jsonl")
    ids, _ = image_source(config)
    specs = plan_shards(ids, args.shard_size)
    run_config = dict(config, gpus_per_actor=args.gpus_per_actor, fail_shard=args.fail_shard,
                      fail_marker=args.fail_marker)
    init_ray(args.address)
    t0 = time.perf_counter()
    stats = run_shards(writer, specs, make_label_work(run_config), actors=args.actors,
                       num_cpus=args.cpus_per_actor, num_gpus=args.gpus_per_actor)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
