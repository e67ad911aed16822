"""A novelty archive of distractors in embedding space (k-NN over unit embeddings).

Vocabulary follows the quality-diversity literature (pyribs' ProximityArchive): `k_neighbors`,
`novelty_threshold`, local competition. Vectors must be L2-normalized so inner product is cosine
similarity; novelty is the mean cosine distance (1 - cosine) to the k nearest members.

Every member keeps the list of its k nearest other members, so novelty and local competition of the
whole archive are a copy, not a search. Up to `EXACT_LIMIT` members searches are exact (one BLAS product
with every member) and admitting a member is one such pass, with no sort; above it a faiss inverted-file
index answers approximately and admission is one range search of the lists it probes. Restoring a stored
archive takes the lists the store persisted, or one bulk k-NN search."""

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


EXACT_LIMIT = 20_000
"""Members up to which every search is exact (a BLAS product with every member, about 1.3 ms per admission at
10,000 members on one loaded core); above it an inverted-file index answers approximately, because an exact
search reads every member's vector for each query."""
LISTS_PER_ROOT_MEMBER = 2.0
"""Inverted lists per square root of the members indexed (632 at 100,000 members)."""
PROBED_LISTS = 16
"""Inverted lists each approximate search reads."""
TRAINING_POINTS_PER_LIST = 20
"""Members sampled per inverted list to train the list centroids."""
KMEANS_ROUNDS = 6
"""Spherical k-means rounds that place the list centroids."""
REBUILD_GROWTH = 2
"""The approximate index is retrained once the archive holds this many times the members it was trained on,
so its lists never grow past twice their trained length (a search reads proportionally more)."""
CANDIDATES_PER_NEIGHBOUR = 8
"""Above `exact_limit`, when the admission's range search finds fewer than k members, a k-NN search for this
many times `k_neighbors` members stands in for it."""
SIMILARITY_TOLERANCE = 1e-5
"""Slack between BLAS or faiss inner products and `pair_similarity`, so a rounding difference never skips a member."""
RESTORE_BLOCK = 4096
"""Members searched (or assigned to inverted lists) per block, so memory stays bounded."""
EXACT_BLOCK_CELLS = 1 << 24
"""Inner products per block of an exact bulk search (64 MB of float32)."""


