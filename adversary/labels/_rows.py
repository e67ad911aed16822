"""The labels file: one JSON object per labeled reply, read strictly so a bad row is named, never guessed at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adversary.errors import ConfigError
from adversary.records import Message

ScenarioSource = Literal["starter", "topic-following-insurance", "topic-following-real-estate", "offtopiceval", "user"]
ReplySource = Literal["embedded-campaign", "embedded-eval", "hand-written", "run"]


class LabelRow(BaseModel):
    """One labeled reply. `in_scope`/`refusal` are the labels used (adjudicated where two annotators
    disagreed); `_a` and `_b` are the two annotators' own, kept so their agreement can be measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    scenario_id: str | None = None
    scenario_source: ScenarioSource | None = None
    reply_source: ReplySource | None = None
    reply_style: str | None = None
    turn: Literal["distractor", "control"] | None = None
    system: str
    history: tuple[Message, ...] = ()
    user: str
    response: str
    in_scope: bool
    refusal: bool | None = None
    borderline: bool = False
    note: str = ""
    in_scope_a: bool | None = None
    refusal_a: bool | None = None
    in_scope_b: bool | None = None
    refusal_b: bool | None = None
    annotator: str | None = None
    run: str | None = None
    target: str | None = None
    judge: str | None = None
    selection: Literal["uncertain", "random"] | None = None
    selection_probability: float | None = Field(default=None, gt=0.0, le=1.0)

    @property
    def weight(self) -> float:
        """1 / the row's selection probability (1 for rows not sampled by `adversary label`)."""
        return 1.0 / self.selection_probability if self.selection_probability else 1


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "row"
    if first["type"] == "extra_forbidden":
        return f"unknown field {field!r}"
    if first["type"] == "missing" and field == "in_scope":
        return "missing label: field 'in_scope' must be true or false"
    if first["type"] == "missing":
        return f"missing field {field!r}"
    return f"field {field!r}: {first['msg']}"


def read_labels(path: Path) -> list[LabelRow]:
    """Every row of a labels JSONL file.

    Raises:
        ConfigError: naming the file, line and row id, on unreadable files, invalid JSON, unknown or missing
            fields, wrong types or duplicate ids.
    """
    return [row for _, row in read_numbered_labels(path)]


def read_numbered_labels(path: Path) -> list[tuple[int, LabelRow]]:
    """(line number, row) for every row of a labels JSONL file, checked as `read_labels` does."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    rows: list[tuple[int, LabelRow]] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}:{number}: not a JSON line ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}:{number}: each line must be a JSON object")
        where = f"{path}:{number} (id {data.get('id')!r})"
        try:
            row = LabelRow.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_problem(exc)}") from None
        if row.id in first_line:
            raise ConfigError(f"{where}: duplicate id {row.id!r} (first on line {first_line[row.id]})")
        first_line[row.id] = number
        rows.append((number, row))
    return rows


def append_label(path: Path, row: LabelRow) -> None:
    """Append one row and flush it to disk, so a labeling session that stops loses nothing."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(row.model_dump_json(exclude_none=True) + "\n")
        handle.flush()


def annotator_pairs(rows: list[LabelRow]) -> list[tuple[bool, bool, float]]:
    """(annotator A's break, annotator B's break, weight) for every row both annotators labeled."""
    return [(not r.in_scope_a, not r.in_scope_b, r.weight) for r in rows
            if r.in_scope_a is not None and r.in_scope_b is not None]
