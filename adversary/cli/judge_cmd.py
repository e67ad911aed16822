"""`adversary judge`: judge replies from a JSONL file, and measure a judge against hand labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from adversary import __version__
from adversary.cli.examples import epilog
from adversary.core.agreement import Agreement, agreement
from adversary.core.logistic import fit_logistic, leave_one_group_out
from adversary.errors import ConfigError
from adversary.fileio import atomic_writer, write_json_atomic
from adversary.judges import DEFAULT_JUDGE, JUDGE_HELP, EmbeddingJudge, JudgeInput, build_judge
from adversary.judges.features import FEATURE_NAMES, reply_features
from adversary.judges.labels import check_trainable, read_rows
from adversary.judges.labels import read_labels as read_training_rows
from adversary.judges.trained import weights_document
from adversary.judges.measured import save_agreement
from adversary.labels import LabelRow, read_labels
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL
from adversary.models.embedder import get_embedder
from adversary.models.local_server import LocalServers

BATCH = 32


class _JudgeGroup(TyperGroup):
    """`adversary judge FILE ...` runs the default `file` command; `adversary judge calibrate ...` the other."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["file", *args]
        return super().resolve_command(ctx, args)


judge_app = typer.Typer(
    cls=_JudgeGroup, no_args_is_help=True,
    help="Judge replies in a JSONL file, or measure a judge against hand labels.\n\n"
         "adversary judge INPUT.jsonl -o OUTPUT.jsonl [--judge NAME]: add in_scope, refusal, score and rationale to each "
         "line of {id, system, history, user, response}.\n\n"
         "adversary judge calibrate LABELED.jsonl [--judge NAME]: accuracy, Cohen's kappa, break precision and recall.\n\n"
         "adversary judge train LABELED.jsonl -o WEIGHTS.json: fit the embedded judge to your own hand labels.",
)


def _batches(rows: Iterator, size: int) -> Iterator[list]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _judge_rows(path: Path, judge_name: str, api_base: str | None, console: Console) -> Iterator[tuple[dict, object]]:
    """(row, verdict) for every line of `path`, judged in batches; memory stays flat however long the file."""
    with LocalServers() as servers:
        judge = build_judge(judge_name, servers=servers, api_base=api_base, embedder=get_embedder(DEFAULT_EMBEDDING_MODEL))
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} rows"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task(f"judging with {judge.name}", total=None)
            for batch in _batches(read_rows(path), BATCH):
                items = [item for _, _, item in batch]
                for (_, row, _), verdict in zip(batch, judge.judge(items)):
                    yield row, verdict
                bar.update(task, advance=len(batch))


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _agreement_figures(table: Agreement) -> dict:
    """The agreement figures `calibrate` saves and `train` stores as its held-out result."""
    return {"rows": table.total, "accuracy": table.accuracy, "kappa": table.kappa, "break_precision": table.precision,
            "break_recall": table.recall, "hold_specificity": table.specificity,
            "confusion": {"labeled_break": {"judged_break": table.break_break, "judged_hold": table.break_hold},
                          "labeled_hold": {"judged_break": table.hold_break, "judged_hold": table.hold_hold}}}


def _agreement_line(table: Agreement) -> str:
    return (f"accuracy {_figure(table.accuracy)}  kappa {_figure(table.kappa)}  break precision {_figure(table.precision)}  "
            f"break recall {_figure(table.recall)}  hold specificity {_figure(table.specificity)}")


