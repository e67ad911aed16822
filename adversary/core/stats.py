"""Interval estimates for rates: Wilson score intervals and Beta posteriors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
        successes: number of successes, 0 <= successes <= trials.
        trials: number of valid trials; with 0 trials the interval is the uninformative (0, 1).
        z: normal quantile (1.96 for 95%).
    Raises:
        ValueError: on negative counts or successes > trials.
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"invalid counts: {successes} successes of {trials} trials")
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    # At 0 or all successes the bound is exactly 0 or 1; the float formula can land a hair inside it.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return (min(lo, p), max(hi, p))


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson 95% interval."""

    successes: int
    trials: int

    @property
    def value(self) -> float | None:
        """The point estimate, or None without trials."""
        return self.successes / self.trials if self.trials else None

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.trials)

    def to_json(self) -> dict[str, object]:
        lo, hi = self.ci95
        return {
            "rate": None if self.value is None else round(self.value, 6),
            "ci95": [round(lo, 6), round(hi, 6)],
            "successes": self.successes,
            "trials": self.trials,
        }


@dataclass(frozen=True)
class BetaPosterior:
    """Beta(alpha, beta) posterior of a rate after a Beta(prior_alpha, prior_beta) prior.

    Used as fitness so that 1/1 does not outrank 9/10: compare lower quantiles or means.
    """

    successes: int
    failures: int
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    @property
    def alpha(self) -> float:
        return self.successes + self.prior_alpha

    @property
    def beta(self) -> float:
        return self.failures + self.prior_beta

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def variance(self) -> float:
        a, b = self.alpha, self.beta
        return a * b / ((a + b) ** 2 * (a + b + 1))

    def lower_bound(self, z: float = 1.0) -> float:
        """Mean minus z standard deviations, clipped to [0, 1]: a pessimistic fitness."""
        return min(1.0, max(0.0, self.mean - z * math.sqrt(self.variance)))

    def probability_above(self, rate: float) -> float:
        """Posterior probability that the true rate exceeds `rate` (1 - the regularized incomplete beta)."""
        return float(1.0 - betainc(self.alpha, self.beta, rate))


def beta_prior_from_counts(counts: Sequence[tuple[int, int]], max_strength: float = 1e4) -> tuple[float, float] | None:
    """Empirical-Bayes Beta(a, b) prior of the true rates behind (successes, trials) pairs (method of moments).

    The spread of the true rates is the observed spread of the raw rates less the binomial noise their
    trial counts explain. Under this prior, (a + successes) / (a + b + trials) is an item's expected rate
    on fresh trials: items chosen for a high raw rate from few trials regress toward the mean
    (the winner's curse), and this says by how much. None with fewer than two items that have trials.
    """
    rated = [(s, n) for s, n in counts if n > 0]
    if len(rated) < 2:
        return None
    rates = [s / n for s, n in rated]
    mean = sum(s for s, _ in rated) / sum(n for _, n in rated)
    if mean in (0.0, 1.0):
        return (mean * max_strength + 1e-9, (1 - mean) * max_strength + 1e-9)
    average = sum(rates) / len(rates)
    observed = sum((r - average) ** 2 for r in rates) / (len(rates) - 1)
    # E[observed] = spread + E[p(1-p)] * mean(1/n), and E[p(1-p)] = mean(1-mean) - spread; solve for spread.
    inverse_trials = sum(1 / n for _, n in rated) / len(rated)
    spread = (observed - mean * (1 - mean) * inverse_trials) / (1 - inverse_trials) if inverse_trials < 1 else 0.0
    strength = max_strength if spread <= 0 else min(max_strength, max(1e-3, mean * (1 - mean) / spread - 1))
    return (mean * strength, (1 - mean) * strength)


def shrunk_rate(successes: int, trials: int, prior: tuple[float, float]) -> float:
    """Posterior mean of a rate under a Beta prior: the expected rate on fresh trials."""
    a, b = prior
    return (a + successes) / (a + b + trials)


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """Harmonic mean of two rates; None when either is unknown, 0 when either is 0."""
    if a is None or b is None:
        return None
    if a + b == 0:
        return 0.0
    return 2 * a * b / (a + b)


