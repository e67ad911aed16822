"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests that go through litellm."""

from __future__ import annotations

import json
import threading
import time
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


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (an injected timeout) makes the late write fail; that is expected, not news."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


FAULTS = ("429", "500", "timeout", "malformed", "empty", "truncated")


class FaultInjector:
    """A responder that fails a seeded share of requests with one of FAULTS and logs what it did per request.

    `log` holds (fault or "ok", request body) in arrival order, so a test can recount what the server did.
    """

    def __init__(self, inner: Responder, rate: float, seed: int = 0, timeout_sleep_s: float = 1.5):
        import random

        self.inner = inner
        self.rate = rate
        self.random = random.Random(seed)
        self.timeout_sleep_s = timeout_sleep_s
        self.log: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict):
        with self._lock:
            fault = self.random.choice(FAULTS) if body.get("max_tokens") != 1 and self.random.random() < self.rate else "ok"
            self.log.append((fault, body))
        if fault == "ok":
            return self.inner(body)
        return Fault(fault, self.timeout_sleep_s)


class Fault:
    """What the fake server does instead of answering."""

    def __init__(self, kind: str, sleep_s: float):
        self.kind = kind
        self.sleep_s = sleep_s


class FakeOpenAI:
    """Context manager serving /v1/chat/completions and /v1/models with a responder; records requests.

    `keep_requests=False` only counts them (`chat_requests`, reachability pings excluded), so a long load
    test does not measure the fake server's own memory.
    """

    def __init__(self, responder: Responder, keep_requests: bool = True):
        self.responder = responder
        self.requests: list[dict] = []
        self.chat_requests = 0
        self._count_lock = threading.Lock()
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
                with outer._count_lock:
                    outer.chat_requests += body.get("max_tokens") != 1
                if keep_requests:
                    outer.requests.append({"headers": dict(self.headers), "body": body})
                answer = outer.responder(body)
                if isinstance(answer, Fault):
                    self._fault(answer)
                    return
                status, payload = answer
                self._send(status, payload)

            def _raw(self, status: int, data: bytes, length: int | None = None, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data) if length is None else length))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _fault(self, fault: "Fault") -> None:
                error = json.dumps({"error": {"message": f"injected {fault.kind}", "type": "server_error"}}).encode()
                if fault.kind == "429":
                    self._raw(429, error, headers={"retry-after": "0"})
                elif fault.kind == "500":
                    self._raw(500, error)
                elif fault.kind == "timeout":
                    time.sleep(fault.sleep_s)
                    self._raw(200, json.dumps(completion("too late")).encode())
                elif fault.kind == "malformed":
                    self._raw(200, b'{"id": "chatcmpl-fake", "choices": [{"message": ')
                elif fault.kind == "empty":
                    self._raw(200, json.dumps({**completion(""), "choices": []}).encode())
                elif fault.kind == "truncated":
                    data = json.dumps(completion("cut short")).encode()
                    self._raw(200, data[: len(data) // 2], length=len(data))
                    self.close_connection = True

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
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
