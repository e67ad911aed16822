"""`adversary models`: the embedded models and whether they are ready."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from adversary.models.chat import Sampling, complete, resolve_route
from adversary.models.embedded import CHAT_MODELS, EMBEDDING_MODELS, server_available
from adversary.models.local_server import LocalServers


def models_command(
    check: bool = typer.Option(False, "--check", help="Also start each embedded model and make one real call."),
) -> None:
    """List the embedded offline models and whether they are ready to use.

    Each embedded chat model also takes a finetuned LoRA adapter: `--target local/smollm2+PATH` (a finetune output
    folder or a GGUF LoRA file), and a model with an adapter takes a scale for it: `local/smollm2-guarded@0.5` applies
    half the adapter's update (fewer refusals of in-scope turns, less resistance). Any other model litellm supports works by name too, e.g. `--target openai/gpt-4o-mini`
    (key in OPENAI_API_KEY), `--target ollama/llama3`, or a model on any OpenAI-compatible server
    with `--api-base`.
    """
    console = Console()
    table = Table(title="Embedded models (offline, no API key)")
    for column in ("name", "kind", "model", "ready", "detail"):
        table.add_column(column)
    failures = 0
    for name, model in CHAT_MODELS.items():
        path = model.weights_path()
        adapter_missing = model.adapter is not None and model.adapter_path() is None
        ready = path is not None and not adapter_missing and server_available()
        detail = str(path) if path else f"install {model.package.replace('_', '-')}"
        if path and adapter_missing:
            detail = f"LoRA adapter {model.adapter} is missing"
        elif path and model.adapter is not None:
            detail = f"{path} + LoRA {model.adapter_path()}"
        if ready and not server_available():
            detail = "install llama-cpp-python[server]"
        if ready and check:
            with LocalServers() as servers:
                started = time.perf_counter()
                route = resolve_route(name, servers)
                result = complete(route, [{"role": "user", "content": "Say hello."}], Sampling(temperature=0.0, max_tokens=8))
                ready = result.ok
                detail = f"answered in {time.perf_counter() - started:.1f}s (with start-up)" if result.ok else str(result.error)
        failures += not ready
        table.add_row(name, "chat (target, mutator, judge)", model.description, "yes" if ready else "no", detail)
    for name, model in EMBEDDING_MODELS.items():
        path = model.weights_path()
        ready = path is not None
        detail = str(path) if path else f"install {model.package.replace('_', '-')}"
        if ready and check:
            from adversary.models.embedder import get_embedder

            started = time.perf_counter()
            vector = get_embedder(name).embed(["hello"])
            detail = f"{vector.shape[1]} dimensions in {time.perf_counter() - started:.1f}s (with loading)"
        failures += not ready
        table.add_row(name, "embedding", model.description, "yes" if ready else "no", detail)
    console.print(table)
    if failures:
        raise typer.Exit(1)
