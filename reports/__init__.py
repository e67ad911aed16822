"""Report rendering (installed as `adversary.reports`).

Public names:
    render_markdown(metrics) -> str     Markdown robustness summary of a metrics.json
    summary_tables(metrics) -> list     rich tables for the terminal
"""

from adversary.reports._markdown import render_markdown
from adversary.reports._terminal import summary_tables

__all__ = ["render_markdown", "summary_tables"]
