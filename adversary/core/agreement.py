"""Agreement between a judge and hand labels: accuracy, Cohen's kappa, break-class precision and recall, and
seeded bootstrap intervals on kappa and proportions (pure: the caller passes a numpy Generator)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def cohen_kappa(first: Sequence[bool], second: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary labelings of the same rows (symmetric in its arguments)."""
    return agreement(first, second).kappa


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval (`low`, `high`); None where undefined."""

    value: float | None
    low: float | None
    high: float | None

    def to_json(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}


def _kappa_from_counts(bb, bh, hb, hh):
    """Vectorized Cohen's kappa over arrays of confusion counts (break class positive)."""
    n = bb + bh + hb + hh
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = (bb + hh) / n
        first = (bb + bh) / n
        second = (bb + hb) / n
        chance = first * second + (1 - first) * (1 - second)
        kappa = (observed - chance) / (1 - chance)
    # Both labelings constant and equal: perfect agreement, kappa 1 (as Agreement.kappa); constant but unequal: 0.
    return np.where(chance >= 1.0, np.where(observed >= 1.0, 1.0, 0.0), kappa)


def bootstrap_kappa(first: Sequence[bool], second: Sequence[bool], rng, resamples: int = 2000,
                    level: float = 0.95) -> Interval:
    """Cohen's kappa of `first` against `second` with a percentile bootstrap interval over rows.

    Rows are resampled with replacement `resamples` times with the seeded numpy Generator `rng`.
    """
    return paired_bootstrap([first], [second], rng, resamples, level)[0]


def paired_bootstrap(firsts: Sequence[Sequence[bool]], seconds: Sequence[Sequence[bool]], rng, resamples: int = 2000,
                     level: float = 0.95, difference: bool = False) -> list[Interval]:
    """Kappas of several pairs of labelings of the same rows, bootstrapped over the same resampled rows.

    `firsts[i]` is compared with `seconds[i]`; all have one entry per row. With `difference`, one more
    interval follows: kappa of pair 0 minus kappa of pair 1, so "is the judge's kappa at least the
    annotators'" is read from one interval of a paired difference rather than two overlapping ones.
    """
    if len(firsts) != len(seconds) or not firsts:
        raise ValueError("give one second labeling per first labeling")
    n = len(firsts[0])
    if any(len(x) != n for x in [*firsts, *seconds]):
        raise ValueError("every labeling must have one entry per row")
    if difference and len(firsts) < 2:
        raise ValueError("a difference needs two pairs")
    if not 0 < level < 1:
        raise ValueError("level must lie between 0 and 1")
    if n == 0:
        return [Interval(None, None, None)] * (len(firsts) + int(difference))
    indices = rng.integers(0, n, size=(resamples, n))
    points, samples = [], []
    for a, b in zip(firsts, seconds):
        a = np.asarray(a, dtype=bool)
        b = np.asarray(b, dtype=bool)
        points.append(agreement(a.tolist(), b.tolist()).kappa)
        ra, rb = a[indices], b[indices]
        samples.append(_kappa_from_counts((ra & rb).sum(1), (ra & ~rb).sum(1), (~ra & rb).sum(1), (~ra & ~rb).sum(1)))
    if difference:
        points.append(points[0] - points[1])
        samples.append(samples[0] - samples[1])
    tail = (1 - level) / 2
    return [Interval(float(p), float(np.quantile(s, tail)), float(np.quantile(s, 1 - tail))) for p, s in zip(points, samples)]


def bootstrap_proportion(successes: Sequence[bool], rng, resamples: int = 2000, level: float = 0.95) -> Interval:
    """The share of True in `successes` with a percentile bootstrap interval (accuracy on a subset, precision)."""
    x = np.asarray(successes, dtype=float)
    if not len(x):
        return Interval(None, None, None)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2
    return Interval(float(x.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))
