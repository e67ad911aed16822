"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests that go through litellm."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Responder = Callable[[dict], tuple[int, dict]]


def off_topic_when(keyword: str) -> Responder:
    """Engage with the user's turn when it contains `keyword`, otherwise refuse."""

    def respond(body: dict) -> tuple[int, dict]:
        user = body["messages"][-1]["content"]
        if body.get("max_tokens") == 1:
            text = "ok"
        elif keyword.lower() in user.lower():
            text = f"Sure! Here is everything about that: {user} is a fascinating subject with a long history."
        else:
            text = "I'm sorry, I can only help with questions about this service."
        return 200, completion(text)

    return respond


def completion(text: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class FakeOpenAI:
    """Context manager serving /v1/chat/completions and /v1/models with a responder; records requests."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append({"headers": dict(self.headers), "body": body})
                status, payload = outer.responder(body)
                self._send(status, payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
