"""LLM judges behind one interface, ``judge.ask(prompts) -> replies``, with a persistent answer cache.

Backends: `OpenAICompatibleJudge` (an HTTP endpoint such as vLLM, through the ``openai`` client),
`TransformersJudge` (a local causal LM), `RuleJudge` (deterministic keyword matching over
RegionWorld's vocabulary). Every call goes through an `AnswerCache` (a directory of per-writer
JSON-lines files, safe on NFS), so reruns make no calls and interrupted runs resume; replies that
do not parse are cached with that status. `JudgePool` (``pool``) runs a judge per endpoint on Ray.
`judges.serve.serve_judge` / ``python -m regionlib.evaluation.judges.serve`` put any judge behind a
local OpenAI-compatible endpoint (127.0.0.1), with fault injection for tests.
"""

from .base import Judge
from .cache import Answer, AnswerCache, default_cache_path
from .local import TransformersJudge
from .openai_compatible import ApiKey, OpenAICompatibleJudge, OpenAICompatibleVLM, multimodal_prompt
from .pool import JudgePool, JudgeSpec, run_judge_eval
from .replies import reply_parses
from .rule import RuleJudge

__all__ = ["Judge", "Answer", "AnswerCache", "default_cache_path", "ApiKey", "OpenAICompatibleJudge",
           "OpenAICompatibleVLM", "multimodal_prompt", "TransformersJudge", "RuleJudge", "JudgePool", "JudgeSpec",
           "run_judge_eval", "reply_parses"]
