"""Property tests of the statistics core."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import numpy as np

from adversary.core.stats import (BetaPosterior, Rate, beta_prior_from_counts, f1_score, harmonic_mean,
                                 paired_rate_comparison, shrunk_rate, wilson_interval)

counts = st.integers(min_value=0, max_value=10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(counts)
def test_wilson_interval_is_inside_unit_range_and_contains_the_estimate(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= hi <= 1.0
    if n:
        assert lo <= k / n <= hi, "exactly, also at 0 and n successes (where float rounding once fell short)"


@given(counts)
def test_wilson_interval_is_symmetric_under_swapping_successes_and_failures(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    lo2, hi2 = wilson_interval(n - k, n)
    assert math.isclose(lo, 1 - hi2, abs_tol=1e-9)
    assert math.isclose(hi, 1 - lo2, abs_tol=1e-9)


@given(st.integers(1, 500), st.floats(0.05, 0.95))
def test_wilson_interval_narrows_with_more_trials(n, p):
    k = round(p * n)
    lo, hi = wilson_interval(k, n)
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


def test_wilson_interval_known_value():
    lo, hi = wilson_interval(1, 3)
    assert lo == pytest.approx(0.0615, abs=1e-4)
    assert hi == pytest.approx(0.7923, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("k,n", [(-1, 3), (4, 3), (0, -1)])
def test_wilson_interval_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_beta_posterior_ranks_nine_of_ten_above_one_of_one():
    assert BetaPosterior(9, 1).lower_bound() > BetaPosterior(1, 0).lower_bound()


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_beta_posterior_mean_and_bound_are_rates(s, f):
    post = BetaPosterior(s, f)
    assert 0.0 < post.mean < 1.0
    assert 0.0 <= post.lower_bound() <= post.mean


def test_rate_json_has_interval_and_counts():
    data = Rate(2, 4).to_json()
    assert data["rate"] == 0.5 and data["successes"] == 2 and data["trials"] == 4
    assert data["ci95"][0] < 0.5 < data["ci95"][1]
    assert Rate(0, 0).to_json()["rate"] is None


@given(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100))
def test_f1_is_between_precision_and_recall_bounds(tp, fp, fn):
    scores = f1_score(tp, fp, fn)
    if scores["f1"] is not None:
        assert 0.0 <= scores["f1"] <= 1.0
        assert scores["f1"] <= max(scores["precision"], scores["recall"]) + 1e-12


def test_harmonic_mean():
    assert harmonic_mean(None, 0.5) is None
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.5, 1.0) == pytest.approx(2 / 3)


def test_rogan_gladen_undoes_a_known_misclassification():
    from adversary.core.stats import rogan_gladen

    true_rate, sensitivity, specificity = 0.6, 0.8, 0.9
    observed = true_rate * sensitivity + (1 - true_rate) * (1 - specificity)
    assert abs(rogan_gladen(observed, sensitivity, specificity) - true_rate) < 1e-12
    assert rogan_gladen(0.01, 0.8, 0.9) == 0.0 and rogan_gladen(0.99, 0.8, 0.9) == 1.0
    assert rogan_gladen(0.5, 0.5, 0.5) is None, "a judge no better than chance cannot correct anything"


counts_lists = st.lists(st.integers(1, 12).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), min_size=2, max_size=60)


@given(counts_lists)
def test_shrunk_rates_lie_between_the_raw_rate_and_the_prior_mean(counts):
    prior = beta_prior_from_counts(counts)
    assert prior is not None and prior[0] >= 0 and prior[1] >= 0 and sum(prior) > 0
    mean = prior[0] / sum(prior)
    for successes, trials in counts:
        raw, shrunk = successes / trials, shrunk_rate(successes, trials, prior)
        assert min(raw, mean) - 1e-9 <= shrunk <= max(raw, mean) + 1e-9


def test_the_prior_recovers_the_spread_of_true_rates_and_corrects_the_winners_curse():
    rng = np.random.default_rng(0)
    true = rng.beta(6, 4, size=4000)
    trials = rng.integers(2, 5, size=4000)
    successes = rng.binomial(trials, true)
    a, b = beta_prior_from_counts(list(zip(successes.tolist(), trials.tolist())))
    assert abs(a / (a + b) - 0.6) < 0.02 and 6 < a + b < 16
    chosen = successes / trials >= 0.75
    fresh = true[chosen].mean()
    raw = (successes[chosen] / trials[chosen]).mean()
    shrunk = np.mean([shrunk_rate(s, n, (a, b)) for s, n in zip(successes[chosen], trials[chosen])])
    assert raw - fresh > 0.15 and abs(shrunk - fresh) < 0.03


def test_no_prior_from_fewer_than_two_rated_items():
    assert beta_prior_from_counts([(1, 2), (0, 0)]) is None


def test_corrected_interval_holds_the_point_estimate_and_widens_with_a_less_certain_judge():
    import numpy as np

    from adversary.core.stats import rogan_gladen, rogan_gladen_interval

    def confusion(scale):
        return {"labeled_break": {"judged_break": 80 * scale, "judged_hold": 20 * scale},
                "labeled_hold": {"judged_break": 10 * scale, "judged_hold": 90 * scale}}

    point = rogan_gladen(0.6, 0.8, 0.9)
    wide = rogan_gladen_interval(120, 200, confusion(1), np.random.default_rng(0))
    narrow = rogan_gladen_interval(120, 200, confusion(20), np.random.default_rng(0))
    assert wide[0] < point < wide[1] and narrow[0] < point < narrow[1]
    assert narrow[1] - narrow[0] < wide[1] - wide[0], "more calibration rows, less judge uncertainty"
    chance = {"labeled_break": {"judged_break": 5, "judged_hold": 5}, "labeled_hold": {"judged_break": 5, "judged_hold": 5}}
    assert rogan_gladen_interval(10, 20, chance, np.random.default_rng(0)) is None
    assert rogan_gladen_interval(0, 0, confusion(1), np.random.default_rng(0)) is None


items = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40)


@given(items, items)
def test_paired_comparison_estimates_are_the_pooled_rates_and_lie_in_their_intervals(first_breaks, second_breaks):
    size = min(len(first_breaks), len(second_breaks))
    first = [(min(b, 3), 3) for b, _ in first_breaks[:size]]
    second = [(min(b, 3), 3) for b, _ in second_breaks[:size]]
    result = paired_rate_comparison(first, second, np.random.default_rng(0), resamples=300)
    rate_first = sum(b for b, _ in first) / (3 * size)
    rate_second = sum(b for b, _ in second) / (3 * size)
    difference, low, high = result["difference"]
    assert difference == pytest.approx(rate_first - rate_second)
    assert -1 <= low <= high <= 1
    if rate_second == 0:
        assert result["ratio"] is None
    else:
        assert result["ratio"][0] == pytest.approx(rate_first / rate_second)
        assert result["ratio"][1] <= result["ratio"][2]


def test_a_target_compared_with_itself_differs_by_nothing():
    same = [(1, 3), (0, 3), (3, 3), (2, 3)]
    result = paired_rate_comparison(same, same, np.random.default_rng(1), resamples=500)
    assert result["difference"] == (0.0, 0.0, 0.0)
    assert result["ratio"] == (1.0, 1.0, 1.0)


def test_pairing_narrows_the_difference_of_two_targets_that_break_on_the_same_items():
    base = [(3, 3)] * 20 + [(0, 3)] * 20
    hardened = [(2, 3)] * 20 + [(0, 3)] * 20
    difference, low, high = paired_rate_comparison(hardened, base, np.random.default_rng(2))["difference"]
    assert difference == pytest.approx(-1 / 6) and high < 0 and high - low < 0.15


def test_paired_comparison_refuses_unpaired_items():
    with pytest.raises(ValueError):
        paired_rate_comparison([(1, 3)], [(1, 3), (2, 3)], np.random.default_rng(0))
