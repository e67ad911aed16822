"""`adversary finetune`: train a LoRA adapter on an export's hard negatives (CPU, TRL + peft)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from adversary.cli.log_lines import LogLines
from adversary.models.embedded import DEFAULT_CHAT_MODEL
from adversary.training.data import METHODS


def finetune_command(
    export_dir: Path = typer.Argument(..., help="Folder written by `adversary export RUN --format sft` (or dpo)."),
    out: Path = typer.Option(..., "--out", "-o", help="Adapter folder: PEFT files, adapter.gguf (embedded base), "
                             "finetune.json, and checkpoints/ while training. Rerun the same command to resume."),
    base: str = typer.Option(DEFAULT_CHAT_MODEL, "--base", help="Base model: the embedded local/smollm2 (its GGUF, "
                             "loaded by transformers) or a Hugging Face model folder."),
    method: str = typer.Option("sft", "--method", help=f"Training method: {' | '.join(METHODS)} (must match the export)."),
    epochs: float = typer.Option(2.0, "--epochs", help="Passes over the training rows."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps (overrides --epochs)."),
    learning_rate: float = typer.Option(2e-4, "--learning-rate", "--lr", help="Peak learning rate (cosine schedule)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Examples per optimizer step."),
    rank: int = typer.Option(16, "--rank", help="LoRA rank (alpha is twice the rank)."),
    max_tokens: int = typer.Option(384, "--max-tokens", help="Longest example; older dialogue turns, then the system "
                                   "prompt, are cut to fit, never the reply being learned."),
    include_test: bool = typer.Option(False, "--include-test", help="Also train on the export's test split (when "
                                      "evaluation happens on other scenarios)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the adapter's initialisation and the data order."),
    save_every: int = typer.Option(10, "--save-every", help="Checkpoint every this many steps."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores)."),
    force: bool = typer.Option(False, "--force", help="Replace the output folder instead of resuming or refusing."),
) -> None:
    """Fine-tune a LoRA adapter on an export's hard negatives and in-scope controls; serve it with
    `--target local/smollm2+OUT`."""
    from adversary.training.finetune import FinetuneConfig, finetune

    console = Console(stderr=True, soft_wrap=True)
    config = FinetuneConfig(export_dir=str(export_dir), base=base, method=method, epochs=epochs, max_steps=max_steps,
                            learning_rate=learning_rate, batch_size=batch_size, lora_rank=rank, lora_alpha=2 * rank,
                            max_tokens=max_tokens, include_test=include_test, seed=seed, save_every=save_every)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                   TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=False)
    task = bar.add_task("steps", total=None, loss="-")
    log_lines = LogLines(console)

    def on_step(step: int, total: int, loss: float | None) -> None:
        if not bar.live.is_started:
            bar.start()
            bar.reset(task, total=total, completed=step, loss="-")
        shown = f"{loss:.3f}" if loss is not None else "-"
        bar.update(task, completed=step, total=total, loss=shown)
        left = bar.tasks[0].time_remaining
        log_lines(f"step {step} of {total}, loss {shown}" + (f", about {left / 60:.0f} min left" if left else ""),
                  force=step == total)

    def on_stage(text: str) -> None:
        console.print(text, style="dim", markup=False, highlight=False)

    try:
        result = finetune(config, out, force=force, threads=threads, on_step=on_step, on_stage=on_stage)
    finally:
        if bar.live.is_started:
            bar.stop()
    rows = result.rows
    resumed = f" (resumed at step {result.resumed_at_step})" if result.resumed_at_step else ""
    console.print(f"trained {result.steps} steps{resumed} on {rows['train']} rows ({rows['train_negatives']} hard negatives, "
                  f"{rows['train_controls']} controls) in {result.seconds / 60:.1f} min this session; train loss {result.train_loss}"
                  + (f", test loss {result.eval_loss:.3f} on {rows['test']} rows" if result.eval_loss is not None else ""))
    typer.echo(f"wrote {out}: {', '.join(result.files)}, finetune.json")
    if "adapter.gguf" in result.files:
        typer.echo(f"use it as a target: adversary eval --target {result.base}+{out}")