def f1_score(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """Precision, recall and F1 from confusion counts; None where undefined."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


def rogan_gladen(observed: float, sensitivity: float, specificity: float) -> float | None:
    """A break rate corrected for an imperfect judge (Rogan & Gladen 1978): (p + spec - 1) / (sens + spec - 1),
    clipped to [0, 1]. None when the judge is no better than chance (sens + spec <= 1)."""
    informedness = sensitivity + specificity - 1.0
    if informedness <= 0:
        return None
    return min(1.0, max(0.0, (observed + specificity - 1.0) / informedness))


def rogan_gladen_interval(
    breaks: int, trials: int, confusion: dict, rng: np.random.Generator, draws: int = 4000, level: float = 0.95,
) -> tuple[float, float] | None:
    """A `level` interval of the judge-corrected break rate that carries the judge's own uncertainty.

    Monte Carlo over three Beta(1 + successes, 1 + failures) posteriors: the observed break rate, the judge's
    sensitivity (labeled breaks it called breaks) and its specificity (labeled holds it called holds), from the
    confusion counts of its calibration (`{"labeled_break": {"judged_break", "judged_hold"}, "labeled_hold": ...}`).
    Draws where the judge is no better than chance are dropped; None when most are, or when nothing was observed.
    """
    if trials <= 0:
        return None
    tp, fn = confusion["labeled_break"]["judged_break"], confusion["labeled_break"]["judged_hold"]
    fp, tn = confusion["labeled_hold"]["judged_break"], confusion["labeled_hold"]["judged_hold"]
    observed = rng.beta(1 + breaks, 1 + trials - breaks, draws)
    sensitivity = rng.beta(1 + tp, 1 + fn, draws)
    specificity = rng.beta(1 + tn, 1 + fp, draws)
    informedness = sensitivity + specificity - 1.0
    usable = informedness > 0.02
    if usable.mean() < 0.5:
        return None
    corrected = np.clip((observed[usable] + specificity[usable] - 1.0) / informedness[usable], 0.0, 1.0)
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(corrected, tail)), float(np.percentile(corrected, 100 - tail))


def paired_rate_comparison(first: Sequence[tuple[int, int]], second: Sequence[tuple[int, int]], rng: np.random.Generator,
                           resamples: int = 10_000, level: float = 0.95) -> dict[str, tuple[float, float, float] | None]:
    """Ratio and difference of two pooled rates measured on the same items ((successes, trials) of each item, in the
    same order), each as (estimate, low, high) with a percentile interval from resampling items. The trials of one
    distractor are not independent and both targets met the same distractors, so resampling items is the honest
    interval for the ratio and a tighter one for the difference than two independent Wilson intervals. The ratio is
    None when the second rate is 0."""
    a, b = np.asarray(first, dtype=float).reshape(-1, 2), np.asarray(second, dtype=float).reshape(-1, 2)
    if len(a) != len(b) or not len(a) or a[:, 1].sum() == 0 or b[:, 1].sum() == 0:
        raise ValueError("paired rates need the same non-empty items, with trials on both sides")
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_a = a[picks, 0].sum(axis=1) / a[picks, 1].sum(axis=1)
        rate_b = b[picks, 0].sum(axis=1) / b[picks, 1].sum(axis=1)
        ratios = rate_a / rate_b
    tail = 100 * (1 - level) / 2
    pa, pb = a[:, 0].sum() / a[:, 1].sum(), b[:, 0].sum() / b[:, 1].sum()

    def estimate(point: float, draws: np.ndarray) -> tuple[float, float, float]:
        draws = draws[np.isfinite(draws)]
        return float(point), float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))

    return {"ratio": estimate(pa / pb, ratios) if pb > 0 else None, "difference": estimate(pa - pb, rate_a - rate_b)}
