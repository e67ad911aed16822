"""A novelty archive of distractors in embedding space (faiss exact inner-product k-NN).

Vocabulary follows the quality-diversity literature (pyribs' ProximityArchive): `k_neighbors`,
`novelty_threshold`, local competition. Vectors must be L2-normalized so inner product is cosine
similarity; novelty is the mean cosine distance (1 - cosine) to the k nearest members.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import faiss
import numpy as np

from adversary.core.stats import BetaPosterior, wilson_interval


@dataclass(frozen=True)
class Candidate:
    """A proposed distractor and where it came from."""

    id: str
    text: str
    style: str
    scenario_id: str | None
    operator: str
    generation: int
    parents: tuple[str, ...] = ()
    bridge: str | None = None
    """For a two-turn distractor, the user turn sent first; `text` is the pivot that follows the bot's reply."""

    @property
    def full_text(self) -> str:
        """Everything the user says, bridge included: what novelty and duplicates are measured on."""
        return f"{self.bridge} {self.text}" if self.bridge else self.text

    @property
    def calls_per_trial(self) -> int:
        """Target calls one trial costs per target: two for a two-turn distractor (bridge, then pivot)."""
        return 2 if self.bridge else 1


@dataclass(frozen=True)
class Elite:
    """An archive member: a candidate, its break counts and its novelty when it was admitted."""

    candidate: Candidate
    breaks: int = 0
    trials: int = 0
    novelty: float = 1.0

    @property
    def fitness(self) -> BetaPosterior:
        """Beta(1 + breaks, 1 + holds) posterior of the break rate."""
        return BetaPosterior(self.breaks, self.trials - self.breaks)

    @property
    def break_rate(self) -> float | None:
        return self.breaks / self.trials if self.trials else None

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.breaks, self.trials)


