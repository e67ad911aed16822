"""Parent selection and trial allocation for the search (pure; randomness only from the passed generator).

Modes:
- `novelty`: novelty search with local competition (Lehman & Stanley 2011). A member's score is the
  mean of its novelty percentile and its local-competition score (the share of its k nearest
  neighbours whose fitness it beats), so the search keeps climbing fitness inside each region of
  embedding space while favouring regions it has explored least.
- `greedy`: fitness only (the Beta posterior's pessimistic bound).
- `random`: uniform parents, a baseline that mutates without selection.
Parents are drawn by size-3 tournaments on the score among the members that break more often than
they hold (children of breaking parents broke 0.62 of the time against 0.46 for the rest, in a
1500-call campaign on the embedded model). Against a target that resists nearly every seed, that pool is
a handful of members and every child is a re-wrapping of their requests (a 1500-call campaign against
local/smollm2-guarded: two breaking seeds, 0 breaking clusters beyond theirs); `explore_share` of the draws
then run among all members, so that novel members that hold still get mutated. Each child's mutation operator is picked by a
Thompson-sampling bandit over the break rates of the operators' earlier children (`pick_operator`).

Trials are raced (`racing_plan`): each generation, promising members still below `max_trials` get
more trials (by posterior mean; in `novelty` mode, ties go by the score that picks parents), so the
archive ends up holding members measured well enough to vouch for (`breaks_credibly`), not the ones
that happened to break twice in two trials. The current elites (each cluster's fittest credibly
breaking member) keep being raced past `max_trials`, in a quarter of the slots: among many members
measured to 8 trials, the fittest is often one that got lucky (a member breaking 75% of the time goes
8/8 one time in ten), so more trials let it regress and hand its cluster to a stronger member, or drop
the cluster if none breaks credibly, before the archive is confirmed. Once the search budget left is what
racing every elite to `elite_maximum` needs, the search stops mutating and races only the elites
(`final_racing_plan`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np

from adversary.core.archive import Elite, NoveltyArchive

SearchMode = Literal["novelty", "greedy", "random"]
SEARCH_MODES: tuple[str, ...] = ("novelty", "greedy", "random")
TOURNAMENT_SIZE = 3
ELITE_SLOT_SHARE = 0.25
"""Share of a generation's racing slots (at least one) that elites being raced past the usual maximum may take."""


CREDIBLE_PROBABILITY = 0.95
"""Posterior probability of breaking more often than not that makes a member credibly breaking."""


def fitness_of(elite: Elite) -> float:
    """Pessimistic fitness: posterior mean minus one standard deviation (1/1 ranks below 9/10)."""
    return elite.fitness.lower_bound(1.0)


def is_breaking(elite: Elite) -> bool:
    """A member that has broken targets more often than not so far: Beta posterior mean above one half."""
    return elite.trials > 0 and elite.fitness.mean > 0.5


def breaks_credibly(elite: Elite) -> bool:
    """A member the search can vouch for: the posterior probability that its break rate exceeds one half
    is at least `CREDIBLE_PROBABILITY` (with a uniform prior: 4/4, 6/7 or 7/8 breaks, never 2/2)."""
    return elite.trials > 0 and elite.fitness.probability_above(0.5) >= CREDIBLE_PROBABILITY


def _percentile_ranks(values: np.ndarray) -> np.ndarray:
    if len(values) <= 1:
        return np.ones(len(values))
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return order / (len(values) - 1)


def local_competition(archive: NoveltyArchive, fitness: np.ndarray, neighbours: np.ndarray | None = None) -> np.ndarray:
    """For each member, the share of its k nearest other members with strictly lower fitness
    (`neighbours`: their positions from `archive.neighbours()`, read from the archive when not given)."""
    if len(archive) < 2:
        return np.ones(len(archive))
    if neighbours is None:
        _, neighbours = archive.neighbours()
    return (fitness[neighbours] < fitness[:, None]).mean(axis=1)


