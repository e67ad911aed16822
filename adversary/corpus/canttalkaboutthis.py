"""Importers for CantTalkAboutThis data: the released JSONL and the CSV variant.

Each row becomes a scenario (system instruction + on-topic conversation) and its human-written
distractors become scenario-bound distractors, placed after the bot turn they were written for.
Rows that share a scenario and conversation are merged into one scenario.
"""

from __future__ import annotations

import ast
import csv
import difflib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adversary.corpus.project import read_text
from adversary.core.refusal import looks_like_refusal
from adversary.errors import CorpusError
from adversary.records import Corpus, Distractor, Scenario, Style, Turn, stable_id

REQUIRED_FIELDS = ("system_instruction", "conversation")
_ROLE_ALIASES = {"user": "user", "human": "user", "assistant": "assistant", "bot": "assistant", "agent": "assistant"}
MAX_CONTROLS = 3


class RowError(ValueError):
    """A row is malformed; the importer adds the file and line."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:32] or "scenario"


def parse_conversation(value: Any, field: str = "conversation") -> list[Turn]:
    """Turns from a list of {role, content} dicts, a JSON string, or a Python-repr string.

    The CSV variant stores a Python list repr whose elements are separated by newlines instead of
    commas, wrapped once more as a JSON string; all of these are accepted.
    """
    if isinstance(value, str):
        value = _decode_conversation_text(value, field)
    if not isinstance(value, list):
        raise RowError("must be a list of turns", field)
    turns: list[Turn] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise RowError(f"turn {index} is not an object", field)
        role = _ROLE_ALIASES.get(str(item.get("role", "")).strip().lower())
        content = item.get("content")
        if role is None:
            if str(item.get("role", "")).strip().lower() == "system":
                continue
            raise RowError(f"turn {index} has unknown role {item.get('role')!r}", field)
        if not isinstance(content, str) or not content.strip():
            raise RowError(f"turn {index} has no text content", field)
        turns.append(Turn(role=role, content=content.strip()))
    if not turns:
        raise RowError("has no turns", field)
    return turns


def _decode_conversation_text(text: str, field: str) -> Any:
    text = text.strip()
    for _ in range(2):
        if text.startswith('"'):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError:
                break
            if not isinstance(decoded, str):
                return decoded
            text = decoded.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    # Python list repr; real newlines only occur between elements because repr escapes them.
    repaired = re.sub(r"\}\s*\n\s*\{", "}, {", text)
    try:
        return ast.literal_eval(repaired)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise RowError("is neither JSON nor a Python list of turns", field) from None


def parse_distractors(value: Any) -> list[tuple[str | None, str]]:
    """(bot turn, distractor) pairs from a list of {"bot turn", "distractor"} objects or its JSON text."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("is not valid JSON", "distractors") from None
    if not isinstance(value, list):
        raise RowError("must be a list", "distractors")
    pairs = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise RowError(f"item {index} is not an object", "distractors")
        text = item.get("distractor")
        bot_turn = item.get("bot turn", item.get("bot_turn"))
        if not isinstance(text, str) or not text.strip():
            raise RowError(f"item {index} has no distractor text", "distractors")
        if bot_turn is not None and not isinstance(bot_turn, str):
            raise RowError(f"item {index} has a non-text bot turn", "distractors")
        pairs.append((bot_turn, text.strip()))
    return pairs


def match_bot_turn(dialogue: list[Turn], bot_turn: str | None) -> int | None:
    """Index of the assistant turn that `bot_turn` quotes (exactly, as a fragment, or closest)."""
    if not bot_turn:
        return None
    wanted = " ".join(bot_turn.split())
    candidates = [(i, " ".join(t.content.split())) for i, t in enumerate(dialogue) if t.role == "assistant"]
    for i, content in candidates:
        if content == wanted:
            return i
    for i, content in candidates:
        if wanted in content or content in wanted:
            return i
    best, best_ratio = None, 0.0
    for i, content in candidates:
        ratio = difflib.SequenceMatcher(None, wanted, content, autojunk=False).ratio()
        if ratio > best_ratio:
            best, best_ratio = i, ratio
    return best if best_ratio >= 0.5 else None


