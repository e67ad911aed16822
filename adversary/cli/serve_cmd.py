"""`adversary serve`: the embedded model and the judge as local HTTP endpoints for other tools (promptfoo, a harness)."""

from __future__ import annotations

import threading
from pathlib import Path

import typer

from adversary.export.promptfoo import SERVE_PORT
from adversary.judges import DEFAULT_JUDGE, JUDGE_HELP
from adversary.models.embedded import DEFAULT_CHAT_MODEL
from adversary.serving import serving


def serve_command(
    model: str = typer.Argument(DEFAULT_CHAT_MODEL, help="Embedded model to serve (see `adversary models`), or local/smollm2+PATH "
                               "with a finetuned LoRA adapter (either with @SCALE to scale the adapter)."),
    port: int = typer.Option(SERVE_PORT, "--port", help="Port of the model's OpenAI-compatible endpoint (0: any free port)."),
    judge: str = typer.Option(DEFAULT_JUDGE, "--judge", help=JUDGE_HELP),
    judge_port: int = typer.Option(None, "--judge-port", help="Port of the judge (default: the model's port + 1; 0: any free port)."),
    log_dir: Path = typer.Option(None, "--log-dir", help="Folder of the model server's log. Default: the temp folder."),
) -> None:
    """Serve an embedded model as a local OpenAI-compatible endpoint, and the judge at POST /judge, until Ctrl-C.

    The model answers up to ADVERSARY_LOCAL_SLOTS requests at once (8 by default), decoded together, so clients
    such as promptfoo may send that many in parallel. The judge takes {"system", "history": [{"role", "content"}],
    "user", "response"} and answers {"pass", "in_scope", "refusal", "score", "judge", "reason"}.
    """
    if judge_port is None:
        judge_port = port + 1 if port else 0
    with serving(model, judge, port=port or None, judge_port=judge_port, log_dir=log_dir) as served:
        typer.echo(f"model: {served.model_url} (OpenAI-compatible; model name {served.model_name!r}; promptfoo provider "
                   f"openai:chat:{served.model_name} with apiBaseUrl {served.model_url})")
        typer.echo(f"judge: {served.judge_url} (POST; {served.judge})")
        typer.echo("ready; Ctrl-C stops both", err=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            typer.echo("stopped", err=True)
