"""Vision transformers from the checkpoint's own config, their parts, and their own preprocessing.

`build_vision_encoder(config)` reads ``AutoConfig.from_pretrained(config.path)`` and builds whatever
the directory's ``config.json`` names among the architectures regionlib wraps (`SUPPORTED_VISION`):

=================================  =================================================================
``config.json`` model_type         module (transformers)
=================================  =================================================================
``siglip_vision_model``            ``SiglipVisionModel``
``siglip`` (a full SigLIP dir)     ``SiglipVisionModel`` of its ``vision_config``, ``vision_model.*`` weights
``clip_vision_model``              ``CLIPVisionModel``
``clip`` (a full CLIP dir)         ``CLIPVisionModel`` of its ``vision_config``, ``vision_model.*`` weights
``dinov2``                         ``Dinov2Model``
``dinov2_with_registers``          ``Dinov2WithRegistersModel`` (register tokens count as prefix tokens)
``vit``                            ``ViTModel`` (no pooler)
=================================  =================================================================

Weights load through the library (``from_pretrained(..., output_loading_info=True)``) in float32; a
missing, unexpected or mismatched weight raises `CheckpointError` listing them (a full CLIP / SigLIP
dir's text tower is expected to be left over; a ViT's pooler / classifier too). Anything else in
``config.json`` raises `CheckpointError` naming it and the supported ones. Without a path, the
`VisionConfig` fields (``arch`` and sizes) build the family's config, random init (tiny presets).

Preprocessing is the checkpoint's own: `build_image_processor(config)` wraps
``AutoImageProcessor.from_pretrained(config.path)`` (the torchvision backend, so tensors stay on
their device) in a `RegionImageProcessor` (a path without ``preprocessor_config.json`` is a
`CheckpointError`: its normalisation is unknown); without a path (tiny presets) the family's processor
class is built with the encoder's input size and the family's default mean / std, so one code path
runs everywhere. Every encoder `build_vision_encoder` returns
carries its processor as ``encoder.regionlib_processor`` (what `RegionModel.save_pretrained` writes).

`vision_parts(model)` exposes what the DAM backbone and the feature extractors need: the embedding
module (patch embedding + position embedding + prefix tokens), the pre-norm (CLIP's
``pre_layrnorm``), the list of blocks, and how many prefix tokens (CLS, registers) precede the patch
tokens; `run_block` runs one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError, RegionLibError
from .checkpoint import load_base, read_auto_config

__all__ = ["VisionConfig", "VisionParts", "SUPPORTED_VISION", "VISION_ARCHS", "build_vision_encoder",
           "vision_config_of", "vision_parts", "run_block", "patch_grid", "RegionImageProcessor",
           "PILImageProcessor", "build_image_processor", "NORMALISATION"]

# default (mean, std) of each family's image processor (used only when no checkpoint names its own)
NORMALISATION = {
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "dinov2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# config.json model_type -> (family, transformers model class name, full multi-tower dir?)
SUPPORTED_VISION = {
    "siglip_vision_model": ("siglip", "SiglipVisionModel", False),
    "siglip": ("siglip", "SiglipVisionModel", True),
    "clip_vision_model": ("clip", "CLIPVisionModel", False),
    "clip": ("clip", "CLIPVisionModel", True),
    "dinov2": ("dinov2", "Dinov2Model", False),
    "dinov2_with_registers": ("dinov2", "Dinov2WithRegistersModel", False),
    "vit": ("vit", "ViTModel", False),
}
VISION_ARCHS = ("siglip", "clip", "dinov2", "vit")

# each family's image processor class (torchvision backend) for presets without a path
_PROCESSOR_CLASSES = {"siglip": "SiglipImageProcessor", "clip": "CLIPImageProcessor", "dinov2": "BitImageProcessor",
                      "vit": "ViTImageProcessor"}
# checkpoint keys a vision tower legitimately leaves unused (other towers / heads of the same file)
_ALLOWED_UNEXPECTED = {"vit": ("pooler.", "classifier."), "dinov2": ("classifier.",)}


@dataclass(frozen=True)
class VisionConfig:
    """A vision transformer: from ``path`` (its own ``config.json`` decides) or these fields.

    Attributes:
        arch: family when ``path`` is None: ``"siglip"`` | ``"clip"`` | ``"dinov2"`` | ``"vit"``
            (ignored when ``path`` is given: the checkpoint's ``model_type`` decides).
        path: a transformers checkpoint directory (vision-only, or a full CLIP / SigLIP model).
        image_size / patch_size / width / depth / heads / intermediate: sizes of the random-init encoder.
        registers: DINOv2 register tokens of the random-init encoder (0: plain DINOv2).
    """

    arch: str = "vit"
    path: str | None = None
    image_size: int = 64
    patch_size: int = 8
    width: int = 64
    depth: int = 3
    heads: int = 4
    intermediate: int | None = None
    registers: int = 0


def _check_sizes(config: VisionConfig) -> None:
    for name in ("image_size", "patch_size", "width", "depth", "heads"):
        v = getattr(config, name)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"VisionConfig.{name} must be a positive int, got {v!r}")
    if config.intermediate is not None and (not isinstance(config.intermediate, int) or config.intermediate <= 0):
        raise ConfigError(f"VisionConfig.intermediate must be a positive int or None, got {config.intermediate!r}")
    if config.width % config.heads:
        raise ConfigError(f"VisionConfig.width {config.width} must be divisible by heads {config.heads}")
    if config.patch_size > config.image_size:
        raise ConfigError(f"VisionConfig.patch_size {config.patch_size} exceeds image_size {config.image_size}")
    if not isinstance(config.registers, int) or config.registers < 0:
        raise ConfigError(f"VisionConfig.registers must be an int >= 0, got {config.registers!r}")
    if config.registers and config.arch != "dinov2":
        raise ConfigError(f"VisionConfig.registers needs arch='dinov2', got arch={config.arch!r}")


def _read_config(path: str):
    """``AutoConfig`` of ``path`` -> (family, model class, full?, the vision config)."""
    import transformers

    cfg = read_auto_config(path, "VisionConfig.path")
    model_type = getattr(cfg, "model_type", None)
    if model_type not in SUPPORTED_VISION:
        archs = getattr(cfg, "architectures", None) or []
        raise CheckpointError(f"VisionConfig.path {path!r}: config.json names model_type {model_type!r} "
                              f"(architectures {archs}), which regionlib cannot wrap as a vision encoder; "
                              f"supported model_types: {sorted(SUPPORTED_VISION)}")
    family, cls_name, full = SUPPORTED_VISION[model_type]
    vcfg = cfg.vision_config if full else cfg
    return family, getattr(transformers, cls_name), full, vcfg


def _family_config(config: VisionConfig):
    """The transformers config of a random-init encoder of ``config``'s family and sizes."""
    import transformers

    _check_sizes(config)
    if config.arch not in VISION_ARCHS:
        raise ConfigError(f"VisionConfig.arch must be one of {list(VISION_ARCHS)}, got {config.arch!r}")
    sizes = dict(image_size=config.image_size, patch_size=config.patch_size, hidden_size=config.width,
                 num_hidden_layers=config.depth, num_attention_heads=config.heads,
                 intermediate_size=config.intermediate or 4 * config.width)
    if config.arch == "siglip":
        return transformers.SiglipVisionModel, transformers.SiglipVisionConfig(**sizes)
    if config.arch == "clip":
        return transformers.CLIPVisionModel, transformers.CLIPVisionConfig(**sizes)
    if config.arch == "vit":
        return transformers.ViTModel, transformers.ViTConfig(**sizes)
    sizes.pop("intermediate_size")
    hidden = config.intermediate or 4 * config.width
    if hidden % config.width:
        raise ConfigError(f"DINOv2's MLP width is an integer multiple of its width: intermediate {hidden} "
                          f"is not a multiple of width {config.width}")
    mlp_ratio = hidden // config.width
    if config.registers:
        return (transformers.Dinov2WithRegistersModel,
                transformers.Dinov2WithRegistersConfig(**sizes, mlp_ratio=mlp_ratio, num_register_tokens=config.registers))
    return transformers.Dinov2Model, transformers.Dinov2Config(**sizes, mlp_ratio=mlp_ratio)


def vision_config_of(config: VisionConfig):
    """The transformers config of the encoder ``config`` describes (its path's, or built from the fields)."""
    if config.path:
        return _read_config(config.path)[3]
    return _family_config(config)[1]


def build_vision_encoder(config: VisionConfig, *, load_weights: bool = True) -> nn.Module:
    """The transformers vision model of ``config`` (see the module docstring).

    ``load_weights=False``: the path's architecture, random init. The result carries its image
    processor as ``regionlib_processor`` (a `RegionImageProcessor`).
    """
    if not isinstance(config, VisionConfig):
        raise ConfigError(f"config must be a VisionConfig, got {type(config).__name__}")
    if config.path:
        family, model_cls, full, vcfg = _read_config(config.path)
        kwargs = {"add_pooling_layer": False} if model_cls.__name__ == "ViTModel" else {}
        if load_weights:
            allowed = _ALLOWED_UNEXPECTED.get(family, ())

            def ignored(key: str) -> bool:  # a full model's other towers, the family's unused heads
                return (full and not key.startswith("vision_model.")) or key.startswith(allowed)

            model = load_base(model_cls, config.path, "VisionConfig.path", f"the {model_cls.__name__}",
                              ignore_unexpected=ignored, config=vcfg, **kwargs)
        else:
            model = model_cls(vcfg, **kwargs)
    else:
        model_cls, vcfg = _family_config(config)
        model = model_cls(vcfg, add_pooling_layer=False) if config.arch == "vit" else model_cls(vcfg)
    model.regionlib_processor = build_image_processor(config, vision_config=model.config)
    model._regionlib_config = config
    return model


# ---------------------------------------------------------------------------------------------- parts
@dataclass
class VisionParts:
    embeddings: nn.Module
    pre_norm: nn.Module
    blocks: nn.ModuleList
    n_prefix: int


def _inner(model: nn.Module) -> nn.Module:
    return getattr(model, "vision_model", model)


def _blocks(inner: nn.Module) -> nn.ModuleList:
    for owner in (inner, getattr(inner, "encoder", None)):
        if owner is None:
            continue
        for name in ("layers", "layer"):
            blocks = getattr(owner, name, None)
            if isinstance(blocks, nn.ModuleList):
                return blocks
    raise ConfigError(f"{type(inner).__name__}: no list of encoder blocks found (layers / encoder.layer(s))")


def vision_parts(model: nn.Module) -> VisionParts:
    """Parts of a SigLIP / CLIP / DINOv2 (with or without registers) / ViT vision model (transformers 5 layout).

    ``n_prefix``: tokens before the patch tokens in the embeddings' output (CLS, then DINOv2's registers).
    """
    inner = _inner(model)
    emb = inner.embeddings
    n_prefix = 1 if (getattr(emb, "cls_token", None) is not None or getattr(emb, "class_embedding", None) is not None) else 0
    registers = getattr(emb, "register_tokens", None)
    if registers is not None:
        n_prefix += int(registers.shape[1])
    return VisionParts(emb, getattr(inner, "pre_layrnorm", nn.Identity()), _blocks(inner), n_prefix)


def run_block(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """One encoder block (no attention mask) -> ``(B, N, D)``."""
    out = block(h, None)
    return out[0] if isinstance(out, tuple) else out


def patch_grid(model: nn.Module) -> tuple[int, int, int]:
    """(image size of the config, patch size, hidden width) of a vision model.

    The encoder's *input* size is its processor's (``model.regionlib_processor.size``): DINOv2's config
    says 518 while its processor crops 224 (its position embeddings are interpolated).
    """
    cfg = model.config
    return int(cfg.image_size), int(cfg.patch_size), int(cfg.hidden_size)


# ---------------------------------------------------------------------------------------------- preprocessing
def _as_chw_uint8(image, name: str) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise RegionLibError(f"{name} must be a (h, w, 3) uint8 array or a (3, h, w) uint8 tensor, "
                                 f"got {image.dtype} {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise RegionLibError(f"{name} must be a (3, h, w) uint8 tensor, got "
                             f"{getattr(image, 'dtype', type(image).__name__)} {tuple(getattr(image, 'shape', ()))}")
    if min(image.shape[1:]) < 1:
        raise RegionLibError(f"{name} is empty: {tuple(image.shape)}")
    return image


class RegionImageProcessor:
    """A checkpoint's own ``AutoImageProcessor`` (torchvision backend), with DAM's mask channel.

    Args:
        processor: a transformers image processor (torchvision backend); its mean, std, size,
            resample, resize and crop rules are used unchanged.
    """

    def __init__(self, processor):
        self.processor = processor
        self.size = self._output_size(processor)

    @staticmethod
    def _output_size(p) -> tuple[int, int]:
        crop = getattr(p, "crop_size", None)
        if getattr(p, "do_center_crop", False) and crop:
            return int(crop["height"]), int(crop["width"])
        size = getattr(p, "size", None) or {}
        if "height" in size and "width" in size and getattr(p, "do_resize", True):
            return int(size["height"]), int(size["width"])
        raise ConfigError(f"{type(p).__name__} gives no fixed output size (size={dict(size)}, crop_size={crop}); "
                          "a vision encoder needs one")

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.processor.image_mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.processor.image_std)

    def __repr__(self) -> str:
        return f"RegionImageProcessor({type(self.processor).__name__}, size={self.size})"

    def _run(self, images: list[torch.Tensor]) -> torch.Tensor:
        device = images[0].device
        out = self.processor(images=images, return_tensors="pt", device=device)["pixel_values"]
        return out.to(device=device, dtype=torch.float32)

    def __call__(self, images: Sequence) -> torch.Tensor:
        """``images``: list of ``(3, h, w)`` uint8 tensors (any size, any device; ``(h, w, 3)`` uint8
        arrays also accepted) -> ``(B, 3, H, W)`` float32 on their device, equal to the processor's
        ``pixel_values``."""
        if isinstance(images, (torch.Tensor, np.ndarray)) and np.ndim(images) == 3:
            images = [images]
        if len(images) == 0:
            raise RegionLibError("images must be non-empty")
        return self._run([_as_chw_uint8(im, f"images[{i}]") for i, im in enumerate(images)])

    def masks(self, masks: Sequence) -> torch.Tensor:
        """``masks``: list of ``(h, w)`` bool tensors (or arrays, or an ``(N, h, w)`` stack) -> ``(B, 1, H, W)``.

        DAM's released code treats the mask channel as an image: values 0 / 255 replicated to 3
        channels through the same processor (resize / crop, rescale, normalisation), channel 0 kept;
        with SigLIP's mean = std = 0.5 that is +1 inside and -1 outside, away from edges.
        """
        if len(masks) == 0:
            raise RegionLibError("masks must be non-empty")
        imgs = []
        for i, m in enumerate(masks):
            t = torch.from_numpy(np.asarray(m)) if not isinstance(m, torch.Tensor) else m
            if t.ndim != 2 or min(t.shape) < 1:
                raise RegionLibError(f"masks[{i}] must be a non-empty (h, w) mask, got {tuple(t.shape)}")
            u8 = (t != 0).to(torch.uint8) * 255
            imgs.append(u8[None].expand(3, -1, -1).contiguous())
        return self._run(imgs)[:, :1]

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``preprocessor_config.json`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.processor.save_pretrained(str(d))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "RegionImageProcessor":
        """The ``AutoImageProcessor`` of ``directory`` (torchvision backend)."""
        from transformers import AutoImageProcessor

        try:
            return cls(AutoImageProcessor.from_pretrained(str(directory), backend="torchvision"))
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{str(directory)!r}: no loadable image processor ({exc})") from exc


class PILImageProcessor(RegionImageProcessor):
    """The released DAM / VILA pipeline over a checkpoint's image processor: each image (or 0 / 255 mask,
    replicated to 3 channels) is resized to the encoder size by PIL (bicubic, PIL's default, as VILA's
    ``process_image`` with ``image_aspect_ratio="resize"``), then rescaled (float64 ``x * rescale_factor``
    cast to float32) and normalised ``(x - mean) / std`` in float32, as the slow transformers processor
    does after its own (then identity) resize. ``pad_to_square`` is VILA's ``image_aspect_ratio="pad"``:
    the image (and the mask image alike) is first centred on a square of the processor's mean colour
    (``int(m * 255)`` per channel), then resized. Runs on the CPU; returns tensors on the images' device."""

    def __init__(self, processor, *, pad_to_square: bool = False):
        super().__init__(processor)
        self.pad_to_square = bool(pad_to_square)

    def _square(self, pil):
        from PIL import Image

        w, h = pil.size
        if w == h:
            return pil
        side = max(w, h)
        canvas = Image.new(pil.mode, (side, side), tuple(int(m * 255) for m in self.mean))
        canvas.paste(pil, ((side - w) // 2, (side - h) // 2))
        return canvas

    def _run(self, images: list[torch.Tensor]) -> torch.Tensor:
        from PIL import Image

        device = images[0].device
        h, w = self.size
        scale = float(getattr(self.processor, "rescale_factor", 1 / 255))
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        out = []
        for im in images:
            pil = Image.fromarray(im.permute(1, 2, 0).cpu().numpy())
            resample = Image.Resampling.BICUBIC  # "resize": PIL's default in VILA's own resize
            if self.pad_to_square:  # "pad": the processor's own resize, with its resample
                pil = self._square(pil)
                resample = Image.Resampling(int(getattr(self.processor, "resample", resample)))
            pil = pil.resize((w, h), resample)
            x = (np.asarray(pil).astype(np.float64) * scale).astype(np.float32)
            out.append(torch.from_numpy(((x - mean) / std).transpose(2, 0, 1).copy()))
        return torch.stack(out).to(device)


def _family_processor(family: str, size: tuple[int, int]):
    import transformers

    cls = getattr(transformers, _PROCESSOR_CLASSES[family])
    mean, std = NORMALISATION[family]
    h, w = size
    if family in ("clip", "dinov2"):  # resize the shortest edge, centre crop (the families' own rule)
        return cls(size={"shortest_edge": min(h, w)}, crop_size={"height": h, "width": w}, do_center_crop=True,
                   image_mean=list(mean), image_std=list(std))
    return cls(size={"height": h, "width": w}, image_mean=list(mean), image_std=list(std))


def build_image_processor(config: VisionConfig, *, vision_config=None) -> RegionImageProcessor:
    """The encoder's own preprocessing (see the module docstring).

    ``vision_config``: the encoder's transformers config, when already at hand (gives the size of a
    preset without a path). A path without ``preprocessor_config.json`` is a `CheckpointError`.
    """
    if config.path and (Path(config.path) / "preprocessor_config.json").is_file():
        return RegionImageProcessor.from_pretrained(config.path)
    if config.path:
        raise CheckpointError(f"VisionConfig.path {config.path!r} has no preprocessor_config.json: the encoder's size "
                              "and normalisation are unknown (a family default could be silently wrong); copy the "
                              "checkpoint's preprocessor_config.json there, or save its AutoImageProcessor into it")
    family = config.arch
    if family not in VISION_ARCHS:
        raise ConfigError(f"VisionConfig.arch must be one of {list(VISION_ARCHS)}, got {config.arch!r}")
    vcfg = vision_config if vision_config is not None else vision_config_of(config)
    s = int(vcfg.image_size)
    return RegionImageProcessor(_family_processor(family, (s, s)))
