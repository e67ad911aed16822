"""The archive's neighbour lists kept by k-NN search equal the old score-everything-and-sort lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.core.archive import Candidate, Elite, NoveltyArchive, pair_similarity
from adversary.core.selection import local_competition, select_parents, selection_scores

DIM = 8
K = 3


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _candidate(i: int) -> Candidate:
    return Candidate(id=f"c{i}", text=f"t{i}", style="emotional", scenario_id=None, operator="seed", generation=0)


distinct = st.tuples(st.integers(2, 60), st.integers(0, 2**32 - 1)).map(
    lambda args: _unit(np.random.default_rng(args[1]).normal(size=(args[0], DIM))))
with_repeats = st.tuples(st.integers(2, 40), st.integers(1, 6), st.integers(0, 2**32 - 1)).map(
    lambda args: _unit(np.random.default_rng(args[2]).normal(size=(args[1], DIM)))[
        np.random.default_rng(args[2] + 1).integers(args[1], size=args[0])])
"""Rows drawn from a few vectors, so exact ties between neighbours are common."""


def oracle_lists(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour lists as the archive kept them before k-NN maintenance: each new member scored against
    all earlier ones and sorted (stable), then inserted into every list whose k-th neighbour it beats."""
    n = len(matrix)
    similarity = np.full((n, k), -np.inf, dtype=np.float32)
    position = np.full((n, k), -1, dtype=np.int64)
    for new in range(1, n):
        scores = pair_similarity(matrix[:new], matrix[new][None])
        nearest = np.argsort(-scores, kind="stable")[:k]
        similarity[new, : len(nearest)] = scores[nearest]
        position[new, : len(nearest)] = nearest
        for row in np.flatnonzero(scores > similarity[:new, -1]):
            slot = int(np.searchsorted(-similarity[row], -scores[row], side="right"))
            similarity[row, slot + 1:] = similarity[row, slot:-1].copy()
            position[row, slot + 1:] = position[row, slot:-1].copy()
            similarity[row, slot] = scores[row]
            position[row, slot] = new
    width = max(0, min(k, n - 1))
    return similarity[:, :width], position[:, :width]


@dataclass
class OracleArchive:
    """What selection reads from an archive (members and neighbour lists), with the oracle's lists."""

    elites: list[Elite]
    lists: tuple[np.ndarray, np.ndarray]

    def __len__(self) -> int:
        return len(self.elites)

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lists[0].copy(), self.lists[1].copy()


def _built(matrix: np.ndarray, exact_limit: int | None = None) -> NoveltyArchive:
    archive = NoveltyArchive(dimensions=DIM, k_neighbors=K, duplicate_threshold=1.0, exact_limit=exact_limit)
    for i, row in enumerate(matrix):
        archive.restore(_candidate(i), row, 1.0)
    return archive


def _stored(archive: NoveltyArchive) -> np.ndarray:
    return np.stack([archive.vector(e.candidate.id) for e in archive.elites])


def _assert_same_lists(archive: NoveltyArchive, lists: tuple[np.ndarray, np.ndarray]) -> None:
    similarities, positions = archive.neighbours()
    np.testing.assert_array_equal(positions, lists[1])
    np.testing.assert_array_equal(similarities, lists[0])


@given(st.one_of(distinct, with_repeats))
@settings(max_examples=150, deadline=None)
def test_lists_kept_by_knn_search_equal_the_sorted_lists_ties_included(matrix):
    archive = _built(matrix)
    _assert_same_lists(archive, oracle_lists(matrix, K))


@given(distinct, st.integers(0, 2**32 - 1), st.lists(st.integers(0, 8), min_size=60, max_size=60))
@settings(max_examples=100, deadline=None)
def test_novelty_local_competition_and_selection_equal_the_sorted_lists(members, seed, outcomes):
    archive = NoveltyArchive(dimensions=DIM, k_neighbors=K, duplicate_threshold=0.9, exact_limit=None)
    for i, row in enumerate(members):
        archive.add(_candidate(i), row)
    for elite, breaks in zip(archive.elites, outcomes):
        archive.record(elite.candidate.id, breaks, 8)
    oracle = OracleArchive(archive.elites, oracle_lists(_stored(archive), K))
    fitness = np.linspace(0, 1, len(archive))
    np.testing.assert_array_equal(archive.current_novelty(), np.clip(1 - oracle.lists[0], 0, 2).mean(axis=1)
                                  if len(archive) > 1 else np.ones(len(archive)))
    np.testing.assert_array_equal(local_competition(archive, fitness), local_competition(oracle, fitness))
    np.testing.assert_array_equal(selection_scores(archive, "novelty"), selection_scores(oracle, "novelty"))
    assert (select_parents(archive, 9, "novelty", np.random.default_rng(seed))
            == select_parents(oracle, 9, "novelty", np.random.default_rng(seed)))


