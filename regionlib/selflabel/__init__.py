"""Self-labeling (DLC-SDP, seed 003 §4; seed 001's parse-and-filter): the pure logic (`filters`),
stage 2's detector, SAM box masks and class-conditioned captions (`stage2`), the Ray Data shard
workers of each stage (`stages`), the records they write (`records`), the job's settings (`config`)
and its command line (`cli`)."""

from .filters import (
    KEYWORD_EXPANSION_PROMPT, keyword_expansion_prompt, stage1_images, Proposal, ConfidenceThresholds,
    passes_thresholds, filter_proposals, select_per_image, noun_phrases, spacy_pipeline, CaptionerSimilarity, CLIPSimilarity,
    ground_phrases, drop_lowest_fraction
)
from .config import LabelSettings, RunSettings, SelfLabelJob
from .records import SelfLabelRecord, read_records, self_labeled_regions, write_records

__all__ = ["KEYWORD_EXPANSION_PROMPT", "keyword_expansion_prompt", "stage1_images", "Proposal", "ConfidenceThresholds", "passes_thresholds", "filter_proposals", "select_per_image", "noun_phrases", "spacy_pipeline", "CaptionerSimilarity", "CLIPSimilarity", "ground_phrases", "drop_lowest_fraction",
           "LabelSettings", "RunSettings", "SelfLabelJob", "SelfLabelRecord", "read_records", "self_labeled_regions",
           "write_records"]
