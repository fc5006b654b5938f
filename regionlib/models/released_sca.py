"""Open the released SCA checkpoint (xk-huang/segment-caption-anything, ``ScaMultitaskV2Model``) as a
regionlib `SCA` (REFERENCE §4b).

The released directory (hub layout)::

    config.json              ScaConfig: model_type "sca", vision_config / prompt_encoder_config /
                             mask_caption_decoder_config (SAM's, + additional_num_hidden_layers,
                             num_caption_tokens, num_caption_heads), text_config, num_task_tokens
    pytorch_model.bin        a plain state dict (read with ``weights_only=True``), or model.safetensors,
                             or either sharded with its ``.index.json``
    preprocessor_config.json transformers' SamImageProcessor (optional: absent = its defaults)
    tokenizer files          the LM's own tokenizer (read with ``AutoTokenizer``)

Every size comes from config.json; an option regionlib does not implement (another architecture,
activation, more than one caption head, a rotary scaling, ...) is a `CheckpointError` naming the field
and its value. Weights (released name -> regionlib name), each used exactly once:

* SAM in Hugging Face ``SamModel`` layout -> segment-anything's ``Sam`` (``sam.*``): the inverse of
  transformers' SAM conversion (`hf_sam_key` gives the released name of each ``Sam`` key);
* ``mask_decoder.additional_transformer.*`` -> the mixer ``mixer.*`` (a segment-anything ``TwoWayTransformer``);
* ``mask_decoder.caption_tokens.weight`` ``(H * Q, C)`` -> ``queries`` ``(Q, C)`` (H = 1 caption head);
* ``task_tokens.weight`` ``(2 * T, D)`` -> ``task_tokens`` ``(T, D)``: rows ``T:2T``, the "caption" task
  (the released task order is recognition, caption; the recognition rows are not used);
* ``language_project.*`` -> ``proj.*``; ``language_model.*`` -> ``lm_head.lm.*``.

Documented duplicates: ``shared_image_embedding.positional_embedding`` and
``prompt_encoder.shared_embedding.positional_embedding`` are one buffer in the released model (either
may be absent; present twice they must be equal), and a tied LM's ``lm_head.weight`` equals its input
embedding (it may be absent).

Behaviour of the released code, kept as options of the built config: HF SAM's two-way attention blocks
use LayerNorm eps ``mask_caption_decoder_config.layer_norm_eps`` (1e-6; the final LayerNorm keeps
PyTorch's 1e-5) in the SAM decoder (`SamConfig.decoder_block_norm_eps`) and in the mixer
(`SCAConfig.mixer_block_norm_eps`); captions are
encoded as the released ``SCADataTransform`` does — the tokenizer's own special tokens (a Llama
tokenizer's BOS, right after the visual prefix: ``bos_position="target"``), truncated to
``model_max_length - 2`` = 18 tokens, then EOS; the loss is cross-entropy with label smoothing 0.1;
the LM reads ``[6 caption task tokens; projected queries]`` with no template text; the demo's 3 beams
are the default decoding (``num_beams=3``); decoding cleans up spaces before punctuation when the
tokenizer's config says ``clean_up_tokenization_spaces`` (transformers 4.x did so for GPT-2; 5.x skips it
for BPE tokenizers unless told). Unlike the demo's ``batch_decode``, regionlib strips the decoded text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..sam import SAM_PRESETS, SamConfig
from .lm_head import LMConfig, check_tokenizer
from .released import WeightFolder, released_kind
from .sca import SCA, SCAConfig, build_sca

__all__ = ["load_released_sca", "released_sca_config", "hf_sam_key", "RELEASED_ARCHITECTURE"]

RELEASED_ARCHITECTURE = "ScaMultitaskV2Model"
TASKS = ("recognition", "caption")  # the released TASK_TYPE_MAPPING order: task k owns task-token rows kT:(k+1)T
CAPTION_TASK = TASKS.index("caption")
MODEL_MAX_LENGTH = 20  # ScaProcessor's model_max_length in the released src/train.py: 20 - 2 caption tokens + EOS
DEMO_NUM_BEAMS = 3  # scripts/apps/sca_app.py run()
LABEL_SMOOTHING = 0.1  # the released forward's CrossEntropyLoss
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ---------------------------------------------------------------------------------------------- config.json
class _Section:
    """One (sub-)config of config.json: reads that name the field on failure (``text_config.n_embd``)."""

    def __init__(self, data, name: str, source: Path):
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: {name or 'config'} must be a JSON object, got {type(data).__name__}")
        self.data, self.name, self.source = data, name, source

    def _field(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def section(self, key: str) -> "_Section":
        return _Section(self.get(key, dict), self._field(key), self.source)

    def get(self, key: str, kind=int, *, default=...):
        """The value of ``key`` (of type ``kind``); absent: ``default`` if given, else `CheckpointError`."""
        if key not in self.data:
            if default is ...:
                raise CheckpointError(f"{self.source}: {self._field(key)} is missing")
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise CheckpointError(f"{self.source}: {self._field(key)} must be {getattr(kind, '__name__', kind)}, "
                                  f"got {value!r}")
        return value

    def positive(self, key: str) -> int:
        value = self.get(key)
        if value < 1:
            raise CheckpointError(f"{self.source}: {self._field(key)} must be >= 1, got {value}")
        return value

    def require(self, key: str, expected) -> None:
        """`CheckpointError` unless ``key`` is present and equals ``expected``: regionlib implements no other."""
        value = self.get(key, object)
        if value != expected or isinstance(value, bool) != isinstance(expected, bool):
            raise CheckpointError(f"{self.source}: {self._field(key)} = {value!r} is not implemented in regionlib "
                                  f"(only {expected!r})")


def _sam_config(cfg: _Section) -> SamConfig:
    """The `SamConfig` of config.json's vision / prompt-encoder / mask-decoder sections."""
    vision, prompt, dec = (cfg.section(k) for k in ("vision_config", "prompt_encoder_config",
                                                      "mask_caption_decoder_config"))
    width, dim = vision.positive("hidden_size"), dec.positive("hidden_size")
    image_size, patch = vision.positive("image_size"), vision.positive("patch_size")
    for key, value in (("hidden_act", "gelu"), ("layer_norm_eps", 1e-6), ("qkv_bias", True), ("use_abs_pos", True),
                       ("use_rel_pos", True), ("num_channels", 3), ("mlp_dim", 4 * width), ("output_channels", dim),
                       ("num_pos_feats", dim // 2), ("dropout", 0.0), ("attention_dropout", 0.0)):
        vision.require(key, value)
    for key, value in (("hidden_size", dim), ("image_size", image_size), ("patch_size", patch),
                       ("image_embedding_size", image_size // patch), ("num_point_embeddings", 4),
                       ("hidden_act", "gelu"), ("layer_norm_eps", 1e-6)):
        prompt.require(key, value)
    for key, value in (("hidden_act", "relu"), ("attention_downsample_rate", 2), ("num_multimask_outputs", 3),
                       ("iou_head_depth", 3), ("num_caption_heads", 1)):
        dec.require(key, value)
    eps = dec.get("layer_norm_eps", float)
    if not eps > 0:
        raise CheckpointError(f"{cfg.source}: mask_caption_decoder_config.layer_norm_eps must be > 0, got {eps}")
    attn = vision.get("global_attn_indexes", list)
    if not all(isinstance(i, int) and 0 <= i < vision.positive("num_hidden_layers") for i in attn):
        raise CheckpointError(f"{cfg.source}: vision_config.global_attn_indexes = {attn!r} must index the blocks")
    return SamConfig(
        encoder_embed_dim=width, encoder_depth=vision.positive("num_hidden_layers"),
        encoder_num_heads=vision.positive("num_attention_heads"), encoder_global_attn_indexes=tuple(attn),
        image_size=image_size, patch_size=patch, window_size=vision.positive("window_size"), prompt_embed_dim=dim,
        decoder_depth=dec.positive("num_hidden_layers"), decoder_mlp_dim=dec.positive("mlp_dim"),
        decoder_num_heads=dec.positive("num_attention_heads"), iou_head_hidden_dim=dec.positive("iou_head_hidden_dim"),
        mask_in_chans=prompt.positive("mask_input_channels"), decoder_block_norm_eps=eps,
    )


# Fields of text_config that must agree with the LM regionlib builds (`build_lm`), per architecture:
# name -> its transformers default (what the released code, too, uses when text_config omits it).
_GPT2_FIXED = {"activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
               "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "add_cross_attention": False,
               "tie_word_embeddings": True}
_LLAMA_FIXED = {"hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None,
                "attention_bias": False, "mlp_bias": False, "pretraining_tp": 1, "tie_word_embeddings": False}


def _lm_config(text: _Section) -> LMConfig:
    """The `LMConfig` of ``text_config`` (a GPT-2 or Llama causal LM) in the released SCA's ways."""
    arch = text.get("model_type", str)
    common = dict(path=None, template="{visual}", freeze=True, label_smoothing=LABEL_SMOOTHING,
                  max_target_tokens=MODEL_MAX_LENGTH - 2, chat_template=False, bos_position="target",
                  vocab_size=text.positive("vocab_size"))
    if arch == "gpt2":
        drops = {k: text.get(k, float) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
        if len(set(drops.values())) != 1:
            raise CheckpointError(f"{text.source}: text_config dropouts {drops} differ; regionlib's GPT-2 has one "
                                  "dropout probability")
        inner = text.get("n_inner", object, default=None)
        if inner is not None and (not isinstance(inner, int) or inner < 1):
            raise CheckpointError(f"{text.source}: text_config.n_inner must be a positive int or null, got {inner!r}")
        return LMConfig(arch="gpt2", width=text.positive("n_embd"), depth=text.positive("n_layer"),
                        heads=text.positive("n_head"), intermediate=inner, max_positions=text.positive("n_positions"),
                        dropout=drops["attn_pdrop"], **common)
    if arch == "llama":
        heads = text.positive("num_attention_heads")
        width = text.positive("hidden_size")
        kv = text.get("num_key_value_heads", object, default=None)
        head_dim = text.get("head_dim", object, default=None)
        if head_dim is not None and head_dim != width // heads:
            raise CheckpointError(f"{text.source}: text_config.head_dim = {head_dim!r} is not implemented in regionlib "
                                  f"(only hidden_size / num_attention_heads = {width // heads})")
        return LMConfig(arch="llama", width=width, depth=text.positive("num_hidden_layers"), heads=heads,
                        kv_heads=heads if kv is None else kv, intermediate=text.positive("intermediate_size"),
                        max_positions=text.positive("max_position_embeddings"),
                        dropout=text.get("attention_dropout", float, default=0.0), **common)
    raise CheckpointError(f"{text.source}: text_config.model_type = {arch!r} is not implemented in regionlib "
                          "(only 'gpt2' and 'llama')")


def _check_lm_fields(text: _Section, lm) -> None:
    """`CheckpointError` for a ``text_config`` field whose value the LM built from the `LMConfig` does not have."""
    arch = lm.config.model_type
    fixed = _GPT2_FIXED if arch == "gpt2" else _LLAMA_FIXED
    built = lm.config.to_dict()
    rope = built.get("rope_parameters") or {}
    for key, default in fixed.items():
        want = text.data.get(key, default)
        have = rope.get("rope_theta", built.get("rope_theta")) if key == "rope_theta" else built.get(key, default)
        if key == "rope_scaling":
            have = None if rope.get("rope_type", "default") == "default" else rope
        if want != have:
            raise CheckpointError(f"{text.source}: text_config.{key} = {want!r} is not implemented in regionlib "
                                  f"(its {arch} LM has {have!r})")


def _check_preprocessor(d: Path, image_size: int) -> None:
    """preprocessor_config.json must describe what `SCA.preprocess` does (segment-anything's steps, within
    5e-7 of ``SamImageProcessor``'s): long side to the SAM input, bilinear, ImageNet mean / std, padding.

    Absent, transformers' ``SamImageProcessor`` defaults apply (those of facebook/sam-vit-*: a 1024 input).
    """
    path = d / "preprocessor_config.json"
    if not path.is_file():
        if image_size != 1024:
            raise CheckpointError(f"{d}: preprocessor_config.json is missing and the SAM input is {image_size} px, "
                                  "not SamImageProcessor's default 1024")
        return
    try:
        pre = _Section(json.loads(path.read_text()), "", path)
    except ValueError as exc:
        raise CheckpointError(f"{path}: not JSON ({exc})") from exc
    for key, value in (("image_processor_type", "SamImageProcessor"), ("do_resize", True), ("do_rescale", True),
                       ("do_normalize", True), ("do_pad", True), ("do_convert_rgb", True),
                       ("size", {"longest_edge": image_size}),
                       ("pad_size", {"height": image_size, "width": image_size}),
                       ("resample", 2)):
        pre.require(key, value)
    factor = pre.get("rescale_factor", float)
    if abs(factor - 1 / 255) > 1e-12:
        raise CheckpointError(f"{path}: rescale_factor = {factor!r} is not implemented in regionlib (only 1/255)")
    for key, value in (("image_mean", IMAGENET_MEAN), ("image_std", IMAGENET_STD)):
        got = pre.get(key, list)
        if len(got) != 3 or any(abs(a - b) > 1e-9 for a, b in zip(got, value)):
            raise CheckpointError(f"{path}: {key} = {got!r} is not implemented in regionlib (only ImageNet's {value})")


def _sam_preset(cfg: SamConfig) -> str:
    """Name of a SAM preset equal to ``cfg`` (registered under a content-derived name when new)."""
    for name, preset in SAM_PRESETS.items():
        if preset == cfg:
            return name
    name = "released-sca-" + hashlib.sha1(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]
    SAM_PRESETS[name] = cfg
    return name


def _read_config(d: Path) -> _Section:
    try:
        raw = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{d}: config.json missing or not JSON ({exc})") from exc
    return _Section(raw, "", d / "config.json")


def released_sca_config(path: str | Path) -> SCAConfig:
    """The regionlib `SCAConfig` of a released SCA directory (registers its SAM architecture as a preset)."""
    d = Path(path)
    cfg = _read_config(d)
    cfg.require("model_type", "sca")
    cfg.require("architectures", [RELEASED_ARCHITECTURE])
    cfg.require("use_decoder_only_language_model", True)
    sam = _sam_config(cfg)
    dec = cfg.section("mask_caption_decoder_config")
    _check_preprocessor(d, sam.image_size)
    return SCAConfig(sam_preset=_sam_preset(sam), lm=_lm_config(cfg.section("text_config")),
                     num_queries=dec.positive("num_caption_tokens"),
                     mixer_depth=dec.positive("additional_num_hidden_layers"),
                     mixer_heads=sam.decoder_num_heads, mixer_mlp_dim=sam.decoder_mlp_dim,
                     num_task_tokens=cfg.positive("num_task_tokens"), mixer_inputs="queries+sam-tokens",
                     multimask_output=True, mixer_block_norm_eps=sam.decoder_block_norm_eps,
                     num_beams=DEMO_NUM_BEAMS)


# ---------------------------------------------------------------------------------------------- weights
# segment-anything name (regex) -> HF SamModel name, applied in order: transformers' SAM conversion, inverted
_SAM_RULES = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
    (r"^vision_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"^vision_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
    (r"^vision_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
    (r"^vision_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
    (r"^vision_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
    (r"\.norm(\d)\.", r".layer_norm\1."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$", "shared_image_embedding.positional_embedding"),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
]
_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(.*)$")
MLP_DEPTH = 3  # the hypernetwork MLPs', and the IoU head's (iou_head_depth, required to be 3)
_POSITIONAL = ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")


def hf_sam_key(key: str) -> str:
    """The Hugging Face ``SamModel`` name of segment-anything ``Sam`` state-dict key ``key`` (the decoder's
    3-layer MLP heads: ``layers.0`` -> ``proj_in``, ``layers.1`` -> ``layers.0``, ``layers.2`` -> ``proj_out``)."""
    for pattern, repl in _SAM_RULES:
        key = re.sub(pattern, repl, key)
    m = _MLP.match(key)
    if m:
        i = int(m.group(2))
        part = "proj_in" if i == 0 else "proj_out" if i == MLP_DEPTH - 1 else f"layers.{i - 1}"
        key = f"{m.group(1)}.{part}.{m.group(3)}"
    return key


def _released_key(key: str) -> str:
    """The released name of regionlib `SCA` state-dict key ``key`` (``task_tokens``: sliced, see `_convert`)."""
    if key.startswith("sam."):
        return hf_sam_key(key[len("sam."):])
    if key.startswith("mixer."):
        return hf_sam_key("mask_decoder.additional_transformer." + key[len("mixer."):])
    if key.startswith("lm_head.lm."):
        return "language_model." + key[len("lm_head.lm."):]
    fixed = {"queries": "mask_decoder.caption_tokens.weight", "task_tokens": "task_tokens.weight",
             "proj.weight": "language_project.weight", "proj.bias": "language_project.bias"}
    if key not in fixed:
        raise CheckpointError(f"regionlib SCA weight {key!r} has no released counterpart")
    return fixed[key]


def _module_key(root: torch.nn.Module, module: torch.nn.Module | None, prefix: str) -> str | None:
    """``prefix + name + ".weight"`` of ``module`` inside ``root`` (None when absent)."""
    return next((f"{prefix}{n}.weight" for n, m in root.named_modules() if m is module), None) if module else None


def _convert(model: SCA, released: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The regionlib state dict of ``model`` from the released one, each released key used once (the
    duplicates of the module docstring are checked equal); problems -> one `CheckpointError` naming them."""
    released = dict(released)
    problems: list[str] = []
    if all(k in released for k in _POSITIONAL):
        if not torch.equal(released[_POSITIONAL[0]], released[_POSITIONAL[1]]):
            problems.append(f"{_POSITIONAL[0]} and {_POSITIONAL[1]} (one buffer in the released model) differ")
        del released[_POSITIONAL[1]]
    elif _POSITIONAL[1] in released:
        released[_POSITIONAL[0]] = released.pop(_POSITIONAL[1])
    lm = model.lm_head.lm
    inp = _module_key(lm, lm.get_input_embeddings(), "lm_head.lm.")
    outp = _module_key(lm, lm.get_output_embeddings(), "lm_head.lm.")
    tied = outp is not None and lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    n_task = model.config.num_task_tokens
    out, used = {}, set()
    for key, want in model.state_dict().items():
        name = _released_key(key)
        if tied and key == outp:  # the input embedding's tensor; a stored copy must equal it
            if name in released:
                used.add(name)
                if not torch.equal(released[name], released.get(_released_key(inp), released[name])):
                    problems.append(f"{name!r} differs from {_released_key(inp)!r}, which text_config ties to it")
            continue
        if name not in released:
            problems.append(f"missing {name!r} (for {key})")
            continue
        used.add(name)
        value = released[name]
        if key == "task_tokens":
            rows = (len(TASKS) * n_task, want.shape[1])
            if tuple(value.shape) != rows:
                problems.append(f"{name!r}: shape {tuple(value.shape)}, config.json gives {rows} "
                                f"({len(TASKS)} tasks x num_task_tokens {n_task})")
                continue
            value = value[CAPTION_TASK * n_task: (CAPTION_TASK + 1) * n_task]
        if tuple(value.shape) != tuple(want.shape):
            problems.append(f"{name!r}: shape {tuple(value.shape)}, config.json gives {tuple(want.shape)}")
        elif value.is_floating_point() != want.is_floating_point():
            problems.append(f"{name!r}: dtype {value.dtype}, expected {want.dtype}")
        else:
            out[key] = value.to(want.dtype)
    unexpected = sorted(set(released) - used)
    if unexpected:
        problems.append(f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
    if problems:
        raise CheckpointError(f"{source} disagrees with its config.json: " + "; ".join(problems))
    return out


def load_released_sca(path: str | Path, *, device: str | torch.device = "cpu") -> SCA:
    """Open a released SCA directory (module docstring) as a regionlib `SCA`, in eval mode on ``device``.

    Raises `CheckpointError` naming the field / key for a config option regionlib does not implement,
    a missing, unexpected or mis-shaped weight, or a tokenizer that does not fit the LM.
    """
    from transformers import AutoTokenizer

    d = Path(path)
    if released_kind(d) != "sca":
        raise CheckpointError(f"{d}: not a released SCA directory (config.json with model_type 'sca')")
    config = released_sca_config(d)
    try:  # decoding cleans up spaces when tokenizer_config.json says so, as transformers 4.x did for GPT-2's BPE too
        tokenizer = AutoTokenizer.from_pretrained(
            str(d), clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{d}: the LM's tokenizer does not load ({exc})") from exc
    if tokenizer.eos_token_id is None:
        raise CheckpointError(f"{d}: the tokenizer names no eos token (captions end with it)")
    vocab = config.lm.vocab_size
    if len(tokenizer) > vocab:
        raise CheckpointError(f"{d}: the tokenizer has {len(tokenizer)} tokens, text_config.vocab_size is {vocab}")
    text = _read_config(d).section("text_config")
    eos = text.get("eos_token_id", object, default=None)
    if eos is not None and tokenizer.eos_token_id not in (eos if isinstance(eos, list) else [eos]):
        raise CheckpointError(f"{d}: text_config.eos_token_id = {eos!r} (where the released decoding stops) is not the "
                              f"tokenizer's eos token {tokenizer.eos_token!r} = {tokenizer.eos_token_id}")
    try:
        model = build_sca(config, tokenizer, load_weights=False)
    except ConfigError as exc:
        raise CheckpointError(f"{d}: config.json gives an SCA regionlib cannot build ({exc})") from exc
    _check_lm_fields(text, model.lm_head.lm)
    check_tokenizer(model.lm_head.lm, tokenizer)
    weights = WeightFolder(d)
    model.load_state_dict(_convert(model, weights.state(), str(weights.source)), strict=False)  # all but a tied output embedding
    return model.to(device).eval()

