"""Pure figures a report derives from a run: diversity, transfer between targets, a 2-D map."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

SELF_BLEU_N = 4
"""Self-BLEU uses 1- to 4-grams with equal weights (the usual BLEU-4), smoothing method 1."""


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float | None:
    """Mean of 1 - cosine over all distinct pairs of unit vectors (None for fewer than two)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    n = len(vectors)
    if n < 2:
        return None
    similarities = vectors @ vectors.T
    off_diagonal = (similarities.sum() - np.trace(similarities)) / (n * (n - 1))
    return float(1.0 - off_diagonal)


def self_bleu(texts: Sequence[str], n: int = SELF_BLEU_N, max_texts: int = 300, seed: int = 0) -> float | None:
    """Mean BLEU-n of each text against all the others as references (higher = less diverse).

    Above `max_texts` texts, a seeded sample of that many is scored (the figure is a mean, so a sample
    estimates it; the cost is quadratic).
    """
    tokenized = [t for t in (_tokens(x) for x in texts) if t]
    if len(tokenized) < 2:
        return None
    if len(tokenized) > max_texts:
        picks = np.random.default_rng(seed).choice(len(tokenized), size=max_texts, replace=False)
        tokenized = [tokenized[i] for i in sorted(picks)]
    weights = tuple([1.0 / n] * n)
    smoothing = SmoothingFunction().method1
    scores = [
        sentence_bleu(tokenized[:i] + tokenized[i + 1:], hypothesis, weights=weights, smoothing_function=smoothing)
        for i, hypothesis in enumerate(tokenized)
    ]
    return float(np.mean(scores))


def transfer_matrix(rates: Mapping[str, Mapping[str, tuple[int, int]]]) -> dict[str, dict[str, float | None]]:
    """For targets A and B: the share of distractors that break A (more breaks than holds) that also break B.

    `rates[target][item] = (breaks, trials)`. Only items tried on both targets count; None when A has none.
    """
    breaking = {t: {item for item, (b, n) in items.items() if n and b / n > 0.5} for t, items in rates.items()}
    matrix: dict[str, dict[str, float | None]] = {}
    for a in rates:
        matrix[a] = {}
        for b in rates:
            shared = breaking[a] & set(rates[b])
            matrix[a][b] = len(shared & breaking[b]) / len(shared) if shared else None
    return matrix


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of `vectors` (n x 2); zeros for fewer than two rows."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    if projected.shape[1] < 2:
        projected = np.hstack([projected, np.zeros((len(projected), 2 - projected.shape[1]))])
    return projected
