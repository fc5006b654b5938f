"""Models: LM head, DAM localized backbone, SCA mixer, captioners, presets (``create_model``)."""

from .captioner import CaptionerConfig, RegionCaptioner, build_captioner, collate
from .dam import VARIANTS, LocalizedBackbone
from .lm_head import LMHead
from .presets import PRESETS, create_model, regionworld_tokenizer
