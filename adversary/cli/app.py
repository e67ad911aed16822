"""Root typer app and its sub-commands."""

from __future__ import annotations

import typer

from adversary.cli import corpora_cmd, eval_cmd, export_cmd, judge_cmd, label_cmd, models_cmd, report_cmd, run_cmd

app = typer.Typer(
    name="adversary",
    help="Find the conversational distractors that make scoped chatbots abandon their instructions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("eval")(eval_cmd.eval_command)
app.command("run")(run_cmd.run_command)
app.command("init")(run_cmd.init_command)
app.command("report")(report_cmd.report_command)
app.command("export")(export_cmd.export_command)
app.command("models")(models_cmd.models_command)
app.command("label")(label_cmd.label_command)
app.add_typer(corpora_cmd.corpora_app, name="corpora")
app.add_typer(judge_cmd.judge_app, name="judge")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """adversary: red-team the topic-following of scoped chatbots."""
    if version:
        from adversary import __version__

        typer.echo(__version__)
        raise typer.Exit()
