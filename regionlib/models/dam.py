"""DAM: the localized vision backbone and the captioner around it (seed 003 §3, eq. 3-7; REFERENCE §1).

Patch embedding with a mask channel (eq. 3-4): ``x = E_I(I) + E_M(M) + P`` where the mask ``M`` in
{-1, +1} is embedded by ``E_M`` — a conv with kernel = stride = patch size, the image patch
embedding's width, **initialised to zero**. The global pass ``z = f_G(x)`` encodes the full image
and its mask; the regional pass ``z' = f_R(x', z)`` reuses the *same* blocks on the (focal) crop and
its mask, and after each block a cross-attention adapter lets the crop tokens (queries) attend
to the global tokens of that block (keys / values), eq. 6-7 (``gated=True``, the paper)::

    h' = h + tanh(gamma) * CrossAttn(h, z);    h_adapter = h' + tanh(beta) * FFN(h')

with per-layer scalars gamma = beta = 0 at init. ``gated=False`` is the released code's variant:
bare scalars and pre-norm, ``h + a * CA(LN(h), LN(z))``, ``h + m * MLP(LN(h))`` (a = m = 0 at init).
With the zero-initialised parts the backbone's output equals the base encoder's exactly.
Features come from block ``feature_layer`` (default -2: the second-to-last), only the regional
tokens go to the LLM (same sequence length as one image). Video (seed 003 §3.3): T frames,
each encoded the same way, tokens concatenated along the sequence.

Prompting ablation of seed 003 Tab. 8 — one code path, `VARIANTS`:

=========================  ===========  ===========  =====================================
name                       global pass  crop         fusion
=========================  ===========  ===========  =====================================
``full``                   full image   —            —
``local-crop``             —            tight box    —
``focal-crop``             —            focal crop   —
``full+local-crop-concat`` full image   tight box    tokens concatenated (no XAttn)
``full+local-crop-xattn``  full image   tight box    cross-attention adapters
``full+focal-crop-xattn``  full image   focal crop   cross-attention adapters (DAM)
=========================  ===========  ===========  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, InvalidMaskError, RegionLibError
from ..focal import crop_boxes
from ..masks import as_mask_batch, boxes_to_masks
from ..regions import Regions
from .checkpoint import RegionModel, register_kind
from .interface import Captioner, ImageState, check_regions
from .lm_head import LMConfig, LMHead, build_lm_head
from .vision import VisionConfig, build_vision_encoder, run_block, vision_parts

__all__ = ["VARIANTS", "Variant", "CrossAttentionAdapter", "LocalizedBackbone", "DAMConfig", "DAM", "build_dam",
           "build_projector"]


@dataclass(frozen=True)
class Variant:
    """global_pass: encode the full image; crop_mode: `regionlib.focal` mode of the regional pass
    (None: no regional pass); fusion: ``"none"`` | ``"concat"`` | ``"xattn"``."""

    global_pass: bool
    crop_mode: str | None
    fusion: str


VARIANTS: dict[str, Variant] = {
    "full": Variant(True, None, "none"),
    "local-crop": Variant(False, "crop", "none"),
    "focal-crop": Variant(False, "focal_crop", "none"),
    "full+local-crop-concat": Variant(True, "crop", "concat"),
    "full+local-crop-xattn": Variant(True, "crop", "xattn"),
    "full+focal-crop-xattn": Variant(True, "focal_crop", "xattn"),
}


class CrossAttentionAdapter(nn.Module):
    """Eq. 6-7 (``gated=True``) or the released pre-norm variant (``gated=False``); both start as identity.

    Args: dim: token width D; heads: attention heads; mlp_ratio: FFN hidden = ratio * D.
    """

    def __init__(self, dim: int, heads: int, *, gated: bool = True, mlp_ratio: float = 4.0):
        super().__init__()
        self.gated = gated
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))
        if not gated:
            self.norm_q, self.norm_kv, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """h ``(B, N, D)`` regional tokens (queries); z ``(B, M, D)`` global tokens of the same block."""
        if self.gated:
            h = h + torch.tanh(self.gamma) * self.attn(h, z, z, need_weights=False)[0]
            return h + torch.tanh(self.beta) * self.ffn(h)
        q, kv = self.norm_q(h), self.norm_kv(z)
        h = h + self.gamma * self.attn(q, kv, kv, need_weights=False)[0]
        return h + self.beta * self.ffn(self.norm_ffn(h))


class LocalizedBackbone(nn.Module):
    """DAM's localized vision backbone over a transformers vision transformer.

    Args:
        vision: ``ViTModel`` / ``SiglipVisionModel`` / ``CLIPVisionModel``.
        variant: a key of `VARIANTS`.
        gated: tanh-gated adapters (paper, default) or the released ungated pre-norm ones.
        feature_layer: block whose output is returned (negative counts from the end; -2 default).
    """

    def __init__(self, vision: nn.Module, *, variant: str = "full+focal-crop-xattn", gated: bool = True,
                 feature_layer: int = -2):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        self.vision, self.variant, self.spec = vision, variant, VARIANTS[variant]
        parts = vision_parts(vision)
        self.n_prefix = parts.n_prefix
        n = len(parts.blocks)
        self.depth = n + feature_layer + 1 if feature_layer < 0 else feature_layer
        if not 1 <= self.depth <= n:
            raise ConfigError(f"feature_layer {feature_layer} is out of range for an encoder of {n} blocks")
        cfg = vision.config
        self.patch_size = int(cfg.patch_size)
        # the encoder's input size is its processor's output (DINOv2's config says 518, its processor crops 224)
        processor = getattr(vision, "regionlib_processor", None)
        self.image_size = tuple(processor.size) if processor is not None else (int(cfg.image_size),) * 2
        self.mask_embed = nn.Conv2d(1, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        nn.init.zeros_(self.mask_embed.weight)
        nn.init.zeros_(self.mask_embed.bias)
        self.adapters = None
        if self.spec.fusion == "xattn":
            self.adapters = nn.ModuleList(CrossAttentionAdapter(cfg.hidden_size, cfg.num_attention_heads, gated=gated)
                                          for _ in range(self.depth))

    @property
    def width(self) -> int:
        return int(self.vision.config.hidden_size)

    def embed(self, image: torch.Tensor, mask: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 3-4: ``(N_img, 3, S, S)`` images, ``(B, 1, S, S)`` masks -> ``(B, n_prefix + N, D)`` tokens.

        ``image_index`` ``(B,)`` names each mask's image (default: mask i on image i): ``E_I(I) + P``
        runs once per image, ``E_M(M)`` once per mask.
        """
        parts = vision_parts(self.vision)
        tokens = parts.embeddings(image)
        if image_index is not None:
            tokens = tokens[image_index]
        m = self.mask_embed(mask.to(tokens.dtype)).flatten(2).transpose(1, 2)  # (B, N, D)
        tokens = torch.cat([tokens[:, : self.n_prefix], tokens[:, self.n_prefix:] + m], dim=1)
        return parts.pre_norm(tokens)

    def encode(self, image: torch.Tensor, mask: torch.Tensor, context: Sequence[torch.Tensor] | None = None,
               image_index: torch.Tensor | None = None):
        """Blocks up to the feature layer; with ``context`` (per-block global tokens) the adapters run.

        Returns ``(features (B, n_prefix + N, D), per-block outputs)``.
        """
        blocks = vision_parts(self.vision).blocks
        h = self.embed(image, mask, image_index)
        per_block = []
        for i in range(self.depth):
            h = run_block(blocks[i], h)
            if context is not None:
                h = self.adapters[i](h, context[i])
            per_block.append(h)
        return h, per_block

    def _check(self, name: str, t: torch.Tensor | None, channels: int) -> None:
        if t is None:
            raise RegionLibError(f"{name} is required by variant {self.variant!r}")
        h, w = self.image_size
        if t.ndim not in (4, 5) or t.shape[-3] != channels or tuple(t.shape[-2:]) != (h, w):
            error = InvalidMaskError if channels == 1 else RegionLibError
            raise error(f"{name} must be (B, {channels}, {h}, {w}) (or (B, T, {channels}, {h}, {w}) for video), "
                        f"got {tuple(t.shape)}")

    def forward(self, full_image=None, full_mask=None, crop_image=None, crop_mask=None, image_index=None) -> torch.Tensor:
        """Region tokens for the LLM.

        Args (normalised images in {S x S}, masks in {-1, +1}; a leading frame axis T for video):
            full_image ``(N_img, [T,] 3, S, S)`` (with ``image_index``) or ``(B, [T,] 3, S, S)``,
            full_mask ``(B, [T,] 1, S, S)``, crop_image ``(B, [T,] 3, S, S)``, crop_mask ``(B, [T,] 1, S, S)``,
            image_index ``(B,)``: the image of each region (images only, not video).
        Returns:
            ``(B, T * N_tokens, D)`` (concat variants: global then regional tokens per frame).
        """
        spec = self.spec
        needed = []
        if spec.global_pass:
            needed += [("full_mask", full_mask, 1), ("full_image", full_image, 3)]
        if spec.crop_mode is not None:
            needed += [("crop_mask", crop_mask, 1), ("crop_image", crop_image, 3)]
        for name, t, c in needed:
            self._check(name, t, c)
        ref = needed[0][1]
        video = ref.ndim == 5
        b = ref.shape[0]
        per_region = [(name, t) for name, t, _ in needed if not (name == "full_image" and image_index is not None)]
        shapes = {t.shape[: ref.ndim - 3] for _, t in per_region}
        if len(shapes) != 1:
            raise RegionLibError(f"inputs disagree on the batch / frame axes: {sorted(shapes)}")
        if image_index is not None:
            if video or image_index.shape != (b,):
                raise RegionLibError(f"image_index must be ({b},) for image (not video) inputs, "
                                     f"got {tuple(image_index.shape)}")
            if full_image is not None and (int(image_index.min()) < 0 or int(image_index.max()) >= full_image.shape[0]):
                raise RegionLibError(f"image_index must index the {full_image.shape[0]} images of full_image")

        def flat(t):
            return t.flatten(0, 1) if video else t

        if not spec.global_pass:
            out = self.encode(flat(crop_image), flat(crop_mask))[0]
        else:
            z, per_block = self.encode(flat(full_image), flat(full_mask), image_index=image_index)
            if spec.crop_mode is None:
                out = z
            elif spec.fusion == "concat":
                out = torch.cat([z, self.encode(flat(crop_image), flat(crop_mask))[0]], dim=1)
            else:
                out = self.encode(flat(crop_image), flat(crop_mask), context=per_block)[0]
        return out.reshape(b, -1, out.shape[-1]) if video else out


