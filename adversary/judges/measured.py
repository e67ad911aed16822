"""Each shipped judge's measured agreement with the project's hand labels (`adversary judge calibrate --save`).

Reports name the judge and show these figures, and correct break rates with its sensitivity and
specificity. The figures live in `corpora/labels/agreement.json`, keyed by the judge's name.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from adversary.fileio import write_json_atomic

AGREEMENT_FILE = "agreement.json"


def agreement_path() -> Path:
    """The packaged agreement file (in a source checkout: corpora/labels/agreement.json)."""
    return Path(str(resources.files("adversary.corpora").joinpath("labels", AGREEMENT_FILE)))


def measured_agreement(judge_name: str, path: Path | None = None) -> dict | None:
    """The stored agreement figures of judge `judge_name`, or None when it was never measured."""
    path = path or agreement_path()
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(judge_name)
    except (OSError, ValueError):
        return None


def save_agreement(judge_name: str, figures: dict, path: Path) -> None:
    """Record `figures` for `judge_name` in the agreement file at `path`, keeping other judges' entries."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    stored[judge_name] = figures
    write_json_atomic(path, dict(sorted(stored.items())))
