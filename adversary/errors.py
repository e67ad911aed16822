"""Errors a user can act on: each carries one line naming the file, row or field at fault."""

from __future__ import annotations


class AdversaryError(Exception):
    """Base of every error the CLI turns into one clear line and a non-zero exit."""

    exit_code = 2


class CorpusError(AdversaryError):
    """A corpus file, row or field is malformed."""

    def __init__(self, source: str, message: str, *, line: int | None = None, field: str | None = None):
        self.source = source
        self.line = line
        self.field = field
        where = source if line is None else f"{source}:{line}"
        if field:
            where = f"{where} [{field}]"
        super().__init__(f"{where}: {message}")


class ConfigError(AdversaryError):
    """A command-line option or config value is invalid."""


class ModelError(AdversaryError):
    """A model cannot be reached or is not installed."""
