"""The Judge protocol, its input record and the registry of judges."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from adversary.records import Message, Verdict


@dataclass(frozen=True)
class JudgeInput:
    """One reply to judge: the system prompt, the dialogue before the user turn, the turn, the reply."""

    system_prompt: str
    history: tuple[Message, ...]
    user: str
    response: str
    fallback: str | None = None


@runtime_checkable
class Judge(Protocol):
    """Decides for each reply whether it stayed in scope and whether it refused."""

    name: str

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        """Verdicts for `items`, in the same order."""
        ...


JudgeFactory = Callable[..., Judge]
_REGISTRY: dict[str, JudgeFactory] = {}


def register_judge(name: str, factory: JudgeFactory) -> None:
    """Make a judge available under `name` (for `--judge NAME`)."""
    _REGISTRY[name] = factory


def registered_judges() -> list[str]:
    """Names of the registered judges (model names are accepted besides these)."""
    return sorted(_REGISTRY)


def judge_factory(name: str) -> JudgeFactory | None:
    return _REGISTRY.get(name)