def selection_scores(archive: NoveltyArchive, mode: SearchMode) -> np.ndarray:
    """The score each member is selected by under `mode` (higher is better)."""
    elites = archive.elites
    if mode == "random":
        return np.zeros(len(elites))
    fitness = np.array([fitness_of(e) for e in elites])
    if mode == "greedy":
        return fitness
    if mode == "novelty":
        if len(elites) < 2:
            return np.ones(len(elites))
        similarities, neighbours = archive.neighbours()
        novelty = _percentile_ranks(np.clip(1.0 - similarities, 0.0, 2.0).mean(axis=1))
        return 0.5 * novelty + 0.5 * local_competition(archive, fitness, neighbours)
    raise ValueError(f"unknown search mode {mode!r}")


def select_parents(archive: NoveltyArchive, count: int, mode: SearchMode, rng: np.random.Generator,
                   scores: np.ndarray | None = None, explore_share: float = 0.0) -> list[str]:
    """Ids of `count` parents drawn from the archive (with replacement); empty when the archive is.
    Tournaments run among the breaking members (`is_breaking`), or among all when none breaks yet;
    each draw runs among all members instead with probability `explore_share` (0: never, and no
    random number is drawn for it, so runs without exploration replay exactly). `random` draws
    uniformly from all. `scores`: the members' `selection_scores`, when the caller already has them
    for this archive state."""
    if not 0.0 <= explore_share <= 1.0:
        raise ValueError("explore_share must be in [0, 1]")
    elites = archive.elites
    if not elites or count <= 0:
        return []
    if mode == "random":
        return [elites[int(i)].candidate.id for i in rng.integers(len(elites), size=count)]
    if scores is None:
        scores = selection_scores(archive, mode)
    everyone = list(range(len(elites)))
    breaking = [i for i, e in enumerate(elites) if is_breaking(e)] or everyone
    chosen = []
    for _ in range(count):
        pool = everyone if explore_share > 0.0 and rng.random() < explore_share else breaking
        entrants = [pool[int(j)] for j in rng.integers(len(pool), size=min(TOURNAMENT_SIZE, len(pool)))]
        winner = max(entrants, key=lambda i: (scores[i], -i))
        chosen.append(elites[winner].candidate.id)
    return chosen


def extra_trials(elite: Elite, *, initial: int, maximum: int, bar: float) -> int:
    """How many more trials `elite` deserves: up to `initial` for everyone, then in steps of `initial`
    up to `maximum` while its posterior could still beat `bar` (mean + 1 sd >= bar)."""
    if elite.trials < initial:
        return initial - elite.trials
    if elite.trials >= maximum:
        return 0
    posterior = elite.fitness
    optimistic = posterior.mean + float(np.sqrt(posterior.variance))
    return min(initial, maximum - elite.trials) if optimistic >= bar else 0


def racing_plan(elites: list[Elite], *, initial: int, maximum: int, slots: int, targets: int = 1,
                priority: Sequence[float] | None = None, elite_ids: Collection[str] = (),
                elite_maximum: int | None = None) -> list[tuple[str, int, int]]:
    """(member id, first trial, count) of a generation's extra trials (per target).

    Among members that finished their initial trials, are below `maximum` and whose posterior could
    still beat the measured members' upper quartile (`extra_trials`), the `slots` with the highest
    posterior mean get up to `initial` more. `priority` (one value per member of `elites`, higher
    first) breaks ties of the mean, which are common (every 2/2 member has mean 0.75): novelty search
    passes its selection scores, so among equally promising members it measures the one in the region
    the archive has explored least; without it, ties go to the older member. Members already at
    `maximum` never take a slot, so the best-measured members cannot crowd out the ones still being
    measured; the exception is `elite_ids` (the current elites), raced on up to `elite_maximum` in at
    most `ELITE_SLOT_SHARE` of the slots.
    """
    measured = [i for i, e in enumerate(elites) if e.trials]
    if len(measured) < 4:
        return []
    bar = float(np.quantile([fitness_of(elites[i]) for i in measured], 0.75))
    targets = max(1, targets)
    rank = (lambda i: -elites[i].fitness.mean) if priority is None else (lambda i: (-elites[i].fitness.mean, -priority[i]))
    elite_slots = max(1, int(slots * ELITE_SLOT_SHARE)) if elite_ids and elite_maximum and elite_maximum > maximum else 0
    elite_ids = set(elite_ids)
    plan, elite_plan = [], []
    for i in sorted(measured, key=rank):
        elite = elites[i]
        per_target = Elite(candidate=elite.candidate, breaks=elite.breaks // targets, trials=elite.trials // targets,
                           novelty=elite.novelty)
        racing_on = per_target.trials >= maximum and elite.candidate.id in elite_ids
        if racing_on and len(elite_plan) < elite_slots:
            more = extra_trials(per_target, initial=initial, maximum=elite_maximum, bar=bar)
            if more:
                elite_plan.append((elite.candidate.id, per_target.trials, more))
        elif not racing_on and len(plan) < slots:
            more = extra_trials(per_target, initial=initial, maximum=maximum, bar=bar)
            if more:
                plan.append((elite.candidate.id, per_target.trials, more))
    return elite_plan + plan[:slots - len(elite_plan)]


