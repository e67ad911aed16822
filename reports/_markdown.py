"""Markdown rendering of a run's metrics."""

from __future__ import annotations

from adversary.reports._format import agreement_text, corrected_rate, interval, pct, rate_cell


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(metrics: dict) -> str:
    """A Markdown report of `metrics` (the content of metrics.json)."""
    judge = metrics.get("judge", {})
    lines = [
        "# adversary robustness report",
        "",
        f"Judge: `{judge.get('name')}`; measured agreement with human labels: {agreement_text(judge.get('measured_agreement'))}",
        f"Attempts: {metrics.get('attempts')} · wall time {metrics.get('total_wall_seconds', metrics.get('wall_seconds'))} s",
        "",
        "Break rate: share of valid distractor trials where the reply left the system prompt's scope, with a Wilson 95% interval.",
        "Failed calls are neither breaks nor holds and are counted as errors. Judge-corrected: the Rogan-Gladen estimate",
        "with a 95% interval that carries the judge's own uncertainty (its sensitivity and specificity on the hand labels).",
        "",
        "## Targets",
        "",
        "| target | break rate | 95% CI | judge-corrected | trials | errors | over-refusal | AR_ID | RR_OOD | OS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    targets = metrics.get("targets", {})
    for name, t in targets.items():
        ote = t.get("offtopiceval", {})
        errors = sum(t.get("errors", {}).values())
        lines.append(
            f"| `{_escape(name)}` | {pct(t.get('break_rate'))} | {interval(t.get('ci95'))} | "
            f"{corrected_rate(t, judge.get('measured_agreement'))} | {t.get('trials')} | {errors} | "
            f"{pct(t.get('over_refusal'))} | {pct(ote.get('AR_ID'))} | {pct(ote.get('RR_OOD'))} | {pct(ote.get('OS'))} |"
        )
    for name, t in targets.items():
        for title, key, label in (
            ("by style", "by_style", "style"),
            ("by insertion turn", "by_insertion_turn", "after bot turn"),
            ("by scenario", "by_scenario", "scenario"),
        ):
            lines += ["", f"## `{_escape(name)}`: break rate {title}", "", f"| {label} | break rate [95% CI] (breaks/trials) |", "|---|---|"]
            for group, entry in t.get(key, {}).items():
                lines.append(f"| {_escape(str(group))} | {rate_cell(entry)} |")
        ctat = t.get("canttalkaboutthis", {})
        lines += [
            "",
            f"CantTalkAboutThis-comparable for `{_escape(name)}`: deflection precision {pct(ctat.get('deflection_precision'))}, "
            f"recall {pct(ctat.get('deflection_recall'))}, F1 {pct(ctat.get('deflection_f1'))}; on-topic F1 {pct(ctat.get('on_topic_f1'))}.",
        ]
    return "\n".join(lines) + "\n"
