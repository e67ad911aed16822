"""Terminal tables (rich) summarizing a run's metrics."""

from __future__ import annotations

from rich.table import Table

from adversary.reports._format import interval, pct, rate_cell


def summary_tables(metrics: dict) -> list[Table]:
    """One overview table, then a per-style and per-turn table for each target."""
    overview = Table(title=f"Targets (judge: {metrics.get('judge', {}).get('name')})")
    for column in ("target", "break rate", "95% CI", "trials", "errors", "over-refusal", "AR_ID", "RR_OOD", "OS"):
        overview.add_column(column, justify="left" if column == "target" else "right")
    tables = [overview]
    for name, t in metrics.get("targets", {}).items():
        ote = t.get("offtopiceval", {})
        overview.add_row(
            name, pct(t.get("break_rate")), interval(t.get("ci95")), str(t.get("trials")),
            str(sum(t.get("errors", {}).values())), pct(t.get("over_refusal")),
            pct(ote.get("AR_ID")), pct(ote.get("RR_OOD")), pct(ote.get("OS")),
        )
        for title, key in (("style", "by_style"), ("insertion turn", "by_insertion_turn")):
            table = Table(title=f"{name}: break rate by {title}")
            table.add_column(title)
            table.add_column("break rate [95% CI] (breaks/trials)", justify="right")
            for group, entry in t.get(key, {}).items():
                table.add_row(str(group), rate_cell(entry))
            tables.append(table)
    return tables
