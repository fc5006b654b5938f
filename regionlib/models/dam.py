"""DAM: the localized vision backbone and the captioner around it (seed 003 §3, eq. 3-7; REFERENCE §1, §1b).

Patch embedding with a mask channel (eq. 3-4): ``x = E_I(I) + E_M(M) + P`` where the mask ``M`` in
{-1, +1} is embedded by ``E_M`` — a conv with kernel = stride = patch size, the image patch
embedding's width, **initialised to zero**. The global pass ``z = f_G(x)`` encodes the full image
and its mask up to the feature layer (``feature_layer``, default -2: the second-to-last block's
output, no post-LayerNorm); the regional pass ``z' = f_R(x', z)`` reuses the *same* blocks on the
(focal) crop and its mask, and after each block ``i`` a cross-attention adapter lets the crop tokens
(queries) attend to that **one** ``z`` (keys / values, the same for every adapter, eq. 6). Two
adapter forms, ``adapter=``:

* ``"released"`` (`ReleasedAdapter`, the released DAM-3B's; the default, the tiny presets' too)::

      h += a_i * CrossAttn(q = LN1_i(h), kv = z)          (separate q / k / v / out projections)
      h += m_i * fc2(gelu_tanh(fc1(LN2_i(h))))            (FFN width = the tower's MLP width)

  with raw scalar gates ``a_i``, ``m_i`` of shape [1] at 0. Optional ``masked_cross_attn``: global
  tokens whose patch holds no pixel of the full-image mask are masked out of the keys. When a
  region's focal crop is the whole image (crop inputs equal the full inputs bit for bit), the
  released code skips the regional pass and uses ``z``; so does this one.
* ``"paper"`` (`CrossAttentionAdapter`, eq. 6-7)::

      h' = h + tanh(gamma_i) * CrossAttn(h, z);    h_adapter = h' + tanh(beta_i) * FFN(h')

  with scalar gamma = beta = 0 at init, FFN 4x wide with exact GELU (kept as a named option: the
  form the paper's equations describe).

With the zero-initialised parts the backbone's output equals the base encoder's exactly. Only the
regional tokens go to the LLM (same sequence length as one image), through the projector
(`regionlib.models.projectors`; DAM-3B: ``mlp_downsample``, 27x27 -> 196 tokens). Video (seed 003
§3.3): T frames, each with its own mask and focal crop, encoded the same way, tokens concatenated
along the sequence.

Prompt formats (``conversation=``): ``"regionlib"`` renders `LMConfig.template` (``{visual}`` then the
instruction); ``"vila_v1"`` is the released model's VILA ``v1`` conversation (`vila_v1_prompt`):
``<system> USER: [Image: |Video: ]{visual}\\n<instruction> ASSISTANT:``, BOS first, the answer ended
by ``</s>``. ``image_video_joint`` (the released server's ``--image_video_joint_checkpoint``) prefixes
single images with ``Image: `` and clips with ``Video: ``; a video-only checkpoint uses ``Video: ``.

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
import torch.nn.functional as F

from ..errors import ConfigError, InvalidMaskError, RegionLibError
from ..focal import crop_boxes
from ..masks import as_mask_batch, boxes_to_masks
from ..regions import Regions
from .checkpoint import RegionModel, register_kind
from .interface import Captioner, ImageState, check_regions
from .lm_head import VISUAL_SLOT, LMConfig, LMHead, build_lm_head
from .projectors import build_projector
from .vision import PILImageProcessor, VisionConfig, build_vision_encoder, run_block, vision_parts

__all__ = ["VARIANTS", "ADAPTERS", "CONVERSATIONS", "Variant", "CrossAttentionAdapter", "ReleasedAdapter",
           "LocalizedBackbone", "DAMConfig", "DAM", "build_dam", "vila_v1_prompt", "sample_frames",
           "IMAGE_INSTRUCTION", "VIDEO_INSTRUCTION"]

ADAPTERS = ("paper", "released")
CONVERSATIONS = ("regionlib", "vila_v1")
PREPROCESSING = ("processor", "pil", "pil_pad")

VILA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                  "helpful, detailed, and polite answers to the user's questions.")
IMAGE_INSTRUCTION = "Describe the masked region in detail."
# seed 003 App. H.3, as the released demo_video.py sends it
VIDEO_INSTRUCTION = ("Given the video in the form of a sequence of frames above, describe the object in the masked "
                     "region in the video in detail.")


def vila_v1_prompt(*, video: bool = False, joint: bool = False, instruction: str | None = None) -> str:
    """VILA's ``v1`` conversation (separator style TWO) of one user turn awaiting the answer, with the
    ``{visual}`` slot where the released prompt has its ``<image>`` tokens:
    ``<system> USER: [Image: |Video: ]{visual}\\n<instruction> ASSISTANT:`` (``Video: `` for clips,
    ``Image: `` for single images of a joint checkpoint; the default instruction per medium)."""
    media = "Video: " if video else ("Image: " if joint else "")
    instruction = instruction or (VIDEO_INSTRUCTION if video else IMAGE_INSTRUCTION)
    return f"{VILA_V1_SYSTEM} USER: {media}{VISUAL_SLOT}\n{instruction} ASSISTANT:"


def sample_frames(present: Sequence[bool], num_frames: int) -> list[int]:
    """Frame indices the released DAM video pipeline describes: the frames where the object is present
    (non-empty mask), all of them when at most ``num_frames``, else ``num_frames`` of them at
    ``np.linspace(0, n - 1, num_frames)`` truncated to int (the released ``demo_video.py``)."""
    idx = [i for i, p in enumerate(present) if p]
    if not idx:
        raise InvalidMaskError("the masklet is empty in every frame: there is no region to describe")
    if len(idx) <= num_frames:
        return idx
    return [idx[int(k)] for k in np.linspace(0, len(idx) - 1, num_frames).astype(int)]


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
    """The paper's adapter, eq. 6-7: ``h += tanh(gamma) CA(h, z)``, ``h += tanh(beta) FFN(h)``; identity at init.

    Args: dim: token width D; heads: attention heads; mlp_ratio: FFN hidden = ratio * D.
    """

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float = 4.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))

    def gates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective attention and FFN gates (``tanh(gamma)``, ``tanh(beta)``)."""
        return torch.tanh(self.gamma), torch.tanh(self.beta)

    def forward(self, h: torch.Tensor, z: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """h ``(B, N, D)`` regional tokens (queries); z ``(B, M, D)`` global tokens; bias ``(B, 1, 1, M)`` or None."""
        mask = None
        if bias is not None:  # (B, 1, 1, M) -> (B * heads, N, M), nn.MultiheadAttention's float mask
            mask = bias[:, 0].repeat_interleave(self.attn.num_heads, 0).expand(-1, h.shape[1], -1)
        h = h + torch.tanh(self.gamma) * self.attn(h, z, z, attn_mask=mask, need_weights=False)[0]
        return h + torch.tanh(self.beta) * self.ffn(h)


class ReleasedAdapter(nn.Module):
    """The released DAM's cross-attention block (module docstring): pre-norm on the queries and the FFN
    input, raw scalar gates ``gamma`` (attention) and ``beta`` (FFN) of shape [1] at 0.

    Args: dim: token width D; heads: attention heads; mlp_dim: FFN width (the tower's MLP width);
        eps: LayerNorm epsilon (the tower's).
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, eps: float = 1e-6):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"adapter width {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def gates(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gamma[0], self.beta[0]

    def attend(self, h: torch.Tensor, z: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Multi-head cross-attention ``(B, N, D)`` x ``(B, M, D)`` -> ``(B, N, D)``; softmax in float32."""
        b, n, d = h.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(h)), split(self.k_proj(z)), split(self.v_proj(z))
        scores = (q @ k.transpose(2, 3)) * (d // self.heads) ** -0.5
        if bias is not None:
            scores = scores + bias
        weights = scores.softmax(-1, dtype=torch.float32).to(q.dtype)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(b, n, d))

    def forward(self, h: torch.Tensor, z: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """h ``(B, N, D)`` regional tokens; z ``(B, M, D)`` global tokens; bias ``(B, 1, 1, M)`` (0 / -inf) or None."""
        h = h + self.gamma * self.attend(self.norm1(h), z, bias)
        return h + self.beta * self.fc2(F.gelu(self.fc1(self.norm2(h)), approximate="tanh"))


class LocalizedBackbone(nn.Module):
    """DAM's localized vision backbone over a transformers vision transformer.

    Args:
        vision: ``ViTModel`` / ``SiglipVisionModel`` / ``CLIPVisionModel``.
        variant: a key of `VARIANTS`.
        adapter: ``"released"`` or ``"paper"`` (module docstring).
        feature_layer: block whose output is returned (negative counts from the end; -2 default).
        masked_cross_attn: mask global tokens outside the region out of the adapters' keys.
    """

    def __init__(self, vision: nn.Module, *, variant: str = "full+focal-crop-xattn", adapter: str = "released",
                 feature_layer: int = -2, masked_cross_attn: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        if adapter not in ADAPTERS:
            raise ConfigError(f"adapter must be one of {list(ADAPTERS)}, got {adapter!r}")
        self.vision, self.variant, self.spec, self.adapter = vision, variant, VARIANTS[variant], adapter
        self.masked_cross_attn = bool(masked_cross_attn)
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
        if self.spec.fusion == "xattn":  # adapters after the feature layer would be unused: none are built
            if adapter == "released":
                mlp = int(getattr(cfg, "intermediate_size", None) or 4 * cfg.hidden_size)
                eps = float(getattr(cfg, "layer_norm_eps", 1e-6))
                self.adapters = nn.ModuleList(ReleasedAdapter(cfg.hidden_size, cfg.num_attention_heads, mlp, eps=eps)
                                              for _ in range(self.depth))
            else:
                self.adapters = nn.ModuleList(CrossAttentionAdapter(cfg.hidden_size, cfg.num_attention_heads)
                                              for _ in range(self.depth))
        elif masked_cross_attn:
            raise ConfigError(f"masked_cross_attn needs a cross-attention variant, got {variant!r}")

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

    def encode(self, image: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None = None,
               image_index: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Blocks up to the feature layer -> ``(B, n_prefix + N, D)``; with ``context`` z ``(B, M, D)``
        (the global pass's features) adapter i runs after block i, keys masked by ``bias``."""
        blocks = vision_parts(self.vision).blocks
        h = self.embed(image, mask, image_index)
        for i in range(self.depth):
            h = run_block(blocks[i], h)
            if context is not None:
                h = self.adapters[i](h, context, bias)
        return h

    def key_bias(self, full_mask: torch.Tensor) -> torch.Tensor:
        """``masked_cross_attn``: ``(B, 1, S, S)`` normalised full-image masks -> ``(B, 1, 1, n_prefix + N)``
        additive key bias, -inf for the patches that hold no mask pixel (``(m + 1) / 2`` summed over the
        patch below 1e-5, as the released code), 0 for prefix tokens."""
        m = (full_mask[:, 0].float() + 1) / 2
        per_patch = F.avg_pool2d(m[:, None], self.patch_size, divisor_override=1).flatten(1)
        bias = torch.zeros_like(per_patch).masked_fill_(per_patch < 1e-5, float("-inf"))
        bias = F.pad(bias, (self.n_prefix, 0))
        return bias[:, None, None, :].to(full_mask.dtype)

    def _check(self, name: str, t: torch.Tensor | None, channels: int) -> None:
        if t is None:
            raise RegionLibError(f"{name} is required by variant {self.variant!r}")
        h, w = self.image_size
        if t.ndim not in (4, 5) or t.shape[-3] != channels or tuple(t.shape[-2:]) != (h, w):
            error = InvalidMaskError if channels == 1 else RegionLibError
            raise error(f"{name} must be (B, {channels}, {h}, {w}) (or (B, T, {channels}, {h}, {w}) for video), "
                        f"got {tuple(t.shape)}")

    def _regional(self, z, full_image, full_mask, crop_image, crop_mask, image_index) -> torch.Tensor:
        """The regional pass with adapters attending to ``z`` ``(B, M, D)``; released adapters skip the
        regions whose crop inputs equal the full inputs (they keep ``z``)."""
        bias = self.key_bias(full_mask) if self.masked_cross_attn else None
        if self.adapter != "released":
            return self.encode(crop_image, crop_mask, context=z, bias=bias)
        full = full_image if image_index is None else full_image[image_index]
        run = ((full != crop_image).flatten(1).any(1) | (full_mask != crop_mask).flatten(1).any(1))
        if bool(run.all()):
            return self.encode(crop_image, crop_mask, context=z, bias=bias)
        out = z.clone()
        if bool(run.any()):
            out[run] = self.encode(crop_image[run], crop_mask[run], context=z[run],
                                   bias=None if bias is None else bias[run])
        return out

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
            out = self.encode(flat(crop_image), flat(crop_mask))
        else:
            z = self.encode(flat(full_image), flat(full_mask), image_index=image_index)
            if spec.crop_mode is None:
                out = z
            elif spec.fusion == "concat":
                out = torch.cat([z, self.encode(flat(crop_image), flat(crop_mask))], dim=1)
            else:
                out = self._regional(z, flat(full_image), flat(full_mask), flat(crop_image), flat(crop_mask),
                                     image_index)
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


@dataclass(frozen=True)
class DAMConfig:
    """DAM captioner.

    Attributes:
        vision / lm: the vision encoder and the LM.
        variant: a key of `VARIANTS` (seed 003 Tab. 8). adapter: ``"released"`` | ``"paper"``.
        feature_layer: the encoder block whose output is used (-2: the second-to-last).
        projector: a kind of `regionlib.models.projectors` (``"mlp_downsample"``: DAM-3B).
        focal_expansion / focal_min_size: the focal crop (alpha = 3, 48-px minimum box).
        masked_cross_attn: the released option masking global tokens outside the region.
        preprocess: ``"processor"`` (the encoder's ``AutoImageProcessor``, torchvision backend), ``"pil"``
            (the released pipeline: PIL bicubic resize, then rescale and normalise; VILA's
            ``image_aspect_ratio="resize"``) or ``"pil_pad"`` (``image_aspect_ratio="pad"``: centred on a
            square of the mean colour first, `PILImageProcessor`).
        conversation: ``"regionlib"`` (`LMConfig.template`) or ``"vila_v1"`` (module docstring).
        image_video_joint: the released joint image + video checkpoint's prompts (``Image: `` / ``Video: ``).
        num_video_frames: frames a clip is sampled to (`sample_frames`; DAM-3B-Video: 8).
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    variant: str = "full+focal-crop-xattn"
    adapter: str = "released"
    feature_layer: int = -2
    projector: str = "mlp2x_gelu"
    focal_expansion: float = 3.0
    focal_min_size: int = 48
    masked_cross_attn: bool = False
    preprocess: str = "processor"
    conversation: str = "regionlib"
    image_video_joint: bool = False
    num_video_frames: int = 8

    def __post_init__(self):
        for name, allowed in (("adapter", ADAPTERS), ("conversation", CONVERSATIONS), ("preprocess", PREPROCESSING)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"DAMConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        n = self.num_video_frames
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"DAMConfig.num_video_frames must be a positive int, got {n!r}")

    @staticmethod
    def migrate(data: dict) -> dict:
        """A saved config of an earlier regionlib (``gated`` instead of ``adapter``) in today's fields."""
        if "gated" not in data:
            return data
        data = dict(data)
        if data.pop("gated") is not True:
            from ..errors import CheckpointError

            raise CheckpointError("this checkpoint was saved with regionlib's former 'gated=False' adapter, which was "
                                  "not the released DAM architecture and no longer exists; retrain it with "
                                  "adapter='released' or adapter='paper'")
        data["adapter"] = "paper"
        return data


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
        """The vision encoder's preprocessing (a `RegionImageProcessor`; `PILImageProcessor` for ``preprocess="pil"``)."""
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
        the instruction of each region (None: the default one; DAM App. H.2's prompt augmentation,
        `regionlib.data.prompt_aug`, gives one per region). Images and masks go through the encoder's
        own processor (the mask as a 0 / 255 image, not thresholded after resizing; REFERENCE §1b)."""
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

    def video_inputs(self, states: Sequence[ImageState], masks: Sequence, prompts=None) -> dict:
        """One region over a clip: T encoded frames (`encode_image`, e.g. cached by the predictor) with the
        region's T masks ``(H, W)`` -> inputs with a frame axis ``(1, T, ...)`` and ``video=True``. The
        caller samples the frames (`sample_frames`); every mask must be non-empty."""
        if len(states) != len(masks) or not states:
            raise RegionLibError(f"frames and masks must be equally long and non-empty, got {len(states)} and {len(masks)}")
        if isinstance(prompts, str):
            prompts = [prompts]
        per = [self.region_inputs(s, Regions.from_masks(np.asarray(m)[None])) for s, m in zip(states, masks)]
        keys = [k for k in ("full_image", "full_mask", "crop_image", "crop_mask") if k in per[0]]
        return {**{k: torch.stack([p[k][0] for p in per])[None] for k in keys}, "targets": None,
                "prompts": None if prompts is None else list(prompts), "video": True}

    @property
    def num_video_frames(self) -> int:
        return self.config.num_video_frames

    def lr_groups(self) -> dict[str, tuple[str, ...]]:
        """The parts DAM adds to a base (seed 003 §3.2): the adapters' ``gates`` and the ``new`` parts (the
        adapters, the mask embedding); the gates are matched first."""
        adapters = self.backbone.adapters is not None
        gates = ("backbone.adapters.*.gamma", "backbone.adapters.*.beta") if adapters else ()
        return {"gates": gates, "new": (("backbone.adapters.*",) if adapters else ()) + ("backbone.mask_embed.*",)}

    @torch.no_grad()
    def training_stats(self) -> dict:
        """How far training moved the parts DAM adds (logged by the training loop): the mask embedding's
        weight norm and, per adapter, the effective gates (paper: ``tanh(gamma)``, ``tanh(beta)``)."""
        stats = {"mask_embed_norm": float(self.backbone.mask_embed.weight.norm())}
        for i, a in enumerate(self.backbone.adapters or ()):
            g = a.gates()
            stats[f"gate_attn_{i}"], stats[f"gate_ffn_{i}"] = float(g[0]), float(g[1])
        return stats

    # ---------------------------------------------------------------- model
    def prefix(self, batch: dict) -> torch.Tensor:
        """Visual prefix ``(B, T * N, D_lm)`` (tokens projected per frame, concatenated in frame order)."""
        keys = ("full_image", "full_mask", "crop_image", "crop_mask", "image_index")
        dtype = self.backbone.mask_embed.weight.dtype  # the processors make float32: match a half-precision model
        tokens = self.backbone(**{k: None if batch.get(k) is None else
                                  batch[k].to(dtype) if batch[k].is_floating_point() else batch[k] for k in keys})
        if not batch.get("video"):
            return self.projector(tokens)
        b, t = batch["crop_image" if "crop_image" in batch else "full_image"].shape[:2]
        per_frame = tokens.reshape(b * t, -1, tokens.shape[-1])
        projected = self.projector(per_frame)
        return projected.reshape(b, -1, projected.shape[-1])

    def conversation(self, instruction: str | None = None, *, video: bool = False) -> tuple[str, str]:
        """The text before and after the visual tokens of one region's context (``"vila_v1"``), e.g.
        ``("<system> USER: ", "\\nDescribe the masked region in detail. ASSISTANT:")``."""
        before, after = vila_v1_prompt(video=video, joint=self.config.image_video_joint,
                                       instruction=instruction).split(VISUAL_SLOT)
        return before, after

    def contexts(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prefix in the LM's template ``(B, L, D)`` (equal lengths, no mask), or with per-region
        ``prompts`` each region's context, left-padded ``(B, L, D)`` + mask ``(B, L)``: ``{visual} {prompt}``
        (``"regionlib"``) or the ``v1`` conversation around it (``"vila_v1"``)."""
        prefix = self.prefix(batch)
        head, prompts, video = self.lm_head, batch.get("prompts"), bool(batch.get("video"))
        if self.config.conversation == "vila_v1":
            if prompts is None and not video:
                return head.contexts(prefix), None
            texts = prompts if prompts is not None else [None] * len(prefix)
            parts = [self.conversation(t, video=video) for t in texts]
            return head.pad_left([head.context([a, p, b]) for p, (a, b) in zip(prefix, parts)])
        if prompts is None:
            return head.contexts(prefix), None
        return head.pad_left([head.context([p, " " + text]) for p, text in zip(prefix, prompts)])


def build_dam(config: DAMConfig, tokenizer, *, load_weights: bool = True) -> DAM:
    """Wire a `DAM` from ``config`` (vision / LM from their paths or random init)."""
    vision = build_vision_encoder(config.vision, load_weights=load_weights)
    if config.preprocess in ("pil", "pil_pad"):
        vision.regionlib_processor = PILImageProcessor(vision.regionlib_processor.processor,
                                                       pad_to_square=config.preprocess == "pil_pad")
    backbone = LocalizedBackbone(vision, variant=config.variant, adapter=config.adapter,
                                 feature_layer=config.feature_layer, masked_cross_attn=config.masked_cross_attn)
    template = vila_v1_prompt(joint=config.image_video_joint)
    if config.conversation == "vila_v1" and config.lm.template != template:
        raise ConfigError(f"conversation 'vila_v1' renders LMConfig.template {template!r}, got {config.lm.template!r}")
    lm_head = build_lm_head(config.lm, tokenizer, load_weights=load_weights)
    return DAM(config, backbone, build_projector(config.projector, backbone.width, lm_head.width), lm_head)


DAM.builder = staticmethod(build_dam)