def _controls_from_dialogue(dialogue: list[Turn]) -> tuple[str, ...]:
    """In-scope control turns: later user turns of the on-topic dialogue that the bot did not deflect."""
    controls = []
    for i, turn in enumerate(dialogue):
        if turn.role != "user" or i == 0:
            continue
        reply = dialogue[i + 1] if i + 1 < len(dialogue) else None
        if reply is None or looks_like_refusal(reply.content):
            continue
        controls.append(turn.content)
    return tuple(controls[:MAX_CONTROLS])


def row_to_corpus(row: dict[str, Any], source: str) -> Corpus:
    """One CantTalkAboutThis row as a scenario and its bound distractors.

    Raises:
        RowError: naming the field at fault.
    """
    for field in REQUIRED_FIELDS:
        if field not in row or row[field] in (None, ""):
            raise RowError("is missing", field)
    system = row["system_instruction"]
    if not isinstance(system, str) or not system.strip():
        raise RowError("must be non-empty text", "system_instruction")
    dialogue = parse_conversation(row["conversation"])
    domain = str(row.get("domain") or "unknown").strip() or "unknown"
    description = str(row.get("scenario") or "").strip()
    scenario_id = f"ctat-{_slug(domain)}-{stable_id(system, json.dumps([t.model_dump() for t in dialogue]), length=8)}"
    try:
        scenario = Scenario(
            id=scenario_id,
            domain=domain,
            description=description,
            system_prompt=system.strip(),
            dialogue=tuple(dialogue),
            controls=_controls_from_dialogue(dialogue),
            source=source,
        )
    except ValueError as exc:
        raise RowError(str(exc).splitlines()[-1], "conversation") from None
    distractors = []
    for bot_turn, text in parse_distractors(row.get("distractors")):
        distractors.append(
            Distractor(
                id=f"{scenario_id}.{stable_id(text, length=8)}",
                text=text,
                style=Style.HUMAN,
                scenario_id=scenario_id,
                bot_turn=match_bot_turn(dialogue, bot_turn),
                source=source,
            )
        )
    return Corpus(scenarios=(scenario,), distractors=tuple(distractors))


def _rows_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(io.StringIO(read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(str(path), f"invalid JSON: {exc.msg}", line=number) from None
        except RecursionError:
            raise CorpusError(str(path), "JSON nested too deeply", line=number) from None


def _rows_csv(path: Path) -> Iterator[tuple[int, Any]]:
    csv.field_size_limit(64 * 1024 * 1024)
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if not reader.fieldnames:
        raise CorpusError(str(path), "CSV has no header row")
    try:
        start = reader.line_num + 1
        for row in reader:
            if "conversation" not in row and "conversation_json" in row:
                row["conversation"] = row.pop("conversation_json")
            yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CorpusError(str(path), f"invalid CSV: {exc}", line=reader.line_num) from None


def load_canttalkaboutthis(path: Path) -> Corpus:
    """Import a CantTalkAboutThis JSONL or CSV file.

    Raises:
        CorpusError: naming file, line and field of the first bad row.
    """
    rows = _rows_csv(path) if path.suffix.lower() == ".csv" else _rows_jsonl(path)
    scenarios: dict[str, Scenario] = {}
    distractors: dict[str, Distractor] = {}
    source = f"canttalkaboutthis:{path.name}"
    for line, row in rows:
        if not isinstance(row, dict):
            raise CorpusError(str(path), "row is not an object", line=line)
        try:
            part = row_to_corpus(row, source)
        except RowError as exc:
            raise CorpusError(str(path), str(exc), line=line, field=exc.field) from None
        for scenario in part.scenarios:
            scenarios.setdefault(scenario.id, scenario)
        for distractor in part.distractors:
            distractors.setdefault(distractor.id, distractor)
    if not scenarios:
        raise CorpusError(str(path), "file has no rows")
    return Corpus(scenarios=tuple(scenarios.values()), distractors=tuple(distractors.values()))
