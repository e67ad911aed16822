"""`adversary eval`: evaluate a fixed set of distractors against one or more targets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from adversary.cli.log_lines import LogLines
from adversary.evaluation import EvalConfig, EvalProgress, run_eval
from adversary.judges import DEFAULT_JUDGE, JUDGE_HELP
from adversary.reports import summary_tables, wall_time_text, write_report

FAIL_OVER_EXIT_CODE = 3


def _default_out() -> Path:
    return Path("runs") / f"eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def eval_command(
    scenarios: list[Path] = typer.Option(
        None, "--scenarios", "-s",
        help="Scenario file or folder (repeatable): project .yaml/.json, CantTalkAboutThis .jsonl/.csv (its distractors are "
        "used, each after its bot turn) or OffTopicEval .md (scope only; the starter's generic distractors are used). "
        "Default: the starter corpus.",
    ),
    target: list[str] = typer.Option(
        None, "--target", "-t",
        help="Target model (repeatable): local/smollm2 (embedded, default), local/smollm2+PATH (with the LoRA adapter of a "
        "finetune output folder or GGUF file; a tail @SCALE such as @0.5 scales the adapter), any litellm model such as openai/gpt-4o-mini "
        "or ollama/llama3, or a model name served at --api-base.",
    ),
    trials: int = typer.Option(3, "--trials", "-n", help="Times each distractor and control turn is sent (seeded sampling)."),
    seed: int = typer.Option(0, "--seed", help="Seed for placement and sampling; the same seed repeats the same requests."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (store, metrics.json, report.html/.md). Default: runs/eval-TIMESTAMP. An existing run directory with the same options resumes."),
    judge: str = typer.Option(DEFAULT_JUDGE, "--judge", help=JUDGE_HELP),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible base URL for non-local targets and judge, e.g. http://localhost:8000/v1."),
    temperature: float = typer.Option(0.7, "--temperature", help="Target sampling temperature."),
    max_tokens: int = typer.Option(96, "--max-tokens", help="Maximum tokens of each target reply."),
    embedder: str = typer.Option("local/minilm", "--embedder", help="Embedding model of the embedded judge: local/minilm (offline) or any litellm embedding model."),
    placements: int = typer.Option(1, "--placements", help="Scenarios each generic distractor is placed in."),
    max_distractors: int = typer.Option(None, "--max-distractors", help="Evaluate a seeded sample of this many distractors."),
    max_controls: int = typer.Option(None, "--max-controls", help="Evaluate a seeded sample of this many in-scope control "
                                     "turns (default: all; over-refusal needs about 100 control trials)."),
    concurrency: int = typer.Option(None, "--concurrency", min=1, help="Target calls in flight at once (default: one per local server slot, ADVERSARY_LOCAL_SLOTS, when every target is local; else 1)."),
    rpm: float = typer.Option(None, "--rpm", help="At most this many requests per minute to each target."),
    router: Path = typer.Option(None, "--router", help="litellm Router YAML (model_list): spread a target over its deployments."),
    fail_over: float = typer.Option(None, "--fail-over", help="Exit with status 3 when any target's break rate exceeds this rate (0-1), for CI gating."),
) -> None:
    """Evaluate distractors and in-scope control turns against targets; print and store break rates."""
    console = Console(stderr=True, soft_wrap=True)
    run_dir = out or _default_out()
    config = EvalConfig(
        scenario_paths=tuple(str(p) for p in scenarios or []),
        targets=tuple(target or ["local/smollm2"]),
        trials=trials, seed=seed, judge=judge, embedder=embedder, api_base=api_base, temperature=temperature,
        max_tokens=max_tokens, placements_per_distractor=placements, max_distractors=max_distractors, max_controls=max_controls,
        concurrency=concurrency, requests_per_minute=rpm, router=str(router) if router else None,
    )
    if fail_over is not None and not 0.0 <= fail_over <= 1.0:
        raise typer.BadParameter("--fail-over must be a rate between 0 and 1")
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("breaks {task.fields[breaks]} errors {task.fields[errors]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    ) as bar:
        task = bar.add_task("evaluating", total=None, breaks=0, errors=0)
        counts = {"breaks": 0, "errors": 0}
        plan = {"total": 0, "done": 0}
        log_line = LogLines(console)

        def on_plan(total: int, done: int) -> None:
            bar.update(task, total=total, completed=done)
            plan.update(total=total, done=done)
            if done:
                console.print(f"resuming: {done} of {total} attempts already finished in {run_dir}")

        def on_attempt(attempt) -> None:
            if attempt.status != "ok":
                counts["errors"] += 1
            elif attempt.broke:
                counts["breaks"] += 1
            bar.update(task, advance=1, **counts)
            plan["done"] += 1
            log_line(f"evaluating: {plan['done']} of {plan['total']} attempts, {counts['breaks']} breaks, "
                     f"{counts['errors']} errors", force=plan["done"] == plan["total"])

        try:
            result = run_eval(
                config, run_dir, EvalProgress(on_plan=on_plan, on_attempt=on_attempt, on_message=console.print),
            )
        except KeyboardInterrupt:
            bar.stop()
            console.print(f"interrupted: finished attempts are saved in {run_dir}; run the same command again to resume")
            raise typer.Exit(130) from None
    write_report([run_dir], run_dir)
    stdout = Console()
    for table in summary_tables(result.metrics):
        stdout.print(table)
    stdout.print(f"wall time {wall_time_text(result.metrics)}; {result.attempts_run} attempts run, {result.attempts_skipped} resumed; "
                  f"wrote {run_dir}/metrics.json, report.html, report.md", markup=False, soft_wrap=True)
    if fail_over is not None:
        worst = max((t.get("break_rate") or 0.0) for t in result.metrics["targets"].values())
        if worst > fail_over:
            stdout.print(f"break rate {worst:.3f} exceeds --fail-over {fail_over}", markup=False, soft_wrap=True)
            raise typer.Exit(FAIL_OVER_EXIT_CODE)
