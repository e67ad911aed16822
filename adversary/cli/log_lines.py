"""Progress for logs: rich draws no bar when stderr is not a terminal (nohup, CI, a pipe), so long commands print
a plain status line at most every `every_seconds` there instead of staying silent for an hour."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console

LOG_LINE_SECONDS = 30.0


class LogLines:
    """Prints throttled status lines to a console that is not a terminal; does nothing on a terminal."""

    def __init__(self, console: Console, every_seconds: float = LOG_LINE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.every_seconds, self.clock = console, every_seconds, clock
        self.started = clock()
        self._last: float | None = None

    def __call__(self, text: str, *, force: bool = False) -> None:
        """Print `text` with the elapsed time if the last line is old enough (or `force`)."""
        if self.console.is_terminal:
            return
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.every_seconds:
            return
        self._last = now
        elapsed = int(now - self.started)
        self.console.print(f"[{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {text}", markup=False,
                           highlight=False)


class CampaignStatus:
    """A campaign's status line for logs: its phase (seeds, the last finished generation, or confirming), target
    calls spent, and the archive as of the last generation (its size, and its elites' best and mean break rate as
    posterior means, so a lucky 4/4 does not read as 100% beside a 15/16), printed through `LogLines` as calls are
    made, so a log keeps moving through long generations and through the confirmation at the end."""

    def __init__(self, lines: LogLines, budget_calls: int, *, resumed: bool = False) -> None:
        self.lines, self.budget_calls = lines, budget_calls
        self.phase, self.archive = ("resumed" if resumed else "seeds"), ""

    def generation(self, number: int, calls: int, archive_size: int, best: str, mean: str) -> None:
        self.phase = f"generation {number}"
        self.archive = f", archive {archive_size}, break rate best {best}, mean {mean}"
        self.calls(calls)

    def confirming(self, elites: int) -> None:
        self.phase = f"confirming {elites} elites"

    def calls(self, calls: int) -> None:
        self.lines(f"{self.phase}: {calls} of {self.budget_calls} target calls{self.archive}")