@given(st.one_of(distinct, with_repeats))
@settings(max_examples=100, deadline=None)
def test_bulk_restore_equals_restoring_one_by_one_with_or_without_persisted_lists(matrix):
    built = _built(matrix)
    candidates = [e.candidate for e in built.elites]
    searched = NoveltyArchive(dimensions=DIM, k_neighbors=K, exact_limit=None)
    searched.restore_many(candidates, matrix, [1.0] * len(matrix))
    persisted = NoveltyArchive(dimensions=DIM, k_neighbors=K, exact_limit=None)
    persisted.restore_many(candidates, matrix, [1.0] * len(matrix), neighbours=built.neighbours())
    for restored in (searched, persisted):
        assert restored.elites == built.elites
        _assert_same_lists(restored, built.neighbours())
        probe = _unit(np.random.default_rng(0).normal(size=(3, DIM)))
        np.testing.assert_array_equal(restored.novelty(probe), built.novelty(probe))


def test_members_admitted_after_a_bulk_restore_update_the_restored_lists():
    matrix = _unit(np.random.default_rng(5).normal(size=(80, DIM)))
    restored = NoveltyArchive(dimensions=DIM, k_neighbors=K, exact_limit=None)
    restored.restore_many([_candidate(i) for i in range(50)], matrix[:50], [1.0] * 50)
    for i in range(50, 80):
        restored.restore(_candidate(i), matrix[i], 1.0)
    _assert_same_lists(restored, oracle_lists(matrix, K))


def test_the_approximate_index_keeps_positions_across_rebuilds():
    """Probing every inverted list makes the approximate index exhaustive: its lists must equal exact ones."""
    matrix = _unit(np.random.default_rng(7).normal(size=(60, DIM)))
    approximate = _built(matrix, exact_limit=20)
    assert approximate.approximate
    _assert_same_lists(approximate, oracle_lists(matrix, K))
    restored = NoveltyArchive(dimensions=DIM, k_neighbors=K, exact_limit=20)
    restored.restore_many([e.candidate for e in approximate.elites], matrix, [1.0] * len(matrix))
    assert restored.approximate
    _assert_same_lists(restored, approximate.neighbours())


def test_bulk_restore_rejects_lists_that_do_not_fit():
    matrix = _unit(np.random.default_rng(1).normal(size=(6, DIM)))
    archive = NoveltyArchive(dimensions=DIM, k_neighbors=K)
    with pytest.raises(ValueError, match="neighbour lists"):
        archive.restore_many([_candidate(i) for i in range(6)], matrix, [1.0] * 6,
                             neighbours=(np.zeros((6, 2), np.float32), np.zeros((6, 2), np.int64)))
    with pytest.raises(ValueError, match="refer to members"):
        archive.restore_many([_candidate(i) for i in range(6)], matrix, [1.0] * 6,
                             neighbours=(np.zeros((6, K), np.float32), np.full((6, K), 6)))
    archive.restore_many([_candidate(i) for i in range(6)], matrix, [1.0] * 6)
    with pytest.raises(ValueError, match="empty archive"):
        archive.restore_many([_candidate(9)], matrix[:1], [1.0])


def test_lists_persisted_generation_by_generation_restore_the_same_archive(tmp_path):
    """Only changed lists are written each generation; the store's lists then rebuild the archive exactly."""
    from adversary.store import Store

    matrix = _unit(np.random.default_rng(3).normal(size=(90, DIM)))
    archive = NoveltyArchive(dimensions=DIM, k_neighbors=K, exact_limit=None)
    with Store.open(tmp_path) as store:
        for generation in range(0, 90, 30):
            for i in range(generation, generation + 30):
                archive.restore(_candidate(i), matrix[i], 1.0)
            store.save_neighbour_lists(len(archive), K, *archive.take_changed_lists())
        similarities, positions = store.neighbour_lists(K)
        assert store.neighbour_lists(K + 1) is None
    restored = NoveltyArchive(dimensions=DIM, k_neighbors=K, exact_limit=None)
    restored.restore_many([_candidate(i) for i in range(90)], matrix, [1.0] * 90, neighbours=(similarities, positions))
    _assert_same_lists(restored, oracle_lists(matrix, K))
    assert len(restored.take_changed_lists()[0]) == 0
