"""Status lines for logs: throttled when stderr is not a terminal, silent on a terminal (rich draws the bar there)."""

from __future__ import annotations

import io

from rich.console import Console

from adversary.cli.log_lines import CampaignStatus, LogLines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _log(terminal: bool) -> tuple[LogLines, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, force_terminal=terminal, width=200)
    return LogLines(console, every_seconds=30.0, clock=clock), out, clock


def test_a_log_gets_the_first_line_then_one_per_interval_and_forced_lines():
    log, out, clock = _log(terminal=False)
    log("first")
    clock.now += 10
    log("too soon")
    clock.now += 25
    log("second")
    clock.now += 1
    log("last", force=True)
    assert out.getvalue().splitlines() == ["[0:00:00] first", "[0:00:35] second", "[0:00:36] last"]


def test_elapsed_time_counts_hours():
    log, out, clock = _log(terminal=False)
    clock.now += 3 * 3600 + 62
    log("late")
    assert out.getvalue() == "[3:01:02] late\n"


def test_a_terminal_gets_no_lines():
    log, out, _ = _log(terminal=True)
    log("bar is drawn instead", force=True)
    assert out.getvalue() == ""


def test_a_campaign_status_names_its_phase_and_moves_with_the_calls():
    log, out, clock = _log(terminal=False)
    status = CampaignStatus(log, budget_calls=1500)
    status.calls(1)
    clock.now += 31
    status.generation(0, 132, 0, "–", "–")
    clock.now += 5
    status.calls(140)
    clock.now += 30
    status.calls(150)
    status.confirming(31)
    clock.now += 30
    status.calls(1300)
    assert out.getvalue().splitlines() == [
        "[0:00:00] seeds: 1 of 1500 target calls",
        "[0:00:31] generation 0: 132 of 1500 target calls, archive 0, break rate best –, mean –",
        "[0:01:06] generation 0: 150 of 1500 target calls, archive 0, break rate best –, mean –",
        "[0:01:36] confirming 31 elites: 1300 of 1500 target calls, archive 0, break rate best –, mean –",
    ]


def test_a_resumed_campaign_says_so_until_its_first_generation_ends():
    log, out, clock = _log(terminal=False)
    status = CampaignStatus(log, budget_calls=1500, resumed=True)
    status.calls(700)
    assert out.getvalue() == "[0:00:00] resumed: 700 of 1500 target calls\n"
