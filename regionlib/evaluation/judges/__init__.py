"""LLM judges behind one interface, ``judge.ask(prompts) -> replies``, with a persistent answer cache.

Backends: `OpenAICompatibleJudge` (an HTTP endpoint such as vLLM), `TransformersJudge` (a local
causal LM), `RuleJudge` (deterministic keyword matching over RegionWorld's vocabulary). Every
call goes through an `AnswerCache` (SQLite), so reruns make no calls and interrupted runs resume.
`judges.serve.serve_judge` / ``python -m regionlib.evaluation.judges.serve`` put any judge behind a local
OpenAI-compatible endpoint (127.0.0.1), with fault injection for tests.
"""

from .base import Judge
from .cache import AnswerCache, default_cache_path
from .local import TransformersJudge
from .openai_compatible import OpenAICompatibleJudge, OpenAICompatibleVLM, multimodal_prompt
from .rule import RuleJudge

__all__ = ["Judge", "AnswerCache", "default_cache_path", "OpenAICompatibleJudge", "OpenAICompatibleVLM",
           "multimodal_prompt", "TransformersJudge", "RuleJudge"]
