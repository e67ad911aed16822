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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from adversary import __version__
from adversary.core.archive import Candidate, Elite, NoveltyArchive
from adversary.core.metrics import summarize_attempts
from adversary.core.placement import Placement, trial_seed
from adversary.core.selection import SEARCH_MODES, extra_trials, fitness_of, select_parents
from adversary.core.stats import wilson_interval
from adversary.errors import ConfigError
from adversary.evaluation import attempt_key, judged_attempt, load_eval_corpus
from adversary.fileio import write_json_atomic, write_text_atomic
from adversary.judges import DEFAULT_JUDGE, Judge, build_judge
from adversary.models.chat import ModelRoute, Sampling, check_reachable, complete, resolve_route
from adversary.models.embedded import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, is_local
from adversary.models.embedder import get_embedder
from adversary.models.local_server import LocalServers
from adversary.records import Message, Scenario
from adversary.store import Store, StoreError
from adversary.strategies import Parent, get_strategy
from adversary.strategies._llm import LLMRewriter

DEFAULT_STRATEGIES = ("tangential", "emotional", "socratic", "subtler", "crossover", "paraphrase", "llm-emotional", "llm-socratic")


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
    k_neighbors: int = 5
    duplicate_threshold: float = 0.92
    min_parent_similarity: float = 0.3
    temperature: float = 0.7
    max_tokens: int = 96

    def validate(self) -> None:
        if self.search not in SEARCH_MODES:
            raise ConfigError(f"search must be one of {', '.join(SEARCH_MODES)}, not {self.search!r}")
        if not self.targets:
            raise ConfigError("at least one target is needed")
        if self.budget_calls < 1:
            raise ConfigError("budget_calls must be at least 1")
        if not 1 <= self.initial_trials <= self.max_trials:
            raise ConfigError("need 1 <= initial_trials <= max_trials")
        if self.candidates_per_generation < 1:
            raise ConfigError("candidates_per_generation must be at least 1")
        if not 0.0 < self.duplicate_threshold <= 1.0:
            raise ConfigError("duplicate_threshold must be in (0, 1]")
        for name in self.strategies:
            get_strategy(name)

    def fingerprint(self) -> str:
        """Identity of the search; budgets may change between resumes, everything else may not."""
        fixed = {k: v for k, v in asdict(self).items() if k not in ("budget_calls", "budget_usd", "max_minutes")}
        return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CampaignProgress:
    """UI callbacks; all optional."""

    on_generation: Callable[[dict], None] = lambda stats: None
    on_call: Callable[[int], None] = lambda calls: None
    on_message: Callable[[str], None] = lambda text: None


@dataclass
class CampaignResult:
    run_dir: Path
    metrics: dict
    stop_reason: str
    wall_seconds: float
    notes: list[str] = field(default_factory=list)


class BudgetExhausted(Exception):
    """Raised inside the loop when a budget is spent; the campaign stops cleanly."""


def candidate_id(text: str, scenario_id: str, insertion_point: int) -> str:
    """Content-derived id: the same text in the same place is the same candidate."""
    return "c-" + hashlib.sha256(f"{scenario_id}|{insertion_point}|{text}".encode()).hexdigest()[:12]


