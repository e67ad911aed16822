"""Which judged replies to show an annotator: the judge's least certain ones plus a random share (pure).

Selection is stratified so that every row's inclusion probability is known exactly: the `uncertain` stratum is
the share of replies whose judge score lies closest to the judge's decision threshold, the `rest` stratum is
everything else, and each stratum is sampled uniformly without replacement. Agreement measured on the labeled
rows, each weighted by 1 / inclusion probability (Horvitz-Thompson), estimates agreement on the whole run
without the bias that picking hard rows would otherwise add.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Selected:
    """One chosen row: its index in the pool, its stratum and the probability it had of being chosen."""

    index: int
    stratum: str
    probability: float


def decision_threshold(scores: Sequence[float | None], breaks: Sequence[bool]) -> float | None:
    """The judge's threshold as the scores show it: midway between the highest hold and the lowest break.

    A judge that calls a reply a break when its score exceeds a threshold leaves the two groups apart; where
    they overlap (or a group is empty) the midpoint of the two medians is used. None when no row has a score.
    """
    holds = [s for s, b in zip(scores, breaks) if s is not None and not b]
    broken = [s for s, b in zip(scores, breaks) if s is not None and b]
    if not holds and not broken:
        return None
    if not holds:
        return min(broken)
    if not broken:
        return max(holds)
    if max(holds) <= min(broken):
        return (max(holds) + min(broken)) / 2
    return (float(np.median(holds)) + float(np.median(broken))) / 2


def select_for_labeling(
    scores: Sequence[float | None],
    breaks: Sequence[bool],
    size: int,
    rng: np.random.Generator,
    *,
    uncertain_share: float = 0.2,
    random_share: float = 0.5,
) -> list[Selected]:
    """Choose `size` rows: (1 - random_share) of them from the `uncertain_share` of rows closest to the
    threshold, the rest uniformly from the other rows; returned in a seeded random order.

    Rows without a score are never uncertain. When a stratum has too few rows the other one takes the rest.
    Raises:
        ValueError: on a share outside [0, 1], mismatched lengths or a negative size.
    """
    if len(scores) != len(breaks):
        raise ValueError("scores and breaks differ in length")
    if not (0.0 <= uncertain_share <= 1.0 and 0.0 <= random_share <= 1.0):
        raise ValueError("shares must lie in [0, 1]")
    if size < 0:
        raise ValueError("size must not be negative")
    total = len(scores)
    size = min(size, total)
    threshold = decision_threshold(scores, breaks)
    margins = np.array([math.inf if s is None or threshold is None else abs(s - threshold) for s in scores])
    order = np.lexsort((rng.random(total), margins))
    scored = int(np.isfinite(margins).sum())
    uncertain_count = min(scored, math.ceil(total * uncertain_share)) if random_share < 1.0 else 0
    uncertain, rest = order[:uncertain_count], order[uncertain_count:]
    from_uncertain = min(len(uncertain), round(size * (1.0 - random_share)))
    from_rest = min(len(rest), size - from_uncertain)
    from_uncertain = min(len(uncertain), size - from_rest)
    chosen = [
        Selected(int(i), "uncertain", from_uncertain / len(uncertain))
        for i in rng.choice(uncertain, size=from_uncertain, replace=False)
    ] if from_uncertain else []
    chosen += [
        Selected(int(i), "random", from_rest / len(rest))
        for i in rng.choice(rest, size=from_rest, replace=False)
    ] if from_rest else []
    return [chosen[i] for i in rng.permutation(len(chosen))]
