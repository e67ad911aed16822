"""Number formatting shared by the renderers."""

from __future__ import annotations

from adversary.core.stats import rogan_gladen


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


def corrected_rate(rate: float | None, agreement: dict | None) -> str:
    """The break rate corrected for the judge's measured sensitivity and specificity (Rogan-Gladen), as text."""
    if rate is None or not agreement or agreement.get("break_recall") is None or agreement.get("hold_specificity") is None:
        return "–"
    return pct(rogan_gladen(rate, agreement["break_recall"], agreement["hold_specificity"]))


def agreement_text(agreement: dict | None) -> str:
    """One line on how well the judge agrees with hand labels."""
    if not agreement:
        return "not measured yet"
    return (f"accuracy {agreement['accuracy']:.3f}, Cohen's kappa {agreement['kappa']:.3f} on {agreement['rows']} hand-labeled "
            f"replies (sensitivity to breaks {agreement['break_recall']:.3f}, specificity {agreement['hold_specificity']:.3f})")


def wall_time_text(metrics: dict) -> str:
    """This session's wall time, and the run's over every session when a resume made them differ."""
    session = metrics.get("wall_seconds", 0.0)
    total = metrics.get("total_wall_seconds", session)
    return f"{session:.0f}s" + (f" ({total:.0f}s over every session)" if total > session + 1 else "")
