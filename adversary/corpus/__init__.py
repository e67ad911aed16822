"""Scenario and seed-distractor corpora: the project's format and importers.

Public names:
    load_corpus, load_path, detect_format, starter_corpus_dir, FORMATS
    CorpusFile, dump_project_file       -- the project's own format
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from adversary.corpus.canttalkaboutthis import load_canttalkaboutthis
from adversary.corpus.offtopiceval import load_offtopiceval
from adversary.corpus.project import CorpusFile, dump_project_file, load_project_file
from adversary.errors import CorpusError
from adversary.records import Corpus

FORMATS: dict[str, Callable[[Path], Corpus]] = {
    "adversary": load_project_file,
    "canttalkaboutthis": load_canttalkaboutthis,
    "offtopiceval": load_offtopiceval,
}


def starter_corpus_dir() -> Path:
    """Folder of the starter corpus shipped in the package (`adversary.corpora/starter`)."""
    return Path(str(resources.files("adversary.corpora").joinpath("starter")))


def detect_format(path: Path) -> str:
    """The format of a corpus file, from its extension: yaml/yml/json project files, jsonl/csv
    CantTalkAboutThis files, md OffTopicEval prompts."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml", ".json"):
        return "adversary"
    if suffix in (".jsonl", ".csv"):
        return "canttalkaboutthis"
    if suffix in (".md", ".markdown"):
        return "offtopiceval"
    raise CorpusError(str(path), f"unknown corpus file type {suffix or '(none)'}; use .yaml, .json, .jsonl, .csv or .md")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        files = [p for p in files if p.suffix.lower() in (".yaml", ".yml", ".json", ".jsonl", ".csv", ".md")]
        if not files:
            raise CorpusError(str(path), "folder holds no corpus files")
        return files
    if not path.exists():
        raise CorpusError(str(path), "no such file or folder")
    return [path]


def load_path(path: Path, fmt: str | None = None) -> Corpus:
    """Load a corpus file, or every corpus file in a folder, detecting formats by extension."""
    corpus = Corpus()
    for file in _files(path):
        loader = FORMATS[fmt or detect_format(file)]
        corpus = _merge_checked(corpus, loader(file), file)
    _check_bindings(corpus, path)
    return corpus


def _merge_checked(corpus: Corpus, part: Corpus, file: Path) -> Corpus:
    scenario_ids = {s.id for s in corpus.scenarios}
    for scenario in part.scenarios:
        if scenario.id in scenario_ids and scenario not in corpus.scenarios:
            raise CorpusError(str(file), f"scenario id {scenario.id!r} is already defined with different content")
    return corpus.merged(part)


def _check_bindings(corpus: Corpus, source: Path) -> None:
    known = {s.id for s in corpus.scenarios}
    for distractor in corpus.distractors:
        if distractor.scenario_id is not None and distractor.scenario_id not in known:
            raise CorpusError(
                str(source), f"distractor {distractor.id!r} is bound to unknown scenario {distractor.scenario_id!r}"
            )


def load_corpus(paths: Iterable[Path]) -> Corpus:
    """Load and merge several corpus paths; with none, the starter corpus."""
    paths = list(paths) or [starter_corpus_dir()]
    corpus = Corpus()
    for path in paths:
        corpus = _merge_checked(corpus, load_path(path), path)
    return corpus


__all__ = [
    "FORMATS",
    "CorpusFile",
    "detect_format",
    "dump_project_file",
    "load_corpus",
    "load_path",
    "starter_corpus_dir",
]
