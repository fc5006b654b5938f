"""Prompts -> masks with segment-anything's SAM.

`SamSegmenter` wraps `segment_anything.SamPredictor`: `set_image` encodes the image once,
then `predict` / `segment` turn many prompts into masks, batched through
`SamPredictor.predict_torch` (prompts that share a signature — number of points, box or
not, mask or not — go in one call). With ``multimask_output=True`` SAM returns 3 masks per
prompt and `segment` keeps the one with the highest predicted IoU. `propose` runs
`SamAutomaticMaskGenerator` and returns `Regions` with SAM's predicted IoU and stability.

`build_sam` wires the real architectures (``vit_h`` / ``vit_l`` / ``vit_b``, loaded from a
``.pth`` with ``torch.load(weights_only=True)`` or from ``.safetensors``) and a random-init
``tiny`` preset for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .errors import CheckpointError, ConfigError, InvalidPromptError
from .images import DEFAULT_MAX_PIXELS, to_rgb_uint8
from .prompts import Prompt, prompt_chunks
from .regions import Regions

__all__ = ["SamConfig", "SAM_PRESETS", "build_sam", "load_state_dict", "set_block_norm_eps", "SamSegmenter",
           "SamPrediction"]


@dataclass(frozen=True)
class SamConfig:
    """Architecture of a SAM (segment-anything's classes; defaults = the released models).

    ``decoder_block_norm_eps``: epsilon of the LayerNorms inside the attention blocks of the mask
    decoder's two-way transformer (segment-anything: PyTorch's default 1e-5; Hugging Face's ``SamModel``,
    and so the released SCA: its config's ``layer_norm_eps``, 1e-6). The final LayerNorm keeps 1e-5 in both.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    decoder_block_norm_eps: float = 1e-5


SAM_PRESETS: dict[str, SamConfig] = {
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
    # CPU test preset: same classes, a 256-px input and a 2-block 64-d encoder.
    "tiny": SamConfig(
        64, 2, 2, (1,), image_size=256, window_size=4, prompt_embed_dim=32, decoder_mlp_dim=64,
        decoder_num_heads=2, iou_head_hidden_dim=32, mask_in_chans=4,
    ),
}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load tensors from ``.safetensors`` or a ``.pth`` / ``.pt`` with ``weights_only=True``.

    Anything that is not plain tensors (a pickled object) raises `CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError (a truncated or corrupt file), OSError
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not loadable as plain tensors with weights_only=True ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def build_sam(preset: str | SamConfig = "vit_h", *, checkpoint: str | Path | None = None, seed: int = 0) -> Sam:
    """Build a segment-anything `Sam` from a preset name or `SamConfig`, in eval mode.

    Args:
        preset: ``"vit_h" | "vit_l" | "vit_b" | "tiny"`` or a `SamConfig`.
        checkpoint: weights to load (the released ``sam_vit_*.pth`` or a ``.safetensors``);
            shapes must match the preset exactly, else `CheckpointError`.
        seed: seeds the random initialisation (used when no checkpoint is given).
    """
    if isinstance(preset, str):
        if preset not in SAM_PRESETS:
            raise ConfigError(f"preset must be one of {sorted(SAM_PRESETS)}, got {preset!r}")
        cfg = SAM_PRESETS[preset]
    elif isinstance(preset, SamConfig):
        cfg = preset
    else:
        raise ConfigError(f"preset must be a preset name or SamConfig, got {type(preset).__name__}")
    torch.manual_seed(seed)
    grid = cfg.image_size // cfg.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.encoder_embed_dim,
            depth=cfg.encoder_depth, num_heads=cfg.encoder_num_heads, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=cfg.encoder_global_attn_indexes, window_size=cfg.window_size,
            out_chans=cfg.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth, embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    set_block_norm_eps(sam.mask_decoder.transformer, cfg.decoder_block_norm_eps)
    if checkpoint is not None:
        state = load_state_dict(checkpoint)
        expected = sam.state_dict()
        missing = sorted(k for k in expected if k not in state)
        unexpected = sorted(k for k in state if k not in expected)
        wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs preset {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
        kinds = [f"{k}: checkpoint {state[k].dtype} vs preset {v.dtype}" for k, v in expected.items()
                 if k in state and state[k].is_floating_point() != v.is_floating_point()]
        if missing or unexpected or wrong or kinds:
            raise CheckpointError(f"{checkpoint}: the state dict disagrees with SAM preset {preset!r}: " + "; ".join(
                ([f"missing weights {missing[:10]}"] if missing else []) + ([f"unexpected weights {unexpected[:10]}"]
                                                                             if unexpected else [])
                + ([f"shape mismatch {wrong[:10]}"] if wrong else []) + ([f"dtype mismatch {kinds[:10]}"] if kinds else [])))
        sam.load_state_dict(state, strict=True)
        sam._regionlib_base = str(checkpoint)  # frozen weights can be re-read from here
        sam._regionlib_base_shapes = {k: tuple(v.shape) for k, v in expected.items()}
    return sam.eval()


def set_block_norm_eps(transformer: TwoWayTransformer, eps: float) -> None:
    """Set the epsilon of the LayerNorms inside every attention block of ``transformer`` in place
    (``norm1`` .. ``norm4``; not ``norm_final_attn``)."""
    for m in transformer.layers.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = eps


@dataclass
class SamPrediction:
    """Raw predictor output for P prompts with C masks each.

    masks ``(P, C, H, W)`` bool; iou_predictions ``(P, C)`` float32; low_res_logits
    ``(P, C, h, w)`` float32 (SAM's 4x-embedding-grid logits, reusable as mask prompts).
    """

    masks: np.ndarray
    iou_predictions: np.ndarray
    low_res_logits: np.ndarray


class SamSegmenter:
    """Stateful prompt -> mask segmenter over `SamPredictor` (set the image once).

    Args:
        sam: a segment-anything `Sam` (see `build_sam`).
        max_pixels: images above this many pixels are refused.
        mask_logit: magnitude of the logits a binary mask prompt is turned into.
    """

    def __init__(self, sam: Sam, *, max_pixels: int = DEFAULT_MAX_PIXELS, mask_logit: float = 20.0):
        self.sam = sam
        self.predictor = SamPredictor(sam)
        self.max_pixels = max_pixels
        self.mask_logit = mask_logit
        self.image_size: tuple[int, int] | None = None

    @property
    def device(self) -> torch.device:
        return self.sam.device

    def set_image(self, image) -> None:
        """Encode ``image`` (any input `images.to_rgb_uint8` accepts) once for later prompts."""
        rgb = to_rgb_uint8(image, "image", max_pixels=self.max_pixels)
        self.predictor.set_image(rgb, image_format="RGB")
        self.image_size = rgb.shape[:2]

    def _mask_input(self, masks: np.ndarray) -> torch.Tensor:
        """``(B, H, W)`` bool image masks -> ``(B, 1, 4g, 4g)`` logits in SAM's padded frame."""
        t = torch.as_tensor(masks, dtype=torch.float32, device=self.device)[:, None]
        h, w = self.predictor.input_size
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        side = self.sam.image_encoder.img_size
        t = F.pad(t, (0, side - w, 0, side - h))
        low = self.sam.prompt_encoder.mask_input_size
        t = F.adaptive_avg_pool2d(t, low)
        return (2 * t - 1) * self.mask_logit

    @torch.no_grad()
    def predict(self, prompts: Sequence[Prompt], *, multimask_output: bool = True, batch_size: int = 8) -> SamPrediction:
        """Run all ``prompts`` on the current image; see `SamPrediction` for shapes."""
        if self.image_size is None:
            raise InvalidPromptError("call set_image(image) before predict()")
        if isinstance(prompts, Prompt):
            prompts = [prompts]
        if len(prompts) == 0:
            raise InvalidPromptError("prompts is empty: pass at least one Prompt")
        if batch_size < 1:
            raise InvalidPromptError(f"batch_size must be >= 1, got {batch_size}")
        chunks = prompt_chunks(prompts, batch_size)
        for i, p in enumerate(prompts):
            p.check_inside(self.image_size, f"prompts[{i}]")
        n_out = 3 if multimask_output else 1
        h, w = self.image_size
        masks = np.zeros((len(prompts), n_out, h, w), dtype=bool)
        ious = np.zeros((len(prompts), n_out), dtype=np.float32)
        low_res = None
        transform, dev = self.predictor.transform, self.device
        for idx in chunks:
            chunk = [prompts[i] for i in idx]
            n_points, has_box, has_mask = chunk[0].signature
            coords = labels = boxes = mask_input = None
            if n_points:
                pts = torch.as_tensor(np.stack([p.points_xy for p in chunk]), dtype=torch.float, device=dev)
                coords = transform.apply_coords_torch(pts, self.image_size)
                labels = torch.as_tensor(np.stack([p.point_labels for p in chunk]), dtype=torch.int, device=dev)
            if has_box:
                b = torch.as_tensor(np.stack([p.box_xyxy for p in chunk]), dtype=torch.float, device=dev)
                boxes = transform.apply_boxes_torch(b, self.image_size)
            if has_mask:
                mask_input = self._mask_input(np.stack([p.mask for p in chunk]))
            m, iou, low = self.predictor.predict_torch(coords, labels, boxes, mask_input,
                                                       multimask_output=multimask_output)
            masks[idx] = m.cpu().numpy()
            ious[idx] = iou.float().cpu().numpy()
            if low_res is None:
                low_res = np.zeros((len(prompts), n_out, *low.shape[-2:]), dtype=np.float32)
            low_res[idx] = low.float().cpu().numpy()
        return SamPrediction(masks=masks, iou_predictions=ious, low_res_logits=low_res)

    def segment(self, prompts: Sequence[Prompt], *, multimask_output: bool = True, batch_size: int = 8) -> Regions:
        """One mask per prompt (best by predicted IoU when multimask) as `Regions`.

        ``data`` holds ``predicted_iou`` (also ``scores``) and ``prompt_index``. A prompt whose
        best mask is empty raises `InvalidPromptError` naming it.
        """
        pred = self.predict(prompts, multimask_output=multimask_output, batch_size=batch_size)
        best = pred.iou_predictions.argmax(axis=1)
        rows = np.arange(len(best))
        masks = pred.masks[rows, best]
        empty = ~masks.any(axis=(1, 2))
        if empty.any():
            raise InvalidPromptError(f"prompts[{int(np.flatnonzero(empty)[0])}] produced an empty mask")
        iou = pred.iou_predictions[rows, best].astype(np.float64)
        return Regions.from_masks(masks, scores=iou, data={"predicted_iou": iou, "prompt_index": rows})

    def propose(self, image, **generator_kwargs) -> Regions:
        """Automatic mask proposals (`SamAutomaticMaskGenerator`) for ``image`` -> `Regions`.

        ``generator_kwargs`` go to `SamAutomaticMaskGenerator` (points_per_side,
        pred_iou_thresh, stability_score_thresh, output_mode, ...).
        """
        rgb = to_rgb_uint8(image, "image", max_pixels=self.max_pixels)
        records = SamAutomaticMaskGenerator(self.sam, **generator_kwargs).generate(rgb)
        return Regions.from_sam(records, image_size=rgb.shape[:2])
