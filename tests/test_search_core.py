"""Property tests of the archive, novelty and selection core."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.core.archive import Candidate, NoveltyArchive
from adversary.core.clusters import (CLUSTER_DISTANCE, best_per_cluster, cluster_labels, clusters_without_seeds,
                                     count_clusters)
from adversary.core.selection import (ELITE_SLOT_SHARE, SEARCH_MODES, breaks_credibly, extra_trials, fitness_of, is_breaking, local_competition,
                                      final_racing_need, final_racing_plan, racing_plan, select_parents)
from adversary.core.stats import BetaPosterior

DIM = 8


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


vectors = st.integers(1, 40).flatmap(
    lambda n: st.integers(0, 2**32 - 1).map(lambda seed: _unit(np.random.default_rng(seed).normal(size=(n, DIM))))
)


def _fill(matrix: np.ndarray, threshold: float = 0.9, premeasured: bool = False) -> NoveltyArchive:
    """An archive built with `add`; `premeasured` passes each row's `measure` in, as the campaign does."""
    archive = NoveltyArchive(dimensions=DIM, k_neighbors=3, duplicate_threshold=threshold)
    for i, row in enumerate(matrix):
        candidate = Candidate(id=f"c{i}", text=f"t{i}", style="emotional", scenario_id=None, operator="seed", generation=0)
        archive.add(candidate, row, measured=archive.measure(row) if premeasured else None)
    return archive


@given(vectors, vectors)
@settings(max_examples=80, deadline=None)
def test_novelty_is_non_negative_and_zero_for_an_exact_duplicate(members, queries):
    archive = _fill(members)
    novelty = archive.novelty(queries)
    assert (novelty >= 0).all() and (novelty <= 2).all()
    member = archive.vector(archive.elites[0].candidate.id)
    assert archive.novelty(member, k=1)[0] < 1e-5
    for query in queries[:5]:
        assert archive.measure(query) == (float(archive.nearest_similarity(query)[0]), float(archive.novelty(query)[0]))


@given(vectors, st.floats(0.5, 0.99))
@settings(max_examples=80, deadline=None)
def test_archive_never_holds_two_members_above_the_duplicate_threshold(members, threshold):
    archive = _fill(np.concatenate([members, members]), threshold)
    stored = np.stack([archive.vector(e.candidate.id) for e in archive.elites])
    similarities = stored @ stored.T
    np.fill_diagonal(similarities, -1)
    assert (similarities < threshold + 1e-6).all()
    assert len(archive) <= len(members)
    premeasured = _fill(np.concatenate([members, members]), threshold, premeasured=True)
    assert [(e.candidate.id, e.novelty) for e in premeasured.elites] == [(e.candidate.id, e.novelty) for e in archive.elites]


@given(vectors, st.lists(st.floats(0, 1), min_size=40, max_size=40))
@settings(max_examples=80, deadline=None)
def test_neighbours_are_the_k_nearest_other_members_and_local_competition_is_a_share(members, fitness):
    archive = _fill(members)
    n = len(archive)
    similarities, positions = archive.neighbours()
    assert similarities.shape == positions.shape == (n, min(archive.k_neighbors, max(n - 1, 0)))
    assert not (positions == np.arange(n)[:, None]).any()
    if n > 1:
        stored = np.stack([archive.vector(e.candidate.id) for e in archive.elites])
        brute = stored @ stored.T
        np.fill_diagonal(brute, -np.inf)
        kth = -np.sort(-brute, axis=1)[:, positions.shape[1] - 1]
        assert (similarities >= kth[:, None] - 1e-5).all()
    shares = local_competition(archive, np.array(fitness[:n]))
    assert shares.shape == (n,) and ((shares >= 0) & (shares <= 1)).all()


@given(vectors, st.integers(0, 2**32 - 1), st.sampled_from(SEARCH_MODES), st.lists(st.integers(0, 10), min_size=40, max_size=40))
@settings(max_examples=60, deadline=None)
def test_selection_is_deterministic_for_a_seed(members, seed, mode, outcomes):
    archive = _fill(members)
    for elite, breaks in zip(archive.elites, outcomes):
        archive.record(elite.candidate.id, min(breaks, 10), 10)
    first = select_parents(archive, 7, mode, np.random.default_rng(seed))
    second = select_parents(archive, 7, mode, np.random.default_rng(seed))
    assert first == second and len(first) == 7
    assert all(p in archive for p in first)


