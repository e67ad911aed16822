"""`adversary corpora list|show|validate|import`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from adversary.cli.examples import epilog
from adversary.corpus import FORMATS, dump_project_file, load_corpus, load_path
from adversary.errors import ConfigError
from adversary.fileio import write_text_atomic

corpora_app = typer.Typer(help="Inspect, validate and import scenario and distractor corpora.", no_args_is_help=True)

PATHS_HELP = "Corpus files or folders (.yaml/.json project files, CantTalkAboutThis .jsonl/.csv, OffTopicEval .md). Default: the starter corpus."


@corpora_app.command("list", epilog=epilog("corpora list"))
def list_command(paths: list[Path] = typer.Argument(None, help=PATHS_HELP)) -> None:
    """List scenarios and seed distractors with their counts."""
    corpus = load_corpus(paths or [])
    console = Console()
    per_scenario = Counter(d.scenario_id for d in corpus.distractors)
    table = Table(title=f"{len(corpus.scenarios)} scenarios")
    widest = max((len(s.id) for s in corpus.scenarios), default=2)
    table.add_column("id", no_wrap=True, min_width=widest)
    for column in ("domain", "turns", "insertion points", "controls", "bound distractors", "fallback"):
        table.add_column(column, overflow="fold")
    for s in corpus.scenarios:
        table.add_row(
            s.id, s.domain, str(len(s.dialogue)), ",".join(map(str, s.usable_insertion_points)), str(len(s.controls)),
            str(per_scenario.get(s.id, 0)), "yes" if s.fallback else "no",
        )
    console.print(table)
    styles = Counter(d.style.value for d in corpus.distractors)
    generic = sum(1 for d in corpus.distractors if d.scenario_id is None)
    console.print(
        f"{len(corpus.distractors)} distractors ({generic} generic, {len(corpus.distractors) - generic} bound): "
        + ", ".join(f"{k} {v}" for k, v in sorted(styles.items()))
    )


@corpora_app.command("show", epilog=epilog("corpora show"))
def show_command(
    item_id: str = typer.Argument(..., help="A scenario or distractor id."),
    paths: list[Path] = typer.Argument(None, help=PATHS_HELP),
) -> None:
    """Show one scenario (system prompt, dialogue, controls) or one distractor."""
    corpus = load_corpus(paths or [])
    console = Console()
    for s in corpus.scenarios:
        if s.id == item_id:
            console.print(f"[bold]{s.id}[/bold] ({s.domain}) {s.description}", markup=True)
            console.print("[bold]system prompt[/bold]")
            console.print(s.system_prompt, markup=False)
            console.print("[bold]dialogue[/bold] (▸ marks insertion points)")
            points = set(s.usable_insertion_points)
            for i, turn in enumerate(s.dialogue):
                marker = "▸" if i in points else " "
                console.print(f"{marker} {i:2d} {turn.role:9s} {turn.content}", markup=False)
            for control in s.controls:
                console.print(f"control: {control}", markup=False)
                if answer := s.answer_to(control):
                    console.print(f"  answer: {answer}", markup=False)
            if s.fallback:
                console.print(f"fallback: {s.fallback}", markup=False)
            return
    for d in corpus.distractors:
        if d.id == item_id:
            console.print_json(d.model_dump_json())
            return
    raise ConfigError(f"no scenario or distractor with id {item_id!r}")


@corpora_app.command("validate", epilog=epilog("corpora validate"))
def validate_command(paths: list[Path] = typer.Argument(..., help="Corpus files or folders to check.")) -> None:
    """Check corpus files against the schema; the first problem is reported with file, line and field."""
    console = Console()
    for path in paths:
        corpus = load_path(path)
        console.print(f"ok {path}: {len(corpus.scenarios)} scenarios, {len(corpus.distractors)} distractors", markup=False)


@corpora_app.command("import", epilog=epilog("corpora import"))
def import_command(
    source: Path = typer.Argument(..., help="File or folder to import."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the project-format YAML."),
    fmt: str = typer.Option(None, "--format", help=f"Input format ({', '.join(FORMATS)}); default: from the extension."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Convert CantTalkAboutThis (.jsonl/.csv) or OffTopicEval (.md) data to the project's format."""
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}")
    if output.exists() and not force:
        raise ConfigError(f"{output} exists; pass --force to overwrite")
    corpus = load_path(source, fmt)
    text = dump_project_file(corpus)
    write_text_atomic(output, text)
    Console().print(f"wrote {output}: {len(corpus.scenarios)} scenarios, {len(corpus.distractors)} distractors", markup=False)
