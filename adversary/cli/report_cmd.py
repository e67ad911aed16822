"""`adversary report`: robustness reports (HTML, Markdown, JSON) of one or more run directories."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from adversary.reports import write_report


def report_command(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories written by `adversary eval` or `adversary run`; "
                                          "several give a side-by-side comparison (e.g. before and after a fine-tune)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder. Default: the run directory (one run) or "
                             "reports/compare-<names> (several)."),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="Skip the figures that need sentence embeddings "
                                       "(diversity, archive map); useful with a remote embedder."),
) -> None:
    """Write report.html (one self-contained file that opens offline), report.md and report.json."""
    out_dir = out or (run_dirs[0] if len(run_dirs) == 1 else Path("reports") / ("compare-" + "-".join(p.name for p in run_dirs)))
    with Console(stderr=True).status(f"reading {len(run_dirs)} run(s), embedding texts and drawing charts"):
        written = write_report(list(run_dirs), out_dir, embed=not no_embeddings)
    Console(soft_wrap=True).print("wrote " + ", ".join(str(p) for p in written), markup=False)