@given(vectors, st.integers(0, 2**32 - 1), st.sampled_from(["novelty", "greedy"]),
       st.lists(st.integers(0, 10), min_size=40, max_size=40))
@settings(max_examples=60, deadline=None)
def test_without_exploration_parents_are_breaking_members_and_zero_share_draws_nothing_extra(members, seed, mode, outcomes):
    archive = _fill(members)
    for elite, breaks in zip(archive.elites, outcomes):
        archive.record(elite.candidate.id, breaks, 10)
    rng = np.random.default_rng(seed)
    picks = select_parents(archive, 9, mode, rng, explore_share=0.0)
    if any(is_breaking(e) for e in archive.elites):
        assert all(is_breaking(archive.get(p)) for p in picks)
    # A zero share consumes exactly the random numbers the selection did before exploration existed.
    follow = rng.random()
    again = np.random.default_rng(seed)
    assert select_parents(archive, 9, mode, again) == picks and again.random() == follow


def test_exploration_share_lets_members_that_hold_be_parents():
    archive = _fill(_unit(np.eye(DIM)[:6]))
    archive.record("c0", 8, 8)
    for cid in ("c1", "c2", "c3", "c4", "c5"):
        archive.record(cid, 0, 4)
    assert set(select_parents(archive, 200, "novelty", np.random.default_rng(0))) == {"c0"}
    explored = select_parents(archive, 400, "novelty", np.random.default_rng(0), explore_share=0.5)
    holding = sum(p != "c0" for p in explored)
    # Half the draws run among all six; a size-3 tournament among them misses c0 (5/6)^3 = 58% of the time.
    assert 0.2 * 400 < holding < 0.4 * 400
    assert set(select_parents(archive, 200, "novelty", np.random.default_rng(0), explore_share=1.0)) > {"c0"}
    with pytest.raises(ValueError):
        select_parents(archive, 1, "novelty", np.random.default_rng(0), explore_share=1.5)


def test_greedy_prefers_nine_of_ten_over_one_of_one():
    archive = _fill(_unit(np.eye(DIM)[:2]))
    archive.record("c0", 1, 1)
    archive.record("c1", 9, 10)
    assert fitness_of(archive.get("c1")) > fitness_of(archive.get("c0"))
    picks = select_parents(archive, 50, "greedy", np.random.default_rng(0))
    assert picks.count("c1") > picks.count("c0")


@given(st.integers(0, 20), st.integers(0, 20))
def test_extra_trials_respects_bounds(breaks, holds):
    archive = _fill(_unit(np.eye(DIM)[:1]))
    elite = archive.record("c0", breaks, breaks + holds)
    more = extra_trials(elite, initial=3, maximum=12, bar=0.5)
    assert 0 <= more <= 3
    if elite.trials < 3:
        assert more == 3 - elite.trials
    assert elite.trials + more <= max(12, elite.trials)


@given(vectors, st.integers(0, 2**32 - 1), st.sampled_from(("novelty", "greedy")), st.lists(st.integers(0, 4), min_size=40, max_size=40))
@settings(max_examples=60, deadline=None)
def test_selection_draws_parents_from_breaking_members_when_any_exist(members, seed, mode, breaks):
    archive = _fill(members)
    for elite, b in zip(archive.elites, breaks):
        archive.record(elite.candidate.id, b, 4)
    parents = select_parents(archive, 9, mode, np.random.default_rng(seed))
    if any(map(is_breaking, archive.elites)):
        assert all(is_breaking(archive.get(p)) for p in parents)
    assert len(parents) == 9


