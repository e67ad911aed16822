"""Terminal tables (rich) summarizing a run's metrics."""

from __future__ import annotations

from rich.table import Table

from adversary.reports._format import interval, pct, rate_cell


def _overview(metrics: dict) -> Table:
    """Metrics as rows and targets as columns, so several targets fit an 80-column terminal."""
    targets = metrics.get("targets", {})
    table = Table(title=f"Targets (judge: {metrics.get('judge', {}).get('name')})")
    table.add_column("metric", no_wrap=True)
    for name in targets:
        table.add_column(name, justify="right", no_wrap=True)
    rows = [
        ("break rate", lambda t: pct(t.get("break_rate"))),
        ("  95% CI (Wilson)", lambda t: interval(t.get("ci95"))),
        ("  valid distractor trials", lambda t: str(t.get("trials"))),
        ("over-refusal", lambda t: f"{pct(t.get('over_refusal'))} {interval(t.get('over_refusal_ci95'))}"),
        ("  valid control trials", lambda t: str(t.get("control_trials"))),
        ("failed calls (not counted)", lambda t: str(sum(t.get("errors", {}).values()))),
        ("AR_ID", lambda t: pct(t.get("offtopiceval", {}).get("AR_ID"))),
        ("RR_OOD", lambda t: pct(t.get("offtopiceval", {}).get("RR_OOD"))),
        ("OS", lambda t: pct(t.get("offtopiceval", {}).get("OS"))),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(t) for t in targets.values()))
    return table


def summary_tables(metrics: dict) -> list[Table]:
    """One overview table, then a per-style and per-turn table for each target."""
    tables = [_overview(metrics)]
    for name, t in metrics.get("targets", {}).items():
        for title, key in (("style", "by_style"), ("insertion turn", "by_insertion_turn")):
            table = Table(title=f"{name}: break rate by {title}")
            table.add_column(title)
            table.add_column("break rate [95% CI] (breaks/trials)", justify="right")
            for group, entry in t.get(key, {}).items():
                table.add_row(str(group), rate_cell(entry))
            tables.append(table)
    return tables