@dataclass
class NoveltyArchive:
    """Members with unit embeddings; rejects near-duplicates and scores novelty.

    Args:
        dimensions: embedding size.
        k_neighbors: neighbours averaged for novelty.
        duplicate_threshold: cosine similarity at or above which a candidate duplicates a member.
    """

    dimensions: int
    k_neighbors: int = 5
    duplicate_threshold: float = 0.92
    _index: faiss.IndexFlatIP = field(init=False, repr=False)
    _elites: list[Elite] = field(init=False, default_factory=list, repr=False)
    _position: dict[str, int] = field(init=False, default_factory=dict, repr=False)
    _matrix: np.ndarray = field(init=False, repr=False)
    """Member vectors as rows (capacity doubles as members arrive)."""
    _nn_similarity: np.ndarray = field(init=False, repr=False)
    """Per member, the similarities of its k nearest other members, nearest first (-inf where fewer exist)."""
    _nn_position: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.k_neighbors < 1:
            raise ValueError("k_neighbors must be at least 1")
        if not 0.0 < self.duplicate_threshold <= 1.0:
            raise ValueError("duplicate_threshold must be in (0, 1]")
        self._index = faiss.IndexFlatIP(self.dimensions)
        self._matrix = np.zeros((16, self.dimensions), dtype=np.float32)
        self._nn_similarity = np.full((16, self.k_neighbors), -np.inf, dtype=np.float32)
        self._nn_position = np.full((16, self.k_neighbors), -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._elites)

    def __contains__(self, candidate_id: str) -> bool:
        return candidate_id in self._position

    @property
    def elites(self) -> list[Elite]:
        """Members in admission order."""
        return list(self._elites)

    def get(self, candidate_id: str) -> Elite:
        return self._elites[self._position[candidate_id]]

    def vector(self, candidate_id: str) -> np.ndarray:
        return self._matrix[self._position[candidate_id]].copy()

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if vectors.shape[1] != self.dimensions:
            raise ValueError(f"expected {self.dimensions}-dimensional vectors, got {vectors.shape[1]}")
        return vectors

    def nearest_similarity(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity of each vector to its nearest member (-1 when the archive is empty)."""
        vectors = self._check(vectors)
        if not self._elites:
            return np.full(len(vectors), -1.0, dtype=np.float32)
        similarities, _ = self._index.search(vectors, 1)
        return similarities[:, 0]

    def novelty(self, vectors: np.ndarray, k: int | None = None) -> np.ndarray:
        """Mean cosine distance of each vector to its k nearest members (1.0 for an empty archive).

        Always in [0, 2]; zero for an exact duplicate of a member when k == 1 or all k neighbours coincide.
        """
        vectors = self._check(vectors)
        if not self._elites:
            return np.ones(len(vectors), dtype=np.float32)
        k = min(k or self.k_neighbors, len(self._elites))
        similarities, _ = self._index.search(vectors, k)
        distances = np.clip(1.0 - similarities, 0.0, 2.0)
        return distances.mean(axis=1)

    def measure(self, vector: np.ndarray) -> tuple[float, float]:
        """(similarity to the nearest member, novelty) of one vector, from a single k-NN search: what
        `nearest_similarity` and `novelty` give separately, for the admission path that needs both."""
        vector = self._check(vector)
        if not self._elites:
            return -1.0, 1.0
        similarities, _ = self._index.search(vector, min(self.k_neighbors, len(self._elites)))
        return float(similarities[0, 0]), float(np.clip(1.0 - similarities, 0.0, 2.0).mean(axis=1)[0])

    def is_duplicate(self, vector: np.ndarray) -> bool:
        """True when `vector` is at least `duplicate_threshold` similar to a member."""
        return bool(self.nearest_similarity(vector)[0] >= self.duplicate_threshold)

    def add(self, candidate: Candidate, vector: np.ndarray, measured: tuple[float, float] | None = None) -> bool:
        """Admit `candidate` unless it duplicates a member or its id is taken; returns whether it was added.
        `measured`: what `measure(vector)` gave for this archive state, when the caller already has it."""
        vector = self._check(vector)
        if candidate.id in self._position:
            return False
        nearest, novelty = self.measure(vector) if measured is None else measured
        if nearest >= self.duplicate_threshold:
            return False
        self._append(Elite(candidate=candidate, novelty=novelty), vector)
        return True

    def _append(self, elite: Elite, vector: np.ndarray) -> None:
        """Admit a member and update every member's nearest-neighbour list with it: O(n) per member, so
        novelty and local competition of the whole archive never need an n x n search."""
        n = len(self._elites)
        if n == len(self._matrix):
            self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
            self._nn_similarity = np.concatenate([self._nn_similarity, np.full_like(self._nn_similarity, -np.inf)])
            self._nn_position = np.concatenate([self._nn_position, np.full_like(self._nn_position, -1)])
        k = self.k_neighbors
        similarities = self._matrix[:n] @ vector[0]
        if n:
            nearest = np.argsort(-similarities, kind="stable")[:k]
            self._nn_similarity[n, : len(nearest)] = similarities[nearest]
            self._nn_position[n, : len(nearest)] = nearest
            closer = np.flatnonzero(similarities > self._nn_similarity[:n, -1])
            for row in closer:
                slot = int(np.searchsorted(-self._nn_similarity[row], -similarities[row], side="right"))
                self._nn_similarity[row, slot + 1:] = self._nn_similarity[row, slot:-1].copy()
                self._nn_position[row, slot + 1:] = self._nn_position[row, slot:-1].copy()
                self._nn_similarity[row, slot] = similarities[row]
                self._nn_position[row, slot] = n
        self._matrix[n] = vector[0]
        self._position[elite.candidate.id] = n
        self._elites.append(elite)
        self._index.add(vector)

    def restore(self, candidate: Candidate, vector: np.ndarray, novelty: float) -> None:
        """Re-admit a member that `add` admitted before (replaying a store): same order, same vector, so the
        duplicate check would pass again; skipping it makes replaying a large archive linear, not quadratic."""
        vector = self._check(vector)
        if candidate.id in self._position:
            raise ValueError(f"{candidate.id} is already a member")
        self._append(Elite(candidate=candidate, novelty=float(novelty)), vector)

    def record(self, candidate_id: str, breaks: int, trials: int) -> Elite:
        """Add trial outcomes to a member."""
        if breaks < 0 or trials < breaks:
            raise ValueError("invalid counts")
        position = self._position[candidate_id]
        elite = self._elites[position]
        updated = replace(elite, breaks=elite.breaks + breaks, trials=elite.trials + trials)
        self._elites[position] = updated
        return updated

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """For every member, the similarities and positions of its k nearest other members (`k_neighbors`,
        capped at the number of other members), nearest first, in admission order. Kept up to date as
        members arrive, so this is a copy, not a search."""
        n = len(self._elites)
        k = max(0, min(self.k_neighbors, n - 1))
        return self._nn_similarity[:n, :k].copy(), self._nn_position[:n, :k].copy()

    def current_novelty(self) -> np.ndarray:
        """Novelty of every member against the others (excluding itself)."""
        if len(self._elites) < 2:
            return np.ones(len(self._elites), dtype=np.float32)
        similarities, _ = self.neighbours()
        return np.clip(1.0 - similarities, 0.0, 2.0).mean(axis=1)
