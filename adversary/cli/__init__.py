"""The `adversary` command line: a thin typer layer over the application modules."""

from __future__ import annotations

import sys

from adversary.cli.app import app
from adversary.errors import AdversaryError


def main() -> None:
    """Entry point of the `adversary` console script: user errors become one line and exit code 2."""
    try:
        app()
    except AdversaryError as exc:
        from adversary.models.chat import redact

        print(f"error: {redact(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
