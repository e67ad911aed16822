"""A cache of identical chat calls, so the model never does the same work twice in one process.

Two calls are identical when they go to the same model (litellm model string and endpoint) with
the same messages, sampling parameters and seed; at temperature 0 (greedy decoding) the seed does not
matter, so repeated trials of one prompt are computed once. With a seed a local server samples
deterministically, so the cached reply is the reply the call would have produced. Only successful
replies are cached: a failed call is always tried again. Keys hold a hash of the request, never an
API key.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from adversary.models.chat import ChatResult, ModelRoute, Sampling, complete

ChatCall = Callable[[ModelRoute, list[dict[str, str]], Sampling, "int | None"], ChatResult]


def call_key(route: ModelRoute, messages: list[dict[str, str]], sampling: Sampling, seed: int | None) -> str:
    """Identity of a request: model, endpoint, messages, sampling parameters and (unless greedy) seed."""
    request = {
        "model": route.litellm_model, "api_base": route.api_base, "messages": messages,
        "temperature": sampling.temperature, "max_tokens": sampling.max_tokens,
        "seed": None if sampling.temperature == 0 else seed,
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class CachedChat:
    """Wraps a chat function with a bounded LRU cache of successful replies; counts hits and misses."""

    def __init__(self, call: ChatCall = complete, max_entries: int = 4096):
        self._call = call
        self._entries: OrderedDict[str, ChatResult] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def __call__(self, route: ModelRoute, messages: list[dict[str, str]], sampling: Sampling, seed: int | None = None) -> ChatResult:
        key = call_key(route, messages, sampling, seed)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return replace(cached, latency_s=0.0, tries=0, cost_usd=0.0)
            self.misses += 1
        result = self._call(route, messages, sampling, seed)
        if result.ok:
            with self._lock:
                self._entries[key] = result
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return result

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
