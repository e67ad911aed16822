"""The Strategy protocol and its registry, filled from the `adversary.strategies` entry points.

The built-in operators are registered through the same entry-point group (see pyproject.toml) as
third-party ones, so a plugin package is a peer of the built-ins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import numpy as np

from adversary.errors import ConfigError
from adversary.records import Scenario

ENTRY_POINT_GROUP = "adversary.strategies"


@dataclass(frozen=True)
class Parent:
    """What an operator may read of a parent distractor."""

    id: str
    text: str
    style: str


@dataclass(frozen=True)
class Proposal:
    """A candidate distractor text and the style it now has; `bridge` is a user turn sent before it."""

    text: str
    style: str
    bridge: str | None = None


class Rewriter(Protocol):
    """An LLM that writes user-turn text as instructed (see adversary.strategies._llm)."""

    def rewrite(self, instruction: str, bot_topic: str, message: str) -> str | None:
        """`message` rewritten as instructed, or None."""
        ...

    def pivot(self, bot_topic: str, message: str) -> str | None:
        """A request for another thing of the same kind as `message`, on another subject, or None."""
        ...

    def lead_in(self, instruction: str, bot_topic: str, request: str, question: bool = False) -> str | None:
        """One sentence (a question when `question`) to say before `request`, as instructed, or None."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """A mutation operator: from parents and a scenario, propose one candidate (or None).

    An operator may set `keeps_request = False` when it changes what the parent asks (llm-pivot): the campaign
    then does not reject its candidates for having drifted from their parent."""

    name: str
    arity: int
    uses_llm: bool

    def mutate(
        self, parents: Sequence[Parent], scenario: Scenario, rng: np.random.Generator, rewriter: Rewriter | None
    ) -> Proposal | None:
        """A candidate derived from `parents` for `scenario`, or None when the operator cannot apply."""
        ...


_REGISTRY: dict[str, Strategy] = {}
_loaded_entry_points = False


def register_strategy(strategy: Strategy) -> None:
    """Make `strategy` available under `strategy.name`."""
    _REGISTRY[strategy.name] = strategy


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry_point.load()
        register_strategy(loaded() if isinstance(loaded, type) else loaded)


def available_strategies() -> list[str]:
    """Names of every registered strategy, including plugins."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    _load_entry_points()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise ConfigError(f"unknown strategy {name!r}; available: {known}")
    return _REGISTRY[name]
