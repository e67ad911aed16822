"""L2-regularized logistic regression on standardized features, and leave-one-group-out predictions (pure).

The embedded judge is a logistic model over a few dozen reply features, fitted to a few hundred hand
labels. At that size Newton's method (iteratively reweighted least squares) converges exactly in a
handful of steps, and a frozen record of means, scales and weights is all a judge needs to ship.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogisticModel:
    """P(y = 1 | x) = sigmoid(bias + weights . (x - means) / scales)."""

    feature_names: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    l2: float

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(y = 1) for each row of `features` (columns in `feature_names` order)."""
        x = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - np.array(self.means)) / np.array(self.scales)
        return _sigmoid(self.bias + x @ np.array(self.weights))

    def to_json(self) -> dict:
        return {"feature_names": list(self.feature_names), "means": list(self.means), "scales": list(self.scales),
                "weights": list(self.weights), "bias": self.bias, "l2": self.l2}

    @classmethod
    def from_json(cls, data: dict) -> LogisticModel:
        names = tuple(str(n) for n in data["feature_names"])
        fields = {key: tuple(float(v) for v in data[key]) for key in ("means", "scales", "weights")}
        if any(len(values) != len(names) for values in fields.values()):
            raise ValueError("means, scales and weights must have one value per feature")
        return cls(feature_names=names, bias=float(data["bias"]), l2=float(data["l2"]), **fields)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(features: np.ndarray, labels: Sequence[int] | np.ndarray, feature_names: Sequence[str],
                 l2: float = 10.0, iterations: int = 50) -> LogisticModel:
    """Fit by Newton's method, minimizing log loss + l2/2 * |weights|^2 on standardized features (bias free).

    `l2` is the inverse of scikit-learn's C. Constant columns get scale 1 and so weight 0.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or x.shape[1] != len(feature_names):
        raise ValueError("features must be rows x len(feature_names), one label per row")
    if len(y) == 0 or l2 <= 0:
        raise ValueError("need at least one row and a positive l2")
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales == 0] = 1.0
    design = np.hstack([np.ones((len(x), 1)), (x - means) / scales])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    theta = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (p - y) + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return LogisticModel(feature_names=tuple(feature_names), means=tuple(means.tolist()), scales=tuple(scales.tolist()),
                         weights=tuple(theta[1:].tolist()), bias=float(theta[0]), l2=float(l2))


def leave_one_group_out(features: np.ndarray, labels: Sequence[int] | np.ndarray, groups: Sequence[str],
                        feature_names: Sequence[str], l2: float = 10.0) -> np.ndarray:
    """P(y = 1) of every row from a model fitted on the rows of all other groups (a row's own group never
    trains the model that judges it). A group that is all there is gets the base rate of nothing: 0.5."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    groups = np.asarray(groups)
    out = np.full(len(y), 0.5)
    for group in dict.fromkeys(groups.tolist()):
        held = groups == group
        if (~held).any():
            out[held] = fit_logistic(x[~held], y[~held], feature_names, l2).probability(x[held])
    return out
