"""Dataset readers, one module per format; each yields `ImageRecord`s (see `base`).

Modules: `coco` (COCO and LVIS instances), `visual_genome` (region descriptions, scene
graphs, densecap splits), `refcoco` (RefCOCO / RefCOCO+ / RefCOCOg), `grefcoco`, `panoptic`
(COCO panoptic PNG + JSON), `pancap` (COCONut-PanCap grounded captions), `sa1b`, `dlc_bench`,
`maskgroups_hq`; `hf` builds HF datasets from any reader's records.
"""

from .base import DataFormatError, ImageRecord, ReadReport, SkippedRecord

__all__ = ["ImageRecord", "ReadReport", "SkippedRecord", "DataFormatError"]