def _elites_short_of(elites: list[Elite], elite_ids: Collection[str], elite_maximum: int,
                     targets: int) -> list[tuple[int, int]]:
    """(trials per target, index in `elites`) of the current elites still below `elite_maximum` trials per target."""
    ids = set(elite_ids)
    return [(e.trials // targets, i) for i, e in enumerate(elites)
            if e.candidate.id in ids and e.trials // targets < elite_maximum]


def final_racing_need(elites: list[Elite], elite_ids: Collection[str], *, elite_maximum: int, targets: int = 1) -> int:
    """Target calls that would take every current elite (`elite_ids`) to `elite_maximum` trials per target (a
    two-turn elite's trial costs two calls)."""
    targets = max(1, targets)
    short = _elites_short_of(elites, elite_ids, elite_maximum, targets)
    return sum((elite_maximum - trials) * targets * elites[i].candidate.calls_per_trial for trials, i in short)


def final_racing_plan(elites: list[Elite], elite_ids: Collection[str], *, elite_maximum: int, initial: int, slots: int,
                      targets: int = 1) -> list[tuple[str, int, int]]:
    """(member id, first trial, count) of a generation in the final racing phase: the current elites still
    below `elite_maximum` trials per target, fewest trials first (ties in archive order), `initial` more
    each, in at most `slots`.

    Elites picked on a few trials (4/4, 6/6, 7/8) confirm well below the elites raced to `elite_maximum`
    (about 80% against 94% in 1500-call campaigns on the embedded model): the end of the search races them
    all, so the archive's elites are the ones that held up, and a cluster whose elite regresses passes to a
    stronger member or drops out before confirmation.
    """
    pending = sorted(_elites_short_of(elites, elite_ids, elite_maximum, max(1, targets)))
    return [(elites[i].candidate.id, trials, min(initial, elite_maximum - trials)) for trials, i in pending[:slots]]


UNIFORM_OPERATOR_SHARE = 0.25
"""Share of operator picks made uniformly, so no operator stops being tried."""


def pick_operator(names: tuple[str, ...] | list[str], offspring: dict[str, tuple[int, int]], mode: SearchMode,
                  rng: np.random.Generator) -> str:
    """The mutation operator for the next child.

    `random` search picks uniformly (the ablation baseline). Otherwise a Thompson-sampling bandit:
    each operator's (breaks, trials) pooled over the members it produced gives a Beta(1 + breaks,
    1 + holds) draw and the highest draw wins, so operators whose children break targets are used
    more; a quarter of the picks stay uniform.
    """
    if not names:
        raise ValueError("no operators to pick from")
    if mode == "random" or rng.random() < UNIFORM_OPERATOR_SHARE:
        return names[int(rng.integers(len(names)))]
    draws = []
    for name in names:
        breaks, trials = offspring.get(name, (0, 0))
        draws.append(rng.beta(1 + breaks, 1 + trials - breaks))
    return names[int(np.argmax(draws))]
