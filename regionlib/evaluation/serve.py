"""A small OpenAI-compatible chat server over any `Judge`, bound to 127.0.0.1.

``python -m regionlib.evaluation.serve --rule-vocabulary vocab.json --port 8001`` serves the
rule judge; `serve_judge` does the same in-process (tests, notebooks). For failure testing it
can inject faults: every ``fail_every``-th request answers HTTP 500, ``delay`` seconds of
latency (client time-outs), and every ``malformed_every``-th reply is unusable text.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .judges import Judge

__all__ = ["Faults", "JudgeServer", "serve_judge"]


@dataclass
class Faults:
    fail_every: int = 0       # HTTP 500 on requests number k * fail_every (1-based)
    delay: float = 0.0        # seconds before answering
    delay_every: int = 0      # apply the delay only to every k-th request (0: all when delay > 0)
    malformed_every: int = 0  # reply "###" instead of the judge's answer


class JudgeServer:
    """Threaded HTTP server answering ``POST /v1/chat/completions`` with ``judge``."""

    def __init__(self, judge: Judge, *, port: int = 0, faults: Faults | None = None):
        self.judge, self.faults = judge, faults or Faults()
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                with server._lock:
                    server.requests += 1
                    n = server.requests
                f = server.faults
                if f.delay and (not f.delay_every or n % f.delay_every == 0):
                    time.sleep(f.delay)
                if f.fail_every and n % f.fail_every == 0:
                    self.send_error(500, "injected failure")
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    prompt = body["messages"][-1]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    self.send_error(400, "expected an OpenAI chat-completions body")
                    return
                reply = "###" if f.malformed_every and n % f.malformed_every == 0 else server.judge.ask([prompt])[0]
                data = json.dumps({"object": "chat.completion", "model": body.get("model", server.judge.model),
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                                "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "JudgeServer":
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_judge(judge: Judge, *, port: int = 0, faults: Faults | None = None) -> JudgeServer:
    """Start a `JudgeServer` in a background thread (use as a context manager to stop it)."""
    return JudgeServer(judge, port=port, faults=faults).__enter__()


def main(argv=None) -> None:
    from .judges import RuleJudge

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule-vocabulary", required=True, help="JSON {attribute: [values]} for the rule judge")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    with open(args.rule_vocabulary) as f:
        judge = RuleJudge(json.load(f))
    server = JudgeServer(judge, port=args.port)
    print(f"serving {judge.model} on {server.url}/v1/chat/completions")
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