@judge_app.command("file", hidden=True, epilog=epilog("judge file"))
def judge_file(
    input_path: Path = typer.Argument(..., metavar="INPUT.jsonl", help="Lines of {id, system, history, user, response}."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the lines with in_scope, refusal, score, rationale."),
    judge: str = typer.Option(DEFAULT_JUDGE, "--judge", help=JUDGE_HELP),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible base URL for a judge model."),
) -> None:
    """Judge each reply of INPUT.jsonl; write it with `in_scope`, `refusal` and the judge's score and rationale."""
    console = Console(stderr=True)
    count = 0
    with atomic_writer(output) as out:
        for row, verdict in _judge_rows(input_path, judge, api_base, console):
            out.write(json.dumps({**row, "in_scope": verdict.in_scope, "refusal": verdict.refusal, "judge": verdict.judge,
                                  "score": verdict.score, "rationale": verdict.rationale}, ensure_ascii=False) + "\n")
            count += 1
    Console().print(f"judged {count} replies with {judge}; wrote {output}", markup=False)


def _judge_labels(rows: list[LabelRow], judge_name: str, api_base: str | None, console: Console) -> tuple[list, frozenset]:
    """The verdict of judge `judge_name` on every labeled row, each held out from a trained judge's fit where it
    can refit, and the ids of the rows the judge was trained on (for judges that cannot refit)."""
    verdicts = []
    with LocalServers() as servers:
        judge = build_judge(judge_name, servers=servers, api_base=api_base, embedder=get_embedder(DEFAULT_EMBEDDING_MODEL))
        refit = getattr(judge, "judge_held_out", None)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed}/{task.total} rows"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task(f"judging with {judge.name}", total=len(rows))
            for start in range(0, len(rows), BATCH):
                batch = rows[start:start + BATCH]
                items = [JudgeInput(system_prompt=r.system, history=r.history, user=r.user, response=r.response) for r in batch]
                verdicts.extend(refit(items, [r.scenario_id for r in batch]) if refit else judge.judge(items))
                bar.update(task, advance=len(batch))
    return verdicts, frozenset(getattr(judge, "training_ids", frozenset()))


def _annotator_figures(rows: list[LabelRow], judged: list[bool]) -> dict | None:
    """Annotator A against annotator B, and the judge against each, on the rows both annotators labeled."""
    paired = [(r, j) for r, j in zip(rows, judged) if r.in_scope_a is not None and r.in_scope_b is not None]
    if not paired:
        return None
    weights = [r.weight for r, _ in paired]
    a = [not r.in_scope_a for r, _ in paired]
    b = [not r.in_scope_b for r, _ in paired]
    j = [judgement for _, judgement in paired]
    return {"rows": len(paired), "annotators": _agreement_figures(agreement(a, b, weights)),
            "judge_vs_a": _agreement_figures(agreement(a, j, weights)),
            "judge_vs_b": _agreement_figures(agreement(b, j, weights))}


