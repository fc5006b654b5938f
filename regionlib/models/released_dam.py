"""Released DAM checkpoints (NVlabs/describe-anything, ``LlavaLlamaModel``) as regionlib `DAM`s (REFERENCE §1b).

The directory (what the released ``LlavaMetaModel.save_pretrained`` writes)::

    config.json          model_type llava_llama; mm_vision_select_layer / _feature, image_aspect_ratio,
                         num_video_frames, the sub-configs
    llm/                 a transformers causal LM (Llama) + its tokenizer (a sentencepiece tokenizer.model)
    vision_tower/        SigLIP + vision_model.embeddings.mask_patch_embedding.*, preprocessor_config.json
    mm_projector/        MultimodalProjector: mm_projector_type (DAM-3B: mlp_downsample)
    context_provider/    ContextProvider (cross_attn_end_to_all): one cross-attention block per tower block

Every size and option is read from those files, never from a preset. The conversion (`convert_state`):

=====================================================================  ===================================
released key                                                           regionlib key
=====================================================================  ===================================
``vision_tower: vision_model.embeddings.mask_patch_embedding.*``       ``backbone.mask_embed.*``
``vision_tower: vision_model.*``                                       ``backbone.vision.*`` (the module's keys)
``context_provider: context_provider_module.layers.{i}.cross_attn.*``  ``backbone.adapters.{i}.{q,k,v,out}_proj.*``
``… layers.{i}.layer_norm1 / layer_norm2 / mlp.fc1 / mlp.fc2``        ``… norm1 / norm2 / fc1 / fc2``
``… layers.{i}.attn_factor / mlp_factor``                              ``… gamma / beta``
``mm_projector: layers.1 / layers.2 / layers.4`` (mlp_downsample)      ``projector.norm / fc1 / fc2``
``llm: *``                                                             ``lm_head.lm.*``
=====================================================================  ===================================

The context provider's blocks after the selected layer are computed by the released code but never
reach the LLM; regionlib builds no adapter there, and their keys are checked and left out. Every name
and shape is checked from the files' headers first, then the tensors are copied one at a time into the
float32 model (float16 / bfloat16 upcast exactly; a 3B checkpoint never sits in memory twice); any key
missing, left over or of another shape, and any config value regionlib does not implement, is a `CheckpointError` naming it.
The released server's ``--image_video_joint_checkpoint`` (recorded in no config) is the load option
``image_video_joint=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from .dam import DAM, DAMConfig, build_dam, vila_v1_prompt
from .lm_head import LMConfig
from .released import WeightFolder
from .vision import VisionConfig

__all__ = ["load_released_dam", "convert_state", "dam_config_of"]

PARTS = ("llm", "vision_tower", "mm_projector", "context_provider")
# config.json fields that do not change inference (provenance, training settings, dtype: weights load as float32)
_INERT = {"_name_or_path", "architectures", "transformers_version", "_attn_implementation_autoset", "model_dtype",
          "resume_path", "mm_projector_lr", "vision_tower_lr", "tune_language_model", "tune_vision_tower",
          "tune_mm_projector", "tune_context_provider", "torch_dtype", "dtype", "model_type", "llm_cfg",
          "vision_tower_cfg", "mm_projector_cfg", "context_provider_cfg", "hidden_size", "mm_hidden_size",
          "num_video_frames", "mm_vision_select_layer", "mm_vision_select_feature", "image_aspect_ratio"}
# fields whose value regionlib implements only as shown (anything else is refused)
_FIXED = {"mask_encoder_cfg": (None,), "s2": (None, False), "s2_scales": (None,), "s2_max_split_size": (None,),
          "mm_use_im_start_end": (False, None), "mm_use_im_patch_token": (False, None),
          "vision_resolution": (None, -1), "interpolate_mode": (None,)}
_CONTEXT_FIXED = {"context_provider_type": ("cross_attn_end_to_all",), "context_image_as_queries": (False,),
                  "treat_image_as_cimage": (False,), "context_provider_layer_indices": (None,),
                  "zero_init_output": (True,), "num_mask_channels": (1,), "num_channels": (3,)}
_CONTEXT_INERT = {"_name_or_path", "architectures", "transformers_version", "model_type", "torch_dtype", "dtype",
                  "attention_dropout", "residual_dropout", "masked_cross_attn", "crop_position_single_embedding",
                  "trainable_crop_position_embedding", "crop_embedding_mode"}  # the last three: other provider types
_CONTEXT_MATCH_TOWER = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "image_size",
                        "patch_size", "layer_norm_eps", "hidden_act")
# VILA's image_aspect_ratio -> DAMConfig.preprocess (the released process_image)
_ASPECT = {"resize": "pil", "pad": "pil_pad"}
# ContextProviderConfig's defaults for fields a saved config may leave out
_CONTEXT_DEFAULTS = {"hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}
_PROJECTOR_KEYS = {"mlp_downsample": {"layers.1.": "projector.norm.", "layers.2.": "projector.fc1.",
                                      "layers.4.": "projector.fc2."},
                   "mlp2x_gelu": {"layers.0.": "projector.0.", "layers.2.": "projector.2."},
                   "linear": {"layers.": "projector."}}
_ADAPTER_KEYS = {"cross_attn.q_proj.": "q_proj.", "cross_attn.k_proj.": "k_proj.", "cross_attn.v_proj.": "v_proj.",
                 "cross_attn.out_proj.": "out_proj.", "layer_norm1.": "norm1.", "layer_norm2.": "norm2.",
                 "mlp.fc1.": "fc1.", "mlp.fc2.": "fc2.", "attn_factor": "gamma", "mlp_factor": "beta"}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: missing or not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r}: expected a JSON object, got {type(data).__name__}")
    return data


def _check_fields(data: dict, where: str, inert: set, fixed: dict) -> None:
    for key, value in data.items():
        if key in fixed:
            if value not in fixed[key]:
                raise CheckpointError(f"{where}: {key} = {value!r} is not implemented in regionlib "
                                      f"(supported: {list(fixed[key])})")
        elif key not in inert:
            raise CheckpointError(f"{where}: field {key} = {value!r} is not one regionlib knows how to honour; "
                                  "it may change the model, so the checkpoint is refused")


def dam_config_of(path: str | Path, *, image_video_joint: bool = False) -> DAMConfig:
    """The `DAMConfig` of a released DAM directory (every option from its files; see the module docstring)."""
    d = Path(path)
    top = _json(d / "config.json")
    if top.get("model_type") != "llava_llama":
        raise CheckpointError(f"{str(d / 'config.json')!r}: model_type {top.get('model_type')!r} is not a released "
                              "DAM (llava_llama)")
    _check_fields(top, str(d / "config.json"), _INERT, _FIXED)
    for part in PARTS:
        if not (d / part / "config.json").is_file():
            raise CheckpointError(f"{str(d)!r}: {part}/config.json is missing (a released DAM has {list(PARTS)})")
    tower, proj, ctx = (_json(d / p / "config.json") for p in ("vision_tower", "mm_projector", "context_provider"))
    if tower.get("model_type") != "siglip_vision_model":
        raise CheckpointError(f"{str(d / 'vision_tower/config.json')!r}: model_type {tower.get('model_type')!r}; "
                              "released DAMs use a SigLIP tower (siglip_vision_model)")
    where = str(d / "context_provider/config.json")
    _check_fields({k: v for k, v in ctx.items() if k not in _CONTEXT_MATCH_TOWER}, where, _CONTEXT_INERT,
                  _CONTEXT_FIXED)
    from transformers import SiglipVisionConfig

    tower_full = SiglipVisionConfig(**tower)  # the tower's sizes with transformers' defaults filled in
    for key in _CONTEXT_MATCH_TOWER:
        mine = ctx.get(key, _CONTEXT_DEFAULTS.get(key))
        if mine != getattr(tower_full, key):
            raise CheckpointError(f"{where}: {key} = {mine!r} differs from the vision tower's "
                                  f"{getattr(tower_full, key)!r}; regionlib's adapters take the tower's sizes")
    if ctx.get("hidden_act", _CONTEXT_DEFAULTS["hidden_act"]) != "gelu_pytorch_tanh":
        raise CheckpointError(f"{where}: hidden_act = {ctx.get('hidden_act')!r}; regionlib's released adapter "
                              "implements gelu_pytorch_tanh")
    if tower.get("num_mask_channels") != 1:  # not a SiglipVisionConfig field: only in the saved dict
        raise CheckpointError(f"{str(d / 'vision_tower/config.json')!r}: num_mask_channels = "
                              f"{tower.get('num_mask_channels')!r}; DAM's tower embeds one mask channel")
    kind = proj.get("mm_projector_type")
    if kind not in _PROJECTOR_KEYS:
        raise CheckpointError(f"{str(d / 'mm_projector/config.json')!r}: mm_projector_type = {kind!r} is not "
                              f"implemented in regionlib (supported: {sorted(_PROJECTOR_KEYS)})")
    feature = top.get("mm_vision_select_feature", "patch")
    if feature != "cls_patch":
        raise CheckpointError(f"{str(d / 'config.json')!r}: mm_vision_select_feature = {feature!r} is not implemented "
                              "(SigLIP has no CLS token; released DAMs use 'cls_patch')")
    aspect = top.get("image_aspect_ratio", "resize")
    if aspect not in _ASPECT:
        raise CheckpointError(f"{str(d / 'config.json')!r}: image_aspect_ratio = {aspect!r} is not implemented "
                              f"(supported: {sorted(_ASPECT)})")
    layer = top.get("mm_vision_select_layer", -2)
    depth = tower_full.num_hidden_layers
    if not isinstance(layer, int) or not isinstance(depth, int) or not (-depth <= layer <= -1 or 1 <= layer <= depth):
        raise CheckpointError(f"{str(d / 'config.json')!r}: mm_vision_select_layer = {layer!r} does not select a "
                              f"block output of the {depth}-block tower")
    frames = top.get("num_video_frames") or 8
    if not isinstance(frames, int) or frames < 1:
        raise CheckpointError(f"{str(d / 'config.json')!r}: num_video_frames = {frames!r} is not a positive int")
    lm = LMConfig(path=str(d / "llm"), template=vila_v1_prompt(joint=image_video_joint))
    try:
        return DAMConfig(vision=VisionConfig(arch="siglip", path=str(d / "vision_tower")), lm=lm,
                         variant="full+focal-crop-xattn", adapter="released", feature_layer=layer, projector=kind,
                         masked_cross_attn=bool(ctx.get("masked_cross_attn", False)), preprocess=_ASPECT[aspect],
                         conversation="vila_v1", image_video_joint=bool(image_video_joint), num_video_frames=frames)
    except ConfigError as exc:
        raise CheckpointError(f"{str(d)!r}: {exc}") from exc


def convert_state(path: str | Path, model: DAM) -> dict[str, tuple[WeightFolder, str]]:
    """Where each of ``model``'s state-dict keys comes from: ``{regionlib key: (weights folder, released
    key)}`` (module docstring's table); a released key that maps nowhere is a `CheckpointError`."""
    d = Path(path)
    out: dict[str, tuple[WeightFolder, str]] = {}

    def put(key: str, folder: WeightFolder, source: str) -> None:
        if key in out:
            raise CheckpointError(f"{folder.folder.name}/{source}: maps to {key!r} twice")
        out[key] = (folder, source)

    # transformers 4 keeps SigLIP's weights under vision_model.*, transformers 5 without that prefix
    inner = "vision_model." if any(k.startswith("backbone.vision.vision_model.") for k in model.state_dict()) else ""
    tower = WeightFolder(d / "vision_tower")
    for key in tower.keys():
        if key.startswith("vision_model.embeddings.mask_patch_embedding."):
            put("backbone.mask_embed." + key.rsplit(".", 1)[1], tower, key)
        elif key.startswith("vision_model."):
            put("backbone.vision." + inner + key[len("vision_model."):], tower, key)
        else:
            raise CheckpointError(f"{str(d / 'vision_tower')!r}: unexpected weight {key!r}")
    projector, folder = _PROJECTOR_KEYS[model.config.projector], WeightFolder(d / "mm_projector")
    for key in folder.keys():
        src = next((s for s in projector if key.startswith(s)), None)
        if src is None:
            raise CheckpointError(f"{str(d / 'mm_projector')!r}: unexpected weight {key!r} for a "
                                  f"{model.config.projector} projector")
        put(projector[src] + key[len(src):], folder, key)
    used, folder = model.backbone.depth, WeightFolder(d / "context_provider")
    prefix = "context_provider_module.layers."
    for key in folder.keys():
        if not key.startswith(prefix):
            raise CheckpointError(f"{str(d / 'context_provider')!r}: unexpected weight {key!r}")
        index, _, rest = key[len(prefix):].partition(".")
        src = next((s for s in _ADAPTER_KEYS if rest.startswith(s)), None)
        if not index.isdigit() or src is None:
            raise CheckpointError(f"{str(d / 'context_provider')!r}: unexpected weight {key!r}")
        if int(index) < used:  # blocks after the selected layer never reach the LLM
            put(f"backbone.adapters.{index}.{_ADAPTER_KEYS[src]}{rest[len(src):]}", folder, key)
    folder = WeightFolder(d / "llm")
    for key in folder.keys():
        put("lm_head.lm." + key, folder, key)
    return out


@torch.no_grad()
def _load_strict(model: DAM, sources: dict[str, tuple[WeightFolder, str]], path: Path) -> None:
    """Check every key and shape from the headers first, then copy tensor by tensor (cast to float32)."""
    expected = model.state_dict()
    tied = {k for k, p in model.named_parameters(remove_duplicate=False)} - {k for k, _ in model.named_parameters()}
    shape = {k: folder.shapes[src] for k, (folder, src) in sources.items()}
    missing = sorted(k for k in expected if k not in sources and k not in tied)
    unexpected = sorted(k for k in sources if k not in expected)
    wrong = sorted(f"{k}: checkpoint {shape[k]} vs config {tuple(expected[k].shape)}"
                   for k in expected if k in sources and shape[k] != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(f"released DAM {str(path)!r} does not match the architecture its configs describe (regionlib keys): "
                              + "; ".join(([f"missing {missing[:8]}"] if missing else [])
                                          + ([f"unexpected {unexpected[:8]}"] if unexpected else [])
                                          + ([f"shape mismatch {wrong[:8]}"] if wrong else [])))
    by_folder: dict[int, tuple[WeightFolder, dict[str, str]]] = {}
    for key, (folder, src) in sources.items():
        by_folder.setdefault(id(folder), (folder, {}))[1][src] = key
    for folder, targets in by_folder.values():
        for src, tensor in folder.tensors(targets):
            target = expected[targets[src]]
            if tensor.is_floating_point() != target.is_floating_point():
                raise CheckpointError(f"{folder.folder.name}/{src}: stored as {tensor.dtype}, the model holds "
                                      f"{target.dtype}")
            target.copy_(tensor)


def load_released_dam(path: str | Path, *, image_video_joint: bool = False, device: str | torch.device = "cpu") -> DAM:
    """A released DAM directory as a regionlib `DAM` in eval mode (module docstring)."""
    from transformers import AutoTokenizer

    d = Path(path)
    config = dam_config_of(d, image_video_joint=image_video_joint)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(d / "llm"))
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise CheckpointError(f"{str(d / 'llm')!r}: the tokenizer does not load ({type(exc).__name__}: {exc})") from exc
    model = build_dam(config, tokenizer, load_weights=False)
    _load_strict(model, convert_state(d, model), d)
    return model.to(device).eval()
