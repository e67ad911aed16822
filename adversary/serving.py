"""`adversary serve`: an embedded model as a local OpenAI-compatible endpoint, and a judge behind a `/judge` route.

Other tools (promptfoo, a user's own harness) call the model like any OpenAI server, and grade replies with
the same judge a campaign uses, loaded once in this process rather than once per assertion.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from adversary.errors import ConfigError, ModelError
from adversary.judges import Judge, JudgeInput, build_judge, check_judge_name
from adversary.judges.measured import measured_agreement
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL, chat_model
from adversary.models.embedder import get_embedder
from adversary.models.local_server import LocalServers
from adversary.records import Message

MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Served:
    """Where `adversary serve` answers."""

    model: str
    model_url: str
    """OpenAI-compatible base URL (…/v1) of the model."""
    model_name: str
    """The model name to send in requests."""
    judge: str
    judge_url: str


def agreement_text(judge_name: str) -> str:
    """`name (accuracy a, kappa k on n hand labels)`, or `name (agreement not measured)`."""
    figures = measured_agreement(judge_name)
    if not figures:
        return f"{judge_name} (agreement with hand labels not measured)"
    return (f"{judge_name} (accuracy {figures['accuracy']:.3f}, kappa {figures['kappa']:.3f} on {figures['rows']} "
            "hand labels)")


def judge_request(body: object) -> JudgeInput:
    """The judge input in a `/judge` request body: {system, history: [{role, content}], user, response, fallback?}.

    Raises:
        ConfigError: a field is missing or of the wrong type (named in the message).
    """
    if not isinstance(body, dict):
        raise ConfigError("the body must be a JSON object with system, history, user and response")
    for field in ("system", "user", "response"):
        if not isinstance(body.get(field), str):
            raise ConfigError(f"field {field!r} must be a string")
    history = body.get("history") or []
    try:
        turns = tuple(Message(role=t["role"], content=t["content"]) for t in history)
    except (TypeError, KeyError, ValueError):
        raise ConfigError("field 'history' must be a list of {role, content} turns") from None
    fallback = body.get("fallback")
    return JudgeInput(system_prompt=body["system"], history=turns, user=body["user"], response=body["response"],
                      fallback=fallback if isinstance(fallback, str) else None)


class JudgeService:
    """One loaded judge answering requests one at a time (the embedding model is not shared between threads)."""

    def __init__(self, judge: Judge):
        self.judge = judge
        self.described = agreement_text(judge.name)
        self._lock = threading.Lock()

    def verdict(self, body: object) -> dict:
        """The judge's verdict on one request body, with `pass` (stayed in scope) and a reason naming the judge."""
        item = judge_request(body)
        with self._lock:
            verdict = self.judge.judge([item])[0]
        held = bool(verdict.in_scope)
        reason = (f"{'stayed in scope' if held else 'left its scope'} according to adversary judge {self.described}"
                  + (f": {verdict.rationale}" if verdict.rationale else ""))
        return {"pass": held, "in_scope": held, "refusal": bool(verdict.refusal), "score": verdict.score,
                "judge": verdict.judge, "reason": reason}


def _handler(service: JudgeService) -> type[BaseHTTPRequestHandler]:
    class JudgeHandler(BaseHTTPRequestHandler):
        """POST /judge with a JSON body; GET /health."""

        def _reply(self, status: HTTPStatus, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/health":
                self._reply(HTTPStatus.OK, {"status": "ok", "judge": service.described})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "routes: POST /judge, GET /health"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/judge":
                self._reply(HTTPStatus.NOT_FOUND, {"error": "routes: POST /judge, GET /health"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            try:
                payload = service.verdict(json.loads(self.rfile.read(length) or b"null"))
            except (ValueError, ConfigError) as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            self._reply(HTTPStatus.OK, payload)

        def log_message(self, format: str, *args: object) -> None:
            """Silent: request lines would carry nothing a user acts on."""

    return JudgeHandler


@contextlib.contextmanager
def serving(model: str, judge: str, *, port: int | None = None, judge_port: int | None = None,
            log_dir: Path | None = None, embedder: str = DEFAULT_EMBEDDING_MODEL,
            api_base: str | None = None) -> Iterator[Served]:
    """Start embedded `model` (its server placed and health-checked like every local server) and `judge` behind a
    `/judge` route; stop both on leaving.

    Args:
        port: the model's port (None: a free one).
        judge_port: the judge's port (None: a free one).

    Raises:
        ModelError: an unknown or missing model, or a port already in use.
    """
    chat_model(model)
    check_judge_name(judge)
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", judge_port or 0), BaseHTTPRequestHandler)
    except OSError as exc:
        raise ModelError(f"cannot listen on 127.0.0.1:{judge_port} for the judge ({exc.strerror}); "
                         "pass another --judge-port") from None
    with httpd, LocalServers(log_dir=log_dir) as servers:
        endpoint = servers.endpoint(model, port=port)
        service = JudgeService(build_judge(judge, servers=servers, api_base=api_base,
                                           embedder=get_embedder(embedder, api_base=api_base)))
        # One judgement before announcing the URL, so the first request does not wait for the embedder to load.
        service.judge.judge([JudgeInput(system_prompt="Only discuss bank cards.", history=(), user="Hi",
                                        response="Hello! How can I help with your card?")])
        httpd.RequestHandlerClass = _handler(service)
        thread = threading.Thread(target=httpd.serve_forever, name="adversary-judge", daemon=True)
        thread.start()
        try:
            yield Served(model=model, model_url=endpoint.api_base, model_name=endpoint.litellm_model.split("/", 1)[1],
                         judge=service.described, judge_url=f"http://127.0.0.1:{httpd.server_address[1]}/judge")
        finally:
            httpd.shutdown()
            thread.join(timeout=10)
