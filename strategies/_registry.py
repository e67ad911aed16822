"""The Strategy protocol and its registry, filled from code and from the `adversary.strategies` entry points."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import numpy as np

from adversary.errors import ConfigError
from adversary.records import Distractor, Scenario

ENTRY_POINT_GROUP = "adversary.strategies"


@runtime_checkable
class Strategy(Protocol):
    """A mutation operator: from parent distractors (and their scenario) propose new candidate texts."""

    name: str

    def mutate(self, parents: Sequence[Distractor], scenario: Scenario, rng: np.random.Generator) -> list[str]:
        """Candidate distractor texts derived from `parents`."""
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