def _warn_vanished(mask_channel: torch.Tensor, processor, regions: Regions) -> None:
    """Warn when a region's mask is below half a pixel everywhere in the encoder's full-image mask channel
    ``(N, 1, S, S)`` (e.g. a 3-px mask of a 1024-px image at 384 px): the global pass cannot see it; only the
    crop (focal variants) still can."""
    half = (0.5 - processor.mean[0]) / processor.std[0]  # a mask value of 127.5 / 255 after normalisation
    gone = ~(mask_channel.flatten(1) > half).any(1)
    if gone.any():
        import warnings

        idx = gone.nonzero()[:, 0].tolist()
        ids = [regions.ids[i] for i in idx] if regions.ids is not None else idx
        warnings.warn(f"regions {ids[:10]} vanish from DAM's full-image mask channel at the encoder's "
                      f"{tuple(mask_channel.shape[-2:])} input (under half a pixel everywhere); only a crop "
                      "variant still sees them", stacklevel=3)


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """``"linear"`` or ``"mlp2x_gelu"`` (LLaVA / VILA's 2-layer MLP) from vision width to LM width."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ConfigError(f"projector must be 'linear' or 'mlp2x_gelu', got {kind!r}")


@dataclass(frozen=True)
class DAMConfig:
    """DAM captioner: vision encoder, LM, prompting variant, adapter gating, feature layer, projector."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    variant: str = "full+focal-crop-xattn"
    gated: bool = True
    feature_layer: int = -2
    projector: str = "mlp2x_gelu"
    focal_expansion: float = 3.0
    focal_min_size: int = 48


