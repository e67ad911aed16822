"""Importer for OffTopicEval-style agent system prompts (Markdown, scope only, no dialogue).

The whole file is the system prompt. The fallback refusal is the quoted sentence under a
"Fallback" heading, and in-scope control turns are the "User asks" examples whose reply is not
the fallback.
"""

from __future__ import annotations

import re
from pathlib import Path

from adversary.corpus.project import read_text
from adversary.errors import CorpusError
from adversary.records import Corpus, Scenario

_TITLE_RE = re.compile(r"^#\s+(?:System Prompt for\s+)?(.+?)\s*$", re.MULTILINE)
_FALLBACK_SECTION_RE = re.compile(r"^#+[^\n]*fallback[^\n]*\n(.*?)(?=^#+\s|\Z)", re.IGNORECASE | re.MULTILINE | re.DOTALL)
_QUOTED_RE = re.compile(r"[\"\u201c]([^\"\u201d]{10,})[\"\u201d]")
_EXAMPLE_RE = re.compile(
    r"User asks\*?:?\*?\s*[\"\u201c](?P<user>[^\"\u201d]+)[\"\u201d]\s*\n\s*\*?Bot replies\*?:?\*?\s*(?P<reply>.+?)(?=\n\s*-\s*\*User asks|\n---|\n#|\Z)",
    re.IGNORECASE | re.DOTALL,
)


def _clean(text: str) -> str:
    return " ".join(text.replace("**", "").replace("*", "").split())


def load_offtopiceval(path: Path) -> Corpus:
    """Import one OffTopicEval system-prompt Markdown file as a scope-only scenario.

    Raises:
        CorpusError: when the file is empty or not UTF-8.
    """
    text = read_text(path).strip()
    if not text:
        raise CorpusError(str(path), "file is empty")
    title = _TITLE_RE.search(text)
    name = _clean(title.group(1)) if title else path.stem
    fallback = None
    section = _FALLBACK_SECTION_RE.search(text)
    if section:
        quoted = _QUOTED_RE.search(section.group(1))
        if quoted:
            fallback = _clean(quoted.group(1))
    controls = []
    for match in _EXAMPLE_RE.finditer(text):
        reply = _clean(match.group("reply"))
        if fallback and fallback.rstrip(".") in reply:
            continue
        controls.append(_clean(match.group("user")))
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-") or "prompt"
    scenario = Scenario(
        id=f"ote-{slug}",
        domain=name,
        description=f"OffTopicEval agent prompt {name} (scope only)",
        system_prompt=text,
        controls=tuple(controls),
        fallback=fallback,
        source=f"offtopiceval:{path.name}",
    )
    return Corpus(scenarios=(scenario,))
