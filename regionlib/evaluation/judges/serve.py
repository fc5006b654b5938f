"""A tiny OpenAI-compatible chat-completions server over any `Judge`, bound to 127.0.0.1 only.

Serves ``POST /v1/chat/completions`` (the last message's content is the prompt; of a multimodal
content list only the text parts reach the judge, the images are counted) and
``GET /v1/models``. Usable from a notebook or a test (`serve_judge`, a context manager) and
from the shell::

    python -m regionlib.evaluation.judges.serve --model path/to/saved_causal_lm --port 8001
    python -m regionlib.evaluation.judges.serve --rule-vocabulary vocabulary.json

Fault injection for testing clients (`Faults`): every ``fail_every``-th request answers HTTP
500; ``delay`` seconds of latency (every request, or every ``delay_every``-th); every
``bad_json_every``-th response body is not JSON; every ``garbage_every``-th reply is the text
``"###"`` in a well-formed completion (a reply that matches no choice); with ``trickle`` every
response body is sent one byte per ``trickle`` seconds (a server that never stalls a read long
enough for a per-read timeout). Requests are counted from 1 in arrival order. Judge calls are
serialised (one model, many HTTP threads).

With ``api_key`` the server answers HTTP 401 to a request without ``Authorization: Bearer
<api_key>`` (``unauthorized`` counts them), like a vLLM server started with ``--api-key``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ...errors import JudgeError
from .base import Judge

__all__ = ["Faults", "JudgeServer", "serve_judge"]

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Faults:
    """Injected faults (0 disables each); see the module docstring."""

    fail_every: int = 0
    delay: float = 0.0
    delay_every: int = 0
    bad_json_every: int = 0
    garbage_every: int = 0
    trickle: float = 0.0


def _every(k: int, n: int) -> bool:
    return k > 0 and n % k == 0


class JudgeServer:
    """Threaded HTTP server answering chat completions with ``judge``; ``requests`` counts requests.

    Use as a context manager (starts a background thread, stops and closes on exit), or call
    `serve_forever` from a command line.
    """

    def __init__(self, judge: Judge, *, port: int = 0, faults: Faults | None = None, api_key: str | None = None):
        self.judge, self.faults = judge, faults or Faults()
        self._api_key = api_key
        self.requests = 0
        self.unauthorized = 0  # requests refused for a missing or wrong bearer token
        self.images = 0  # image parts received (multimodal requests; the judge sees only their text)
        self._count_lock, self._judge_lock = threading.Lock(), threading.Lock()
        self.httpd = ThreadingHTTPServer((HOST, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{HOST}:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Silenced: requests are counted (``server.requests``), never logged (prompts may be private)."""

            def _send(self, code: int, data: bytes, content_type: str = "application/json"):
                try:
                    self._write(code, data, content_type)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. its timeout): nothing to answer

            def _write(self, code: int, data: bytes, content_type: str):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.faults.trickle and self.command == "POST":
                    for i in range(len(data)):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(server.faults.trickle)
                else:
                    self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    self._send(404, b'{"error": "not found"}')
                    return
                self._send(200, json.dumps({"object": "list", "data": [
                    {"id": server.judge.model, "object": "model", "owned_by": "regionlib"}]}).encode())

            def do_POST(self):
                with server._count_lock:
                    server.requests += 1
                    n = server.requests
                f = server.faults
                if server._api_key is not None and self.headers.get("Authorization") != f"Bearer {server._api_key}":
                    with server._count_lock:
                        server.unauthorized += 1
                    self._send(401, b'{"error": "invalid or missing API key"}')
                    return
                if f.delay and (f.delay_every == 0 or _every(f.delay_every, n)):
                    time.sleep(f.delay)
                if _every(f.fail_every, n):
                    self._send(500, b'{"error": "injected failure"}')
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    prompt = body["messages"][-1]["content"]
                    if isinstance(prompt, list):  # multimodal parts: a text-only judge reads the text parts
                        server.images += sum(p.get("type") == "image_url" for p in prompt)
                        prompt = "\n".join(p["text"] for p in prompt if p.get("type") == "text")
                    if not isinstance(prompt, str):
                        raise TypeError("content must be a string or a list of parts")
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    self._send(400, json.dumps({"error": f"expected a chat-completions body: {exc}"}).encode())
                    return
                if _every(f.bad_json_every, n):
                    self._send(200, b'{"choices": [{"message": ')
                    return
                if _every(f.garbage_every, n):
                    reply = "###"
                else:
                    try:
                        with server._judge_lock:
                            reply = server.judge.ask([prompt])[0]
                    except JudgeError as exc:
                        self._send(500, json.dumps({"error": str(exc)}).encode())
                        return
                self._send(200, json.dumps({
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "model": server.judge.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                 "finish_reason": "stop"}]}).encode())

        return Handler

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def __enter__(self) -> "JudgeServer":
        if self._thread is None:  # `serve_judge` already entered: a `with` on its result must not start twice
            self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()


def serve_judge(judge: Judge, *, port: int = 0, faults: Faults | None = None,
                api_key: str | None = None) -> JudgeServer:
    """A started `JudgeServer` on 127.0.0.1 (``port=0``: a free port); leave its ``with`` block to stop it."""
    return JudgeServer(judge, port=port, faults=faults, api_key=api_key).__enter__()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m regionlib.evaluation.judges.serve",
                                     description="OpenAI-compatible judge server on 127.0.0.1")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a transformers causal-LM directory (save_pretrained), loaded offline")
    source.add_argument("--rule-vocabulary", help="JSON {attribute: [values]} for the rule judge")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--cache", help="server-side answer cache (default: REGIONLIB_JUDGE_CACHE or ~/.cache)")
    for name in ("fail-every", "delay-every", "bad-json-every", "garbage-every"):
        parser.add_argument(f"--{name}", type=int, default=0, help="fault injection (testing clients)")
    parser.add_argument("--delay", type=float, default=0.0, help="fault injection: seconds of latency")
    args = parser.parse_args(argv)
    if args.model:
        from .local import TransformersJudge

        judge = TransformersJudge.from_pretrained(args.model, max_new_tokens=args.max_new_tokens, cache=args.cache)
    else:
        from .rule import RuleJudge

        with open(args.rule_vocabulary) as fh:
            judge = RuleJudge(json.load(fh), cache=args.cache)
    faults = Faults(fail_every=args.fail_every, delay=args.delay, delay_every=args.delay_every,
                    bad_json_every=args.bad_json_every, garbage_every=args.garbage_every)
    server = JudgeServer(judge, port=args.port, faults=faults)
    print(f"serving {judge.model} at {server.url}/chat/completions", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
