"""A judge behind any OpenAI-compatible chat-completions endpoint (vLLM, the local `serve` server, ...).

DLC-Bench's settings (REFERENCE §3): one user message per prompt, temperature 0, at most 300
new tokens. Configuration from arguments or the environment:

* ``REGIONLIB_JUDGE_BASE_URL`` — e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added when absent);
* ``REGIONLIB_JUDGE_MODEL`` — the served model's name;
* ``REGIONLIB_JUDGE_API_KEY`` or ``OPENAI_API_KEY`` — sent as a bearer token, never logged,
  never part of ``repr`` or of an error message.

Each request has a timeout; failures (connection errors, timeouts, HTTP 429 / 5xx, a body that
is not a chat completion) are retried at most ``max_retries`` times with exponential backoff
(``backoff * 2**k`` seconds, capped at ``max_backoff``); other HTTP 4xx fail at once. Only the
standard library is used.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request

from ...errors import JudgeError
from .base import Judge

__all__ = ["OpenAICompatibleJudge", "OpenAICompatibleVLM", "multimodal_prompt"]

log = logging.getLogger(__name__)


class OpenAICompatibleJudge(Judge):
    """Chat-completions client with timeouts, bounded retries, backoff and a concurrency limit.

    Args:
        base_url, model, api_key: see the module docstring (None: from the environment).
        timeout: seconds per request.
        max_retries: retries after the first attempt (so at most ``max_retries + 1`` requests).
        backoff, max_backoff: the first retry waits ``backoff`` s, doubling up to ``max_backoff``.
        temperature, max_tokens: generation settings (part of the cache key).
        cache, concurrency: see `Judge` (default concurrency 8 requests in flight).

    ``failures`` counts failed attempts (each retried or, for the last one, raised).
    """

    backend = "openai-compatible"

    def __init__(self, *, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 temperature: float = 0.0, max_tokens: int = 300, cache=None, concurrency: int = 8):
        base_url = base_url or os.environ.get("REGIONLIB_JUDGE_BASE_URL")
        model = model or os.environ.get("REGIONLIB_JUDGE_MODEL")
        if not base_url or not model:
            raise JudgeError("the OpenAI-compatible judge needs base_url and model "
                             "(arguments, or REGIONLIB_JUDGE_BASE_URL and REGIONLIB_JUDGE_MODEL)")
        if not base_url.startswith(("http://", "https://")):
            raise JudgeError(f"base_url must start with http:// or https://, got {base_url!r}")
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise JudgeError(f"need timeout > 0, max_retries >= 0, backoff >= 0; "
                             f"got {timeout}, {max_retries}, {backoff}")
        super().__init__(model=model, settings={"temperature": temperature, "max_tokens": max_tokens}, cache=cache,
                         concurrency=concurrency)
        base = base_url.rstrip("/")
        self.url = (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
        self._api_key = api_key or os.environ.get("REGIONLIB_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.temperature, self.max_tokens = temperature, max_tokens
        self.failures = 0

    def __repr__(self) -> str:
        return (f"OpenAICompatibleJudge(url={self.url!r}, model={self.model!r}, "
                f"api_key={'<set>' if self._api_key else '<unset>'})")

    def _request(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            payload = json.loads(resp.read().decode("utf-8"))
        content = payload["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise TypeError(f"message content is {type(content).__name__}")
        return content

    def _content(self, prompt: str):
        return prompt

    def _complete(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": self._content(prompt)}],
                           "temperature": self.temperature, "max_tokens": self.max_tokens}).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            try:
                return self._request(body)
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    raise JudgeError(f"judge endpoint {self.url} refused the request: {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except (KeyError, IndexError, TypeError, ValueError) as exc:  # ValueError covers bad JSON / UTF-8
                last = f"malformed response: {type(exc).__name__}: {exc}"
            with self._count_lock:
                self.failures += 1
            log.warning("judge request to %s failed (attempt %d of %d): %s", self.url, attempt + 1,
                        self.max_retries + 1, last)
        raise JudgeError(f"judge endpoint {self.url} failed after {self.max_retries + 1} attempts: {last}")


def multimodal_prompt(parts) -> str:
    """Text and PNG images in order -> one prompt string for `OpenAICompatibleVLM.ask`.

    ``parts``: ``str`` (text) or ``bytes`` (a PNG file's bytes). The string is canonical JSON, so the
    answer cache keys on the text and the exact image bytes.
    """
    import base64

    items = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            items.append({"type": "text", "text": part})
        elif isinstance(part, (bytes, bytearray)) and bytes(part[:8]) == b"\x89PNG\r\n\x1a\n":
            items.append({"type": "image_url",
                          "image_url": {"url": "data:image/png;base64," + base64.b64encode(bytes(part)).decode("ascii")}})
        else:
            raise JudgeError(f"parts[{i}] must be str or PNG bytes, got {type(part).__name__}")
    if not items:
        raise JudgeError("parts must hold at least one text or image")
    return json.dumps(items, sort_keys=True, separators=(",", ":"))


class OpenAICompatibleVLM(OpenAICompatibleJudge):
    """A vision-language model behind an OpenAI-compatible endpoint (e.g. vLLM serving VILA / Qwen-VL).

    Prompts are `multimodal_prompt` strings; each becomes one user message whose content is the
    list of text and ``image_url`` (base64 PNG data URL) parts. Same retries, concurrency and answer
    cache as the judge. Environment: ``REGIONLIB_VLM_BASE_URL`` / ``REGIONLIB_VLM_MODEL`` (else the
    judge's variables).
    """

    backend = "openai-compatible-vlm"

    def __init__(self, *, base_url: str | None = None, model: str | None = None, **kwargs):
        super().__init__(base_url=base_url or os.environ.get("REGIONLIB_VLM_BASE_URL"),
                         model=model or os.environ.get("REGIONLIB_VLM_MODEL"), **kwargs)

    def _content(self, prompt: str):
        try:
            parts = json.loads(prompt)
        except ValueError:
            raise JudgeError("OpenAICompatibleVLM prompts must come from multimodal_prompt(...)") from None
        return parts