def pair_similarity(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise inner products summed in one fixed order, so sim(a, b) equals sim(b, a) bit for bit whichever
    index found the pair: lists built member by member and lists rebuilt by a restore hold the same values."""
    return np.multiply(left, right).sum(axis=1, dtype=np.float32)


def _nearest_first(similarities: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Order (along the last axis) by similarity, highest first, ties to the earlier member."""
    return np.lexsort((positions, -similarities), axis=-1)


def _nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of each vector's most similar centroid, from blocks of BLAS products (several times faster
    than faiss's own assignment on one core)."""
    return np.concatenate([np.argmax(vectors[start:start + RESTORE_BLOCK] @ centroids.T, axis=1)
                           for start in range(0, len(vectors), RESTORE_BLOCK)]).astype(np.int64)


def _spherical_centroids(sample: np.ndarray, lists: int) -> np.ndarray:
    """`lists` unit centroids by spherical k-means over `sample`, started from evenly spaced sample rows
    (deterministic: no random draws); a centroid left without members keeps its place."""
    centroids = sample[np.linspace(0, len(sample) - 1, lists).astype(np.int64)].copy()
    for _ in range(KMEANS_ROUNDS):
        assignment = _nearest_centroid(sample, centroids)
        order = np.argsort(assignment, kind="stable")
        used, starts = np.unique(assignment[order], return_index=True)
        sums = np.zeros_like(centroids)
        sums[used] = np.add.reduceat(sample[order], starts, axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids).astype(np.float32)
    return centroids


def _top(similarities: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest `similarities` of each row and their `positions`, highest first."""
    if similarities.shape[1] > k:
        chosen = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
        similarities, positions = np.take_along_axis(similarities, chosen, 1), np.take_along_axis(positions, chosen, 1)
    order = np.argsort(-similarities, axis=1, kind="stable")
    return np.take_along_axis(similarities, order, 1), np.take_along_axis(positions, order, 1)


def _tied_at(descending: np.ndarray, place: int) -> bool:
    """Whether similarities sorted highest first could tie at `place` (1-based) with one past the last: then
    a member the search did not return may belong at that place (missing results count as ties)."""
    if len(descending) <= place:
        return True
    return bool(descending[-1] >= descending[place - 1] - SIMILARITY_TOLERANCE)


@dataclass
class NoveltyArchive:
    """Members with unit embeddings; rejects near-duplicates and scores novelty.

    Args:
        dimensions: embedding size.
        k_neighbors: neighbours averaged for novelty.
        duplicate_threshold: cosine similarity at or above which a candidate duplicates a member.
        exact_limit: members up to which searches are exact; above it they go through an approximate
            inverted-file index (`None`: always exact).
    """

    dimensions: int
    k_neighbors: int = 5
    duplicate_threshold: float = 0.92
    exact_limit: int | None = EXACT_LIMIT
    _index: faiss.Index | None = field(init=False, default=None, repr=False)
    """The approximate index above `exact_limit` members; None while searches are exact (BLAS inner products
    with every member, faster than faiss's flat search on one core)."""
    _trained_on: int = field(init=False, default=0, repr=False)
    """Members the approximate index was trained on."""
    _last_search: tuple[int, bytes, tuple[np.ndarray, np.ndarray]] | None = field(init=False, default=None, repr=False)
    """(members, vector bytes, what `_admission_search` found) of the latest admission, so `add` after
    `measure` searches once."""
    _changed: set[int] = field(init=False, default_factory=set, repr=False)
    """Positions of the members whose neighbour lists changed since `take_changed_lists`."""
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
        if self.exact_limit is not None and self.exact_limit < 0:
            raise ValueError("exact_limit must be at least 0")
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

    @property
    def approximate(self) -> bool:
        """Whether searches currently go through the approximate index."""
        return self._index is not None

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
        return self._search(vectors, 1)[0][:, 0]

    def nearest_members(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """Positions (admission order) of each vector's k nearest members as the index finds them: exact up to
        `exact_limit` members, approximate above it (-1 where it finds fewer)."""
        vectors = self._check(vectors)
        return self._search(vectors, min(k, len(self._elites)))[1] if self._elites else np.empty((len(vectors), 0), np.int64)

    def novelty(self, vectors: np.ndarray, k: int | None = None) -> np.ndarray:
        """Mean cosine distance of each vector to its k nearest members (1.0 for an empty archive).

        Always in [0, 2]; zero for an exact duplicate of a member when k == 1 or all k neighbours coincide.
        """
        vectors = self._check(vectors)
        if not self._elites:
            return np.ones(len(vectors), dtype=np.float32)
        k = min(k or self.k_neighbors, len(self._elites))
        similarities, _ = self._search(vectors, k)
        distances = np.clip(1.0 - similarities, 0.0, 2.0)
        return distances.mean(axis=1)

    def measure(self, vector: np.ndarray) -> tuple[float, float]:
        """(similarity to the nearest member, novelty) of one vector, from a single k-NN search: what
        `nearest_similarity` and `novelty` give separately, for the admission path that needs both."""
        vector = self._check(vector)
        if not self._elites:
            return -1.0, 1.0
        similarities = _top(*self._admission_search(vector), min(self.k_neighbors, len(self._elites)))[0]
        return float(similarities[0, 0]), float(np.clip(1.0 - similarities, 0.0, 2.0).mean(axis=1)[0])

    def _admission_search(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Similarities (1 x m) and positions (1 x m) of the members an admission compares `vector` with: every
        member while searches are exact; above, every member of the inverted lists the approximate index
        probes that is nearer than the furthest k-th neighbour of any member (a range search, so the new
        member enters every list it belongs in among those), or its `CANDIDATES_PER_NEIGHBOUR` * k nearest
        when that finds fewer than k. `measure` reports from it and `_append` keeps the lists by it."""
        n, key = len(self._elites), vector.tobytes()
        if self._last_search is not None and self._last_search[:2] == (n, key):
            return self._last_search[2]
        if self.approximate:
            radius = max(-2.0, float(self._nn_similarity[:n, -1].min()) - SIMILARITY_TOLERANCE)
            _, found_similarities, found_positions = self._index.range_search(vector, radius)
            similarities, found = found_similarities[None], found_positions[None]
            if found.shape[1] < min(n, self.k_neighbors):
                similarities, found = self._index.search(vector, min(n, CANDIDATES_PER_NEIGHBOUR * self.k_neighbors))
                kept = found[0] >= 0
                similarities, found = similarities[:, kept], found[:, kept]
        else:
            similarities, found = self._exact_scores(vector), np.arange(n)[None]
        self._last_search = (n, key, (similarities, found))
        return similarities, found

    def _exact_scores(self, vectors: np.ndarray) -> np.ndarray:
        """Inner products of `vectors` with every member (one BLAS product; the one expression every exact
        search uses, so they round alike)."""
        return vectors @ self._matrix[: len(self._elites)].T

    def _search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Similarities and positions of each vector's k nearest members, nearest first: exact below
        `exact_limit`, by the approximate index above it (-1 positions where it finds fewer)."""
        if self.approximate:
            return self._index.search(vectors, k)
        scores = np.concatenate([self._exact_scores(vectors[start:start + RESTORE_BLOCK])
                                 for start in range(0, len(vectors), RESTORE_BLOCK)]) if len(vectors) else \
            np.empty((0, len(self._elites)), np.float32)
        return _top(scores, np.broadcast_to(np.arange(len(self._elites)), scores.shape), k)

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

    def restore(self, candidate: Candidate, vector: np.ndarray, novelty: float) -> None:
        """Re-admit a member that `add` admitted before (replaying a store): same order, same vector, so the
        duplicate check would pass again; skipping it saves a search per member."""
        vector = self._check(vector)
        if candidate.id in self._position:
            raise ValueError(f"{candidate.id} is already a member")
        self._append(Elite(candidate=candidate, novelty=float(novelty)), vector)

    def restore_many(self, candidates: list[Candidate], vectors: np.ndarray, novelties: list[float],
                     neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Re-admit, into an empty archive, members that `add` admitted in this order: one index build, and
        the neighbour lists `neighbours()` gave for them (persisted with a store) or one bulk k-NN search,
        instead of a search per member. The result equals restoring them one by one."""
        vectors = self._check(vectors)
        if self._elites:
            raise ValueError("restore_many fills an empty archive")
        if not len(candidates) == len(vectors) == len(novelties):
            raise ValueError("one candidate, vector and novelty per member")
        if len({c.id for c in candidates}) != len(candidates):
            raise ValueError("candidate ids must be unique")
        n = len(candidates)
        lists = None if neighbours is None else self._checked_lists(*neighbours, members=n)
        self._reserve(n)
        self._matrix[:n] = vectors
        self._elites = [Elite(candidate=c, novelty=float(v)) for c, v in zip(candidates, novelties)]
        self._position = {c.id: i for i, c in enumerate(candidates)}
        self._index, self._trained_on = self._build_index(vectors)
        similarities, positions = self._all_neighbours() if lists is None else lists
        self._nn_similarity[:n, : similarities.shape[1]] = similarities
        self._nn_position[:n, : positions.shape[1]] = positions
        self._changed = set() if lists is not None else set(range(n))

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
        capped at the number of other members), nearest first (ties to the earlier member), in admission
        order. Kept up to date as members arrive, so this is a copy, not a search."""
        n = len(self._elites)
        k = self._list_width(n)
        return self._nn_similarity[:n, :k].copy(), self._nn_position[:n, :k].copy()

    def take_changed_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, similarities, neighbour positions) of the members whose neighbour lists changed since the
        last call, `k_neighbors` wide (-inf and -1 where a list is shorter), so a store persists only those."""
        rows = np.array(sorted(self._changed), dtype=np.int64)
        self._changed.clear()
        return rows, self._nn_similarity[rows].copy(), self._nn_position[rows].copy()

    def current_novelty(self) -> np.ndarray:
        """Novelty of every member against the others (excluding itself)."""
        if len(self._elites) < 2:
            return np.ones(len(self._elites), dtype=np.float32)
        similarities, _ = self.neighbours()
        return np.clip(1.0 - similarities, 0.0, 2.0).mean(axis=1)

    # -- neighbour lists ------------------------------------------------------------------------------
    def _list_width(self, members: int) -> int:
        return max(0, min(self.k_neighbors, members - 1))

    def _append(self, elite: Elite, vector: np.ndarray) -> None:
        """Admit a member: its own list is its k nearest, and it enters the lists of the members it is nearer
        to than their k-th neighbour (`_lists_to_enter` says which members are compared). No per-member sort
        of the whole archive."""
        n = len(self._elites)
        self._reserve(n + 1)
        if n:
            positions, similarities = self._lists_to_enter(vector)
            order = _nearest_first(similarities, positions)[: self.k_neighbors]
            self._nn_similarity[n, : len(order)] = similarities[order]
            self._nn_position[n, : len(order)] = positions[order]
            self._enter_lists(n, positions, similarities)
        self._changed.add(n)
        self._matrix[n] = vector[0]
        self._position[elite.candidate.id] = n
        self._elites.append(elite)
        self._index_new_member(vector)

    def _lists_to_enter(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and similarities of the members a new `vector` is compared with: among the members the
        admission search scored (all of them while exact, in O(n) and no sort), its k nearest and every one
        whose list it can enter."""
        scores, found = self._admission_search(vector)
        scores, found = scores[0], found[0]
        place = len(scores) - min(self.k_neighbors, len(scores))
        kth_nearest = np.partition(scores, place)[place]
        near = found[(scores >= kth_nearest - SIMILARITY_TOLERANCE)
                     | (scores > self._nn_similarity[found, -1] - SIMILARITY_TOLERANCE)]
        return near, pair_similarity(self._matrix[near], vector)

    def _enter_lists(self, newcomer: int, positions: np.ndarray, similarities: np.ndarray) -> None:
        """Insert `newcomer` into the list of each member it is nearer to than that member's k-th neighbour,
        after neighbours as near (they are earlier members)."""
        entering = similarities > self._nn_similarity[positions, -1]
        for row, similarity in zip(positions[entering], similarities[entering]):
            slot = int(np.searchsorted(-self._nn_similarity[row], -similarity, side="right"))
            self._nn_similarity[row, slot + 1:] = self._nn_similarity[row, slot:-1].copy()
            self._nn_position[row, slot + 1:] = self._nn_position[row, slot:-1].copy()
            self._nn_similarity[row, slot] = similarity
            self._nn_position[row, slot] = newcomer
            self._changed.add(int(row))

    def _all_neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """Every member's neighbour list from one bulk k-NN search (k + 2: the member itself and one more, to
        see whether a tie at the k-th place reaches past the search), in blocks so memory stays bounded.
        While exact, a member with such a tie is compared with every member; above `exact_limit` the search
        is the approximate index's, one query per member (about 1.5 ms each at 100,000 members on one
        loaded core), so a store that persisted the lists restores far faster."""
        n = len(self._elites)
        width = self._list_width(n)
        similarities = np.full((n, width), -np.inf, dtype=np.float32)
        positions = np.full((n, width), -1, dtype=np.int64)
        if not width:
            return similarities, positions
        wanted = min(n, width + 2)
        block = RESTORE_BLOCK if self.approximate else max(64, EXACT_BLOCK_CELLS // n)
        for start in range(0, n, block):
            rows = np.arange(start, min(n, start + block))
            scores, found = self._ranked_others(rows, self._nearest_of_members(rows, wanted))
            similarities[rows], positions[rows] = scores[:, :width], found[:, :width]
            if self.approximate:
                continue
            for row in rows[[wanted < n and _tied_at(row_scores[: wanted - 1], width) for row_scores in scores]]:
                similarities[row], positions[row] = self._exact_list(row, width)
        return similarities, positions

    def _exact_list(self, row: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Member `row`'s `width` nearest other members from its inner products with every member: those within
        `SIMILARITY_TOLERANCE` of the `width`-th, ranked by `pair_similarity`, ties to the earlier member."""
        scores = self._exact_scores(self._matrix[row][None])[0]
        scores[row] = -np.inf
        boundary = np.partition(scores, len(scores) - width)[len(scores) - width]
        near = np.flatnonzero(scores >= boundary - SIMILARITY_TOLERANCE)
        near = near[near != row]
        similarities = pair_similarity(self._matrix[near], self._matrix[row][None])
        order = _nearest_first(similarities, near)[:width]
        return similarities[order], near[order]

    def _nearest_of_members(self, rows: np.ndarray, wanted: int) -> np.ndarray:
        """Positions of the `wanted` members nearest each member in `rows` (itself included, unordered): a
        search of the approximate index, or exact BLAS inner products with every member."""
        if self.approximate:
            return self._index.search(self._matrix[rows], wanted)[1]
        return np.argpartition(-self._exact_scores(self._matrix[rows]), wanted - 1, axis=1)[:, :wanted]

    def _ranked_others(self, rows: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The members `found` for each of `rows`, scored by `pair_similarity` and ranked nearest first; the
        row itself and missing results rank last with similarity -inf and position -1."""
        valid = (found >= 0) & (found != rows[:, None])
        scores = np.full(found.shape, -np.inf, dtype=np.float32)
        scores[valid] = pair_similarity(self._matrix[np.broadcast_to(rows[:, None], found.shape)[valid]],
                                        self._matrix[found[valid]])
        order = _nearest_first(scores, np.where(valid, found, len(self._elites)))
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(np.where(valid, found, -1), order, axis=1)

    def _checked_lists(self, similarities: np.ndarray, positions: np.ndarray, members: int) -> tuple[np.ndarray, np.ndarray]:
        """Persisted neighbour lists, after checking they fit an archive of `members`."""
        n = members
        shape = (n, self._list_width(n))
        similarities = np.asarray(similarities, dtype=np.float32)
        positions = np.asarray(positions, dtype=np.int64)
        if similarities.shape != shape or positions.shape != shape:
            raise ValueError(f"neighbour lists must be {shape}, got {similarities.shape} and {positions.shape}")
        if positions.size and (positions.min() < -1 or positions.max() >= n):
            raise ValueError("neighbour positions must refer to members")
        return similarities, positions

    # -- storage and index ----------------------------------------------------------------------------
    def _reserve(self, members: int) -> None:
        """Grow the member arrays (doubling) so they hold `members` rows."""
        capacity = len(self._matrix)
        if members <= capacity:
            return
        while capacity < members:
            capacity *= 2
        extra = capacity - len(self._matrix)
        self._matrix = np.concatenate([self._matrix, np.zeros((extra, self.dimensions), dtype=np.float32)])
        self._nn_similarity = np.concatenate([self._nn_similarity, np.full((extra, self.k_neighbors), -np.inf, dtype=np.float32)])
        self._nn_position = np.concatenate([self._nn_position, np.full((extra, self.k_neighbors), -1, dtype=np.int64)])

    def _index_new_member(self, vector: np.ndarray) -> None:
        """Add the newest member to the approximate index, or (re)build that index when the archive passed
        `exact_limit` or grew `REBUILD_GROWTH` times past what it was trained on."""
        n = len(self._elites)
        if self.approximate and n < REBUILD_GROWTH * self._trained_on:
            self._index.add(vector)
        elif self.exact_limit is not None and n > self.exact_limit:
            self._index, self._trained_on = self._build_index(self._matrix[:n])

    def _build_index(self, vectors: np.ndarray) -> tuple[faiss.Index | None, int]:
        """(index of `vectors`, members it was trained on): none up to `exact_limit`, else an inverted file
        whose centroids are trained (spherical k-means) on an even sample of the members."""
        n = len(vectors)
        if self.exact_limit is None or n <= self.exact_limit:
            return None, 0
        lists = max(1, int(LISTS_PER_ROOT_MEMBER * np.sqrt(n)))
        centroids = _spherical_centroids(vectors[:: max(1, n // (lists * TRAINING_POINTS_PER_LIST))], lists)
        quantizer = faiss.IndexFlatIP(self.dimensions)
        quantizer.add(centroids)
        index = faiss.IndexIVFFlat(quantizer, self.dimensions, lists, faiss.METRIC_INNER_PRODUCT)
        assignment = _nearest_centroid(vectors, centroids)
        index.add_core(n, faiss.swig_ptr(vectors), None, faiss.swig_ptr(assignment))
        index.nprobe = PROBED_LISTS
        return index, n