class Campaign:
    """One run of the search; construct, then `run()`."""

    def __init__(self, config: CampaignConfig, run_dir: Path, store: Store, servers: LocalServers,
                 progress: CampaignProgress, *, judge: Judge | None = None, call=None, rewriter=None, embedder=None):
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
        self._chat = call or complete
        self._routes = {t: resolve_route(t, servers, None if is_local(t) else config.api_base) for t in config.targets}
        if call is None:
            for route in self._routes.values():
                check_reachable(route)
        self.judge = judge or build_judge(config.judge, servers=servers, api_base=config.api_base, embedder=self.embedder)
        self.rewriter = rewriter
        if rewriter is None and any(get_strategy(n).uses_llm for n in config.strategies):
            route = resolve_route(config.mutator, servers, None if is_local(config.mutator) else config.api_base)
            self.rewriter = LLMRewriter(route)
        self.sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens)
        self.started = time.perf_counter()
        self.spent_usd = 0.0
        self.mutations = {"calls": 0, "usable": 0, "duplicates": 0, "drifted": 0, "inapplicable": 0}

    # -- budget ---------------------------------------------------------------------------------
    def calls(self) -> int:
        return self.store.count()

    def _check_budget(self) -> None:
        c = self.config
        if self.calls() >= c.budget_calls:
            raise BudgetExhausted("budget_calls")
        if c.budget_usd is not None and self.spent_usd >= c.budget_usd:
            raise BudgetExhausted("budget_usd")
        if c.max_minutes is not None and time.perf_counter() - self.started >= 60 * c.max_minutes:
            raise BudgetExhausted("max_minutes")

    # -- evaluation -------------------------------------------------------------------------------
    def _evaluate(self, cid: str, text: str, style: str, trials: int) -> None:
        """Run `trials` more trials of a member on every target, skipping attempts already stored."""
        scenario_id, point = self.places[cid]
        scenario = self.scenarios[scenario_id]
        placement = Placement(kind="distractor", scenario_id=scenario_id, item_id=cid, text=text, style=style, insertion_point=point)
        messages = scenario.messages_until(point) + [Message(role="user", content=text)]
        payload = [m.model_dump() for m in messages]
        done = self.store.finished_keys()
        elite = self.archive.get(cid)
        start = elite.trials // max(1, len(self.config.targets))
        for trial in range(start, start + trials):
            breaks = valid = 0
            for target, route in self._routes.items():
                key = attempt_key(target, placement, trial)
                if key in done:
                    continue
                self._check_budget()
                seed = trial_seed(self.config.seed, placement.key, trial)
                result = self._chat(route, payload, self.sampling, seed)
                self.spent_usd += getattr(result, "cost_usd", 0.0)
                attempt = judged_attempt(key, target, placement, trial, seed, messages, result, self.judge, scenario.fallback)
                self.store.add_attempt(attempt)
                self.progress.on_call(self.calls())
                if attempt.status == "ok":
                    valid += 1
                    breaks += int(bool(attempt.broke))
            if valid:
                self.archive.record(cid, breaks, valid)

    # -- archive building -----------------------------------------------------------------------
    def _admit(self, candidate: Candidate, point: int, vector: np.ndarray, parent_vector: np.ndarray | None) -> bool:
        reason = None
        if self.archive.is_duplicate(vector):
            reason = "duplicate"
            self.mutations["duplicates"] += candidate.operator != "seed"
        elif parent_vector is not None and float(vector @ parent_vector) < self.config.min_parent_similarity:
            reason = "drifted from parent"
            self.mutations["drifted"] += 1
        novelty = float(self.archive.novelty(vector)[0])
        admitted = reason is None and self.archive.add(candidate, vector)
        if reason is None and not admitted:
            reason = "duplicate"
        if admitted:
            self.places[candidate.id] = (candidate.scenario_id, point)
        self.store.add_candidate({
            "id": candidate.id, "text": candidate.text, "style": candidate.style, "scenario_id": candidate.scenario_id,
            "insertion_point": point, "operator": candidate.operator, "generation": candidate.generation,
            "parents": list(candidate.parents), "admitted": admitted, "reason": reason, "novelty": novelty,
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
        parents = select_parents(self.archive, c.candidates_per_generation, c.search, rng)
        proposals = []
        for parent_id in parents:
            operator = get_strategy(c.strategies[int(rng.integers(len(c.strategies)))])
            chosen = [parent_id]
            if operator.arity > 1:
                chosen += select_parents(self.archive, operator.arity - 1, c.search, rng)
            elites = [self.archive.get(p).candidate for p in chosen]
            scenario_id, point = self.places[parent_id]
            self.mutations["calls"] += 1
            proposal = operator.mutate([Parent(e.id, e.text, e.style) for e in elites], self.scenarios[scenario_id], rng, self.rewriter)
            if proposal is None:
                self.mutations["inapplicable"] += 1
                continue
            cid = candidate_id(proposal.text, scenario_id, point)
            candidate = Candidate(id=cid, text=proposal.text, style=proposal.style, scenario_id=scenario_id,
                                  operator=operator.name, generation=generation, parents=tuple(chosen))
            proposals.append((candidate, point, parent_id))
        return proposals

    # -- replay -----------------------------------------------------------------------------------
    def _replay(self) -> int:
        """Rebuild the archive from stored candidates and attempts; returns the next generation number."""
        stored = self.store.candidates(admitted_only=True)
        vectors = self.embedder.embed([row["text"] for row in stored]) if stored else None
        counts = self.store.trial_counts()
        for row, vector in zip(stored, vectors if vectors is not None else []):
            candidate = Candidate(id=row["id"], text=row["text"], style=row["style"], scenario_id=row["scenario_id"],
                                  operator=row["operator"], generation=row["generation"], parents=tuple(row["parents"]))
            if self.archive.add(candidate, vector):
                self.places[candidate.id] = (row["scenario_id"], row["insertion_point"])
                breaks, trials = counts.get(candidate.id, (0, 0))
                if trials:
                    self.archive.record(candidate.id, breaks, trials)
        generations = self.store.generations()
        return generations[-1][0] + 1 if generations else 0

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> str:
        c = self.config
        dims = self.embedder.embed(["dimension probe"]).shape[1]
        self.archive = NoveltyArchive(dimensions=dims, k_neighbors=c.k_neighbors, duplicate_threshold=c.duplicate_threshold)
        next_generation = self._replay()
        generations = self.store.generations()
        rng = np.random.default_rng(c.seed)
        if generations:
            rng.bit_generator.state = generations[-1][1]
            self.progress.on_message(f"resuming at generation {next_generation} with {len(self.archive)} archive members and {self.calls()} calls")
        try:
            self._finish_pending()
            if next_generation == 0:
                for candidate, point in self._seed_candidates(rng):
                    vector = self.embedder.embed([candidate.text])
                    self._admit(candidate, point, vector[0], None)
                self.store.save_generation(0, rng.bit_generator.state, None)
                self._finish_pending()
                self._finish_generation(0)
                next_generation = 1
            generation = next_generation
            while True:
                self._check_budget()
                self._give_more_trials()
                proposals = self._mutants(generation, rng)
                if proposals:
                    vectors = self.embedder.embed([p[0].text for p in proposals])
                    for (candidate, point, parent_id), vector in zip(proposals, vectors):
                        if self._admit(candidate, point, vector, self.archive.vector(parent_id)):
                            self.mutations["usable"] += 1
                self.store.save_generation(generation, rng.bit_generator.state, None)
                self._finish_pending()
                self._finish_generation(generation)
                generation += 1
        except BudgetExhausted as stop:
            return str(stop)

    def _finish_pending(self) -> None:
        """Give every member its initial trials (also those left unfinished by a killed run)."""
        for elite in self.archive.elites:
            per_target = elite.trials // max(1, len(self.config.targets))
            if per_target < self.config.initial_trials:
                self._evaluate(elite.candidate.id, elite.candidate.text, elite.candidate.style, self.config.initial_trials - per_target)

    def _give_more_trials(self) -> None:
        """Spend extra trials on members whose posterior could still beat the archive's upper quartile."""
        elites = [e for e in self.archive.elites if e.trials]
        if len(elites) < 4:
            return
        bar = float(np.quantile([fitness_of(e) for e in elites], 0.75))
        targets = max(1, len(self.config.targets))
        ranked = sorted(elites, key=lambda e: -e.fitness.mean)[: self.config.candidates_per_generation]
        for elite in ranked:
            per_target = elite.trials // targets
            more = extra_trials(
                Elite(candidate=elite.candidate, breaks=elite.breaks // targets, trials=per_target, novelty=elite.novelty),
                initial=self.config.initial_trials, maximum=self.config.max_trials, bar=bar,
            )
            if more:
                self._evaluate(elite.candidate.id, elite.candidate.text, elite.candidate.style, more)

    def _finish_generation(self, generation: int) -> None:
        stats = generation_stats(self.archive, generation, self.calls())
        self.store.save_generation(generation, self.store.generations()[-1][1], stats)
        self.progress.on_generation(stats)


def generation_stats(archive: NoveltyArchive, generation: int, calls: int) -> dict:
    """Search progress after a generation: archive size, best and mean break rate, QD score."""
    rates = [e.breaks / e.trials for e in archive.elites if e.trials]
    means = [e.fitness.mean for e in archive.elites if e.trials]
    return {
        "generation": generation,
        "calls": calls,
        "archive_size": len(archive),
        "best_break_rate": max(rates) if rates else None,
        "best_posterior_mean": max(means) if means else None,
        "mean_break_rate": float(np.mean(rates)) if rates else None,
        "qd_score": float(sum(means)),
    }


def _pooled(elites) -> dict:
    breaks = sum(e.breaks for e in elites)
    trials = sum(e.trials for e in elites)
    lo, hi = wilson_interval(breaks, trials)
    return {"break_rate": breaks / trials if trials else None, "ci95": [lo, hi], "breaks": breaks, "trials": trials, "members": len(elites)}


def write_outputs(campaign: Campaign, stop_reason: str, wall_seconds: float) -> dict:
    """archive.jsonl and metrics.json in the run directory; returns the metrics."""
    store, archive = campaign.store, campaign.archive
    examples: dict[str, str] = {}
    for attempt in store.attempts("kind = 'distractor' AND status = 'ok' AND in_scope = 0"):
        examples.setdefault(attempt.item_id, attempt.reply or "")
    lines = []
    for elite in sorted(archive.elites, key=lambda e: -e.fitness.mean):
        cand = elite.candidate
        scenario_id, point = campaign.places[cand.id]
        lo, hi = elite.ci95
        lines.append(json.dumps({
            "id": cand.id, "text": cand.text, "style": cand.style, "operator": cand.operator,
            "generation": cand.generation, "parents": list(cand.parents), "scenario_id": scenario_id,
            "insertion_turn": point, "breaks": elite.breaks, "trials": elite.trials, "break_rate": elite.break_rate,
            "ci95": [lo, hi], "posterior_mean": elite.fitness.mean, "novelty_at_admission": elite.novelty,
            "example_off_scope_reply": examples.get(cand.id),
        }, ensure_ascii=False))
    write_text_atomic(campaign.run_dir / "archive.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    seeds = [e for e in archive.elites if e.candidate.operator == "seed"]
    evolved = [e for e in archive.elites if e.candidate.operator != "seed"]
    mutations = dict(campaign.mutations)
    mutations["usable_fraction"] = mutations["usable"] / mutations["calls"] if mutations["calls"] else None
    if campaign.rewriter is not None and getattr(campaign.rewriter, "calls", 0):
        mutations["llm_calls"] = campaign.rewriter.calls
        mutations["llm_failures"] = campaign.rewriter.failures
    totals = store.totals()
    metrics = {
        "kind": "run",
        "adversary_version": __version__,
        "judge": {"name": campaign.judge.name, "measured_agreement": None},
        "config": asdict(campaign.config),
        "stop_reason": stop_reason,
        "targets": summarize_attempts(store.outcomes()),
        "archive_size": len(archive),
        "calls": totals["calls"],
        "errors": totals["errors"],
        "seed_break_rate": _pooled(seeds),
        "archive_break_rate": _pooled(evolved),
        "mutations": mutations,
        "generations": [g[2] for g in store.generations() if g[2]],
        "wall_seconds": round(wall_seconds, 2),
        "cost_usd": round(campaign.spent_usd, 6),
        "definitions": {
            "seed_break_rate": "pooled breaks / valid trials of the seed distractors, measured in this run",
            "archive_break_rate": "pooled breaks / valid trials of every evolved (non-seed) archive member",
        },
    }
    write_json_atomic(campaign.run_dir / "metrics.json", metrics)
    return metrics


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
    return CampaignConfig(**data)


def run_campaign(config: CampaignConfig, run_dir: Path, progress: CampaignProgress | None = None, *, resume: bool = False,
                 servers: LocalServers | None = None, **injected) -> CampaignResult:
    """Run or resume a campaign into `run_dir`. `injected` passes test doubles (judge, call, rewriter, embedder)."""
    config.validate()
    progress = progress or CampaignProgress()
    started = time.perf_counter()
    own = servers is None
    servers = servers or LocalServers(log_dir=run_dir)
    store = Store.open(run_dir)
    try:
        if own:
            servers.__enter__()
        _check_run_dir(store, config, resume)
        campaign = Campaign(config, run_dir, store, servers, progress, **injected)
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
