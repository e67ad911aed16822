"""The `adversary` command line: a thin typer layer over the application modules."""

from __future__ import annotations

import sys

from adversary.cli.app import app
from adversary.errors import AdversaryError
from adversary.models.interrupt import ctrl_c_stops_model_calls


def main() -> None:
    """Entry point of the `adversary` console script: user errors become one line and exit code 2;
    after Ctrl-C no further model call starts."""
    try:
        with ctrl_c_stops_model_calls():
            app()
    except AdversaryError as exc:
        from adversary.models.chat import redact

        print(f"error: {redact(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
