"""Pretraining of the shipped tiny bases on RegionWorld (``make pretrain``; issue "embedded default").

The seeds never train from random init: DAM adds its zero-initialised mask embedding and adapters
to a vision-language model that can already read images (VILA; seed 003 §3.2), SCA freezes a
*pretrained* SAM (seed 000 §3). The tiny presets get the same start from two bases trained here,
from RegionWorld alone, with fixed seeds:

* **tiny SAM** (segment-anything's classes, preset ``"tiny"``, 256-px input): promptable
  segmentation as SAM trains it (seed 000 builds on SAM, Kirillov et al. 2023 §3): per region a
  prompt — one positive point, two points, a jittered box, or a coarse mask — and the mask
  decoder's four outputs; loss class-balanced ``BCE + dice`` (`_bce_dice`) on the single-mask output and on the best
  of the three multimask outputs, plus ``MSE(iou_pred, IoU)`` for every output (so picking the mask of
  highest predicted IoU, as `SamSegmenter.segment` does, picks a good one).
* **tiny VL base**: a vision encoder + projector + LM with its tokenizer — the architecture of the
  ``tiny-dam`` presets with the mask embedding held at zero — trained as a plain image captioner
  on mixed views of one object: the tight crop, a focal crop (α = 3, minimum 48 px per 256 px of
  image, so 96 px at 512 — twice DAM's fixed 48 there) and a full image
  holding a single object, each with an appearance caption (`view_caption`).

``python -m regionlib.training.pretrain --out DIR [--short]`` writes ``DIR/sam.safetensors`` (the
released SAM state-dict layout), ``DIR/vl/`` (`RegionModel.save_pretrained`) and
``DIR/manifest.json`` (command, seeds, steps, measured quality, file hashes). `regionlib.models.bases`
loads them (``create_model("tiny-dam", base="regionworld")``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.regionworld import RegionWorldConfig, generate_sample
from ..errors import ConfigError

__all__ = ["PretrainSettings", "SHORT", "view_caption", "pretrain_sam", "pretrain_vl", "evaluate_sam",
           "evaluate_vl", "main"]

#: RegionWorld configs the bases see: the default 256-px world and the main job's 512-px one.
WORLDS = (RegionWorldConfig(), RegionWorldConfig(image_size=512))
#: the views of the VL base (`view_caption`): tight crop, focal crop, a full image of one object
VIEWS = ("crop", "focal_crop", "single")


@dataclass(frozen=True)
class PretrainSettings:
    seed: int = 0
    sam_steps: int = 2500
    sam_images: int = 4  # images per step (fresh every step)
    sam_regions: int = 12  # prompts per image
    sam_lr: float = 1e-3
    vl_steps: int = 1500
    vl_batch: int = 48  # views per step
    vl_lr: float = 2e-3
    eval_images: int = 40


SHORT = PretrainSettings(sam_steps=6, sam_images=2, vl_steps=6, vl_batch=8, eval_images=3)


def _schedule(opt, steps: int):
    """The recipes' schedule (`regionlib.training.recipes.build_scheduler`): linear warmup over 5 % of the steps,
    then cosine decay to 0."""
    from .recipes import Recipe, build_scheduler

    return build_scheduler(opt, Recipe(warmup_steps=max(1, steps // 20)), total_steps=steps)


def _sample(seed: int, step: int, k: int, split: str = "train", single: bool = False):
    cfg = WORLDS[(step + k) % len(WORLDS)]
    if single:
        cfg = RegionWorldConfig(image_size=cfg.image_size, min_objects=1, max_objects=1)
    return generate_sample((seed, step, k, int(single)), config=cfg, split=split)


# ------------------------------------------------------------------------------------ tiny SAM
def _bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(P, K, H, W)`` logits vs ``(P, 1, H, W)`` target in [0, 1] -> ``(P, K)`` class-balanced BCE + dice.

    SAM weighs focal : dice as 20 : 1 over an MAE-pretrained encoder. From scratch at this size both
    that loss and plain BCE + dice settle on all-background masks (measured: IoU 0.01 after 300
    steps); weighting each mask's foreground and background pixels to half the BCE each does not
    (IoU 0.16 after 300 steps, rising)."""
    t = target.expand_as(logits)
    p = logits.sigmoid()
    fg = t.flatten(2).mean(-1).clamp(1e-3, 1 - 1e-3)[..., None, None]  # (P, K, 1, 1) foreground share
    weight = t * 0.5 / fg + (1 - t) * 0.5 / (1 - fg)
    bce = (weight * F.binary_cross_entropy_with_logits(logits, t, reduction="none")).flatten(2).mean(-1)
    inter = (p * t).flatten(2).sum(-1)
    dice = 1 - (2 * inter + 1) / (p.flatten(2).sum(-1) + t.flatten(2).sum(-1) + 1)
    return bce + dice


