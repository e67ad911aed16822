"""The logistic model behind the embedded judge: agreement with scikit-learn, held-out groups, serialization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.core.logistic import LogisticModel, fit_logistic, leave_one_group_out

NAMES = ("a", "b", "c")


def _problem(seed: int, rows: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(NAMES))) * [1.0, 5.0, 0.1] + [0.0, 3.0, -1.0]
    y = (x @ [1.0, -0.3, 8.0] + rng.normal(size=rows) > -6.0).astype(int)
    groups = np.array([f"g{i % 6}" for i in range(rows)])
    return x, y, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_matches_scikit_learn_on_standardized_features(seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y, _ = _problem(seed)
    if len(set(y)) < 2:
        pytest.skip("one class only")
    ours = fit_logistic(x, y, NAMES, l2=10.0)
    theirs = LogisticRegression(C=0.1, tol=1e-12, max_iter=10_000).fit(StandardScaler().fit_transform(x), y)
    assert np.allclose(ours.weights, theirs.coef_[0], atol=1e-6)
    assert abs(ours.bias - theirs.intercept_[0]) < 1e-6


@given(st.integers(0, 2**32 - 1), st.floats(0.01, 100.0))
@settings(max_examples=40, deadline=None)
def test_probabilities_are_probabilities_and_survive_a_json_round_trip(seed, l2):
    x, y, _ = _problem(seed, rows=30)
    model = fit_logistic(x, y, NAMES, l2=l2)
    p = model.probability(x)
    assert p.shape == (30,) and ((p >= 0) & (p <= 1)).all()
    assert np.array_equal(LogisticModel.from_json(model.to_json()).probability(x), p)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_a_held_out_group_never_trains_the_model_that_judges_it(seed):
    x, y, groups = _problem(seed)
    flipped = y.copy()
    flipped[groups == "g0"] = 1 - flipped[groups == "g0"]
    held = groups == "g0"
    assert np.array_equal(leave_one_group_out(x, y, groups, NAMES)[held], leave_one_group_out(x, flipped, groups, NAMES)[held])


def test_a_constant_feature_gets_no_weight_and_bad_shapes_are_refused():
    x, y, _ = _problem(3)
    x[:, 1] = 7.0
    assert fit_logistic(x, y, NAMES).weights[1] == 0.0
    with pytest.raises(ValueError):
        fit_logistic(x[:, :2], y, NAMES)
    with pytest.raises(ValueError):
        LogisticModel.from_json({"feature_names": ["a"], "means": [0, 1], "scales": [1], "weights": [1], "bias": 0, "l2": 1})
