"""SCA: segment and caption anything (seed 000 §3, App. I; REFERENCE §4).

A frozen segment-anything `Sam` — image encoder, prompt encoder, two-way mask decoder — plus a
trainable *text feature mixer*: another `TwoWayTransformer` of ``mixer_depth`` layers over
``[learned query tokens Q; the decoder's tokens]`` that attends to the decoder-updated image
embedding. Its query outputs are projected to the LM width (``Linear(256 -> D)``), prefixed by
learned *task tokens*, and read by a causal LM (frozen by default). One pass gives SAM's masks
(the decoder's own heads, exactly as `MaskDecoder.predict_masks`) and the caption prefix.

The decoder is run through the real modules (token assembly of `MaskDecoder.predict_masks`:
``[iou token; mask tokens; sparse prompt embeddings]`` over ``image embedding + dense``) so that
its *updated* image embedding and output tokens are available to the mixer.

Feature-mixer variants of seed 000 App. I (``mixer_inputs``):

* ``"queries+sam-tokens"`` (4, default): Q with the prompt / mask tokens *as encoded by SAM's
  decoder*, attending to the decoder-updated image embedding.
* ``"queries+raw-tokens"`` (3): Q with the prompt / mask tokens *not* encoded by SAM's decoder,
  attending to the image embedding (+ dense prompt embedding).
* ``"sam-tokens"`` (2, direct decoding): no Q; the mixer runs over SAM's decoded tokens and its
  mask-token outputs ``M^`` go to the LM.
* ``"roi-align"`` (1): ``R = RoIAlign(I, box)`` (torchvision) on the image embedding, then a
  projection (``roi_projector``: linear or 2-layer MLP with GELU); no mixer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from segment_anything.modeling import Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide

from ..errors import ConfigError, InvalidPromptError, RegionLibError
from ..prompts import Prompt
from ..sam import build_sam, set_block_norm_eps
from ..regions import Regions
from .checkpoint import RegionModel, register_kind
from .projectors import build_projector
from .interface import Captioner, ImageState, RegionOutput, check_regions
from .lm_head import LMConfig, LMHead, build_lm_head

__all__ = ["MIXER_INPUTS", "SCA_PROMPTS", "SCAConfig", "SCA", "SCAOutput", "DecoderState", "build_sca",
           "sca_prompts", "sca_trainable_parameters"]

MIXER_INPUTS = ("queries+sam-tokens", "queries+raw-tokens", "sam-tokens", "roi-align")


@dataclass(frozen=True)
class SCAConfig:
    """SCA: SAM preset / checkpoint, LM, and the mixer (paper: 8 queries, 12 layers, 6 task tokens).

    Options of the released SCA (`regionlib.models.released_sca`; the defaults keep segment-anything's ways):

    * ``mixer_block_norm_eps``: epsilon of the LayerNorms in the mixer's attention blocks (segment-anything
      1e-5; HF's SAM blocks, as in the released SCA, 1e-6; see `SamConfig.decoder_block_norm_eps`).
    * ``num_beams``: beams of `generate` / `describe` / `segment_and_caption` unless the call names
      them (the released demo decodes with 3).
    """

    sam_preset: str = "tiny"
    sam_checkpoint: str | None = None
    lm: LMConfig = field(default_factory=lambda: LMConfig(template="{visual}", freeze=True, label_smoothing=0.1,
                                                          max_target_tokens=20))
    num_queries: int = 8
    mixer_depth: int = 12
    mixer_heads: int = 8
    mixer_mlp_dim: int = 2048
    num_task_tokens: int = 6
    mixer_inputs: str = "queries+sam-tokens"
    roi_size: int = 7
    roi_projector: str = "mlp2x_gelu"
    multimask_output: bool = True
    mixer_block_norm_eps: float = 1e-5
    num_beams: int = 1


@dataclass
class DecoderState:
    """The frozen SAM decoder on B prompts (C = 256 for the released SAMs, ``h x w`` embedding grid).

    tokens_in ``(B, T, C)`` = [iou; mask tokens; sparse prompt]; image_in ``(B, C, h, w)`` = embedding + dense;
    pe ``(B, C, h, w)``; tokens_out ``(B, T, C)``; image_out ``(B, C, h, w)`` (decoder-updated);
    low_res_masks ``(B, 4h, 4w)`` logits of the chosen mask; iou ``(B,)`` its predicted IoU.
    """

    tokens_in: torch.Tensor
    image_in: torch.Tensor
    pe: torch.Tensor
    tokens_out: torch.Tensor
    image_out: torch.Tensor
    low_res_masks: torch.Tensor
    iou: torch.Tensor


@dataclass
class SCAOutput:
    """prefix ``(B, task + visual, D_lm)``; low_res_masks ``(B, 4h, 4w)`` logits; iou ``(B,)``."""

    prefix: torch.Tensor
    low_res_masks: torch.Tensor
    iou: torch.Tensor


@register_kind("sca")
class SCA(Captioner, RegionModel):
    """Frozen SAM + text feature mixer + `LMHead`, behind the region-model interface (`interface`).

    ``encode_image``: SAM's image embedding (the frozen ViT, once per image). Batches
    (``region_inputs``): ``image_embeddings`` ``(N_img, C, h, w)``, ``image_index`` ``(B,)``, and either
    ``boxes`` ``(B, 4)`` or ``points`` ``(B, K, 2)`` + ``point_labels`` ``(B, K)`` in SAM's input frame
    (after ``ResizeLongestSide``), ``targets``.
    """

    config_class = SCAConfig

    def __init__(self, config: SCAConfig, sam: Sam, lm_head: LMHead):
        super().__init__()
        if config.mixer_inputs not in MIXER_INPUTS:
            raise ConfigError(f"mixer_inputs must be one of {MIXER_INPUTS}, got {config.mixer_inputs!r}")
        if not isinstance(config.num_beams, int) or isinstance(config.num_beams, bool) or config.num_beams < 1:
            raise ConfigError(f"num_beams must be a positive int, got {config.num_beams!r}")
        self.config, self.sam, self.lm_head = config, sam, lm_head
        for p in sam.parameters():
            p.requires_grad_(False)
        dim = sam.prompt_encoder.embed_dim
        width = lm_head.width
        self.queries = self.mixer = self.proj = self.roi_proj = None
        if config.mixer_inputs == "roi-align":
            self.roi_proj = build_projector(config.roi_projector, dim, width)
        else:
            if config.mixer_inputs != "sam-tokens":
                self.queries = nn.Parameter(torch.randn(config.num_queries, dim) * 0.02)
            self.mixer = TwoWayTransformer(depth=config.mixer_depth, embedding_dim=dim, num_heads=config.mixer_heads,
                                           mlp_dim=config.mixer_mlp_dim)
            set_block_norm_eps(self.mixer, config.mixer_block_norm_eps)
            self.proj = nn.Linear(dim, width)
        self.task_tokens = nn.Parameter(torch.randn(config.num_task_tokens, width) * 0.02)
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)

    def train(self, mode: bool = True):
        super().train(mode)
        self.sam.eval()  # frozen: always in eval mode
        return self

    # ---------------------------------------------------------------- image and prompt inputs
    @torch.no_grad()
    def encode_image(self, image) -> ImageState:
        """SAM's image embedding ``image_embeddings`` ``(1, C, h, w)`` of one image."""
        state = ImageState.of(image)
        with self._precision():
            state.tensors["image_embeddings"] = self.sam.image_encoder(self.preprocess(state.image))
        return state

    def _precision(self):
        """Autocast to SAM's dtype when the model was cast to bfloat16 / float16 (``model.half()``): inputs
        and segment-anything's float32 positional encoding then meet the half-precision weights."""
        dtype = next(self.sam.parameters()).dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 RGB -> SAM's input ``(1, 3, S, S)``: segment-anything's ``ResizeLongestSide``
        (a PIL bilinear resize, ``int(x + 0.5)`` sizes) and ``Sam.preprocess`` (ImageNet mean / std, zero
        padding bottom / right) — within 5e-7 of transformers' ``SamImageProcessor``."""
        x = torch.as_tensor(self.transform.apply_image(image), device=self.device).permute(2, 0, 1)[None].float()
        return self.sam.preprocess(x)

    @property
    def device(self) -> torch.device:
        return self.task_tokens.device

    def prompt_batch(self, prompts: Sequence[Prompt], original_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Box or point prompts (all of one kind, same point count) -> tensors in SAM's input frame."""
        if len(prompts) == 0:
            raise InvalidPromptError("prompts is empty: pass at least one Prompt")
        for i, p in enumerate(prompts):
            if not isinstance(p, Prompt):
                raise InvalidPromptError(f"prompts[{i}] must be a Prompt, got {type(p).__name__}")
            if p.mask is not None:
                raise InvalidPromptError(f"prompts[{i}]: SCA takes point and box prompts, not mask prompts")
            p.check_inside(original_size, f"prompts[{i}]")
        sigs = {(p.points_xy is None, p.box_xyxy is None, 0 if p.points_xy is None else len(p.points_xy)) for p in prompts}
        if len(sigs) != 1:
            raise InvalidPromptError("prompts of one batch must share their kind (box / points / both) and point count")
        out = {}
        p0 = prompts[0]
        if p0.box_xyxy is not None:
            boxes = np.stack([p.box_xyxy for p in prompts]).astype(np.float32)
            out["boxes"] = torch.as_tensor(self.transform.apply_boxes(boxes, original_size), dtype=torch.float32,
                                           device=self.device)
        if p0.points_xy is not None:
            pts = np.stack([p.points_xy for p in prompts]).astype(np.float32)
            out["points"] = torch.as_tensor(self.transform.apply_coords(pts, original_size), dtype=torch.float32,
                                            device=self.device)
            out["point_labels"] = torch.as_tensor(np.stack([p.point_labels for p in prompts]), device=self.device)
        return out

    def region_inputs(self, state: ImageState, regions: Regions, prompts="box", *, seed: int = 0) -> dict:
        """Inputs of the N ``regions``: each prompted by ``prompts`` — a kind of `sca_prompts`
        (``"box"``: the tight box; ``"cpb"`` / ``"rpb"`` / ``"rpm"``: one pseudo-point, seeded) or N
        explicit `Prompt`s — with the cached embedding; ``targets`` = the regions' captions."""
        check_regions(state, regions)
        if isinstance(prompts, str):
            prompts = sca_prompts(regions, prompts, seed=seed)
        if len(prompts) != len(regions):
            raise InvalidPromptError(f"prompts must hold one Prompt per region ({len(regions)}), got {len(prompts)}")
        batch = self.prompt_inputs(state, list(prompts))
        batch["targets"] = None if regions.captions is None else list(regions.captions)
        return batch

    def prompt_inputs(self, state: ImageState, prompts: Sequence[Prompt]) -> dict:
        """`prompt_batch` of prompts sharing one signature, with the image's cached embedding."""
        batch = self.prompt_batch(list(prompts), state.size)
        batch["image_embeddings"] = state.tensors["image_embeddings"]
        batch["image_index"] = torch.zeros(len(prompts), dtype=torch.long, device=self.device)
        return batch

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        """``(C, h, w)``: SAM's image embedding of one image."""
        pe = self.sam.prompt_encoder
        return (pe.embed_dim, *pe.image_embedding_size)

    def state_from_embedding(self, embedding: torch.Tensor, image_size: tuple[int, int]) -> ImageState:
        """The `ImageState` of an image of ``image_size`` (H, W) from its SAM embedding ``(C, h, w)`` (a feature
        cache): the image itself a zero-copy blank (its pixels stand in the cache)."""
        if tuple(embedding.shape) != self.embedding_shape:
            raise RegionLibError(f"a SAM embedding of this model is {self.embedding_shape}, "
                                     f"got {tuple(embedding.shape)}")
        h, w = image_size
        blank = np.broadcast_to(np.zeros((1, 1, 3), dtype=np.uint8), (int(h), int(w), 3))
        dtype = next(self.sam.parameters()).dtype
        return ImageState(blank, {"image_embeddings": embedding[None].to(self.device, dtype=dtype)})

    # ---------------------------------------------------------------- the frozen decoder
    @torch.no_grad()
    def decode(self, image_embeddings, image_index, *, boxes=None, points=None, point_labels=None) -> DecoderState:
        """`MaskDecoder.predict_masks` step by step through SAM's own modules (see `DecoderState`)."""
        if boxes is None and points is None:
            raise InvalidPromptError("boxes or points is required")
        n = (boxes if boxes is not None else points).shape[0]
        if image_index.shape != (n,):
            raise InvalidPromptError(f"image_index must be ({n},) (one per prompt), got {tuple(image_index.shape)}")
        if points is not None and (point_labels is None or point_labels.shape != points.shape[:2]):
            raise InvalidPromptError(f"point_labels must be {tuple(points.shape[:2])} for points {tuple(points.shape)}")
        pe_mod, dec = self.sam.prompt_encoder, self.sam.mask_decoder
        pts = (points, point_labels) if points is not None else None
        sparse, dense = pe_mod(points=pts, boxes=boxes, masks=None)
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)[None].expand(n, -1, -1)
        tokens = torch.cat([out_tokens, sparse], dim=1)
        src = image_embeddings[image_index] + dense
        pos = pe_mod.get_dense_pe().expand(n, -1, -1, -1)
        b, c, h, w = src.shape
        hs, upd = dec.transformer(src, pos, tokens)
        upd = upd.transpose(1, 2).reshape(b, c, h, w)
        upscaled = dec.output_upscaling(upd)
        hyper = torch.stack([dec.output_hypernetworks_mlps[i](hs[:, 1 + i]) for i in range(dec.num_mask_tokens)], dim=1)
        bu, cu, hu, wu = upscaled.shape
        masks = (hyper @ upscaled.view(bu, cu, hu * wu)).view(bu, -1, hu, wu)
        iou = dec.iou_prediction_head(hs[:, 0])
        if self.config.multimask_output:
            best = iou[:, 1:].argmax(dim=1) + 1
        else:
            best = torch.zeros(n, dtype=torch.long, device=iou.device)
        rows = torch.arange(n, device=iou.device)
        return DecoderState(tokens, src, pos, hs, upd, masks[rows, best], iou[rows, best])

    # ---------------------------------------------------------------- the text side
    def _roi_boxes(self, state: DecoderState, boxes) -> torch.Tensor:
        """Boxes in SAM's input frame: the prompts' own, else the tight box of the predicted mask."""
        if boxes is not None:
            return boxes
        side = self.sam.image_encoder.img_size
        fg = state.low_res_masks > self.sam.mask_threshold
        scale = side / fg.shape[-1]
        out = torch.tensor([[0.0, 0.0, side, side]], device=fg.device).repeat(len(fg), 1)
        for i, m in enumerate(fg):
            ys, xs = torch.nonzero(m, as_tuple=True)
            if len(xs):
                out[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float() * scale
        return out

    def run(self, image_embeddings, image_index, *, boxes=None, points=None, point_labels=None) -> SCAOutput:
        """Masks and caption prefix for B prompts (see the class docstring for the inputs)."""
        state = self.decode(image_embeddings, image_index, boxes=boxes, points=points, point_labels=point_labels)
        mode = self.config.mixer_inputs
        n = state.tokens_in.shape[0]
        if mode == "roi-align":
            from torchvision.ops import roi_align

            feats_in = image_embeddings[image_index]
            rois = torch.cat([torch.arange(n, device=self.device, dtype=feats_in.dtype)[:, None],
                              self._roi_boxes(state, boxes).to(feats_in.dtype)], dim=1)
            scale = state.image_in.shape[-1] / self.sam.image_encoder.img_size
            feats = roi_align(feats_in, rois, self.config.roi_size, spatial_scale=scale,
                              sampling_ratio=2, aligned=True)  # (B, C, r, r)
            visual = self.roi_proj(feats.flatten(2).transpose(1, 2))
        else:
            if mode == "queries+raw-tokens":
                image, tokens = state.image_in, state.tokens_in
            else:
                image, tokens = state.image_out, state.tokens_out
            if self.queries is not None:
                tokens = torch.cat([self.queries[None].expand(n, -1, -1).to(tokens.dtype), tokens], dim=1)
            out, _ = self.mixer(image, state.pe, tokens)
            if self.queries is not None:
                visual = out[:, : self.queries.shape[0]]
            else:
                k = self.sam.mask_decoder.num_mask_tokens
                visual = out[:, 1: 1 + k]  # the mixed mask query tokens M^
            visual = self.proj(visual)
        prefix = torch.cat([self.task_tokens[None].expand(n, -1, -1).to(visual.dtype), visual], dim=1)
        return SCAOutput(prefix, state.low_res_masks, state.iou)

    def _run(self, batch: dict) -> SCAOutput:
        keys = ("boxes", "points", "point_labels")
        with self._precision():
            return self.run(batch["image_embeddings"], batch["image_index"], **{k: batch.get(k) for k in keys})

    def contexts(self, batch: dict) -> tuple[torch.Tensor, None]:
        """Task tokens + mixed queries in the LM's template: ``(B, L, D)``."""
        return self.lm_head.contexts(self._run(batch).prefix), None

    def forward(self, batch: dict, *, label_smoothing: float | None = None, reduction: str = "mean") -> RegionOutput:
        """One pass: SAM's masks and IoU, the caption prefix, and the loss when ``batch`` has targets
        (``reduction`` as `Captioner.forward`)."""
        out = self._run(batch)
        result = RegionOutput(prefix=out.prefix, low_res_masks=out.low_res_masks, iou=out.iou)
        if batch.get("targets") is not None:
            lm_out, labels = self.lm_head.teacher_forced(self.lm_head.contexts(out.prefix), None, batch["targets"])
            result.loss = self.lm_head.token_loss(lm_out.logits, labels, label_smoothing, reduction)
            result.logits = lm_out.logits
        return result

    def _decoding(self, kwargs: dict) -> dict:
        """Generation settings: ``config.num_beams`` unless the call names ``num_beams``."""
        return {"num_beams": self.config.num_beams, **kwargs}

    def generate(self, batch: dict, **kwargs) -> list[str]:
        """`Captioner.generate` with `_decoding`'s defaults."""
        return super().generate(batch, **self._decoding(kwargs))

    def describe(self, batch: dict, **kwargs) -> tuple[list[str], torch.Tensor]:
        """`Captioner.describe` with `_decoding`'s defaults."""
        return super().describe(batch, **self._decoding(kwargs))

    @torch.no_grad()
    def segment_and_caption(self, batch: dict, original_size: tuple[int, int], **kwargs):
        """One pass: ``(masks (B, H, W) bool at the original size, predicted IoU (B,), captions)``
        (``kwargs`` as `LMHead.generate_ids`; ``num_beams`` defaults to ``config.num_beams``)."""
        out = self._run(batch)
        input_size = self.transform.get_preprocess_shape(original_size[0], original_size[1], self.transform.target_length)
        masks = self.sam.postprocess_masks(out.low_res_masks[:, None], input_size, tuple(original_size))[:, 0]
        captions = self.lm_head.generate(self.lm_head.contexts(out.prefix), **self._decoding(kwargs))
        return masks > self.sam.mask_threshold, out.iou.float(), captions


SCA_PROMPTS = ("box", "cpb", "rpb", "rpm")


def sca_prompts(regions: Regions, kind: str = "box", *, seed: int = 0) -> list[Prompt]:
    """SCA's prompt of each region (seed 000 Tab. 7): its tight box, or one positive point — the box
    centre (CPB), a random point in the box (RPB) or a random mask pixel (RPM), seeded."""
    from ..prompts import cpb_points, rpb_points, rpm_points

    boxes = regions.boxes_xyxy
    if kind == "box":
        return [Prompt(box_xyxy=b) for b in boxes]
    points = {"cpb": lambda: cpb_points(boxes), "rpb": lambda: rpb_points(boxes, seed=seed),
              "rpm": lambda: rpm_points(regions.masks, seed=seed)}
    if kind not in points:
        raise ConfigError(f"prompt must be one of {SCA_PROMPTS}, got {kind!r}")
    return [Prompt(points_xy=[p], point_labels=[1]) for p in points[kind]()]


def build_sca(config: SCAConfig, tokenizer, *, load_weights: bool = True) -> SCA:
    """Wire an `SCA` (SAM from ``sam_checkpoint`` when given and ``load_weights``, else random init)."""
    sam = build_sam(config.sam_preset, checkpoint=config.sam_checkpoint if load_weights else None)
    if config.num_queries < 1 or config.mixer_depth < 1 or config.num_task_tokens < 0:
        raise ConfigError("num_queries and mixer_depth must be >= 1 and num_task_tokens >= 0, got "
                          f"{config.num_queries}, {config.mixer_depth}, {config.num_task_tokens}")
    return SCA(config, sam, build_lm_head(config.lm, tokenizer, load_weights=load_weights))


SCA.builder = staticmethod(build_sca)


def sca_trainable_parameters(config: SCAConfig | None = None, *, lm_width: int = 1280) -> dict[str, int]:
    """Trainable parameters of an SCA config counted on the meta device (no memory, no weights).

    Default: the paper's config (SAM ViT-H's 256-d decoder space, 8 queries, 12 mixer layers,
    6 task tokens) with an LM of width ``lm_width`` (GPT2-large: 1280) — seed 000 reports 19.4 M.
    """
    config = config or SCAConfig(sam_preset="vit_h")
    with torch.device("meta"):
        sam = build_sam(config.sam_preset)
        lm_head = _WidthOnly(lm_width)
        model = SCA(config, sam, lm_head)
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("mixer", "proj", "roi_proj") if getattr(model, name) is not None}
    parts["queries"] = model.queries.numel() if model.queries is not None else 0
    parts["task_tokens"] = model.task_tokens.numel()
    parts["total"] = sum(parts.values())
    return parts


class _WidthOnly(nn.Module):
    """Stands in for the (frozen) LM when only the trainable SCA parts are counted."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