@register_kind("dam")
class DAM(Captioner, RegionModel):
    """Localized backbone -> projector -> `LMHead`, behind the region-model interface (`interface`).

    ``encode_image`` resizes and normalises the full image once (the global pass itself embeds each
    region's mask, ``E_I(I) + E_M(M)``, so the encoder runs per region); ``region_inputs`` builds each
    region's full-image mask and its (focal) crop and crop mask at the encoder's size.
    """

    config_class = DAMConfig

    def __init__(self, config: DAMConfig, backbone: LocalizedBackbone, projector: nn.Module, lm_head: LMHead):
        super().__init__()
        self.config, self.backbone, self.projector, self.lm_head = config, backbone, projector, lm_head

    @property
    def crop_mode(self) -> str:
        return VARIANTS[self.config.variant].crop_mode or "full"

    @property
    def device(self) -> torch.device:
        return self.lm_head.device

    # ---------------------------------------------------------------- inputs
    @property
    def image_processor(self):
        """The vision encoder's own preprocessing (`RegionImageProcessor` over its ``AutoImageProcessor``)."""
        return self.backbone.vision.regionlib_processor

    def encode_image(self, image) -> ImageState:
        """The image as a ``(3, H, W)`` uint8 tensor on the model's device (``chw``: crops are cut from it
        there) and, for variants with a global pass, its processed form ``full_image`` ``(1, 3, S, S)``."""
        state = ImageState.of(image)
        chw = torch.tensor(state.image).permute(2, 0, 1).to(self.device)  # a copy: the image may be read-only
        state.tensors["chw"] = chw
        if self.backbone.spec.global_pass:
            state.tensors["full_image"] = self.image_processor([chw])
        return state

    def region_inputs(self, state: ImageState, regions: Regions, prompts=None) -> dict:
        """Inputs of the N ``regions`` (their masks; boxes as box masks): ``full_image`` ``(1, 3, S, S)``,
        ``image_index`` ``(N,)``, ``full_mask`` ``(N, 1, S, S)``, ``crop_image`` ``(N, 3, S, S)``,
        ``crop_mask`` ``(N, 1, S, S)`` (per the variant), ``targets`` = the regions' captions, ``prompts``:
        the instruction of each region (None: the LM template's; DAM App. H.2's prompt augmentation,
        `regionlib.data.prompt_aug`, gives one per region). Images and masks go through the encoder's
        own processor (the mask as a 0 / 255 image, REFERENCE §1), on the model's device."""
        check_regions(state, regions)
        if isinstance(prompts, str):
            prompts = [prompts] * len(regions)
        if prompts is not None and (len(prompts) != len(regions) or not all(isinstance(p, str) for p in prompts)):
            raise ConfigError(f"prompts must be None (the LM template), a str or {len(regions)} strs, one per region")
        masks = regions.masks if regions.has_masks else boxes_to_masks(regions.boxes_xyxy, state.size)
        masks = as_mask_batch(masks, "regions.masks", image_size=state.size)
        spec, dev, proc = self.backbone.spec, self.device, self.image_processor
        mask_t = torch.from_numpy(masks).to(dev)
        batch: dict = {"image_index": torch.zeros(len(masks), dtype=torch.long, device=dev),
                       "targets": None if regions.captions is None else list(regions.captions),
                       "prompts": None if prompts is None else list(prompts)}
        if spec.global_pass:
            batch["full_image"] = state.tensors["full_image"]
            batch["full_mask"] = proc.masks(list(mask_t))
            _warn_vanished(batch["full_mask"], proc, regions)
        if spec.crop_mode is not None:
            boxes = crop_boxes(masks, spec.crop_mode, expansion=self.config.focal_expansion,
                               min_size=self.config.focal_min_size)
            chw = state.tensors["chw"]
            crops, crop_masks = [], []
            for (x0, y0, x1, y1), m in zip(boxes.tolist(), mask_t):
                cm = m[y0:y1, x0:x1]
                c = chw[:, y0:y1, x0:x1]
                crops.append(c * cm if spec.crop_mode == "crop_mask" else c)
                crop_masks.append(cm)
            batch["crop_image"] = proc(crops)
            batch["crop_mask"] = proc.masks(crop_masks)
        return batch

    def video_inputs(self, frames: Sequence, masks: Sequence) -> dict:
        """T frames ``(H, W, 3)`` with one region's T masks ``(H, W)`` -> inputs with a frame axis ``(1, T, ...)``."""
        if len(frames) != len(masks) or not frames:
            raise RegionLibError(f"frames and masks must be equally long and non-empty, got {len(frames)} and {len(masks)}")
        per = []
        for f, m in zip(frames, masks):
            state = self.encode_image(f)
            per.append(self.region_inputs(state, Regions.from_masks(np.asarray(m)[None])))
        keys = [k for k in ("full_image", "full_mask", "crop_image", "crop_mask") if k in per[0]]
        return {**{k: torch.stack([p[k][0] for p in per])[None] for k in keys}, "targets": None, "prompts": None}

    @torch.no_grad()
    def training_stats(self) -> dict:
        """How far training moved the parts DAM adds (logged by the training loop): the mask embedding's
        weight norm and, per adapter, the gates ``tanh(gamma)``, ``tanh(beta)`` of eq. 6-7."""
        stats = {"mask_embed_norm": float(self.backbone.mask_embed.weight.norm())}
        for i, a in enumerate(self.backbone.adapters or ()):
            g = (torch.tanh(a.gamma), torch.tanh(a.beta)) if a.gated else (a.gamma, a.beta)
            stats[f"gate_attn_{i}"], stats[f"gate_ffn_{i}"] = float(g[0]), float(g[1])
        return stats

    # ---------------------------------------------------------------- model
    def prefix(self, batch: dict) -> torch.Tensor:
        """Visual prefix ``(B, T * N, D_lm)``."""
        keys = ("full_image", "full_mask", "crop_image", "crop_mask", "image_index")
        return self.projector(self.backbone(**{k: batch.get(k) for k in keys}))

    def contexts(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prefix in the LM's template ``(B, L, D)`` (equal lengths, no mask), or with per-region
        ``prompts`` each region's ``{visual} {prompt}`` context, left-padded ``(B, L, D)`` + mask ``(B, L)``."""
        prefix = self.prefix(batch)
        if batch.get("prompts") is None:
            return self.lm_head.contexts(prefix), None
        head = self.lm_head
        return head.pad_left([head.context([p, " " + text]) for p, text in zip(prefix, batch["prompts"])])


def build_dam(config: DAMConfig, tokenizer, *, load_weights: bool = True) -> DAM:
    """Wire a `DAM` from ``config`` (vision / LM from their paths or random init)."""
    vision = build_vision_encoder(config.vision, load_weights=load_weights)
    backbone = LocalizedBackbone(vision, variant=config.variant, gated=config.gated, feature_layer=config.feature_layer)
    lm_head = build_lm_head(config.lm, tokenizer, load_weights=load_weights)
    return DAM(config, backbone, build_projector(config.projector, backbone.width, lm_head.width), lm_head)


DAM.builder = staticmethod(build_dam)
