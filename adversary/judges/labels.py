"""Hand-labeled replies as judges read them: the labels file (adversary.labels' strict reader, so `judge train`
and `judge calibrate` accept exactly the same files) turned into judge inputs with their scenario source, and the
streaming reader of `judge run`'s items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from adversary.errors import ConfigError
from adversary.judges.base import JudgeInput
from adversary.labels import LabelRow, read_numbered_labels
from adversary.records import Message

SCENARIO_SOURCES = ("starter", "topic-following-insurance", "topic-following-real-estate", "offtopiceval")
FIELDS = ("system", "user", "response")


@dataclass(frozen=True)
class LabeledRow:
    """One labeled reply. `in_scope` is the (adjudicated) label; `in_scope_a`/`_b` the annotators', when given."""

    line: int
    id: str | None
    scenario_id: str | None
    scenario_source: str | None
    item: JudgeInput
    in_scope: bool
    refusal: bool | None
    in_scope_a: bool | None
    in_scope_b: bool | None
    borderline: bool | None
    reply_source: str | None = None
    turn: str | None = None
    """Which kind of user turn the reply answers (distractor or control), where the row says."""

    @property
    def is_break(self) -> bool:
        return not self.in_scope


def read_rows(path: Path) -> Iterator[tuple[int, dict, JudgeInput]]:
    """(line number, row, judge input) per non-empty line, streamed; a bad line is one ConfigError naming it."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{where}: not UTF-8 (bad byte at offset {exc.start})") from None
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: each line must be a JSON object")
            for field in FIELDS:
                if not isinstance(row.get(field), str):
                    raise ConfigError(f"{where}: field {field!r} must be a string")
            history = row.get("history") or []
            if not isinstance(history, list) or not all(
                    isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
                    for m in history):
                raise ConfigError(f"{where}: field 'history' must be a list of {{role: user|assistant, content}} objects")
            yield number, row, JudgeInput(system_prompt=row["system"], history=tuple(Message(**m) for m in history),
                                          user=row["user"], response=row["response"])


def scenario_source_of(row: dict) -> str | None:
    """Where the row's scenario came from: its `scenario_source`, or derived from the ids of the first labels file
    (`stop11-`/`starter-` rows are starter scenarios, `ote-` OffTopicEval, `ctat-insurance-`/`ctat-real-estate-`
    scenario ids the two topic-following sets); None when neither tells."""
    if isinstance(row.get("scenario_source"), str) and row["scenario_source"]:
        return row["scenario_source"]
    row_id, scenario = str(row.get("id") or ""), str(row.get("scenario_id") or "")
    if row_id.startswith(("stop11-", "starter-")):
        return "starter"
    if row_id.startswith("ote-"):
        return "offtopiceval"
    if scenario.startswith("ctat-insurance"):
        return "topic-following-insurance"
    if scenario.startswith("ctat-real-estate"):
        return "topic-following-real-estate"
    return None


def read_labels(path: Path) -> list[LabeledRow]:
    """Every labeled row of `path`, checked by adversary.labels.read_labels; the first bad row is one ConfigError
    naming it."""
    return [_labeled(number, row) for number, row in read_numbered_labels(path)]


def _labeled(number: int, row: LabelRow) -> LabeledRow:
    return LabeledRow(
        line=number, id=row.id, scenario_id=row.scenario_id or None,
        scenario_source=scenario_source_of(row.model_dump(exclude_none=True)),
        item=JudgeInput(system_prompt=row.system, history=row.history, user=row.user, response=row.response),
        in_scope=row.in_scope, refusal=row.refusal, in_scope_a=row.in_scope_a, in_scope_b=row.in_scope_b,
        borderline=row.borderline, reply_source=row.reply_source, turn=row.turn,
    )


def check_trainable(rows: Iterable[LabeledRow], path: Path, minimum: int = 50) -> None:
    """Refuse training on too few rows or on one class only, with the reason."""
    rows = list(rows)
    if len(rows) < minimum:
        raise ConfigError(f"{path}: {len(rows)} labeled rows; training needs at least {minimum}")
    breaks = sum(r.is_break for r in rows)
    if breaks == 0 or breaks == len(rows):
        only = "holds (in_scope true)" if breaks == 0 else "breaks (in_scope false)"
        raise ConfigError(f"{path}: every row is labeled as one class, {only}; training needs both breaks and holds")