@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=40), st.integers(1, 10))
@settings(max_examples=100, deadline=None)
def test_racing_plan_fills_at_most_its_slots_and_never_passes_the_maximum(counts, slots):
    archive = _fill(_unit(np.random.default_rng(len(counts)).normal(size=(len(counts), DIM))), threshold=1.0)
    for elite, (breaks, holds) in zip(archive.elites, counts):
        archive.record(elite.candidate.id, breaks, breaks + holds)
    plan = racing_plan(archive.elites, initial=2, maximum=8, slots=slots)
    assert len(plan) <= slots and len({cid for cid, _, _ in plan}) == len(plan)
    for cid, first, more in plan:
        assert first == archive.get(cid).trials and 0 < more <= 2 and first + more <= max(8, first)


def test_racing_plan_skips_members_that_reached_the_maximum():
    """Eight fully measured 8/8 members must not take every slot from a 2/2 member still being measured."""
    archive = _fill(_unit(np.eye(DIM)), threshold=1.0)
    for i in range(DIM - 1):
        archive.record(f"c{i}", 8, 8)
    archive.record(f"c{DIM - 1}", 2, 2)
    assert racing_plan(archive.elites, initial=2, maximum=8, slots=1) == [(f"c{DIM - 1}", 2, 2)]


def test_racing_plan_breaks_ties_of_the_mean_by_priority():
    """Novelty search breaks ties by its selection score: of two 2/2 members, the more novel one goes first,
    but a 2/2 member still goes before a 1/2 member however novel."""
    archive = _fill(_unit(np.eye(DIM)[:5]), threshold=1.0)
    for cid, (breaks, trials) in zip(("c0", "c1", "c2", "c3", "c4"), ((2, 2), (2, 2), (1, 2), (0, 2), (0, 2))):
        archive.record(cid, breaks, trials)
    assert racing_plan(archive.elites, initial=2, maximum=8, slots=1)[0][0] == "c0"
    assert racing_plan(archive.elites, initial=2, maximum=8, slots=1, priority=[0.1, 0.5, 0.0, 0.0, 0.0])[0][0] == "c1"
    assert [cid for cid, _, _ in racing_plan(archive.elites, initial=2, maximum=8, slots=3,
                                             priority=[0.1, 0.5, 0.9, 0.0, 0.0])] == ["c1", "c0", "c2"]


@given(st.lists(st.tuples(st.integers(0, 16), st.integers(0, 16)), min_size=4, max_size=40), st.integers(1, 10),
       st.data())
@settings(max_examples=100, deadline=None)
def test_elite_racing_takes_at_most_its_share_and_only_elites_pass_max_trials(counts, slots, data):
    archive = _fill(_unit(np.random.default_rng(len(counts)).normal(size=(len(counts), DIM))), threshold=1.0)
    for elite, (breaks, holds) in zip(archive.elites, counts):
        archive.record(elite.candidate.id, breaks, breaks + holds)
    ids = [e.candidate.id for e in archive.elites]
    elite_ids = set(data.draw(st.lists(st.sampled_from(ids), unique=True)))
    plan = racing_plan(archive.elites, initial=2, maximum=8, slots=slots, elite_ids=elite_ids, elite_maximum=16)
    assert len(plan) <= slots and len({cid for cid, _, _ in plan}) == len(plan)
    past_maximum = [(cid, first, more) for cid, first, more in plan if first >= 8]
    assert len(past_maximum) <= max(1, int(slots * ELITE_SLOT_SHARE))
    for cid, first, more in plan:
        assert first == archive.get(cid).trials and 0 < more <= 2
        assert first + more <= (16 if cid in elite_ids else 8)
    without = racing_plan(archive.elites, initial=2, maximum=8, slots=slots)
    assert [entry for entry in plan if entry[1] < 8] == without[:len(plan) - len(past_maximum)], \
        "the other slots go as they would without elite racing"


def test_a_lucky_elite_is_raced_on_while_other_members_keep_their_slots():
    archive = _fill(_unit(np.eye(DIM)[:5]), threshold=1.0)
    for cid, (breaks, trials) in zip(("c0", "c1", "c2", "c3", "c4"), ((8, 8), (8, 8), (2, 2), (2, 2), (0, 2))):
        archive.record(cid, breaks, trials)
    plan = racing_plan(archive.elites, initial=2, maximum=8, slots=4, elite_ids={"c1"}, elite_maximum=16)
    assert plan == [("c1", 8, 2), ("c2", 2, 2), ("c3", 2, 2)]
    assert racing_plan(archive.elites, initial=2, maximum=8, slots=4, elite_ids={"c1"}, elite_maximum=8) == plan[1:]


