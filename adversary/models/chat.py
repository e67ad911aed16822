"""Chat model access through litellm: resolve a model name to a route, call it, never raise on failure.

A route is what litellm needs: its model string, an optional `api_base`, an optional key. Embedded
`local/*` models resolve to the local server that `LocalServers` started. Keys are read by litellm
from the environment and never stored in routes' reprs, logs or results.
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pathlib import Path

import litellm
import yaml

from adversary.errors import ConfigError, ModelError
from adversary.models.embedded import is_local
from adversary.models.interrupt import raise_if_interrupted
from adversary.models.local_server import LocalServers

litellm.suppress_debug_info = True
litellm.telemetry = False

LOCAL_API_KEY = "sk-local-no-key"
_SECRET_RE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|(?:api[_-]?key|authorization|bearer)[\"'=:\s]+[A-Za-z0-9_\-\.]{8,})", re.I)


def redact(text: str) -> str:
    """`text` with anything that looks like an API key or bearer token replaced."""
    return _SECRET_RE.sub("[redacted]", text)


@dataclass(frozen=True)
class ModelRoute:
    """How litellm reaches one model. `name` is what the user typed and what reports show."""

    name: str
    litellm_model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    router: "Deployments | None" = field(default=None, repr=False, compare=False)
    """A litellm Router that spreads this model's calls over its deployments (then `litellm_model` is the
    Router's model name and the deployments carry their own endpoints and keys)."""

    def completion_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.litellm_model}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        return kwargs


@dataclass(frozen=True)
class Deployments:
    """A litellm Router and the model names it serves (read from its config, whatever litellm's version)."""

    models: frozenset[str]
    router: Any = field(repr=False, compare=False)

    def completion(self, **kwargs: Any) -> Any:
        return self.router.completion(**kwargs)


def load_router(path: str | Path) -> Deployments:
    """A litellm Router from a YAML file in litellm's own format: `model_list` (deployments: `model_name`,
    `litellm_params` with model, api_base and api_key, which may be `os.environ/VAR`) and optional
    `router_settings` (routing_strategy, ...). Retries stay ours, so the Router's are turned off.

    Raises:
        ConfigError: naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the router config ({' '.join(str(exc).split())})") from None
    deployments = data.get("model_list") if isinstance(data, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise ConfigError(f"{path}: a router config needs a non-empty model_list")
    for index, deployment in enumerate(deployments):
        if not isinstance(deployment, dict) or not isinstance(deployment.get("model_name"), str) \
                or not isinstance(deployment.get("litellm_params"), dict) or "model" not in deployment["litellm_params"]:
            raise ConfigError(f"{path}: model_list[{index}] needs model_name and litellm_params.model")
    settings = data.get("router_settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: router_settings must be a mapping")
    settings = {k: v for k, v in settings.items() if k not in ("num_retries", "retry_after")}
    try:
        router = litellm.Router(model_list=deployments, num_retries=0, **settings)
    except Exception as exc:
        raise ConfigError(f"{path}: invalid router config ({type(exc).__name__}: {redact(str(exc).splitlines()[0] if str(exc) else '')})") from None
    return Deployments(models=frozenset(d["model_name"] for d in deployments), router=router)


def resolve_route(name: str, servers: LocalServers | None, api_base: str | None = None,
                  router: Deployments | None = None) -> ModelRoute:
    """The route for model `name`: embedded models through `servers`, others straight to litellm.

    Args:
        name: `local/smollm2`, or any litellm model string (`openai/gpt-4o-mini`, `ollama/llama3`).
        servers: the command's local servers; required for `local/*` names.
        api_base: an OpenAI-compatible base URL for non-local models.
        router: a litellm Router; a name it serves is routed over its deployments.
    Raises:
        ModelError: a local model without servers, or an unknown embedded model.
    """
    if router is not None and name in router.models:
        return ModelRoute(name=name, litellm_model=name, router=router)
    if is_local(name):
        if servers is None:
            raise ModelError(f"{name}: embedded models need the local server manager")
        endpoint = servers.endpoint(name)
        return ModelRoute(name=name, litellm_model=endpoint.litellm_model, api_base=endpoint.api_base, api_key=LOCAL_API_KEY)
    if "/" not in name and api_base:
        # A bare model name on an OpenAI-compatible server: its key from OPENAI_API_KEY when the server needs one.
        key = os.environ.get("OPENAI_API_KEY") or LOCAL_API_KEY
        return ModelRoute(name=name, litellm_model=f"openai/{name}", api_base=api_base, api_key=key)
    return ModelRoute(name=name, litellm_model=name, api_base=api_base)


@dataclass(frozen=True)
class ChatResult:
    """A model reply, or the error that prevented one. Errors are never verdicts."""

    text: str | None
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    cost_usd: float = 0.0
    tries: int = 1
    """Requests sent for this call: 1, plus one per retry after a 429, 5xx, timeout, lost connection or empty reply."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters sent with every target call."""

    temperature: float = 0.7
    max_tokens: int = 96
    timeout_s: float = 120.0
    retries: int = 2
    backoff_s: float = 1.0
    """First retry waits up to this long (full jitter), doubling per retry up to `MAX_BACKOFF_S`; Retry-After wins."""


