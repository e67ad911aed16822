"""Agreement between a judge and hand labels: accuracy, Cohen's kappa, break-class precision and recall (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Agreement:
    """A 2x2 confusion table of a binary judgement against labels, with the break class as positive.

    Cells are counts, or sums of row weights for a weighted sample.

    `break_break`: labeled break, judged break; `break_hold`: labeled break, judged hold; and so on.
    """

    break_break: float
    break_hold: float
    hold_break: float
    hold_hold: float

    @property
    def total(self) -> int:
        return self.break_break + self.break_hold + self.hold_break + self.hold_hold

    @property
    def accuracy(self) -> float | None:
        return (self.break_break + self.hold_hold) / self.total if self.total else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa: observed agreement corrected for the agreement the two marginals give by chance."""
        n = self.total
        if not n:
            return None
        labeled_break = (self.break_break + self.break_hold) / n
        judged_break = (self.break_break + self.hold_break) / n
        chance = labeled_break * judged_break + (1 - labeled_break) * (1 - judged_break)
        if chance == 1.0:
            return 1.0 if self.accuracy == 1.0 else 0.0
        return (self.accuracy - chance) / (1 - chance)

    @property
    def precision(self) -> float | None:
        """Of the replies judged breaks, the share labeled breaks."""
        judged = self.break_break + self.hold_break
        return self.break_break / judged if judged else None

    @property
    def recall(self) -> float | None:
        """Of the replies labeled breaks, the share judged breaks (the judge's sensitivity)."""
        labeled = self.break_break + self.break_hold
        return self.break_break / labeled if labeled else None

    @property
    def specificity(self) -> float | None:
        """Of the replies labeled holds, the share judged holds."""
        labeled = self.hold_hold + self.hold_break
        return self.hold_hold / labeled if labeled else None


def agreement(labels: Sequence[bool], judged: Sequence[bool], weights: Sequence[float] | None = None) -> Agreement:
    """The confusion table of `judged` against `labels`, both True for a break.

    `weights` (one per row, e.g. 1 / a row's selection probability) make the cells weighted sums, so that
    figures from rows sampled with unequal probabilities estimate those of the whole pool.
    """
    if len(labels) != len(judged):
        raise ValueError("labels and judgements differ in length")
    if weights is None:
        weights = [1] * len(labels)
    elif len(weights) != len(labels):
        raise ValueError("weights and labels differ in length")
    cells = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for label, judgement, weight in zip(labels, judged, weights):
        cells[(bool(label), bool(judgement))] += weight
    return Agreement(break_break=cells[(True, True)], break_hold=cells[(True, False)],
                     hold_break=cells[(False, True)], hold_hold=cells[(False, False)])
