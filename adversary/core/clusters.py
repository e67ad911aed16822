"""Clusters of distractors in embedding space, and the elite archive built on them (pure).

The clustering every figure uses: average-linkage agglomerative clustering of unit embeddings,
cut where the mean cosine distance between two clusters exceeds `CLUSTER_DISTANCE` (0.5,
i.e. members of one cluster are on average more than 0.5 cosine-similar to each other).
Average linkage does not chain the way single linkage does, and a fixed cut makes counts
comparable between runs of different sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

CLUSTER_DISTANCE = 0.5


def cluster_labels(vectors: np.ndarray, distance: float = CLUSTER_DISTANCE) -> np.ndarray:
    """Cluster label (0..n_clusters-1, by first appearance) for each unit vector."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    # The condensed distances directly (n^2/2 floats): an n x n matrix and its index arrays took four times that.
    condensed = np.clip(pdist(vectors, metric="cosine"), 0.0, 2.0)
    raw = fcluster(linkage(condensed, method="average"), t=distance, criterion="distance")
    relabel: dict[int, int] = {}
    return np.array([relabel.setdefault(int(label), len(relabel)) for label in raw], dtype=int)


def count_clusters(vectors: np.ndarray, distance: float = CLUSTER_DISTANCE) -> int:
    """Number of distinct clusters among `vectors` (0 for none)."""
    labels = cluster_labels(vectors, distance)
    return int(labels.max()) + 1 if len(labels) else 0


def best_per_cluster(labels: Sequence[int], scores: Sequence[float]) -> list[int]:
    """Index of the highest-scoring member of each cluster (first one on ties), in cluster order."""
    best: dict[int, int] = {}
    for index, (label, score) in enumerate(zip(labels, scores)):
        if label not in best or score > scores[best[label]]:
            best[label] = index
    return [best[label] for label in sorted(best)]


def clusters_without_seeds(labels: Sequence[int], is_seed: Sequence[bool]) -> int:
    """Number of clusters that hold members but no seed: the regions of embedding space a search reached that its
    seeds had not."""
    seeded = {label for label, seed in zip(labels, is_seed) if seed}
    return len({label for label in labels if label not in seeded})