def _iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(P, K, H, W)`` logits, ``(P, 1, H, W)`` target -> ``(P, K)`` IoU of the thresholded masks."""
    m, t = logits > 0, target.expand_as(logits) > 0.5
    inter = (m & t).flatten(2).sum(-1).float()
    union = (m | t).flatten(2).sum(-1).float()
    return inter / union.clamp(min=1)


def _sam_prompts(masks: np.ndarray, rng: np.random.Generator, kind: str, low_size: int, side: int):
    """Prompts of one kind for ``(P, H, W)`` masks of a ``side``-px image, in SAM's input frame:
    ``(points (P, n, 2), labels (P, n))`` or ``boxes (P, 4)`` or ``mask logits (P, 1, low, low)``."""
    p = len(masks)
    if kind in ("point", "points"):
        n = 1 if kind == "point" else 2
        pts, labels = np.zeros((p, n, 2), np.float32), np.ones((p, n), np.int64)
        for i, m in enumerate(masks):
            ys, xs = np.nonzero(m)
            j = rng.integers(len(xs))
            pts[i, 0] = xs[j], ys[j]  # a click on a pixel (the prompt encoder adds the half pixel)
            if n == 2:  # a second click: inside (positive) or outside the object (negative)
                if rng.random() < 0.5:
                    j = rng.integers(len(xs))
                    pts[i, 1] = xs[j], ys[j]
                else:
                    ys, xs = np.nonzero(~m)
                    j = rng.integers(len(xs))
                    pts[i, 1], labels[i, 1] = (xs[j], ys[j]), 0
        return torch.from_numpy(pts), torch.from_numpy(labels)
    if kind == "box":  # SAM: the box jittered by N(0, 0.1 side) per coordinate, at most 20 px
        from ..masks import masks_to_boxes

        b = masks_to_boxes(masks).astype(np.float32)
        wh = np.repeat(b[:, 2:] - b[:, :2], 2, axis=0).reshape(p, 4)
        noise = np.clip(rng.normal(0, 0.1, (p, 4)) * wh, -20 * side / 256, 20 * side / 256)
        return torch.from_numpy(np.clip(b + noise, 0, side).astype(np.float32))
    # "mask": the mask at the prompt encoder's grid, grown or shrunk by a pixel, as +-20 logits
    t = F.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], low_size)
    grow = torch.from_numpy(rng.choice([-1, 0, 1], size=p)).float().view(p, 1, 1, 1)
    t = torch.where(grow > 0, F.max_pool2d(t, 3, 1, 1), torch.where(grow < 0, -F.max_pool2d(-t, 3, 1, 1), t))
    return (2 * (t > 0.5).float() - 1) * 20.0


def _sam_step_loss(sam, samples, rng: np.random.Generator, n_regions: int) -> tuple[torch.Tensor, dict]:
    side = sam.image_encoder.img_size
    low = sam.prompt_encoder.mask_input_size
    images = []
    for s in samples:
        x = torch.from_numpy(np.ascontiguousarray(s.image)).permute(2, 0, 1).float()[None]
        if x.shape[-1] != side:  # SAM's ResizeLongestSide for square images
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        images.append(sam.preprocess(x[0]))
    emb = sam.image_encoder(torch.stack(images))  # (B, C, g, g)
    pe = sam.prompt_encoder.get_dense_pe()
    losses, ious = [], []
    for b, s in enumerate(samples):
        masks = s.regions.masks[rng.permutation(len(s.regions))[:n_regions]]
        m = torch.from_numpy(masks).float()[:, None]
        if m.shape[-1] != side:
            m = F.interpolate(m, size=(side, side), mode="area")
        m = m[m.flatten(1).amax(1) > 0.5]
        if not len(m):
            continue
        target = F.adaptive_avg_pool2d(m, low)  # (P, 1, 4g, 4g): the decoder's output grid
        kinds = rng.choice(["point", "points", "box", "mask"], size=len(m), p=[0.35, 0.2, 0.3, 0.15])
        for kind in np.unique(kinds):
            sel = torch.from_numpy(kinds == kind)
            prompt = _sam_prompts((m[sel, 0] > 0.5).numpy(), rng, str(kind), low[0], side)
            points = prompt if kind in ("point", "points") else None
            boxes = prompt if kind == "box" else None
            dense_in = prompt if kind == "mask" else None
            sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=dense_in)
            logits, iou_pred = sam.mask_decoder.predict_masks(emb[b : b + 1], pe, sparse, dense)  # (P, 4, 4g, 4g)
            per = _bce_dice(logits, target[sel])  # (P, 4); the loss at the decoder's low-res grid
            with torch.no_grad():
                actual = _iou(logits, target[sel])
            best = per[:, 1:].min(dim=1).values
            losses.append(per[:, 0] + best + F.mse_loss(iou_pred, actual, reduction="none").sum(1))
            ious.append(actual.max(dim=1).values)
    loss = torch.cat(losses).mean()
    return loss, {"iou": float(torch.cat(ious).mean())}


def pretrain_sam(settings: PretrainSettings, *, log=print):
    """Train the tiny SAM (`regionlib.sam.build_sam` preset ``"tiny"``) on fresh RegionWorld images."""
    from ..sam import build_sam

    sam = build_sam("tiny", seed=settings.seed).train()
    opt = torch.optim.AdamW(sam.parameters(), lr=settings.sam_lr, weight_decay=0.0)
    schedule = _schedule(opt, settings.sam_steps)
    rng = np.random.default_rng([settings.seed, 1])
    for step in range(settings.sam_steps):
        samples = [_sample(settings.seed, step, k) for k in range(settings.sam_images)]
        loss, stats = _sam_step_loss(sam, samples, rng, settings.sam_regions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == settings.sam_steps - 1:
            log(f"sam step {step}: loss {loss.item():.3f}, oracle IoU {stats['iou']:.3f}")
    return sam.eval()


def evaluate_sam(sam, n_images: int, *, seed: int = 0) -> dict:
    """Mean IoU on RegionWorld test regions of the mask `SamSegmenter.segment` returns, per prompt kind
    (the centre of the mask's largest inscribed part is approximated by the mask pixel nearest its
    centroid; the box is the tight box)."""
    from ..masks import masks_to_boxes
    from ..prompts import Prompt
    from ..sam import SamSegmenter

    seg = SamSegmenter(sam)
    out: dict[str, list[float]] = {"point": [], "box": []}
    for k in range(n_images):
        s = generate_sample((seed, 10**6 + k), config=WORLDS[k % 2], split="test")
        seg.set_image(s.image)
        masks = s.regions.masks
        pts = []
        for m in masks:
            ys, xs = np.nonzero(m)
            j = np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2)
            pts.append((float(xs[j]), float(ys[j])))
        boxes = masks_to_boxes(masks).astype(np.float64)
        for kind, prompts in (("point", [Prompt.from_points([p], [1]) for p in pts]),
                              ("box", [Prompt.from_box(b) for b in boxes])):
            pred = seg.predict(prompts)
            best = pred.masks[np.arange(len(masks)), pred.iou_predictions.argmax(1)]
            inter = (best & masks).sum((1, 2))
            union = (best | masks).sum((1, 2))
            out[kind].extend((inter / np.maximum(union, 1)).tolist())
    return {f"mIoU ({kind} prompt)": float(np.mean(v)) for kind, v in out.items()}


# ------------------------------------------------------------------------------------ tiny VL base
def view_caption(attrs, view: str) -> str:
    """The appearance caption of one view: the crops say what the object looks like
    (``"A red striped circle with a dark outline."``); the single-object full image also says its
    size and position (``"A small red striped circle in the top left of the image."``)."""
    outline = " with a dark outline" if attrs.get("outline") else ""
    what = f"{attrs['color']} {attrs['pattern']} {attrs['shape']}{outline}"
    if view == "single":
        return f"A {attrs['size']} {what} in the {attrs['position']} of the image."
    return f"A {what}."


def _views(seed: int, step: int, n: int, split: str = "train"):
    """``n`` (image crop ``(h, w, 3)`` uint8, caption, view) triples, cycling through `VIEWS`."""
    from ..focal import crop_boxes

    out, k = [], 0
    while len(out) < n:
        view = VIEWS[(step + k) % len(VIEWS)]
        s = _sample(seed, step, k, split=split, single=view == "single")
        masks, attrs = s.regions.masks, s.regions.data["attributes"]
        if view == "single":
            out.append((s.image, view_caption(attrs[0], view), view))
        else:
            boxes = crop_boxes(masks, view, expansion=3.0, min_size=48 * s.image.shape[0] // 256)
            for (x0, y0, x1, y1), a in zip(boxes.tolist(), attrs):
                out.append((s.image[y0:y1, x0:x1], view_caption(a, view), view))
        k += 1
    return out[:n]


def vl_batch(model, views) -> dict:
    """A DAM ``full``-variant batch whose "full images" are the views (mask embedding at zero: unused)."""
    proc = model.image_processor
    chw = [torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1) for v, _, _ in views]
    images = proc(chw)
    ones = proc.masks([torch.ones(proc.size, dtype=torch.bool)] * len(views))
    return {"full_image": images, "full_mask": ones, "image_index": torch.arange(len(views)),
            "targets": [c for _, c, _ in views], "prompts": None}


def build_vl_model(seed: int):
    """The VL base's architecture: ``tiny-dam-full`` with RegionWorld's words in its tokenizer."""
    from ..data.grammar import caption_words
    from ..models import create_model

    return create_model("tiny-dam-full", tokenizer_texts=[" ".join(caption_words())], seed=seed)


def pretrain_vl(settings: PretrainSettings, *, log=print):
    """Train the VL base on mixed single-object views (the mask embedding stays zero and frozen)."""
    model = build_vl_model(settings.seed).train()
    model.backbone.mask_embed.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.vl_lr, weight_decay=0.05)
    schedule = _schedule(opt, settings.vl_steps)
    for step in range(settings.vl_steps):
        batch = vl_batch(model, _views(settings.seed, step, settings.vl_batch))
        loss = model(batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == settings.vl_steps - 1:
            log(f"vl step {step}: loss {loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def evaluate_vl(model, n_images: int, *, seed: int = 0) -> dict:
    """Per view, the share of generated captions naming the right colour / shape / pattern (test split)."""
    views = _views(seed, 10**6, n_images * 3, split="test")
    texts = []
    for i in range(0, len(views), 64):
        texts += model.generate(vl_batch(model, views[i : i + 64]), max_new_tokens=16)
    out = {}
    for view in VIEWS:
        idx = [i for i, v in enumerate(views) if v[2] == view]
        for attr in ("color", "shape", "pattern"):
            words = [views[i][1].lower().rstrip(".").split() for i in idx]
            # the caption's attribute word is at a fixed slot of view_caption's grammar
            slot = {"color": 1, "pattern": 2, "shape": 3}[attr] + (view == "single")
            hits = [w[slot] in texts[i].lower().rstrip(".").split() for w, i in zip(words, idx)]
            out[f"{view}: {attr}"] = float(np.mean(hits)) if hits else float("nan")
    return out


# ------------------------------------------------------------------------------------ command
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sam_job(settings: PretrainSettings, out: Path) -> dict:
    """Process job: pretrain, save and evaluate the tiny SAM (one thread)."""
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sam = pretrain_sam(settings)
    seconds = time.perf_counter() - t0
    save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, str(out / "sam.safetensors"))
    return {"preset": "tiny", "file": "sam.safetensors", "seconds": round(seconds, 1),
            "quality": evaluate_sam(sam, settings.eval_images, seed=settings.seed)}


def _vl_job(settings: PretrainSettings, out: Path) -> dict:
    """Process job: pretrain, save and evaluate the VL base (one thread)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    vl = pretrain_vl(settings)
    seconds = time.perf_counter() - t0
    vl.save_pretrained(out / "vl")
    return {"preset": "tiny-dam-full", "directory": "vl", "seconds": round(seconds, 1),
            "quality": evaluate_vl(vl, settings.eval_images, seed=settings.seed)}


def write_bases(out: str | Path, settings: PretrainSettings, *, command: str) -> dict:
    """Pretrain both bases into ``out`` (two processes, one thread each) and write its manifest."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        sam, vl = pool.submit(_sam_job, settings, out), pool.submit(_vl_job, settings, out)
        sam, vl = sam.result(), vl.result()
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {"command": command, "settings": asdict(settings), "torch": torch.__version__, "threads": 1,
                "sam": sam, "vl": vl, "sha256": {str(p.relative_to(out)): _sha256(p) for p in files}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory of the bases (the shipped ones: regionlib/models/"
                                                 "pretrained/regionworld)")
    ap.add_argument("--short", action="store_true", help="a few steps: checks the pipeline, not the quality")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    settings = SHORT if args.short else PretrainSettings()
    from dataclasses import replace

    settings = replace(settings, seed=args.seed)
    command = "python -m regionlib.training.pretrain " + " ".join(argv if argv is not None else sys.argv[1:])
    manifest = write_bases(args.out, settings, command=command)
    print(json.dumps({k: manifest[k]["quality"] for k in ("sam", "vl")}, indent=1))
    return manifest


if __name__ == "__main__":
    main()
