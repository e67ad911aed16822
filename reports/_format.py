"""Number formatting shared by the renderers."""

from __future__ import annotations


def pct(value: object) -> str:
    """A rate as a percentage, or an en dash when unknown."""
    return "–" if value is None else f"{100 * float(value):.1f}%"


def interval(ci: object) -> str:
    """A [lo, hi] interval as percentages."""
    if not ci:
        return "–"
    lo, hi = ci  # type: ignore[misc]
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def rate_cell(entry: dict) -> str:
    """`rate [lo, hi] (k/n)` for a Rate.to_json() entry."""
    return f"{pct(entry.get('rate'))} {interval(entry.get('ci95'))} ({entry.get('successes', 0)}/{entry.get('trials', 0)})"
