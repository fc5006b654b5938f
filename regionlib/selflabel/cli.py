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
different classes (`select_per_image`) -> JSON-lines shards, one training triplet per kept region
(`regionlib.selflabel.records.SelfLabelRecord`): id ``"{image_id}_{k}"``, class, caption, box, COCO-RLE
mask, image size, confidences, and where the image comes from (``image.path``, or ``image.regionworld``
seeds), which training reads directly (a ``self_labels`` source:
`regionlib.selflabel.records.self_labeled_regions`), so label -> retrain -> relabel runs on a folder of
images or a COCO file. COCO crowd annotations (``iscrowd=1``) are never objects: not proposals, not
stage-1 regions, and a detector / SAM proposal lying mostly inside one is dropped.

Each finished shard appends one line to the manifest (`regionlib.runtime.shards`). A rerun skips finished
shards; a worker that dies mid-shard leaves no partial file and its shard is recomputed, so no record
is lost or duplicated. Read the output with `regionlib.selflabel.records.read_records` (each shard verified
as it is read).

Settings: every option sets one setting of `regionlib.selflabel.config.SelfLabelJob` (``--max-per-image``:
``label.max_per_image``; defaults and ranges in ``--help``); a misspelt option, a wrong type, an
out-of-range value (a zero count) or an impossible combination is a `ConfigError` before Ray starts.
`run_job` runs a `SelfLabelJob` built in Python.

Example (a folder of photographs, all checkpoints from paths)::

    python ray_jobs/self_label.py --images /data/photos --detector /ckpt/owlv2-base-patch16-ensemble \
        --classes @classes.txt --sam-preset vit_h --sam-checkpoint /ckpt/sam_vit_h_4b8939.pth \
        --clip /ckpt/siglip-so400m --min-similarity 0.1 --checkpoint outputs/runs/dam/checkpoint_000003 \
        --out outputs/self_labels
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import time
import types
import typing
from pathlib import Path

from ..config import describe, from_mapping, to_dict
from ..errors import ConfigError
from ..runtime.shards import ShardedWriter, plan_shards
from .config import SelfLabelJob
from .stages import filter_phrases, image_source, make_label_work

__all__ = ["parser", "parse_job", "run_job", "main"]


def _class_names(text: str) -> list[str]:
    """``--classes``: comma-separated names, or ``@FILE`` with one per line."""
    text = Path(text[1:]).read_text() if text.startswith("@") else text.replace(",", "\n")
    return [c.strip() for c in text.splitlines() if c.strip()]


def _captions(path: str) -> dict:
    """``--captions``: a JSON file ``{image id: caption}``."""
    from ..data.readers.base import read_json

    return {str(k): v for k, v in read_json(path, "captions file", expect=dict).items()}


_FROM_TEXT = {"classes": _class_names, "captions": _captions}  # options whose text is not the setting's value


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _settings(cls, prefix: str = ""):
    """``(dotted name, field, annotation)`` of every setting of ``cls``, sections recursed."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _settings(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f, hints[f.name]


def parser() -> argparse.ArgumentParser:
    """The command line: one ``--name-with-dashes VALUE`` per setting of `SelfLabelJob`, listed with its
    default, range and help by ``--help``; only the given ones are set."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s (--regionworld N | --images DIR) --out DIR [--setting-name VALUE ...]",
        epilog="settings: --setting-name VALUE sets section.setting_name (--max-per-image 1: label.max_per_image = 1)\n"
               + describe(SelfLabelJob))
    for dest, f, tp in _settings(SelfLabelJob):
        kind = typing.get_args(tp)[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp  # X | None
        p.add_argument(_option(f.name), dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                       type=kind if kind in (int, float) else str, required=f.default is dataclasses.MISSING)
    return p


def parse_job(argv=None) -> SelfLabelJob:
    """The `SelfLabelJob` of a command line, checked; a misspelt option is a `ConfigError` naming the nearest."""
    args, unknown = parser().parse_known_args(argv)
    if unknown:
        options = [_option(f.name) for _, f, _ in _settings(SelfLabelJob)]
        close = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1)
        raise ConfigError(f"unknown option {unknown[0]!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    values: dict = {}
    for dest, value in vars(args).items():
        *section, name = dest.split(".")
        target = values.setdefault(section[0], {}) if section else values
        target[name] = _FROM_TEXT[name](value) if name in _FROM_TEXT else value
    return from_mapping(SelfLabelJob, values)


def run_job(job: SelfLabelJob) -> dict:
    """Label ``job``'s images on Ray (started or joined here) -> ``{"shards", "skipped", "computed", "records",
    "seconds"}`` (phrases: ``"phrases"``, ``"kept"`` too); the manifest's config is ``to_dict(job.label)``."""
    from ..runtime.distributed import init_ray, run_shards

    label, run = job.label, job.run
    api_key = None
    if label.vlm == "openai":  # read on the driver: actors on a running cluster get the raylet's environment
        from ..evaluation.judges.openai_compatible import ApiKey

        api_key = ApiKey.resolve(run.vlm_api_key_file)
    writer = ShardedWriter(run.out, kind=f"self_labels:{label.stage}", config=to_dict(label), suffix=".jsonl")
    ids, _ = image_source(label)
    specs = plan_shards(ids, label.shard_size)
    init_ray(run.address)
    t0 = time.perf_counter()
    stats = run_shards(writer, specs, make_label_work(job, api_key), actors=run.actors,
                       num_cpus=run.cpus_per_actor, num_gpus=run.gpus_per_actor)
    writer.compact()  # the per-shard manifest log folded into manifest.json, once
    if label.stage == "phrases":
        stats.update(filter_phrases(Path(run.out), job.drop_fraction))
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(stats))
    return stats


def main(argv=None) -> dict:
    """``ray_jobs/self_label.py``: `run_job` of the command line ``argv``."""
    return run_job(parse_job(argv))
