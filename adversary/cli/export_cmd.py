"""`adversary export`: hard-negative training sets (SFT, DPO, CantTalkAboutThis) from a run directory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adversary.export import FORMATS, ExportConfig, Exporter, check_sources
from adversary.judges import build_judge
from adversary.models.chat import resolve_route
from adversary.models.embedded import DEFAULT_CHAT_MODEL, is_local
from adversary.models.embedder import get_embedder
from adversary.models.local_server import LocalServers
from adversary.store import STORE_FILENAME, Store


def export_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by `adversary run` or `adversary eval`."),
    fmt: str = typer.Option(..., "--format", "-f", help=f"Output format: {' | '.join(FORMATS)}."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (train.jsonl, test.jsonl, README.md dataset card, "
                             "export.json). Default: RUN_DIR/export-FORMAT."),
    min_break_rate: float = typer.Option(0.5, "--min-break-rate", help="Export distractors that broke targets at least this often."),
    max_per_scenario: int = typer.Option(None, "--max-per-scenario", help="At most this many negatives per scenario."),
    controls_ratio: float = typer.Option(0.5, "--controls-ratio", help="SFT: in-scope control examples per negative, so "
                                         "fine-tuning does not teach refusing everything."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of scenarios held out as the test split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    writer: str = typer.Option(DEFAULT_CHAT_MODEL, "--writer", help="Model that writes ideal replies where a scenario has "
                               "no fallback text (litellm name; default the embedded model)."),
    judge: str = typer.Option(None, "--judge", help="Judge that checks written replies. Default: the run's judge."),
    verify: str = typer.Option(None, "--verify", help="A stronger model or judge that checks each distractor is really out "
                               "of scope. Default: the judge."),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible base URL for non-local models."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Export the distractors that broke targets as training data, with ideal replies, controls and a dataset card."""
    console = Console(stderr=True, soft_wrap=True)
    config = ExportConfig(fmt=fmt, min_break_rate=min_break_rate, max_per_scenario=max_per_scenario,
                          controls_ratio=controls_ratio, test_fraction=test_fraction, seed=seed, writer_model=writer,
                          judge=judge, verify=verify)
    config.validate()
    out_dir = out or run_dir / f"export-{fmt}"
    check_sources(run_dir, out_dir, force)
    with Store(run_dir / STORE_FILENAME) as store:
        run_config = store.get_meta("config") or {}
    judge_name = judge or run_config.get("judge", "embedded")
    embedder = get_embedder(run_config.get("embedder", "local/minilm"), api_base=api_base)
    with LocalServers(log_dir=run_dir) as servers:
        from adversary.export.writer import DSPyReplyWriter

        route = resolve_route(writer, servers, None if is_local(writer) else api_base)
        judge_impl = build_judge(judge_name, servers=servers, api_base=api_base, embedder=embedder)
        verifier = build_judge(verify, servers=servers, api_base=api_base, embedder=embedder) if verify else None
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("distractors checked", total=None)
            exporter = Exporter(config, run_dir, out_dir, judge=judge_impl, writer=DSPyReplyWriter(route), embedder=embedder,
                                verifier=verifier, progress=console.print,
                                on_checked=lambda done, total: bar.update(task, completed=done, total=total))
            result = exporter.run()
    summary = result.counts
    splits = summary["splits"]
    Console(soft_wrap=True).print(
        f"exported {summary['exported']} of {summary['found']} breaking distractors as {fmt}: "
        + "; ".join(f"{name} {c['negatives']} negatives + {c['controls']} controls over {len(c['scenarios'])} scenarios"
                    for name, c in splits.items())
        + f"\ndropped: {', '.join(f'{k} {v}' for k, v in summary['dropped'].items() if v) or 'none'}"
        + f"\nwrote {out_dir}/ (train.jsonl, test.jsonl, README.md, export.json)",
        markup=False,
    )
