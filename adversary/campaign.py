"""`adversary run`: the search campaign that wires the pure core to models, strategies and the store.

Each generation: parents are selected from the novelty archive (core), mutated by strategies,
embedded, filtered (near-duplicates of any member and candidates that drifted away from their parent
are rejected before any target call), admitted, and evaluated with a few trials each; promising
members get more trials. Every candidate and attempt is committed as it happens, and the generator
state is saved per generation, so `--resume` rebuilds the archive from the store and continues.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from adversary import __version__
from adversary.campaign_outputs import CONFIRM_TRIAL_BASE, MUTATION_OUTCOMES, generation_stats, write_outputs
from adversary.core.archive import Candidate, NoveltyArchive
from adversary.core.clusters import best_per_cluster, cluster_labels
from adversary.core.placement import Placement, trial_seed
from adversary.core.schedule import PrefixKey, prefix_order
from adversary.core.selection import (SEARCH_MODES, breaks_credibly, final_racing_need, final_racing_plan, fitness_of,
                                      pick_operator, racing_plan, select_parents, selection_scores)
from adversary.errors import ConfigError, ModelError
from adversary.evaluation import attempt_key, load_eval_corpus
from adversary.judging import CallOutcome, JudgeAhead, judged_attempts
from adversary.judges import DEFAULT_JUDGE, Judge, build_judge, check_judge_name
from adversary.models.call_cache import CachedChat
from adversary.models.chat import ChatResult, Deployments, Sampling, check_reachable, load_router, resolve_route
from adversary.models.embedded import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, check_local_names, is_local
from adversary.models.embedder import embedder_backend, get_embedder
from adversary.models.limits import LimitedChat, in_order
from adversary.models.local_server import LocalServers, calls_in_flight, local_slots
from adversary.records import Attempt, Message, Scenario
from adversary.store import Store, StoreError
from adversary.strategies import Parent, get_strategy
from adversary.strategies._llm import LLMRewriter

DEFAULT_STRATEGIES = ("tangential", "emotional", "socratic", "subtler", "two-turn", "crossover", "paraphrase", "llm-emotional",
                      "llm-socratic")
RESUMABLE_CHANGES = ("budget_calls", "budget_usd", "max_minutes", "concurrency", "requests_per_minute")
"""Config fields a resumed campaign may change: budgets and call limits, not what is searched."""
JUDGE_BATCH = 32
"""With one call in flight, replies are judged (and committed) at the first prefix-group boundary after this many:
one embedding batch instead of one per group (groups average 1.3 replies against the zero-latency target), which
raised the engine's ceiling by about 15% (bench/run.py engine section). With several in flight each group is
judged while later calls run, and a generation's last batch, judged with no call in flight, stays one group
(batches of 32 there raised a local campaign's engine_overhead_fraction from 0.036 to 0.097)."""
PROGRESS_CLUSTERING_MEMBERS = 500
"""Breaking members up to which progress figures recluster the archive every generation."""
STALLED_GENERATIONS = 20
"""Generations in a row without a target call (every mutant a duplicate or unusable, no trials due) after which
the search ends early: the mutators have run dry on this corpus, and more generations would loop forever."""


@dataclass(frozen=True)
class CampaignConfig:
    """Everything that defines a campaign; stored in the run so `--resume` continues the same one."""

    scenario_paths: tuple[str, ...] = ()
    targets: tuple[str, ...] = (DEFAULT_CHAT_MODEL,)
    mutator: str = DEFAULT_CHAT_MODEL
    judge: str = DEFAULT_JUDGE
    embedder: str = DEFAULT_EMBEDDING_MODEL
    api_base: str | None = None
    search: str = "novelty"
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seed: int = 0
    budget_calls: int = 1500
    budget_usd: float | None = None
    max_minutes: float | None = None
    candidates_per_generation: int = 8
    initial_trials: int = 2
    max_trials: int = 8
    elite_max_trials: int | None = None
    """The current elites keep being raced up to this many trials (core.selection.racing_plan); None:
    twice max_trials; max_trials turns elite racing off."""
    k_neighbors: int = 5
    duplicate_threshold: float = 0.92
    min_parent_similarity: float = 0.3
    explore_share: float = 0.0
    """Share of parent draws made among all members rather than only the breaking ones
    (core.selection.select_parents): for targets that resist nearly every seed."""
    temperature: float = 0.7
    max_tokens: int = 96
    confirm_fraction: float = 0.2
    confirm_trials: int = 8
    concurrency: int | None = None
    """Target calls in flight at once (threads); None: one per local server slot when every target is local, else 1."""
    requests_per_minute: float | None = None
    """Per-target cap on requests per minute (None: unlimited)."""
    router: str | None = None
    """A litellm Router YAML (model_list of deployments): targets it names are spread over their deployments."""

    def validate(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, not {value}")
        if self.search not in SEARCH_MODES:
            raise ConfigError(f"search must be one of {', '.join(SEARCH_MODES)}, not {self.search!r}")
        if not self.targets:
            raise ConfigError("at least one target is needed")
        try:
            check_local_names([*self.targets, self.mutator])
            if any(is_local(name) for name in [*self.targets, self.mutator]):
                local_slots()  # a bad ADVERSARY_LOCAL_SLOTS stops the run before it writes anything
            if self.embedder == DEFAULT_EMBEDDING_MODEL:
                embedder_backend()  # so does a bad ADVERSARY_EMBEDDER_BACKEND
        except ModelError as exc:
            raise ConfigError(str(exc)) from None
        if self.budget_calls < 1:
            raise ConfigError("budget_calls must be at least 1")
        if not 1 <= self.initial_trials <= self.max_trials:
            raise ConfigError("need 1 <= initial_trials <= max_trials")
        if self.elite_max_trials is not None and self.elite_max_trials < self.max_trials:
            raise ConfigError("elite_max_trials must be at least max_trials")
        if self.candidates_per_generation < 1:
            raise ConfigError("candidates_per_generation must be at least 1")
        if not 0.0 < self.duplicate_threshold <= 1.0:
            raise ConfigError("duplicate_threshold must be in (0, 1]")
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise ConfigError("budget_usd must be positive")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError("max_minutes must be positive")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError("temperature must be between 0 and 2")
        if self.max_tokens < 1:
            raise ConfigError("max_tokens must be at least 1")
        if self.k_neighbors < 1:
            raise ConfigError("k_neighbors must be at least 1")
        if not -1.0 <= self.min_parent_similarity <= 1.0:
            raise ConfigError("min_parent_similarity must be in [-1, 1]")
        if not 0.0 <= self.explore_share <= 1.0:
            raise ConfigError("explore_share must be in [0, 1]")
        if not 0.0 <= self.confirm_fraction < 1.0:
            raise ConfigError("confirm_fraction must be in [0, 1)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ConfigError("requests_per_minute must be positive")
        if self.confirm_trials < 1:
            raise ConfigError("confirm_trials must be at least 1")
        for name in self.strategies:
            get_strategy(name)
        check_judge_name(self.judge)

    def elite_trial_limit(self) -> int:
        """How many trials the current elites are raced up to (`elite_max_trials`, by default twice max_trials)."""
        return 2 * self.max_trials if self.elite_max_trials is None else self.elite_max_trials

    def fingerprint(self) -> str:
        """Identity of the search; budgets may change between resumes, everything else may not."""
        fixed = {k: v for k, v in asdict(self).items() if k not in RESUMABLE_CHANGES and not _absent_from_older_runs(self, k)}
        return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CampaignProgress:
    """UI callbacks; all optional."""

    on_generation: Callable[[dict], None] = lambda stats: None
    on_call: Callable[[int], None] = lambda calls: None
    on_message: Callable[[str], None] = lambda text: None
    on_confirming: Callable[[int], None] = lambda elites: None
    """The search is over and this many elites are being confirmed (also when a resumed run goes on confirming)."""


@dataclass
class CampaignResult:
    run_dir: Path
    metrics: dict
    stop_reason: str
    wall_seconds: float
    notes: list[str] = field(default_factory=list)


class BudgetExhausted(Exception):
    """Raised inside the loop when a budget is spent; the campaign stops cleanly."""


class SearchOver(Exception):
    """Raised mid-generation when only the confirmation reserve is left; the campaign goes on to confirm."""


@dataclass(frozen=True)
class PlannedCall:
    """One unfinished attempt of a member: a trial on one target at the trial's insertion point."""

    key: str
    target: str
    placement: Placement
    trial: int
    seed: int
    """Sampling seed of the trial (core.placement.trial_seed), shared by a two-turn candidate's bridge and pivot."""
    candidate: Candidate

    def prefix_key(self) -> PrefixKey:
        return (self.target, self.placement.scenario_id, self.placement.insertion_point, self.candidate.bridge or "")


@dataclass(frozen=True)
class RepliedCall:
    """A planned call after the target answered (or failed): the messages sent and the results."""

    call: PlannedCall
    result: ChatResult
    messages: tuple[Message, ...]
    bridge_result: ChatResult | None = None
    """The target's reply to a two-turn candidate's bridge turn (None for one-turn candidates or a failed bridge)."""

    @property
    def calls(self) -> int:
        return 1 if self.bridge_result is None else 2


def _absent_from_older_runs(config: CampaignConfig, field_name: str) -> bool:
    """Fields left out of the fingerprint at the value that reproduces runs made before they existed, so
    those runs still resume (`load_resume_config` fills in that value)."""
    if field_name == "router":
        return config.router is None
    if field_name == "explore_share":
        return config.explore_share == 0.0
    return field_name == "elite_max_trials" and config.elite_max_trials == config.max_trials


def candidate_id(text: str, scenario_id: str, insertion_point: int, bridge: str | None = None) -> str:
    """Content-derived id: the same turns in the same place are the same candidate."""
    turns = text if bridge is None else f"{bridge}|{text}"
    return "c-" + hashlib.sha256(f"{scenario_id}|{insertion_point}|{turns}".encode()).hexdigest()[:12]


def rotated_insertion_point(points: tuple[int, ...] | list[int], home: int, trial: int) -> int:
    """The insertion point of one trial: trials cycle through the scenario's points starting at `home`,
    so fitness is a break rate over insertion points, not one lucky position."""
    start = points.index(home) if home in points else 0
    return points[(start + trial) % len(points)]


class Campaign:
    """One run of the search; construct, then `run()`."""

    def __init__(self, config: CampaignConfig, run_dir: Path, store: Store, servers: LocalServers,
                 progress: CampaignProgress, *, judge: Judge | None = None, call=None, rewriter=None, embedder=None,
                 router: Deployments | None = None):
        self.config = config
        self.run_dir = run_dir
        self.store = store
        self.servers = servers
        self.progress = progress
        self.notes: list[str] = []
        self.corpus = load_eval_corpus(config.scenario_paths, self.notes)
        self.scenarios: dict[str, Scenario] = {s.id: s for s in self.corpus.scenarios}
        self.embedder = embedder or get_embedder(config.embedder, api_base=config.api_base)
        self.archive: NoveltyArchive | None = None
        self.places: dict[str, tuple[str, int]] = {}
        self.in_flight = calls_in_flight(config.concurrency, config.targets)
        self._chat = LimitedChat(call or CachedChat(), config.requests_per_minute, self.in_flight)
        self._routes = {t: resolve_route(t, servers, None if is_local(t) else config.api_base, router) for t in config.targets}
        if call is None:
            for route in self._routes.values():
                check_reachable(route)
        self.judge = judge or build_judge(config.judge, servers=servers, api_base=config.api_base, embedder=self.embedder)
        store.check_judge(self.judge.name)
        self.rewriter = rewriter
        if rewriter is None and any(get_strategy(n).uses_llm for n in config.strategies):
            route = resolve_route(config.mutator, servers, None if is_local(config.mutator) else config.api_base)
            self.rewriter = LLMRewriter(route)
        self.sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens)
        self.started = time.perf_counter()
        self.earlier_wall_seconds = store.earlier_wall_seconds()
        self._calls = store.calls()
        self._done = store.finished_keys()
        self.spent_usd = 0.0
        self._cost_lock = threading.Lock()
        self._elite_calls_per_trial = 0
        """Target calls one confirmation trial of every current elite costs per target (two-turn elites cost two)."""
        self._awaiting_initial: list[str] = []
        """Members whose initial trials have not run yet (all of them right after a resume)."""
        self._progress_elites: tuple[int, list[str]] | None = None
        """(generation, elite ids) last computed for progress; refreshed less often on large archives."""
        self._searching = True
        self._stalled = False
        self.judge_wait_seconds = 0.0
        """This session's time spent waiting for the judge with no call left to send (judging overlaps calls)."""
        self.mutations: dict[str, dict[str, int]] = {}
        """Per operator: mutation calls and what became of them; saved with each generation for resume."""

    # -- budget ---------------------------------------------------------------------------------
    def calls(self) -> int:
        """Target calls spent so far (kept in memory; the store's sum at start plus every stored attempt)."""
        return self._calls

    def _confirmation_reserve(self) -> float:
        """Calls kept for confirming the archive: fresh trials for every elite (at least one, since the last
        generation may bring the first; two calls a trial for two-turn elites), capped at `confirm_fraction`
        of the budget."""
        c = self.config
        need = max(1, self._elite_calls_per_trial) * c.confirm_trials * len(c.targets)
        return min(need, c.confirm_fraction * c.budget_calls)

    def _search_over(self) -> bool:
        """True once what is left of a budget is the confirmation reserve (or its share of a money or time budget)."""
        c = self.config
        keep = 1.0 - c.confirm_fraction
        if c.budget_calls - self.calls() <= self._confirmation_reserve():
            return True
        if c.budget_usd is not None and self.spent_usd >= keep * c.budget_usd:
            return True
        return c.max_minutes is not None and time.perf_counter() - self.started >= 60 * keep * c.max_minutes

    def _check_budget(self) -> None:
        c = self.config
        if self.calls() >= c.budget_calls:
            raise BudgetExhausted("budget_calls")
        if c.budget_usd is not None and self.spent_usd >= c.budget_usd:
            raise BudgetExhausted("budget_usd")
        if c.max_minutes is not None and time.perf_counter() - self.started >= 60 * c.max_minutes:
            raise BudgetExhausted("max_minutes")

    # -- evaluation -------------------------------------------------------------------------------
    def _planned_calls(self, jobs: list[tuple[str, int]]) -> list[PlannedCall]:
        """Unfinished target calls of (member, trial) jobs, one per target, in prefix order."""
        planned = []
        for cid, trial in jobs:
            candidate = self.archive.get(cid).candidate
            scenario_id, home = self.places[cid]
            scenario = self.scenarios[scenario_id]
            point = rotated_insertion_point(scenario.usable_insertion_points, home, trial)
            placement = Placement(kind="distractor", scenario_id=scenario_id, item_id=cid, text=candidate.text,
                                  style=candidate.style, insertion_point=point)
            for target in self._routes:
                key = attempt_key(target, placement, trial)
                if key not in self._done:
                    seed = trial_seed(self.config.seed, placement.key, trial)
                    planned.append(PlannedCall(key=key, target=target, placement=placement, trial=trial, seed=seed,
                                               candidate=candidate))
        return prefix_order(planned, PlannedCall.prefix_key)

    def _run_trials(self, jobs: list[tuple[str, int]]) -> None:
        """Run (member, trial) jobs on every target, skipping attempts already stored.

        Calls run in prefix order (core.schedule) so the local server reuses its prompt cache; replies
        are judged in batches of whole prefix groups (at least JUDGE_BATCH replies when calls run one at a
        time; one embedding batch) on a judge thread while the next calls run, and each batch is committed at
        once, in order, so a kill loses at most two batches' unjudged calls. Confirmation trials (numbered from
        CONFIRM_TRIAL_BASE) are stored but do not feed the search's fitness.
        """
        pending: list[RepliedCall] = []
        batch = JUDGE_BATCH if self.in_flight == 1 else 1
        with JudgeAhead(self._judged, self._store_judged) as judging:
            try:
                for replied in in_order(self._call, self._affordable(self._planned_calls(jobs)), self.in_flight):
                    if replied.call.candidate.bridge and replied.bridge_result is None:
                        self._calls -= 1  # the bridge failed, so its pivot turn was never sent
                    if len(pending) >= batch and pending[-1].call.prefix_key() != replied.call.prefix_key():
                        judging.submit(pending)
                        pending = []
                    pending.append(replied)
                    self.progress.on_call(self._calls)
            finally:
                judging.submit(pending)
        self.judge_wait_seconds += judging.waited_seconds

    def _affordable(self, planned: list[PlannedCall]) -> Iterator[PlannedCall]:
        """The planned calls the budget allows, each counted as spent when it is handed out (two for a
        two-turn candidate), so calls in flight on other threads count against the budget too."""
        for call in planned:
            self._check_budget()
            if self._searching and self._search_over():
                raise SearchOver
            self._calls += call.candidate.calls_per_trial
            yield call

    def _call(self, call: PlannedCall) -> RepliedCall:
        """The target's reply to one planned call; a two-turn candidate first sends its bridge and keeps
        the target's own reply to it."""
        scenario = self.scenarios[call.placement.scenario_id]
        route = self._routes[call.target]
        seed = call.seed
        messages = scenario.messages_until(call.placement.insertion_point)
        bridge_result = None
        if call.candidate.bridge:
            messages = messages + [Message(role="user", content=call.candidate.bridge)]
            bridge_result = self._chat(route, [m.model_dump() for m in messages], self.sampling, seed)
            self._spend(bridge_result)
            if not bridge_result.ok:
                return RepliedCall(call, bridge_result, tuple(messages))
            messages = messages + [Message(role="assistant", content=bridge_result.text)]
        messages = messages + [Message(role="user", content=call.candidate.text)]
        result = self._chat(route, [m.model_dump() for m in messages], self.sampling, seed)
        self._spend(result)
        return RepliedCall(call, result, tuple(messages), bridge_result)

    def _spend(self, result: ChatResult) -> None:
        with self._cost_lock:
            self.spent_usd += getattr(result, "cost_usd", 0.0)

    def _judged(self, batch: list[RepliedCall]) -> list[Attempt]:
        """A batch of replies judged together (on the judge thread: no store, no archive)."""
        return judged_attempts([
            CallOutcome(key=r.call.key, target=r.call.target, placement=r.call.placement, trial=r.call.trial,
                        seed=r.call.seed, messages=r.messages,
                        result=r.result, fallback=self.scenarios[r.call.placement.scenario_id].fallback)
            for r in batch
        ], self.judge)

    def _store_judged(self, batch: list[RepliedCall], judged: list[Attempt]) -> None:
        """Commit a judged batch as attempts and count its search trials in the archive."""
        with self.store.transaction():
            for replied, attempt in zip(batch, judged):
                bridge_result, call = replied.bridge_result, replied.call
                if bridge_result is not None:
                    attempt = attempt.model_copy(update={
                        "calls": 2, "latency_s": attempt.latency_s + bridge_result.latency_s,
                        "prompt_tokens": attempt.prompt_tokens + bridge_result.prompt_tokens,
                        "completion_tokens": attempt.completion_tokens + bridge_result.completion_tokens,
                    })
                self.store.add_attempt(attempt)
                if attempt.status == "ok":
                    self._done.add(attempt.key)
                    if call.trial < CONFIRM_TRIAL_BASE:
                        self.archive.record(call.candidate.id, int(not attempt.verdict.in_scope), 1)
        self.progress.on_call(self._calls)

    # -- archive building -----------------------------------------------------------------------
    def _count(self, operator: str, outcome: str) -> None:
        counts = self.mutations.setdefault(operator, dict.fromkeys(MUTATION_OUTCOMES, 0))
        counts[outcome] += 1

    def _admit(self, candidate: Candidate, point: int, vector: np.ndarray, parent_vector: np.ndarray | None) -> bool:
        reason = None
        nearest, novelty = self.archive.measure(vector)
        if nearest >= self.archive.duplicate_threshold:
            reason = "duplicate"
        elif parent_vector is not None and float(vector @ parent_vector) < self.config.min_parent_similarity:
            reason = "drifted from parent"
        admitted = reason is None and self.archive.add(candidate, vector, measured=(nearest, novelty))
        if reason is None and not admitted:
            reason = "duplicate"
        if candidate.operator != "seed":
            self._count(candidate.operator, "usable" if admitted else "drifted" if reason == "drifted from parent" else "duplicates")
        if admitted:
            self.places[candidate.id] = (candidate.scenario_id, point)
            self._awaiting_initial.append(candidate.id)
        self.store.add_candidate({
            "id": candidate.id, "text": candidate.text, "style": candidate.style, "scenario_id": candidate.scenario_id,
            "insertion_point": point, "operator": candidate.operator, "generation": candidate.generation,
            "parents": list(candidate.parents), "admitted": admitted, "reason": reason, "novelty": novelty,
            "bridge": candidate.bridge, "vector": vector if admitted else None,
        })
        return admitted

    def _seed_candidates(self, rng: np.random.Generator) -> list[tuple[Candidate, int]]:
        seeds = []
        for d in self.corpus.distractors:
            scenario = self.scenarios[d.scenario_id] if d.scenario_id else self.corpus.scenarios[int(rng.integers(len(self.corpus.scenarios)))]
            points = scenario.usable_insertion_points
            if d.bot_turn is not None and scenario.dialogue:
                point = min(points, key=lambda p: (abs(p - d.bot_turn), p))
            else:
                point = int(points[rng.integers(len(points))])
            cid = candidate_id(d.text, scenario.id, point)
            seeds.append((Candidate(id=cid, text=d.text, style=d.style.value, scenario_id=scenario.id, operator="seed", generation=0), point))
        return seeds

    def _mutants(self, generation: int, rng: np.random.Generator) -> list[tuple[Candidate, int, str]]:
        """Ask: parents from the archive, one operator each; returns candidates with their parent id."""
        c = self.config
        scores = None if c.search == "random" else selection_scores(self.archive, c.search)
        parents = select_parents(self.archive, c.candidates_per_generation, c.search, rng, scores, c.explore_share)
        offspring: dict[str, tuple[int, int]] = {}
        for elite in self.archive.elites:
            breaks, trials = offspring.get(elite.candidate.operator, (0, 0))
            offspring[elite.candidate.operator] = (breaks + elite.breaks, trials + elite.trials)
        proposals = []
        for parent_id in parents:
            operator = get_strategy(pick_operator(c.strategies, offspring, c.search, rng))
            chosen = [parent_id]
            if operator.arity > 1:
                chosen += select_parents(self.archive, operator.arity - 1, c.search, rng, scores, c.explore_share)
            elites = [self.archive.get(p).candidate for p in chosen]
            scenario_id, point = self.places[parent_id]
            self._count(operator.name, "calls")
            proposal = operator.mutate([Parent(e.id, e.text, e.style) for e in elites], self.scenarios[scenario_id], rng, self.rewriter)
            if proposal is None:
                self._count(operator.name, "inapplicable")
                continue
            cid = candidate_id(proposal.text, scenario_id, point, proposal.bridge)
            candidate = Candidate(id=cid, text=proposal.text, style=proposal.style, scenario_id=scenario_id,
                                  operator=operator.name, generation=generation, parents=tuple(chosen), bridge=proposal.bridge)
            proposals.append((candidate, point, parent_id))
        return proposals

    # -- replay -----------------------------------------------------------------------------------
    def _replay(self) -> int:
        """Rebuild the archive from stored candidates and attempts; returns the next generation number."""
        stored = self.store.candidates(admitted_only=True)
        candidates = [
            Candidate(id=row["id"], text=row["text"], style=row["style"], scenario_id=row["scenario_id"], operator=row["operator"],
                      generation=row["generation"], parents=tuple(row["parents"]), bridge=row["bridge"])
            for row in stored
        ]
        missing = [c.full_text for c, row in zip(candidates, stored) if row["vector"] is None]
        fresh = iter(self.embedder.embed(missing)) if missing else iter(())
        # Stored vectors make replay exact: re-embedding in other batches can shift floats and so the search.
        vectors = [row["vector"] if row["vector"] is not None else next(fresh) for row in stored]
        self._restore_archive(stored, candidates, vectors)
        counts = self.store.trial_counts(end_trial=CONFIRM_TRIAL_BASE)
        for row, candidate in zip(stored, candidates):
            self.places[candidate.id] = (row["scenario_id"], row["insertion_point"])
            breaks, trials = counts.get(candidate.id, (0, 0))
            if trials:
                self.archive.record(candidate.id, breaks, trials)
        generations = self.store.generations()
        if generations:
            self.mutations = {op: dict(counts) for op, counts in generations[-1][1]["mutations"].items()}
        return generations[-1][0] + 1 if generations else 0

    def _restore_archive(self, stored: list[dict], candidates: list[Candidate], vectors: list[np.ndarray]) -> None:
        """Re-admit the stored members in admission order: in bulk, with the neighbour lists the store persisted
        for the first of them (or one bulk k-NN search when it has none), then one by one any it holds beyond
        those. A store from before stored novelty replays member by member, measuring each against the earlier."""
        if not stored:
            return
        if any(row["novelty"] is None for row in stored):
            for row, candidate, vector in zip(stored, candidates, vectors):
                novelty = row["novelty"] if row["novelty"] is not None else float(self.archive.novelty(vector)[0])
                self.archive.restore(candidate, vector, novelty)
            return
        persisted = self.store.neighbour_lists(self.archive.k_neighbors)
        bulk = len(stored) if persisted is None else min(len(stored), len(persisted[0]))
        lists = None if persisted is None else tuple(a[:bulk, : max(0, min(self.archive.k_neighbors, bulk - 1))] for a in persisted)
        self.archive.restore_many(candidates[:bulk], np.stack(vectors[:bulk]), [row["novelty"] for row in stored[:bulk]], neighbours=lists)
        for row, candidate, vector in zip(stored[bulk:], candidates[bulk:], vectors[bulk:]):
            self.archive.restore(candidate, vector, row["novelty"])

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> str:
        c = self.config
        dims = self.embedder.embed(["dimension probe"]).shape[1]
        self.archive = NoveltyArchive(dimensions=dims, k_neighbors=c.k_neighbors, duplicate_threshold=c.duplicate_threshold)
        next_generation = self._replay()
        self._awaiting_initial = [e.candidate.id for e in self.archive.elites]
        generations = self.store.generations()
        rng = np.random.default_rng(c.seed)
        if generations:
            rng.bit_generator.state = generations[-1][1]["rng"]
            finished = [g[2] for g in generations if g[2]]
            last = finished[-1] if finished else {}
            self._elite_calls_per_trial = last.get("elite_calls_per_trial", last.get("archive_size", 0))
            self.progress.on_message(f"resuming at generation {next_generation}: {self.calls()} target calls spent, "
                                     f"{len(self.archive)} members measured, {last.get('archive_size', 0)} in the archive")
            if self.store.get_meta("confirming") is not None and not self._search_over():
                self.store.set_meta("confirming", None)
                self.progress.on_message("the budget was raised: the search continues before the archive is confirmed")
        try:
            resuming_confirmation = generations and (self.store.get_meta("confirming") is not None or self._search_over())
            if not resuming_confirmation:
                self._run_search(next_generation, generations, rng)
        except SearchOver:
            pass
        except BudgetExhausted as stop:
            return str(stop)
        try:
            self._confirm_archive()
            return "search stalled, archive confirmed" if self._stalled else "archive confirmed"
        except BudgetExhausted as stop:
            return str(stop)

    def _run_search(self, next_generation: int, generations: list, rng: np.random.Generator) -> None:
        """Seeds (generation 0), then generations of planned extra trials, mutants and their initial trials,
        until only the confirmation reserve is left (checked before every call, so no generation overruns it)
        or `STALLED_GENERATIONS` generations in a row spend nothing."""
        self._finish_pending()
        if generations and generations[-1][2] is None:
            self._finish_generation(generations[-1][0])
        if next_generation == 0:
            seeds = self._seed_candidates(rng)
            vectors = self.embedder.embed([candidate.full_text for candidate, _ in seeds])
            with self.store.transaction():
                for (candidate, point), vector in zip(seeds, vectors):
                    self._admit(candidate, point, vector, None)
                self._save_state(0, rng)
            self._finish_pending()
            self._finish_generation(0)
            next_generation = 1
        generation = next_generation
        idle_generations = 0
        while True:
            calls_before = self.calls()
            plan = self.store.get_meta("plan")
            if plan is None or plan["generation"] != generation:
                if self._search_over() or self.store.get_meta("confirming") is not None:
                    break
                self._check_budget()
                plan = self._plan_generation(generation)
                self.store.set_meta("plan", plan)
            self._run_trials([(cid, t) for cid, first, count in plan["extra_trials"] for t in range(first, first + count)])
            proposals = [] if plan.get("final_racing") else self._mutants(generation, rng)
            vectors = self.embedder.embed([p[0].full_text for p in proposals]) if proposals else []
            with self.store.transaction():
                for (candidate, point, parent_id), vector in zip(proposals, vectors):
                    # An operator that changes the request (llm-pivot) is meant to move away from its parent.
                    keeps_request = getattr(get_strategy(candidate.operator), "keeps_request", True)
                    self._admit(candidate, point, vector, self.archive.vector(parent_id) if keeps_request else None)
                self._save_state(generation, rng)
            self._finish_pending()
            self._finish_generation(generation)
            generation += 1
            idle_generations = idle_generations + 1 if self.calls() == calls_before else 0
            if idle_generations >= STALLED_GENERATIONS:
                self._stalled = True
                self.progress.on_message(f"the search stalled: {idle_generations} generations in a row brought no new "
                                         "candidate and no trial; confirming the archive with the budget left")
                break

    def elite_ids(self) -> list[str]:
        """The archive of the best: the fittest member of each embedding cluster (core.clusters) of members
        that break credibly (core.selection.breaks_credibly). Members measured too little to vouch for,
        such as one that broke in both of its two trials, are not elites: the archive is where the
        breaking distractors are, one per distinct kind."""
        evaluated = [e for e in self.archive.elites if breaks_credibly(e)]
        if not evaluated:
            return []
        labels = cluster_labels(np.stack([self.archive.vector(e.candidate.id) for e in evaluated]))
        best = best_per_cluster(labels, [fitness_of(e) for e in evaluated])
        return [evaluated[i].candidate.id for i in best]

    def _confirm_archive(self) -> None:
        """Spend the reserved budget on fresh trials of the elites (evolved first, fittest first).

        The search picked elites by their own noisy trials, so those overstate them (winner's curse);
        the archive's break rate is measured on these confirmation trials only. The elite list is
        fixed in the store when confirmation starts, so a resumed run confirms the same members.
        """
        self._searching = False
        ids = self.store.get_meta("confirming")
        if ids is None:
            ranked = sorted(self.elite_ids(), key=lambda i: (self.archive.get(i).candidate.operator == "seed",
                                                              -fitness_of(self.archive.get(i))))
            self.store.set_meta("confirming", ranked)
            ids = ranked
            self.progress.on_message(f"confirming {len(ids)} elites with {self.config.confirm_trials} fresh trials each")
        self.progress.on_confirming(len(ids))
        # Chunks of elites in priority order, each in prefix order: if the budget ends first, the
        # highest-priority elites were confirmed. Chunks are fixed by the list, so a resume runs the same calls.
        size = self.config.candidates_per_generation
        for start in range(0, len(ids), size):
            self._run_trials([(cid, CONFIRM_TRIAL_BASE + t) for cid in ids[start:start + size] for t in range(self.config.confirm_trials)])

    def _finish_pending(self) -> None:
        """Give members admitted since the last call their initial trials; after a resume, every member,
        so trials a killed run left unfinished are run (finished ones are skipped)."""
        self._run_trials([(cid, t) for cid in self._awaiting_initial for t in range(self.config.initial_trials)])
        self._awaiting_initial = []

    def _plan_generation(self, generation: int) -> dict:
        """A generation's plan: its extra trials, and whether it is in the final racing phase (elites only, no
        mutants; core.selection.final_racing_plan), which starts once another ordinary generation (racing
        slots and its mutants' initial trials) could leave less search budget than racing every elite to
        `elite_max_trials` needs. The plan is stored before it runs, so a resumed run finishes
        the same plan."""
        c = self.config
        elite_maximum = c.elite_trial_limit()
        elite_ids = self.elite_ids() if elite_maximum > c.max_trials else []  # clustering only when elites are raced
        final = []
        if elite_ids:
            search_left = c.budget_calls - self.calls() - self._confirmation_reserve()
            need = final_racing_need(self.archive.elites, elite_ids, elite_maximum=elite_maximum, targets=len(c.targets))
            most_a_generation_spends = 2 * c.candidates_per_generation * c.initial_trials * len(c.targets)
            if search_left - most_a_generation_spends <= need:
                final = final_racing_plan(self.archive.elites, elite_ids, elite_maximum=elite_maximum,
                                          initial=c.initial_trials, slots=c.candidates_per_generation, targets=len(c.targets))
        return {"generation": generation, "extra_trials": final or self._plan_more_trials(elite_ids, elite_maximum),
                "final_racing": bool(final)}

    def _plan_more_trials(self, elite_ids: list[str], elite_maximum: int) -> list[tuple[str, int, int]]:
        """(member, first trial, count) of this generation's extra trials (core.selection.racing_plan)."""
        c = self.config
        priority = selection_scores(self.archive, "novelty") if c.search == "novelty" else None
        return racing_plan(self.archive.elites, initial=c.initial_trials, maximum=c.max_trials,
                           slots=c.candidates_per_generation, targets=len(c.targets), priority=priority,
                           elite_ids=elite_ids, elite_maximum=elite_maximum)

    def _progress_elite_ids(self, generation: int) -> list[str]:
        """The elites for a generation's progress figures.

        Clustering is quadratic in the breaking members, so past `PROGRESS_CLUSTERING_MEMBERS` of them the
        clusters are recomputed only every (breaking members / that) generations; in between, the figures
        use the last elites with their current counts. Confirmation and the final archive always recluster.
        """
        breaking = sum(1 for e in self.archive.elites if breaks_credibly(e))
        every = max(1, breaking // PROGRESS_CLUSTERING_MEMBERS)
        if self._progress_elites is None or generation - self._progress_elites[0] >= every:
            self._progress_elites = (generation, self.elite_ids())
        return self._progress_elites[1]

    def _finish_generation(self, generation: int) -> None:
        elite_ids = self._progress_elite_ids(generation)
        stats = generation_stats(self.archive, elite_ids, generation, self.calls())
        self._elite_calls_per_trial = stats["elite_calls_per_trial"]
        self.store.finish_generation(generation, stats)
        self.progress.on_generation(stats)

    def _save_state(self, generation: int, rng: np.random.Generator) -> None:
        """Commit what a resume needs to continue after `generation`'s candidates were admitted (the search
        state and the archive's neighbour lists that changed), and the run's wall time so far (a killed
        session's time counts up to its last saved generation)."""
        self.store.save_generation(generation, {"rng": rng.bit_generator.state, "mutations": self.mutations})
        self.store.save_neighbour_lists(len(self.archive), self.archive.k_neighbors, *self.archive.take_changed_lists())
        self.record_wall_time(time.perf_counter() - self.started)

    def record_wall_time(self, session_seconds: float) -> float:
        """Store and return the run's wall time over every session: the earlier ones as last saved, plus
        `session_seconds` of this one."""
        return self.store.record_wall_time(self.earlier_wall_seconds, session_seconds)


def _check_run_dir(store: Store, config: CampaignConfig, resume: bool) -> None:
    if store.get_meta("config_fingerprint") is None and resume:
        raise StoreError(f"{store.path.parent} holds no campaign to resume")
    if store.bind_run("run", asdict(config), config.fingerprint(), __version__) and not resume:
        raise StoreError(f"{store.path.parent} already holds this campaign; pass --resume to continue it")


def load_resume_config(run_dir: Path) -> CampaignConfig:
    """The config a stored campaign was started with."""
    path = run_dir / "store.sqlite"
    if not path.exists():
        raise StoreError(f"{run_dir} holds no campaign store")
    with Store(path) as store:
        data = store.get_meta("config")
        if store.get_meta("kind") != "run" or not isinstance(data, dict):
            raise StoreError(f"{run_dir} does not hold an adversary run")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    data.setdefault("elite_max_trials", data.get("max_trials", CampaignConfig.max_trials))
    return CampaignConfig(**data)


def run_campaign(config: CampaignConfig, run_dir: Path, progress: CampaignProgress | None = None, *, resume: bool = False,
                 servers: LocalServers | None = None, **injected) -> CampaignResult:
    """Run or resume a campaign into `run_dir`. `injected` passes test doubles (judge, call, rewriter, embedder)."""
    config.validate()
    progress = progress or CampaignProgress()
    started = time.perf_counter()
    own = servers is None
    servers = servers or LocalServers(log_dir=run_dir)
    router = load_router(config.router) if config.router else None  # a bad router file fails before anything is written
    store = Store.open(run_dir)
    try:
        if own:
            servers.__enter__()
        _check_run_dir(store, config, resume)
        campaign = Campaign(config, run_dir, store, servers, progress, router=router, **injected)
        for note in campaign.notes:
            progress.on_message(note)
        if not resume:
            store.save_corpus(campaign.corpus)
        stop_reason = campaign.run()
        metrics = write_outputs(campaign, stop_reason, time.perf_counter() - started)
    finally:
        store.close()
        if own:
            servers.__exit__(None, None, None)
    return CampaignResult(run_dir=run_dir, metrics=metrics, stop_reason=stop_reason,
                          wall_seconds=time.perf_counter() - started, notes=campaign.notes)
