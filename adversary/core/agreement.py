"""Agreement between a judge and hand labels: accuracy, Cohen's kappa, break-class precision and recall (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Agreement:
    """A 2x2 confusion table of a binary judgement against labels, with the break class as positive.

    `break_break`: labeled break, judged break; `break_hold`: labeled break, judged hold; and so on.
    """

    break_break: int
    break_hold: int
    hold_break: int
    hold_hold: int

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


def agreement(labels: Sequence[bool], judged: Sequence[bool]) -> Agreement:
    """The confusion table of `judged` against `labels`, both True for a break."""
    if len(labels) != len(judged):
        raise ValueError("labels and judgements differ in length")
    pairs = list(zip(labels, judged))
    return Agreement(
        break_break=sum(1 for l, j in pairs if l and j), break_hold=sum(1 for l, j in pairs if l and not j),
        hold_break=sum(1 for l, j in pairs if not l and j), hold_hold=sum(1 for l, j in pairs if not l and not j),
    )