@judge_app.command("calibrate", epilog=epilog("judge calibrate"))
def calibrate(
    labeled: Path = typer.Argument(..., metavar="LABELED.jsonl", help="Rows with hand labels in_scope and refusal "
                                   "(the project's set: corpora/labels/judge_labels.jsonl; yours: `adversary label`)."),
    judge: str = typer.Option(DEFAULT_JUDGE, "--judge", help="Judge to measure."),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible base URL for a judge model."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
    save: Path = typer.Option(None, "--save", help="Record the figures for this judge in an agreement file, which "
                              "reports read (the shipped one: corpora/labels/agreement.json)."),
) -> None:
    """Agreement of a judge with hand labels: accuracy, Cohen's kappa, break precision and recall, confusion matrix.

    The break class is the positive one (in_scope false). Where rows carry two annotators' labels (in_scope_a,
    in_scope_b), the annotators' agreement with each other is printed beside the judge's agreement with each,
    the bar a judge is held to. Rows from `adversary label` are weighted by 1 / their selection probability.
    Every row counts as held out: a judge fitted to the project's labels judges a row from one of its
    training scenarios with a model refitted without that scenario's rows; the other judges were fitted to no labels.
    """
    rows = read_labels(labeled)
    if not rows:
        raise ConfigError(f"{labeled}: no labeled rows")
    verdicts, trained_on = _judge_labels(rows, judge, api_base, Console(stderr=True))
    judge_names = {v.judge for v in verdicts}
    weights = [r.weight for r in rows]
    judged = [not v.in_scope for v in verdicts]
    table = agreement([not r.in_scope for r in rows], judged, weights)
    with_refusal = [(r.refusal, v.refusal, r.weight) for r, v in zip(rows, verdicts) if r.refusal is not None]
    refusal = agreement([l for l, _, _ in with_refusal], [j for _, j, _ in with_refusal], [w for _, _, w in with_refusal])
    figures = {
        "judge": judge, **_agreement_figures(table), "refusal_accuracy": refusal.accuracy, "refusal_kappa": refusal.kappa,
        "labels": labeled.name, "adversary_version": __version__,
    }
    annotators = _annotator_figures(rows, judged)
    if annotators:
        figures["two_annotators"] = annotators
    seen = sum(r.id in trained_on for r in rows)
    if seen:
        figures["rows_in_training"] = seen
        Console(stderr=True).print(f"warning: {seen} of these {len(rows)} rows trained this judge, so its agreement on them "
                                   "is not held out (held-out figures: python bench/judge.py)", markup=False)
    if save is not None:
        for name in judge_names:
            save_agreement(name, figures, save)
    if as_json:
        print(json.dumps(figures))
        return
    weighted = " (weighted by 1 / selection probability)" if any(r.selection_probability for r in rows) else ""
    lines = [
        f"judge {judge} on {len(rows)} labeled replies (break = not in scope){weighted}",
        _agreement_line(table),
        "                 judged break  judged hold",
        f"labeled break    {table.break_break:>12g}  {table.break_hold:>11g}",
        f"labeled hold     {table.hold_break:>12g}  {table.hold_hold:>11g}",
        f"refusal: accuracy {_figure(refusal.accuracy)}  kappa {_figure(refusal.kappa)}",
    ]
    if annotators:
        lines += [
            f"on the {annotators['rows']} rows two annotators labeled independently:",
            f"  annotator A vs B   accuracy {_figure(annotators['annotators']['accuracy'])}  kappa {_figure(annotators['annotators']['kappa'])}",
            f"  judge vs A         accuracy {_figure(annotators['judge_vs_a']['accuracy'])}  kappa {_figure(annotators['judge_vs_a']['kappa'])}",
            f"  judge vs B         accuracy {_figure(annotators['judge_vs_b']['accuracy'])}  kappa {_figure(annotators['judge_vs_b']['kappa'])}",
        ]
    Console(soft_wrap=True).print("\n".join(lines), markup=False)


KINDS = ("logistic", "cross-encoder")


