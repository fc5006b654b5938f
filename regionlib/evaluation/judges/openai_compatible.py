"""A judge behind any OpenAI-compatible chat-completions endpoint (vLLM, the local `serve` server, ...).

DLC-Bench's settings (REFERENCE §3): one user message per prompt, temperature 0, at most 300
new tokens. Configuration from arguments or the environment:

* ``REGIONLIB_JUDGE_BASE_URL`` — e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added when absent);
* ``REGIONLIB_JUDGE_MODEL`` — the served model's name;
* the API key (`ApiKey`): an argument, else ``REGIONLIB_JUDGE_API_KEY`` or ``OPENAI_API_KEY`` of
  *this* process. It is sent as a bearer token and never logged, never part of a ``repr``, an
  error message, a result or a cache key. On a Ray cluster a worker does not see the driver's
  environment: read the key on the driver (`ApiKey.resolve`) and hand it to the actors (the
  judge pool does).

Requests go through the ``openai`` client (``AsyncOpenAI`` on one event-loop thread per judge,
its own retries off). ``timeout`` bounds each attempt as a whole — connecting, waiting and
reading the body — not each socket read, so a server trickling bytes cannot hold a request past
it. Failures (connection errors, timeouts, HTTP 408 / 429 / 5xx, a body that is not a chat
completion) are retried at most ``max_retries`` times with exponential backoff (``backoff * 2**k``
seconds, capped at ``max_backoff``); other HTTP 4xx fail at once. A prompt that fails for good
comes back as a failed `Answer` (see `Judge.answer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path

from ...errors import JudgeError
from .base import Judge

__all__ = ["ApiKey", "OpenAICompatibleJudge", "OpenAICompatibleVLM", "multimodal_prompt"]

log = logging.getLogger(__name__)

#: Environment variables read (in order) by `ApiKey.resolve` when no key file is given.
API_KEY_VARIABLES = ("REGIONLIB_JUDGE_API_KEY", "OPENAI_API_KEY")


class ApiKey:
    """A bearer token that never shows itself: ``repr`` / ``str`` are ``ApiKey(<redacted>)``.

    It pickles with its value, so it can be passed to a Ray actor as an argument (unlike a
    ``runtime_env`` variable, which Ray's runtime-env agent writes into its log).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
            raise JudgeError("an API key must be a non-empty str without whitespace")
        self._value = value.strip()

    def reveal(self) -> str:
        """The token itself (for the Authorization header only)."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(<redacted>)"

    __str__ = __repr__

    def __getstate__(self):
        return self._value

    def __setstate__(self, value):
        self._value = value

    @classmethod
    def resolve(cls, key_file: str | os.PathLike | None = None) -> "ApiKey | None":
        """The key in ``key_file`` (its only content), else in `API_KEY_VARIABLES`, else None."""
        if key_file is not None:
            try:
                text = Path(key_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise JudgeError(f"API key file {key_file} cannot be read: {type(exc).__name__}") from None
            if not text.strip():
                raise JudgeError(f"API key file {key_file} is empty")
            return cls(text)
        for name in API_KEY_VARIABLES:
            if os.environ.get(name, "").strip():
                return cls(os.environ[name])
        return None


class OpenAICompatibleJudge(Judge):
    """Chat-completions client with a whole-request timeout, bounded retries, backoff and a concurrency limit.

    Args:
        base_url, model: see the module docstring (None: from the environment).
        api_key: an `ApiKey` or str (None: `ApiKey.resolve()` in this process; no key: no header).
        timeout: seconds per attempt, the whole request.
        max_retries: retries after the first attempt (so at most ``max_retries + 1`` requests).
        backoff, max_backoff: the first retry waits ``backoff`` s, doubling up to ``max_backoff``.
        temperature, max_tokens: generation settings (with the endpoint, part of the cache key).
        cache, concurrency, retry_unparsed: see `Judge` (default concurrency 8 requests in flight).

    ``failures`` counts failed attempts (each retried or, for the last one, reported).
    """

    backend = "openai-compatible"

    def __init__(self, *, base_url: str | None = None, model: str | None = None, api_key: ApiKey | str | None = None,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 temperature: float = 0.0, max_tokens: int = 300, cache=None, concurrency: int = 8,
                 retry_unparsed: bool = False):
        base_url = base_url or os.environ.get("REGIONLIB_JUDGE_BASE_URL")
        model = model or os.environ.get("REGIONLIB_JUDGE_MODEL")
        if not base_url or not model:
            raise JudgeError("the OpenAI-compatible judge needs base_url and model "
                             "(arguments, or REGIONLIB_JUDGE_BASE_URL and REGIONLIB_JUDGE_MODEL)")
        if not base_url.startswith(("http://", "https://")):
            raise JudgeError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not timeout > 0 or max_retries < 0 or backoff < 0:
            raise JudgeError(f"need timeout > 0, max_retries >= 0, backoff >= 0; "
                             f"got {timeout}, {max_retries}, {backoff}")
        import openai  # noqa: F401  (imported here, not in the first request: its import is not request time)

        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.url = self.base_url + "/chat/completions"
        super().__init__(model=model, settings={"endpoint": self.base_url, "temperature": temperature,
                                                "max_tokens": max_tokens},
                         cache=cache, concurrency=concurrency, retry_unparsed=retry_unparsed)
        self._api_key = ApiKey(api_key) if isinstance(api_key, str) else api_key or ApiKey.resolve()
        self.timeout, self.max_retries = float(timeout), max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.temperature, self.max_tokens = temperature, max_tokens
        self.failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client = None
        self._start_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(url={self.url!r}, model={self.model!r}, "
                f"api_key={'<set>' if self._api_key else '<unset>'})")

    def _run(self, coro):
        """Run ``coro`` on this judge's event-loop thread (started on first use) and wait for it."""
        with self._start_lock:
            if self._loop is None:
                import openai

                # without a key the client still wants one: a placeholder, and the header omitted per request
                self._client = openai.AsyncOpenAI(base_url=self.base_url, max_retries=0, timeout=self.timeout,
                                                  api_key=self._api_key.reveal() if self._api_key else "unused")
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="openai-judge", daemon=True)
                self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _attempt(self, content) -> str:
        import openai

        headers = {} if self._api_key else {"Authorization": openai.Omit()}
        completion = await asyncio.wait_for(self._client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": content}], temperature=self.temperature,
            max_tokens=self.max_tokens, extra_headers=headers), self.timeout)
        reply = completion.choices[0].message.content
        if not isinstance(reply, str):
            raise TypeError(f"message content is {type(reply).__name__}")
        return reply

    def _content(self, prompt: str):
        return prompt

    def _complete(self, prompt: str) -> str:
        import openai

        content = self._content(prompt)
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            try:
                return self._run(self._attempt(content))
            except openai.APIStatusError as exc:
                last = f"HTTP {exc.status_code}"
                if 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
                    raise JudgeError(f"judge endpoint {self.url} refused the request: {last}") from None
            except (asyncio.TimeoutError, openai.APITimeoutError):
                last = f"timed out after {self.timeout:g} s"
            except openai.APIConnectionError as exc:
                last = f"connection failed: {type(exc.__cause__ or exc).__name__}"
            except (openai.APIError, KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
                last = f"malformed response: {type(exc).__name__}: {str(exc)[:200]}"  # ValueError: bad JSON / UTF-8
            with self._count_lock:
                self.failures += 1
            log.warning("judge request to %s failed (attempt %d of %d): %s", self.url, attempt + 1,
                        self.max_retries + 1, last)
        raise JudgeError(f"judge endpoint {self.url} failed after {self.max_retries + 1} attempts: {last}")

    def close(self) -> None:
        """Close the HTTP client and stop the event-loop thread (a later request starts them again)."""
        with self._start_lock:
            if self._loop is None:
                return
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._loop = self._thread = self._client = None


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
