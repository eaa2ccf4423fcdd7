"""A fake OpenAI-compatible chat-completions server on 127.0.0.1 for tests, with scripted failures.

Usage::

    with FakeOpenAI(script={"Widget": ["429", "ok"]}) as fake:   # fake.base_url = "http://127.0.0.1:PORT/v1"
        ...
        fake.requests          # [{"marker": ..., "auth": "Bearer ...", "body": {...}}, ...]

``script`` maps a marker (a string looked for in the request's user text) to the answers its requests get, one
per request, the last one repeating: ``ok`` (a valid JSON enrichment derived from the text), ``429`` (with
``retry-after-ms: 10``), ``500``, ``bad_json`` (a 200 whose message is not JSON), ``stall`` (answers after
``stall_s`` seconds: a client with a shorter timeout gives up). Unscripted requests get ``ok``. Every answer
reports usage ``{prompt_tokens: 100, completion_tokens: 20, total_tokens: 120}``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


def good_answer(text: str) -> dict:
    title = re.search(r"Title: (.*)", text)
    title = title.group(1).strip() if title else "Unknown item"
    return {"enhanced_title": f"{title} (enhanced)", "tags": ["tag one", "tag two"],
            "highlights": ["a stated fact"], "characteristics": {"Type": "thing"}}


class FakeOpenAI:
    def __init__(self, script: dict[str, list[str]] | None = None, stall_s: float = 3.0):
        self.script = script or {}
        self.stall_s = stall_s
        self.requests: list[dict] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                user = body["messages"][-1]["content"]
                text = " ".join(p.get("text", "") for p in user if p.get("type") == "text") \
                    if isinstance(user, list) else str(user)
                marker = next((m for m in fake.script if m in text), None)
                with fake._lock:
                    n = fake._counts.get(marker, 0)
                    fake._counts[marker] = n + 1
                    fake.requests.append({"marker": marker, "auth": self.headers.get("authorization"),
                                          "body": body, "text": text})
                seq = fake.script.get(marker, ["ok"])
                action = seq[min(n, len(seq) - 1)]
                if action == "429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"retry-after-ms": "10"})
                if action == "500":
                    return self._send(500, {"error": {"message": "server error", "type": "server_error"}})
                if action == "stall":
                    fake._stop.wait(fake.stall_s)
                content = "Sure! here it is: {not json" if action == "bad_json" else json.dumps(good_answer(text))
                self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                                 "model": body.get("model"), "usage": USAGE,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}]})

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def count(self, marker: str | None) -> int:
        return sum(r["marker"] == marker for r in self.requests)
