"""Self-labeling (DLC-SDP, seed 003 §4; seed 001's parse-and-filter): the pure logic (`filters`),
stage 2's detector, SAM box masks and class-conditioned captions (`stage2`), the Ray Data shard
workers of each stage (`stages`) and the job's command line (`cli`)."""

from .filters import (
    KEYWORD_EXPANSION_PROMPT, keyword_expansion_prompt, stage1_images, Proposal, ConfidenceThresholds,
    passes_thresholds, filter_proposals, select_per_image, noun_phrases, spacy_pipeline, CaptionerSimilarity, CLIPSimilarity,
    ground_phrases, drop_lowest_fraction
)

__all__ = ["KEYWORD_EXPANSION_PROMPT", "keyword_expansion_prompt", "stage1_images", "Proposal", "ConfidenceThresholds", "passes_thresholds", "filter_proposals", "select_per_image", "noun_phrases", "spacy_pipeline", "CaptionerSimilarity", "CLIPSimilarity", "ground_phrases", "drop_lowest_fraction"]
