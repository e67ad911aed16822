"""Ctrl-C that no library can swallow.

The handler records the interrupt before raising KeyboardInterrupt, and every model call checks the record first.
A library that catches the KeyboardInterrupt (a bridge that turns it into an ordinary error, a retry loop) can
cost at most the call in progress: the next call raises again, so a run always stops and can resume.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt when Ctrl-C arrived while `ctrl_c_stops_model_calls` was active."""
    if _requested.is_set():
        raise KeyboardInterrupt


@contextmanager
def ctrl_c_stops_model_calls() -> Iterator[None]:
    """While active, SIGINT is recorded (so model calls refuse to start) and raised as KeyboardInterrupt.
    Outside the main thread signals cannot be handled, so it does nothing there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame) -> None:
        _requested.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()