def test_credibly_breaking_needs_more_than_two_lucky_trials():
    archive = _fill(_unit(np.eye(DIM)[:5]), threshold=1.0)
    for cid, (breaks, trials) in zip(("c0", "c1", "c2", "c3", "c4"), ((2, 2), (3, 3), (4, 4), (7, 8), (6, 8))):
        archive.record(cid, breaks, trials)
    assert [breaks_credibly(archive.get(f"c{i}")) for i in range(5)] == [False, False, True, True, False]


@given(st.integers(0, 30), st.integers(0, 30), st.floats(0.01, 0.99))
def test_probability_above_is_a_probability_and_rises_with_breaks(breaks, holds, rate):
    p = BetaPosterior(breaks, holds).probability_above(rate)
    assert 0.0 <= p <= 1.0
    assert BetaPosterior(breaks + 1, holds).probability_above(rate) >= p - 1e-12
    assert abs(BetaPosterior(breaks, 0).probability_above(0.5) - (1 - 0.5 ** (breaks + 1))) < 1e-9


@given(vectors)
@settings(max_examples=60, deadline=None)
def test_clusters_label_every_vector_and_members_of_one_cluster_are_close_on_average(members):
    labels = cluster_labels(members)
    assert len(labels) == len(members)
    assert sorted(set(labels)) == list(range(count_clusters(members)))
    for label in set(labels):
        group = members[labels == label]
        if len(group) > 1:
            similarities = group @ group.T
            mean_distance = 1 - (similarities.sum() - len(group)) / (len(group) * (len(group) - 1))
            assert mean_distance <= CLUSTER_DISTANCE + 1e-5


def test_near_copies_form_one_cluster_and_orthogonal_vectors_separate():
    base = np.eye(DIM, dtype=np.float32)[:3]
    near = _unit(base + 0.05)
    assert count_clusters(np.vstack([base, near])) == 3
    assert count_clusters(np.zeros((0, DIM))) == 0


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=30))
def test_clusters_without_seeds_are_the_clusters_no_seed_is_in(rows):
    labels, is_seed = [label for label, _ in rows], [seed for _, seed in rows]
    found = clusters_without_seeds(labels, is_seed)
    seeded = {label for label, seed in rows if seed}
    assert found == len(set(labels) - seeded)
    assert clusters_without_seeds(labels, [True] * len(labels)) == 0
    assert clusters_without_seeds(labels, [False] * len(labels)) == len(set(labels))


def test_an_evolved_member_beside_a_breaking_seed_opens_no_new_cluster():
    assert clusters_without_seeds([0, 0, 1], [True, False, False]) == 1
    assert clusters_without_seeds([0, 0, 1, 1], [True, False, False, True]) == 0


@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1)), min_size=1, max_size=30))
def test_best_per_cluster_picks_the_top_scorer_of_each_cluster(rows):
    labels, scores = [r[0] for r in rows], [r[1] for r in rows]
    best = best_per_cluster(labels, scores)
    assert len(best) == len(set(labels))
    for index in best:
        assert scores[index] == max(s for l, s in rows if l == labels[index])


