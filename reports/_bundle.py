"""Write a report bundle (report.html, report.md, report.json) for one or more run directories."""

from __future__ import annotations

import json
from pathlib import Path

from adversary.fileio import write_text_atomic
from adversary.reports._collect import RunReport, collect
from adversary.reports._html import render_html
from adversary.reports._markdown import render_markdown

REPORT_FILES = ("report.html", "report.md", "report.json")


def _report_json(reports: list[RunReport]) -> dict:
    return {
        "runs": [
            {"name": r.name, "run_dir": str(r.run_dir), "metrics": r.metrics, "totals": r.totals, "diversity": r.diversity,
             "transfer": r.transfer, "hardest": r.hardest}
            for r in reports
        ]
    }


def write_report(run_dirs: list[Path], out_dir: Path, embed: bool = True) -> list[Path]:
    """Render the runs in `run_dirs` into `out_dir`; returns the files written (each written atomically)."""
    reports = [collect(run_dir, embed=embed) for run_dir in run_dirs]
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = "\n".join(
        (f"<!-- run: {r.name} -->\n" if len(reports) > 1 else "") + render_markdown(r.metrics) for r in reports
    )
    contents = {
        "report.html": render_html(reports),
        "report.md": markdown,
        "report.json": json.dumps(_report_json(reports), indent=2, ensure_ascii=False) + "\n",
    }
    written = []
    for name, text in contents.items():
        write_text_atomic(out_dir / name, text)
        written.append(out_dir / name)
    return written
