"""The project's own corpus format: YAML or JSON with `scenarios` and `distractors` lists.

Errors name the file, the line (for YAML) and the field path, e.g.
`corpora/starter/banking.yaml:42 [scenarios.1.dialogue.3.role]: Input should be 'user' or 'assistant'`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from adversary.errors import CorpusError
from adversary.records import Corpus, Distractor, Scenario

FORMAT_TAG = "adversary-corpus/1"


class CorpusFile(BaseModel):
    """Top level of a corpus file."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT_TAG
    scenarios: list[Scenario] = []
    distractors: list[Distractor] = []


def yaml_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `loc`, or of its deepest existing ancestor."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            match = node.value[part]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def read_text(path: Path) -> str:
    """File text as UTF-8, or a CorpusError naming the file and the byte offset at fault."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(str(path), f"not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise CorpusError(str(path), f"cannot read: {exc.strerror}") from None


def load_project_file(path: Path) -> Corpus:
    """Load one corpus file in the project's format.

    Raises:
        CorpusError: with file, line and field when the file does not parse or validate.
    """
    text = read_text(path)
    root: yaml.Node | None = None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise CorpusError(str(path), f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise CorpusError(str(path), problem, line=None if mark is None else mark.line + 1) from None
    if data is None:
        raise CorpusError(str(path), "file is empty")
    if not isinstance(data, dict):
        raise CorpusError(str(path), "top level must be a mapping with 'scenarios' and/or 'distractors'")
    try:
        parsed = CorpusFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or None
        raise CorpusError(str(path), first["msg"], line=yaml_line(root, loc), field=field) from None
    if parsed.format != FORMAT_TAG:
        raise CorpusError(str(path), f"unknown format {parsed.format!r}; expected {FORMAT_TAG!r}", field="format")
    _check_unique(path, parsed)
    return Corpus(scenarios=tuple(parsed.scenarios), distractors=tuple(parsed.distractors))


def _check_unique(path: Path, parsed: CorpusFile) -> None:
    for kind, items in (("scenarios", parsed.scenarios), ("distractors", parsed.distractors)):
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.id in seen:
                raise CorpusError(str(path), f"duplicate id {item.id!r}", field=f"{kind}.{index}.id")
            seen.add(item.id)


def _scenario_for_file(scenario: Scenario) -> dict:
    """A scenario as its author writes it: an answered control as `{text, answer}` in `controls`."""
    data = scenario.model_dump(mode="json", exclude_defaults=True, exclude={"control_answers"})
    answers = dict(scenario.control_answers)
    if answers:
        data["controls"] = [{"text": control, "answer": answers[control]} if control in answers else control
                            for control in scenario.controls]
    return data


def dump_project_file(corpus: Corpus) -> str:
    """Serialize a corpus in the project's format (YAML), e.g. after an import."""
    data = {
        "format": FORMAT_TAG,
        "scenarios": [_scenario_for_file(s) for s in corpus.scenarios],
        "distractors": [d.model_dump(mode="json", exclude_defaults=True) for d in corpus.distractors],
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
