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
from adversary.judges.trained import weights_document
from adversary.judges.measured import save_agreement
from adversary.labels import LabelRow, read_labels
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL
from adversary.models.embedder import get_embedder
from adversary.models.local_server import LocalServers
from adversary.records import Message

BATCH = 32
FIELDS = ("system", "user", "response")


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


def read_rows(path: Path) -> Iterator[tuple[int, dict, JudgeInput]]:
    """(line number, row, judge input) per non-empty line, streamed; a bad line is one ConfigError naming it."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{where}: not UTF-8 (bad byte at offset {exc.start})") from None
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: each line must be a JSON object")
            for field in FIELDS:
                if not isinstance(row.get(field), str):
                    raise ConfigError(f"{where}: field {field!r} must be a string")
            history = row.get("history") or []
            if not isinstance(history, list) or not all(
                    isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
                    for m in history):
                raise ConfigError(f"{where}: field 'history' must be a list of {{role: user|assistant, content}} objects")
            yield number, row, JudgeInput(system_prompt=row["system"], history=tuple(Message(**m) for m in history),
                                          user=row["user"], response=row["response"])


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


def _judge_labels(rows: list[LabelRow], judge_name: str, api_base: str | None, console: Console) -> list:
    """The verdict of judge `judge_name` on every labeled row, each held out from a trained judge's fit."""
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
    return verdicts


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
    verdicts = _judge_labels(rows, judge, api_base, Console(stderr=True))
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


@judge_app.command("train", epilog=epilog("judge train"))
def train(
    labeled: Path = typer.Argument(..., metavar="LABELED.jsonl", help="Rows with a boolean in_scope label and a scenario_id "
                                   "(the project's set: corpora/labels/judge_labels.jsonl)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the weights; use them with --judge embedded:PATH."),
    name: str = typer.Option(None, "--name", help="The judge's name in verdicts and reports (default: embedded-lr-<labels file name>)."),
    l2: float = typer.Option(10.0, "--l2", min=1e-6, help="L2 penalty on the standardized weights (1/C in scikit-learn's terms)."),
) -> None:
    """Fit the embedded judge (a logistic model over MiniLM similarity and refusal features) to hand labels.

    Prints its agreement on held-out scenarios (each scenario's rows judged by a model fitted to the others)
    and writes the model fitted to every row, with the rows' features so `calibrate` can hold scenarios out.
    """
    console = Console(stderr=True)
    embedder = get_embedder(DEFAULT_EMBEDDING_MODEL)
    similarity = EmbeddingJudge(embedder)
    items, breaks, scenario_ids = [], [], []
    for number, row, item in read_rows(labeled):
        if not isinstance(row.get("in_scope"), bool):
            raise ConfigError(f"{labeled}:{number}: field 'in_scope' must be true or false")
        if not isinstance(row.get("scenario_id"), str) or not row["scenario_id"]:
            raise ConfigError(f"{labeled}:{number}: field 'scenario_id' must be a non-empty string (scenarios are held out whole)")
        items.append(item)
        breaks.append(int(not row["in_scope"]))
        scenario_ids.append(row["scenario_id"])
    if len(set(breaks)) < 2 or len(set(scenario_ids)) < 2:
        raise ConfigError(f"{labeled}: training needs both breaks and holds, from at least two scenarios")
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
