"""Number formatting shared by the renderers."""

from __future__ import annotations

import numpy as np

from adversary.core.stats import rogan_gladen, rogan_gladen_interval

CORRECTION_SEED = 0


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


def corrected_rate(target: dict, agreement: dict | None) -> str:
    """The break rate corrected for the judge's measured sensitivity and specificity (Rogan-Gladen), as text,
    with a 95% interval that includes the judge's uncertainty when its calibration counts are known."""
    rate = target.get("break_rate")
    if rate is None or not agreement or agreement.get("break_recall") is None or agreement.get("hold_specificity") is None:
        return "–"
    text = pct(rogan_gladen(rate, agreement["break_recall"], agreement["hold_specificity"]))
    if agreement.get("confusion") and target.get("trials"):
        ci = rogan_gladen_interval(int(target.get("breaks", round(rate * target["trials"]))), int(target["trials"]),
                                   agreement["confusion"], np.random.default_rng(CORRECTION_SEED))
        text += f" {interval(ci)}" if ci else ""
    return text


def agreement_text(agreement: dict | None) -> str:
    """How well the judge agrees with hand labels, and how well the annotators agree with each other."""
    if not agreement:
        return "not measured yet"
    text = (f"accuracy {agreement['accuracy']:.3f}, Cohen's kappa {agreement['kappa']:.3f} on {agreement['rows']:g} "
            f"hand-labeled replies (sensitivity to breaks {agreement['break_recall']:.3f}, specificity "
            f"{agreement['hold_specificity']:.3f})")
    pair = agreement.get("two_annotators")
    if pair:
        text += (f"; on the {pair['rows']} replies two annotators labeled independently (each without seeing the other's "
                 f"label; disagreements adjudicated), the annotators agree with each "
                 f"other at kappa {pair['annotators']['kappa']:.3f} and the judge with them at kappa "
                 f"{pair['judge_vs_a']['kappa']:.3f} and {pair['judge_vs_b']['kappa']:.3f}")
    for campaign, figures in (agreement.get("search_precision") or {}).items():
        lo, hi = figures["ci95"]
        text += (f"; of the breaks it credited the {figures['trials']} strongest members of {campaign}, annotators who "
                 f"did not see its verdicts called {figures['successes']} real breaks ({figures['rate']:.1%} "
                 f"[{lo:.1%}, {hi:.1%}])")
    return text


def wall_time_text(metrics: dict) -> str:
    """This session's wall time, and the run's over every session when a resume made them differ."""
    session = metrics.get("wall_seconds", 0.0)
    total = metrics.get("total_wall_seconds", session)
    return f"{session:.0f}s" + (f" ({total:.0f}s over every session)" if total > session + 1 else "")
