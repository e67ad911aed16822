"""Per-model request limits (requests per minute, calls in flight) and ordered concurrent calls.

Remote providers throttle by requests per minute; sending faster only buys 429s and backoff. A
`RateLimiter` spaces requests evenly (a token bucket holding at most one second's burst), and
`LimitedChat` wraps a chat function with one limiter and one in-flight cap per model.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from adversary.models.chat import ChatResult, ModelRoute, Sampling

ChatCall = Callable[[ModelRoute, list[dict[str, str]], Sampling, "int | None"], ChatResult]


class RateLimiter:
    """Blocks `acquire` so that calls start at most `per_minute` times a minute (thread-safe)."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = clock()

    def acquire(self) -> float:
        """Wait for this call's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)


class LimitedChat:
    """A chat function with, per model, a requests-per-minute limit and a cap on calls in flight."""

    def __init__(self, call: ChatCall, requests_per_minute: float | None = None, max_in_flight: int | None = None):
        self._call = call
        self._rpm = requests_per_minute
        self._in_flight = max_in_flight
        self._limiters: dict[str, RateLimiter] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def _for(self, model: str) -> tuple[RateLimiter | None, threading.BoundedSemaphore | None]:
        with self._lock:
            if model not in self._limiters and self._rpm:
                self._limiters[model] = RateLimiter(self._rpm)
            if model not in self._slots and self._in_flight:
                self._slots[model] = threading.BoundedSemaphore(self._in_flight)
            return self._limiters.get(model), self._slots.get(model)

    def __call__(self, route: ModelRoute, messages: list[dict[str, str]], sampling: Sampling, seed: int | None = None) -> ChatResult:
        limiter, slots = self._for(route.name)
        if slots is not None:
            slots.acquire()
        try:
            if limiter is not None:
                limiter.acquire()
            return self._call(route, messages, sampling, seed)
        finally:
            if slots is not None:
                slots.release()


def in_order(function: Callable, items: Iterable, workers: int) -> Iterator:
    """`function(item)` for each item, with up to `workers` calls in flight on threads, yielded in input order.

    `items` may be a generator that raises (a spent budget): calls already in flight still finish and are
    yielded before the exception propagates, so nothing that was paid for is lost. With one worker,
    calls run one after another on the caller's thread.
    """
    if workers <= 1:
        for item in items:
            yield function(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        in_flight: deque[Future] = deque()
        try:
            for item in items:
                in_flight.append(pool.submit(function, item))
                while len(in_flight) >= workers or (in_flight and in_flight[0].done()):
                    yield in_flight.popleft().result()
        except GeneratorExit:
            for future in in_flight:  # the caller stopped reading: nobody will take these results
                future.cancel()
            raise
        except BaseException:
            while in_flight:
                yield in_flight.popleft().result()
            raise
        while in_flight:
            yield in_flight.popleft().result()
