"""Plan where each distractor and control turn goes: which scenario and after which bot turn.

Bound distractors go to their own scenario (after their bot turn when it is known); generic ones are
spread evenly over the scenarios with a seeded generator, so every scenario gets a similar share.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from adversary.records import AttemptKind, Corpus, Distractor, Scenario


@dataclass(frozen=True)
class Placement:
    """A user turn (distractor or in-scope control) placed after one bot turn of one scenario."""

    kind: AttemptKind
    scenario_id: str
    item_id: str
    text: str
    style: str | None
    insertion_point: int

    @property
    def key(self) -> str:
        """Identity of the placement, independent of target and trial."""
        return f"{self.kind}:{self.scenario_id}:{self.item_id}:{self.insertion_point}"


def trial_seed(run_seed: int, placement_key: str, trial: int) -> int:
    """Sampling seed for one trial: a function of run seed, placement and trial only.

    Independent of call order, so a resumed or reordered run samples exactly the same requests.
    """
    digest = hashlib.sha256(f"{run_seed}|{placement_key}|{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _nearest_insertion_point(scenario: Scenario, bot_turn: int) -> int:
    points = scenario.usable_insertion_points
    return min(points, key=lambda p: (abs(p - bot_turn), p))


def _place_distractor(
    distractor: Distractor, scenario: Scenario, rng: np.random.Generator
) -> Placement:
    points = scenario.usable_insertion_points
    if distractor.bot_turn is not None and scenario.dialogue:
        point = _nearest_insertion_point(scenario, distractor.bot_turn)
    else:
        point = int(points[rng.integers(len(points))])
    return Placement(
        kind="distractor",
        scenario_id=scenario.id,
        item_id=distractor.id,
        text=distractor.text,
        style=distractor.style.value,
        insertion_point=point,
    )


def _deal(deck: list[int], count: int, size: int, rng: np.random.Generator) -> list[int]:
    """Deal `count` distinct indices from a deck of shuffled 0..size-1, refilling it when short."""
    chosen: list[int] = []
    while len(chosen) < count:
        position = next((i for i, index in enumerate(deck) if index not in chosen), None)
        if position is None:
            deck.extend(int(i) for i in rng.permutation(size))
            continue
        chosen.append(deck.pop(position))
    return chosen


def plan_placements(
    corpus: Corpus,
    rng: np.random.Generator,
    *,
    placements_per_distractor: int = 1,
    include_controls: bool = True,
) -> list[Placement]:
    """Every distractor and control turn of `corpus`, each placed in a scenario.

    Args:
        corpus: scenarios and distractors; bound distractors whose scenario is absent are skipped.
        rng: seeded generator; the same seed gives the same plan.
        placements_per_distractor: scenarios each generic distractor is placed in (capped at the
            number of scenarios).
        include_controls: also place every in-scope control turn, once per scenario.
    Raises:
        ValueError: when placements_per_distractor < 1.
    """
    if placements_per_distractor < 1:
        raise ValueError("placements_per_distractor must be at least 1")
    by_id = {s.id: s for s in corpus.scenarios}
    scenarios = list(corpus.scenarios)
    placements: list[Placement] = []
    if not scenarios:
        return placements
    per_generic = min(placements_per_distractor, len(scenarios))
    deck: list[int] = []
    for distractor in corpus.distractors:
        if distractor.scenario_id is not None:
            scenario = by_id.get(distractor.scenario_id)
            if scenario is not None:
                placements.append(_place_distractor(distractor, scenario, rng))
            continue
        chosen = _deal(deck, per_generic, len(scenarios), rng)
        for index in chosen:
            placements.append(_place_distractor(distractor, scenarios[index], rng))
    if include_controls:
        for scenario in scenarios:
            points = scenario.usable_insertion_points
            for number, control in enumerate(scenario.controls):
                point = int(points[rng.integers(len(points))])
                placements.append(
                    Placement(
                        kind="control",
                        scenario_id=scenario.id,
                        item_id=f"{scenario.id}.control{number}",
                        text=control,
                        style=None,
                        insertion_point=point,
                    )
                )
    return placements