@judge_app.command("train", epilog=epilog("judge train"))
def train(
    labeled: Path = typer.Argument(..., metavar="LABELED.jsonl", help="Rows with a boolean in_scope label and a scenario_id "
                                   "(the project's set: corpora/labels/judge_labels.jsonl)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the judge (logistic: a JSON file; cross-encoder: "
                                "a folder); use it with --judge embedded:PATH."),
    kind: str = typer.Option("logistic", "--kind", help="logistic: a logistic model over MiniLM similarity features "
                             "(seconds); cross-encoder: MiniLM reading scope, user turn and reply, with a LoRA adapter "
                             "(minutes on a CPU core)."),
    name: str = typer.Option(None, "--name", help="The judge's name in verdicts and reports (default: embedded-lr-<labels "
                             "file name> or embedded-ce-<labels file name>)."),
    l2: float = typer.Option(10.0, "--l2", min=1e-6, help="logistic: L2 penalty on the standardized weights (1/C in "
                             "scikit-learn's terms)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="cross-encoder: passes over the labels (default 3)."),
    max_length: int = typer.Option(None, "--max-length", min=160, max=512, help="cross-encoder: tokens read per reply "
                                   "(scope + user turn + reply; default 256)."),
    scope: str = typer.Option(None, "--scope", help="cross-encoder: which scope text is read: head (the system prompt "
                              "from its start) or cues (its first sentence and the sentences stating role and limits)."),
    seed: int = typer.Option(None, "--seed", help="cross-encoder: seed of the head, adapter, dropout and shuffling."),
    threads: int = typer.Option(None, "--threads", min=1, help="cross-encoder: torch threads (default: torch's)."),
) -> None:
    """Fit an embedded judge to hand labels: the logistic kind (default) or the cross-encoder (reading judge).

    Needs at least 50 labeled rows with both breaks and holds. The logistic kind prints its agreement on
    held-out scenarios (each scenario's rows judged by a model fitted to the others) and writes the model fitted
    to every row. The cross-encoder kind trains on every row (its held-out agreement: python bench/judge.py).
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    rows = read_training_rows(labeled)
    if kind == "cross-encoder":
        _train_cross_encoder(labeled, rows, output, name, epochs, max_length, scope, seed, threads)
        return
    for row in rows:
        if row.scenario_id is None:
            raise ConfigError(f"{labeled}:{row.line}: field 'scenario_id' must be a non-empty string (scenarios are held out whole)")
    check_trainable(rows, labeled)
    if len({r.scenario_id for r in rows}) < 2:
        raise ConfigError(f"{labeled}: training needs rows from at least two scenarios")
    console = Console(stderr=True)
    embedder = get_embedder(DEFAULT_EMBEDDING_MODEL)
    similarity = EmbeddingJudge(embedder)
    items = [r.item for r in rows]
    breaks = [int(r.is_break) for r in rows]
    scenario_ids = [r.scenario_id for r in rows]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        bar.add_task(f"embedding {len(items)} labeled replies", total=None)
        features = np.vstack([reply_features(items[i:i + BATCH], embedder, similarity) for i in range(0, len(items), BATCH)])
    probabilities = leave_one_group_out(features, breaks, scenario_ids, FEATURE_NAMES, l2)
    table = agreement([bool(b) for b in breaks], [bool(p >= 0.5) for p in probabilities])
    held_out = {"method": "leave one scenario out", "scenarios": len(set(scenario_ids)), **_agreement_figures(table)}
    judge_name = name or f"embedded-lr-{labeled.stem}"
    model = fit_logistic(features, breaks, FEATURE_NAMES, l2)
    write_json_atomic(output, weights_document(judge_name, model, features, breaks, scenario_ids, labeled.name, held_out))
    Console(soft_wrap=True).print(
        f"judge {judge_name}: {len(items)} labeled replies from {len(set(scenario_ids))} scenarios\n"
        f"held out by scenario: {_agreement_line(table)}\n"
        f"wrote {output}; judge with --judge embedded:{output}", markup=False)


def _train_cross_encoder(labeled: Path, rows: list, output: Path, name: str | None, epochs: int | None,
                         max_length: int | None, scope: str | None, seed: int | None, threads: int | None) -> None:
    import dataclasses
    import os
    import shutil
    import tempfile
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    from adversary.judges.reader import ReaderConfig, TrainingExample, save_reader, train_reader

    check_trainable(rows, labeled)
    overrides = {k: v for k, v in (("epochs", epochs), ("max_length", max_length), ("scope", scope), ("seed", seed))
                 if v is not None}
    config = dataclasses.replace(ReaderConfig(), **overrides)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: exists and is not a folder (a cross-encoder judge is written as a folder)")
    judge_name = name or f"embedded-ce-{labeled.stem}"
    examples = [TrainingExample(r.item, r.is_break, r.refusal) for r in rows]
    console = Console(stderr=True)
    started = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps  loss {task.fields[loss]}"),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(f"training {judge_name} on {len(rows)} rows", total=None, loss="–")

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=f"{loss:.3f}")

        model, _, report = train_reader(examples, config, progress=progress, threads=threads)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        save_reader(model, staging, judge_name, config, {
            "training": {"labels": labeled.name, "rows": len(rows), "breaks": sum(r.is_break for r in rows),
                         "steps": report.steps, "final_loss": round(report.final_loss, 4),
                         "seconds": round(time.monotonic() - started, 1),
                         "ids": [r.id for r in rows if r.id is not None]},
        })
        mask = os.umask(0)
        os.umask(mask)
        staging.chmod(0o777 & ~mask)  # mkdtemp makes 0700; the folder gets what a plain mkdir would
        for written in staging.iterdir():
            written.chmod(0o666 & ~mask)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    Console(soft_wrap=True).print(
        f"judge {judge_name}: cross-encoder trained on {len(rows)} labeled replies "
        f"({sum(r.is_break for r in rows)} breaks) in {report.steps} steps, {time.monotonic() - started:.0f} s; "
        f"final loss {report.final_loss:.3f}\n"
        f"held-out agreement is measured by python bench/judge.py (leave one scenario source out)\n"
        f"wrote {output}; judge with --judge embedded:{output}", markup=False)
