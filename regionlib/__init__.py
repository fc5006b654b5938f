"""regionlib — region-level vision-language research library.

Layer 1 (primitives) is importable from here; models, data, evaluation and jobs live in
their subpackages (``regionlib.models``, ``regionlib.data``, ``regionlib.evaluation``).
"""

from .boxes import box_iou, clip_boxes, scale_boxes, validate_boxes
from .errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    InvalidBoxError,
    InvalidImageError,
    InvalidMaskError,
    InvalidPromptError,
    JudgeError,
    RegionLibError,
)
from .focal import crop_boxes, crop_to_image, focal_prompt
from .images import load_image, to_rgb_uint8
from .masks import boxes_to_masks, decode_rle, encode_rle, interior_points, mask_iou, masks_to_boxes, resize_masks
from .pooling import mask_pool
from .prompts import Prompt, cpb_points, rpb_points, rpm_points
from .regions import Regions

__version__ = "0.1.0"
