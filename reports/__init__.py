"""Report rendering (installed as `adversary.reports`).

Public names:
    write_report(run_dirs, out_dir)     report.html (self-contained), report.md and report.json
    render_markdown(metrics) -> str     Markdown robustness summary of a metrics.json
    summary_tables(metrics) -> list     rich tables for the terminal
    wall_time_text(metrics) -> str      a run's wall time, this session's and over every session
    ReportError                         a run directory cannot be reported on
"""

from adversary.reports._bundle import REPORT_FILES, write_report
from adversary.reports._collect import ReportError
from adversary.reports._format import wall_time_text
from adversary.reports._markdown import render_markdown
from adversary.reports._terminal import summary_tables

__all__ = ["REPORT_FILES", "ReportError", "render_markdown", "summary_tables", "wall_time_text", "write_report"]
