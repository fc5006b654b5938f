"""Evaluation of region captioning, grounding and mask-group selection (issue 4/6).

* `evaluate` / ``python -m regionlib.evaluation`` — one entry point over every metric (`api`,
  file formats in `formats`);
* `caption_metrics` (pycocoevalcap 1.2's numbers) over `ptb` (its PTB tokens, in process where
  proven, Java otherwise), `fast_captions` (in-process BLEU, ROUGE-L, CIDEr-D) and `meteor`
  (parallel METEOR); `table` — every score as tidy rows (id, method, metric, value);
* `content` — SCA's Noun / Verb recall, Osprey's semantic similarity / IoU, CAPTURE;
* `segmentation` — PQ (panopticapi), gIoU / cIoU / N-acc / T-acc (gRefCOCO);
* `judges` — LLM judges with a persistent answer cache (HTTP, local transformers, rules) and a
  local OpenAI-compatible server; `dlc_bench` (DAM's DLC-Bench), `amber` (seed 001 / AMBER),
  `clair` (CLAIR);
* `figures` and `report` — score distributions, failure galleries, HTML reports.

Heavy dependencies (Java, spaCy, sentence-transformers, torch, matplotlib) load on first use.
"""

from .api import METRICS, evaluate
from .caption_metrics import CAPTION_METRICS, CaptionScores, JavaUnavailable, caption_scores
from .dlc_bench import DLCBenchScores, evaluate_dlc_bench, replay_released_cache
from .formats import load_predictions, load_question_file, load_references
from .segmentation import grefcoco_scores, panoptic_quality

__all__ = ["METRICS", "evaluate", "CAPTION_METRICS", "CaptionScores", "JavaUnavailable",
           "caption_scores", "DLCBenchScores", "evaluate_dlc_bench", "replay_released_cache", "load_predictions",
           "load_references", "load_question_file", "panoptic_quality", "grefcoco_scores"]
