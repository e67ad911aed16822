"""`adversary export`: hard-negative training sets (SFT, DPO, CantTalkAboutThis) from a run directory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adversary import api
from adversary.export import FORMATS
from adversary.export.promptfoo import PROMPTFOO_VERSION, PROVIDER_HELP
from adversary.models.embedded import DEFAULT_CHAT_MODEL, is_local

WRITTEN = {
    "sft": "train.jsonl, test.jsonl, README.md, export.json",
    "dpo": "train.jsonl, test.jsonl, README.md, export.json",
    "canttalkaboutthis": "train.jsonl, test.jsonl, README.md, export.json",
    "hf": "sft/ and dpo/: datasets.load_from_disk folders with README.md cards; export.json",
    "promptfoo": f"promptfooconfig.yaml, promptfooconfig.llm-rubric.yaml, tests.yaml, corpus.yaml; run it with "
                 f"`adversary serve` and `npx promptfoo@{PROMPTFOO_VERSION} eval`",
}


def export_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by `adversary run` or `adversary eval`."),
    fmt: str = typer.Option(..., "--format", "-f", help=f"Output format: {' | '.join(FORMATS)}."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (train.jsonl, test.jsonl, README.md dataset card, "
                             "export.json; hf: sft/ and dpo/ dataset folders; promptfoo: the suite). Default: RUN_DIR/export-FORMAT."),
    min_break_rate: float = typer.Option(0.5, "--min-break-rate", help="Export distractors that broke targets at least this often."),
    max_per_scenario: int = typer.Option(None, "--max-per-scenario", help="At most this many negatives per scenario."),
    controls_ratio: float = typer.Option(0.5, "--controls-ratio", help="SFT: in-scope control examples per negative, so "
                                         "fine-tuning does not teach refusing everything."),
    dialogue_controls: bool = typer.Option(False, "--dialogue-controls", help="SFT: also use each scenario's own in-scope "
                                           "dialogue turns, with the replies its corpus wrote, as controls (alternating "
                                           "with the control questions), so training sees follow-ups and statements too."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of scenarios held out as the test split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    writer: str = typer.Option(DEFAULT_CHAT_MODEL, "--writer", help="Model that writes ideal replies where a scenario has "
                               "no fallback text (litellm name; default the embedded model)."),
    judge: str = typer.Option(None, "--judge", help="Judge that checks written replies. Default: the run's judge."),
    verify: str = typer.Option(None, "--verify", help="A stronger model or judge that checks each distractor is really out "
                               "of scope. Default: the judge."),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible base URL for non-local models (and the "
                                 "promptfoo provider named by --provider)."),
    provider: str = typer.Option(None, "--provider", help=f"promptfoo: the provider the suite tests, {PROVIDER_HELP}. "
                                 "Default: the run's target."),
    judge_url: str = typer.Option(None, "--judge-url", help="promptfoo: where `adversary serve` answers judge requests "
                                  "(default http://127.0.0.1:8741/judge; ADVERSARY_JUDGE_URL overrides it at eval time)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Export the distractors that broke targets as training data (sft, dpo, canttalkaboutthis; hf: SFT and DPO as
    Hugging Face datasets) with ideal replies, controls and a dataset card, or as a promptfoo regression suite."""
    console = Console(stderr=True, soft_wrap=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, transient=True)
    task = bar.add_task("distractors checked", total=None)

    def on_checked(done: int, total: int) -> None:
        """Draw the bar from the first checked distractor on, so an error before it stays one line."""
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        result = api.export(run_dir, fmt, out, force=force, provider=provider, api_base=api_base, judge_url=judge_url,
                            on_message=console.print, on_checked=on_checked, min_break_rate=min_break_rate,
                            max_per_scenario=max_per_scenario, controls_ratio=controls_ratio, dialogue_controls=dialogue_controls,
                            test_fraction=test_fraction,
                            seed=seed, writer_model=writer, judge=judge, verify=verify)
    finally:
        if bar.live.is_started:
            bar.stop()
    summary = result.counts
    splits = summary["splits"]
    Console(soft_wrap=True).print(
        f"exported {summary['exported']} of {summary['found']} breaking distractors as {fmt}: "
        + "; ".join(f"{name} {c['negatives']} negatives + {c['controls']} controls over {len(c['scenarios'])} scenarios"
                    for name, c in splits.items())
        + f"\ndropped: {', '.join(f'{k} {v}' for k, v in summary['dropped'].items() if v) or 'none'}"
        + f"\nwrote {result.out_dir}/ ({WRITTEN[fmt]})",
        markup=False,
    )
    written = sum(c.get("ideals_by_author", {}).get("writer", 0) + c.get("controls_by_answer", {}).get("writer", 0)
                  for c in splits.values())
    if written and is_local(writer):
        console.print(f"note: the embedded {writer} wrote {written} of these replies; the judge accepts them, but a 135M "
                      "model's text is often incoherent (it echoes the system prompt). Read them, give scenarios a "
                      "`fallback` and answered controls (`- {text, answer}`), or pass --writer a stronger model.",
                      markup=False)
