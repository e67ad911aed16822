"""Root typer app and its sub-commands."""

from __future__ import annotations

import typer

from adversary.cli import (corpora_cmd, eval_cmd, export_cmd, finetune_cmd, judge_cmd, label_cmd, models_cmd, report_cmd,
                           run_cmd, serve_cmd)
from adversary.cli.examples import epilog

app = typer.Typer(
    name="adversary",
    help="Find the conversational distractors that make scoped chatbots abandon their instructions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("eval", epilog=epilog("eval"))(eval_cmd.eval_command)
app.command("run", epilog=epilog("run"))(run_cmd.run_command)
app.command("init", epilog=epilog("init"))(run_cmd.init_command)
app.command("report", epilog=epilog("report"))(report_cmd.report_command)
app.command("export", epilog=epilog("export"))(export_cmd.export_command)
app.command("finetune", epilog=epilog("finetune"))(finetune_cmd.finetune_command)
app.command("models", epilog=epilog("models"))(models_cmd.models_command)
app.command("serve", epilog=epilog("serve"))(serve_cmd.serve_command)
app.command("label", epilog=epilog("label"))(label_cmd.label_command)
app.add_typer(corpora_cmd.corpora_app, name="corpora")
app.add_typer(judge_cmd.judge_app, name="judge")


def _print_version(value: bool) -> None:
    """Print the version and stop before the group asks for a command."""
    if value:
        from adversary import __version__

        typer.echo(f"adversary {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """adversary: red-team the topic-following of scoped chatbots."""