MAX_BACKOFF_S = 60.0
_RETRYABLE = (litellm.RateLimitError, litellm.InternalServerError, litellm.ServiceUnavailableError, litellm.BadGatewayError,
              litellm.APIConnectionError, litellm.Timeout)
_jitter = random.Random()


def retry_delay(retry: int, base_s: float, retry_after_s: float | None = None, draw: float | None = None) -> float:
    """Seconds to wait before retry number `retry` (0-based): the server's Retry-After when it sent one,
    else exponential backoff with full jitter, uniform in [0, min(cap, base * 2**retry)]."""
    if retry_after_s is not None and retry_after_s >= 0:
        return min(retry_after_s, MAX_BACKOFF_S)
    ceiling = min(MAX_BACKOFF_S, base_s * 2**retry)
    return ceiling * (_jitter.random() if draw is None else draw)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return float(headers.get("retry-after")) if headers.get("retry-after") is not None else None
    except (TypeError, ValueError):
        return None


def complete(route: ModelRoute, messages: list[dict[str, str]], sampling: Sampling, seed: int | None = None) -> ChatResult:
    """One chat completion through litellm, retried on transient failures; a final failure comes back as
    `ChatResult.error` (never raised), so callers record it as an error rather than a break or a hold."""
    result = ChatResult(text=None, latency_s=0.0, error="not attempted")
    spent = 0.0
    for retry in range(sampling.retries + 1):
        raise_if_interrupted()
        result, transient, retry_after = _complete_once(route, messages, sampling, seed)
        spent += result.latency_s
        result = replace(result, tries=retry + 1, latency_s=spent)
        if result.ok or not transient or retry == sampling.retries:
            return result
        time.sleep(retry_delay(retry, sampling.backoff_s, retry_after))
    return result


def _complete_once(route: ModelRoute, messages, sampling: Sampling, seed: int | None) -> tuple[ChatResult, bool, float | None]:
    """One request: (result, whether a failure is worth retrying, the server's Retry-After in seconds)."""
    start = time.perf_counter()
    kwargs = route.completion_kwargs()
    kwargs.update(messages=messages, temperature=sampling.temperature, max_tokens=sampling.max_tokens,
                  timeout=sampling.timeout_s, num_retries=0)
    if seed is not None:
        kwargs["seed"] = seed
    try:
        response = route.router.completion(**kwargs) if route.router is not None else litellm.completion(**kwargs)
    except Exception as exc:  # litellm raises many provider-specific types; all are call failures
        failed = ChatResult(text=None, latency_s=time.perf_counter() - start, error=_describe(exc))
        return failed, isinstance(exc, _RETRYABLE), _retry_after(exc)
    return _result(route, response, time.perf_counter() - start), True, None


def _result(route: ModelRoute, response, latency: float) -> ChatResult:
    """The ChatResult of a parsed response; no choices or no content is an error (and retried)."""
    choices = getattr(response, "choices", None) or []
    text = choices[0].message.content if choices and choices[0].message is not None else None
    usage = getattr(response, "usage", None)
    cost = 0.0
    if not is_local(route.name):
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:
            cost = 0.0
    if text is None:
        return ChatResult(text=None, latency_s=latency, error="empty response (no choices or no content)")
    return ChatResult(
        text=text.strip(),
        latency_s=latency,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=cost,
    )


def _describe(exc: Exception) -> str:
    message = str(exc).splitlines()[0] if str(exc) else ""
    return redact(f"{type(exc).__name__}: {message}")[:500]


def check_reachable(route: ModelRoute, timeout_s: float = 60.0) -> None:
    """Make one tiny call so an unreachable endpoint fails before any work starts.

    Raises:
        ModelError: naming the model and the endpoint.
    """
    result = complete(
        route,
        [{"role": "user", "content": "ping"}],
        Sampling(temperature=0.0, max_tokens=1, timeout_s=timeout_s, retries=0),
    )
    if not result.ok:
        where = f" at {route.api_base}" if route.api_base else ""
        raise ModelError(f"cannot reach model {route.name}{where}: {result.error}")
