"""Models (layer 2): LM head, DAM localized backbone, SCA mixer, RAS selection, mask-pooled captioner.

Every model is a `RegionModel` built from a config dataclass; named presets live in one registry
(`create_model`, `list_presets`); checkpoints are one self-contained directory — safetensors + JSON +
the parts' own configs, tokenizer and image processor (`RegionModel.save_pretrained` / `from_pretrained`). Real checkpoints load from
their own ``config.json`` (`build_vision_encoder`, `build_image_processor`, `build_lm_head`).
"""

from .checkpoint import MODEL_KINDS, RegionModel, parameter_report
from .dam import DAM, VARIANTS, DAMConfig, LocalizedBackbone, build_dam
from .lm_head import LMConfig, LMHead, build_lm_head, check_tokenizer, default_lora_targets
from .mask_tokens import FeatureEncoders, MaskTokenizer
from .pooled_captioner import (GroundedCaption, GroundedPhrase, PooledCaptioner, PooledCaptionerConfig,
                               build_pooled_captioner, format_pgc, parse_pgc)
from .presets import PRESETS, create_model, list_presets, preset_config
from .ras import RAS, RASConfig, Selection, build_ras
from .sca import MIXER_INPUTS, SCA, SCAConfig, build_sca, sca_trainable_parameters
from .tokenizer import builtin_tokenizer, train_bpe_tokenizer, train_word_tokenizer
from .vision import (SUPPORTED_VISION, RegionImageProcessor, VisionConfig, build_image_processor, build_vision_encoder,
                     vision_parts)

__all__ = [
    "MODEL_KINDS", "RegionModel", "parameter_report",
    "DAM", "VARIANTS", "DAMConfig", "LocalizedBackbone", "build_dam",
    "LMConfig", "LMHead", "build_lm_head", "check_tokenizer", "default_lora_targets",
    "FeatureEncoders", "MaskTokenizer",
    "GroundedCaption", "GroundedPhrase", "PooledCaptioner", "PooledCaptionerConfig", "build_pooled_captioner",
    "format_pgc", "parse_pgc",
    "PRESETS", "create_model", "list_presets", "preset_config",
    "RAS", "RASConfig", "Selection", "build_ras",
    "MIXER_INPUTS", "SCA", "SCAConfig", "build_sca", "sca_trainable_parameters",
    "builtin_tokenizer", "train_bpe_tokenizer", "train_word_tokenizer",
    "SUPPORTED_VISION", "RegionImageProcessor", "VisionConfig", "build_image_processor", "build_vision_encoder",
    "vision_parts",
]
