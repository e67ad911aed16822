"""Choosing what to export (pure): near-duplicate removal, a cap per scenario, a split by scenario."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from adversary.records import Message


@dataclass(frozen=True)
class Negative:
    """A distractor that broke a target, with the conversation it broke and one real off-scope reply."""

    item_id: str
    scenario_id: str
    domain: str
    text: str
    style: str | None
    prompt: tuple[Message, ...]
    """System prompt, dialogue up to the insertion point (and a two-turn bridge with the target's reply), distractor."""
    rejected: str
    insertion_point: int
    breaks: int
    trials: int
    ci95: tuple[float, float]
    targets_broken: tuple[str, ...]
    lineage: dict = field(default_factory=dict)
    bridge: str | None = None
    """For a two-turn distractor, the bridge turn sent before it (the prompt holds it and the target's reply)."""
    expected_break_rate: float | None = None
    """Break rate to expect on fresh trials: the raw rate shrunk toward the run's mean under its empirical-Bayes
    prior (core.stats.beta_prior_from_counts), since negatives are chosen for a high raw rate from few trials."""

    @property
    def break_rate(self) -> float:
        return self.breaks / self.trials if self.trials else 0.0


def drop_near_duplicates(items: Sequence[Negative], vectors: np.ndarray, threshold: float) -> list[int]:
    """Indices to keep: highest break rate first, each dropped when its cosine similarity to a kept one
    reaches `threshold` (vectors are unit rows aligned with `items`)."""
    order = sorted(range(len(items)), key=lambda i: (-items[i].break_rate, -items[i].trials, items[i].item_id))
    kept: list[int] = []
    for index in order:
        if kept and float(np.max(vectors[kept] @ vectors[index])) >= threshold:
            continue
        kept.append(index)
    return sorted(kept)


def cap_per_scenario(items: Sequence[Negative], indices: Sequence[int], maximum: int | None) -> list[int]:
    """At most `maximum` of `indices` per scenario, keeping the highest break rates."""
    if maximum is None:
        return list(indices)
    counts: dict[str, int] = {}
    kept = []
    for index in sorted(indices, key=lambda i: (-items[i].break_rate, items[i].item_id)):
        scenario = items[index].scenario_id
        if counts.get(scenario, 0) < maximum:
            counts[scenario] = counts.get(scenario, 0) + 1
            kept.append(index)
    return sorted(kept)


def split_scenarios(scenario_ids: Sequence[str], test_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """(train, test) scenario sets: a seeded shuffle, ceil(fraction * n) scenarios held out, none on both sides.

    With a positive fraction and at least two scenarios, each side gets at least one.
    """
    unique = sorted(set(scenario_ids))
    if test_fraction <= 0 or len(unique) < 2:
        return set(unique), set()
    shuffled = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    held_out = min(len(unique) - 1, max(1, math.ceil(test_fraction * len(unique))))
    return set(shuffled[held_out:]), set(shuffled[:held_out])