@given(vectors)
@settings(max_examples=60, deadline=None)
def test_restoring_admitted_members_rebuilds_the_same_archive(matrix):
    built = _fill(matrix)
    restored = NoveltyArchive(dimensions=DIM, k_neighbors=3, duplicate_threshold=0.9)
    for elite in built.elites:
        restored.restore(elite.candidate, built.vector(elite.candidate.id), elite.novelty)
    assert restored.elites == built.elites
    probe = _unit(np.random.default_rng(0).normal(size=(3, DIM)))
    assert np.allclose(restored.novelty(probe), built.novelty(probe))


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_operator_picks_are_deterministic_and_favour_operators_whose_children_break(seed):
    from adversary.core.selection import pick_operator

    names = ("good", "bad", "untried")
    offspring = {"good": (45, 50), "bad": (5, 50)}
    picks = [pick_operator(names, offspring, "novelty", np.random.default_rng(seed)) for _ in range(2)]
    assert picks[0] == picks[1]
    rng = np.random.default_rng(seed)
    counts = {n: 0 for n in names}
    for _ in range(400):
        counts[pick_operator(names, offspring, "novelty", rng)] += 1
    assert counts["good"] > counts["bad"] and min(counts.values()) > 0
    rng = np.random.default_rng(seed)
    uniform = [pick_operator(names, offspring, "random", rng) for _ in range(300)]
    assert min(uniform.count(n) for n in names) > 60, "the random baseline ignores break rates"


def test_final_racing_races_the_least_measured_elites_first_up_to_the_maximum():
    archive = _fill(_unit(np.eye(DIM)[:5]), threshold=1.0)
    for cid, (breaks, trials) in zip(("c0", "c1", "c2", "c3", "c4"), ((16, 16), (8, 8), (4, 4), (6, 7), (0, 2))):
        archive.record(cid, breaks, trials)
    elites = {"c0", "c1", "c2", "c3"}
    assert final_racing_need(archive.elites, elites, elite_maximum=16) == 8 + 12 + 9
    assert final_racing_plan(archive.elites, elites, elite_maximum=16, initial=2, slots=2) == [("c2", 4, 2), ("c3", 7, 2)]
    assert final_racing_plan(archive.elites, elites, elite_maximum=9, initial=2, slots=9) == [("c2", 4, 2), ("c3", 7, 2),
                                                                                             ("c1", 8, 1)]
    assert final_racing_plan(archive.elites, {"c0"}, elite_maximum=16, initial=2, slots=2) == []
    assert final_racing_need(archive.elites, {"c2"}, elite_maximum=16, targets=2) == (16 - 2) * 2, "trials are per target"


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30), st.integers(1, 10),
       st.integers(1, 3), st.data())
@settings(max_examples=100, deadline=None)
def test_final_racing_plans_only_elites_within_their_need(counts, slots, targets, data):
    archive = _fill(_unit(np.random.default_rng(len(counts)).normal(size=(len(counts), DIM))), threshold=1.0)
    for elite, (breaks, holds) in zip(archive.elites, counts):
        archive.record(elite.candidate.id, breaks, breaks + holds)
    ids = [e.candidate.id for e in archive.elites]
    elite_ids = set(data.draw(st.lists(st.sampled_from(ids), unique=True)))
    plan = final_racing_plan(archive.elites, elite_ids, elite_maximum=16, initial=2, slots=slots, targets=targets)
    need = final_racing_need(archive.elites, elite_ids, elite_maximum=16, targets=targets)
    assert len(plan) <= slots and {cid for cid, _, _ in plan} <= elite_ids
    for cid, first, more in plan:
        assert first == archive.get(cid).trials // targets and 0 < more <= 2 and first + more <= 16
    assert sum(more for _, _, more in plan) * targets <= need
    assert (need == 0) == (plan == []), "the plan is empty exactly when every elite reached the maximum"


@given(vectors, st.lists(st.tuples(st.integers(0, 16), st.integers(0, 16)), min_size=40, max_size=40))
@settings(max_examples=60, deadline=None)
def test_progress_shows_best_and_mean_elite_break_rate_in_one_measure(members, counts):
    from adversary.campaign_outputs import generation_stats
    archive = _fill(members)
    for elite, (breaks, holds) in zip(archive.elites, counts):
        archive.record(elite.candidate.id, breaks, breaks + holds)
    ids = [e.candidate.id for e in archive.elites]
    stats = generation_stats(archive, ids, generation=3, calls=100)
    measured = [e for e in archive.elites if e.trials]
    if not measured:
        assert stats["best_posterior_mean"] is None and stats["mean_posterior_mean"] is None
        return
    assert 0 < stats["mean_posterior_mean"] <= stats["best_posterior_mean"] + 1e-12 < 1
    assert stats["qd_score"] == sum(e.fitness.mean for e in measured)
