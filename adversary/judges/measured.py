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


SEARCH_PRECISION = "search_precision"
"""Key, in a judge's entry, of blind-labeled precision on the breaks it credited campaigns' strongest members
(bench/judge_gaming.py): whether a search against this judge finds real breaks or the judge's blind spots."""


def _stored(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save_agreement(judge_name: str, figures: dict, path: Path) -> None:
    """Record `figures` for `judge_name` in the agreement file at `path`, keeping other judges' entries and this
    judge's search precision (measured apart, on other rows)."""
    stored = _stored(path)
    earlier = stored.get(judge_name, {}).get(SEARCH_PRECISION)
    stored[judge_name] = {**figures, **({SEARCH_PRECISION: earlier} if earlier else {})}
    write_json_atomic(path, dict(sorted(stored.items())))


def save_search_precision(judge_name: str, campaign: str, figures: dict, path: Path) -> None:
    """Record the blind-labeled precision of `judge_name` on a campaign's strongest members' breaks under the
    label `campaign` (what campaign it was), keeping everything else in the agreement file at `path`."""
    stored = _stored(path)
    entry = stored.setdefault(judge_name, {})
    entry[SEARCH_PRECISION] = {**entry.get(SEARCH_PRECISION, {}), campaign: figures}
    write_json_atomic(path, dict(sorted(stored.items())))
