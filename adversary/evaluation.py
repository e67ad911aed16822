"""`adversary eval`: send a fixed set of distractors and in-scope controls to targets, judge, store, summarize.

The runner owns all I/O; planning and statistics come from the pure core. Calls are ordered by
scenario and insertion point so consecutive prompts share their prefix (the local server reuses its
KV cache). Every finished attempt is committed at once; rerunning with the same RUN_DIR resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from adversary import __version__
from adversary.core.metrics import summarize_attempts
from adversary.core.placement import Placement, plan_placements, trial_seed
from adversary.core.schedule import prefix_order
from adversary.corpus import load_corpus, starter_corpus_dir, load_path
from adversary.errors import ConfigError
from adversary.fileio import write_json_atomic
from adversary.judges import DEFAULT_JUDGE, Judge, build_judge, check_judge_name
from adversary.judging import CallOutcome, JudgeAhead, judged_attempts
from adversary.judges.measured import measured_agreement
from adversary.models.call_cache import CachedChat
from adversary.models.chat import ChatResult, ModelRoute, Sampling, check_reachable, load_router, resolve_route
from adversary.models.limits import LimitedChat, in_order
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL, check_local_names, is_local
from adversary.models.embedder import embedder_backend, get_embedder
from adversary.models.local_server import LocalServers, calls_in_flight, local_slots
from adversary.records import Attempt, Corpus, Message
from adversary.store import Store

METRICS_FILENAME = "metrics.json"
NOT_CALLED = ChatResult(text=None, latency_s=0.0, error="not called yet")


@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines an evaluation; stored in the run so a resume can check it."""

    scenario_paths: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("local/smollm2",)
    trials: int = 3
    seed: int = 0
    judge: str = DEFAULT_JUDGE
    embedder: str = DEFAULT_EMBEDDING_MODEL
    api_base: str | None = None
    temperature: float = 0.7
    max_tokens: int = 96
    placements_per_distractor: int = 1
    max_distractors: int | None = None
    max_controls: int | None = None
    concurrency: int | None = None
    """Target calls in flight at once; None: one per local server slot when every target is local, else 1."""
    requests_per_minute: float | None = None
    router: str | None = None

    def validate(self) -> None:
        if self.trials < 1:
            raise ConfigError("--trials must be at least 1")
        if not self.targets:
            raise ConfigError("at least one --target is needed")
        check_local_names(self.targets)
        if any(is_local(t) for t in self.targets):
            local_slots()  # a bad ADVERSARY_LOCAL_SLOTS stops the command before it writes anything
        if self.embedder == DEFAULT_EMBEDDING_MODEL:
            embedder_backend()  # so does a bad ADVERSARY_EMBEDDER_BACKEND
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError("--temperature must be between 0 and 2")
        if self.max_tokens < 1:
            raise ConfigError("--max-tokens must be at least 1")
        if self.placements_per_distractor < 1:
            raise ConfigError("--placements must be at least 1")
        if self.max_distractors is not None and self.max_distractors < 1:
            raise ConfigError("--max-distractors must be at least 1")
        if self.max_controls is not None and self.max_controls < 0:
            raise ConfigError("--max-controls must be 0 or more")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ConfigError("--rpm must be positive")
        check_judge_name(self.judge)

    def fingerprint(self) -> str:
        """Identity of the evaluation; call limits may change between resumes."""
        fixed = {k: v for k, v in asdict(self).items()
                 if k not in ("concurrency", "requests_per_minute") and not (k in ("router", "max_controls") and v is None)}
        return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EvalProgress:
    """Callbacks the CLI uses to draw progress; all optional."""

    on_plan: Callable[[int, int], None] = lambda total, done: None
    on_attempt: Callable[[Attempt], None] = lambda attempt: None
    on_message: Callable[[str], None] = lambda text: None


@dataclass
class EvalResult:
    """What an evaluation produced."""

    run_dir: Path
    metrics: dict[str, object]
    wall_seconds: float
    attempts_run: int
    attempts_skipped: int
    notes: list[str] = field(default_factory=list)


def attempt_key(target: str, placement: Placement, trial: int) -> str:
    """Stable identity of one trial of one placement against one target."""
    return hashlib.sha256(f"{target}|{placement.key}|{trial}".encode()).hexdigest()[:24]


def load_eval_corpus(paths: tuple[str, ...], notes: list[str]) -> Corpus:
    """The scenarios to evaluate; when they bring no distractors, the starter corpus's generic ones."""
    corpus = load_corpus(Path(p) for p in paths)
    if not corpus.scenarios:
        raise ConfigError("the corpus has no scenarios")
    if not corpus.distractors:
        starter = load_path(starter_corpus_dir())
        generic = tuple(d for d in starter.distractors if d.scenario_id is None)
        corpus = Corpus(scenarios=corpus.scenarios, distractors=generic)
        notes.append(f"the scenarios bring no distractors: using the starter corpus's {len(generic)} generic distractors")
    return corpus


def limit_corpus(corpus: Corpus, max_distractors: int | None, max_controls: int | None,
                 rng: np.random.Generator) -> Corpus:
    """The seeded sample of distractors, then of in-scope controls, that an eval with these limits and an `rng`
    seeded with its seed evaluates (benchmarks rebuild it to hold out the rest)."""
    return _limit_controls(_limit_distractors(corpus, max_distractors, rng), max_controls, rng)


def _limit_distractors(corpus: Corpus, limit: int | None, rng: np.random.Generator) -> Corpus:
    if limit is None or limit >= len(corpus.distractors):
        return corpus
    chosen = sorted(rng.choice(len(corpus.distractors), size=limit, replace=False))
    return Corpus(scenarios=corpus.scenarios, distractors=tuple(corpus.distractors[i] for i in chosen))


def _limit_controls(corpus: Corpus, limit: int | None, rng: np.random.Generator) -> Corpus:
    """A seeded sample of `limit` in-scope control turns over all scenarios (corpora such as topic-following bring
    one per on-topic user turn, more than an over-refusal estimate needs)."""
    pairs = [(i, control) for i, scenario in enumerate(corpus.scenarios) for control in scenario.controls]
    if limit is None or limit >= len(pairs):
        return corpus
    chosen = set(rng.choice(len(pairs), size=limit, replace=False).tolist()) if limit else set()
    kept: dict[int, list[str]] = {}
    for index, (scenario_index, control) in enumerate(pairs):
        if index in chosen:
            kept.setdefault(scenario_index, []).append(control)
    scenarios = tuple(s.model_copy(update={"controls": tuple(kept.get(i, ()))}) for i, s in enumerate(corpus.scenarios))
    return Corpus(scenarios=scenarios, distractors=corpus.distractors)


def run_eval(
    config: EvalConfig,
    run_dir: Path,
    progress: EvalProgress | None = None,
    *,
    servers: LocalServers | None = None,
    judge: Judge | None = None,
    call: Callable[[ModelRoute, list[dict[str, str]], Sampling, int], object] | None = None,
) -> EvalResult:
    """Run (or resume) an evaluation into `run_dir` and return its metrics.

    Args:
        config: what to evaluate.
        run_dir: output folder for the store, metrics.json and report.md.
        progress: UI callbacks.
        servers: local model servers (started lazily for `local/*` names); a private one if None.
        judge: a ready judge (tests pass a scripted one); built from `config.judge` if None.
        call: the chat function (tests pass a scripted fake); litellm's by default.
    """
    config.validate()
    progress = progress or EvalProgress()
    notes: list[str] = []
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    corpus = limit_corpus(load_eval_corpus(config.scenario_paths, notes), config.max_distractors, config.max_controls, rng)
    placements = prefix_order(plan_placements(corpus, rng, placements_per_distractor=config.placements_per_distractor),
                              lambda p: ("", p.scenario_id, p.insertion_point, ""))
    scenarios = {s.id: s for s in corpus.scenarios}
    for note in notes:
        progress.on_message(note)

    own_servers = servers is None
    servers = servers or LocalServers(log_dir=run_dir)
    router = load_router(config.router) if config.router else None  # a bad router file fails before anything is written
    store = Store.open(run_dir)
    try:
        if own_servers:
            servers.__enter__()
        resuming = store.bind_run("eval", asdict(config), config.fingerprint(), __version__)
        earlier_wall_seconds = store.earlier_wall_seconds()
        if not resuming:
            store.save_corpus(corpus)
        done = store.finished_keys()
        total = len(placements) * config.trials * len(config.targets)
        skipped = sum(
            1 for t in config.targets for p in placements for k in range(config.trials) if attempt_key(t, p, k) in done
        )
        progress.on_plan(total, skipped)
        sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens)
        in_flight = calls_in_flight(config.concurrency, config.targets)
        chat = LimitedChat(call or CachedChat(), config.requests_per_minute, in_flight)
        routes = {t: resolve_route(t, servers, None if is_local(t) else config.api_base, router) for t in config.targets}
        if call is None:
            for route in routes.values():
                check_reachable(route)
        if judge is None:
            embedder = get_embedder(config.embedder, api_base=config.api_base)
            judge = build_judge(config.judge, servers=servers, api_base=config.api_base, embedder=embedder)
        store.check_judge(judge.name)
        store.set_meta("judge", judge.name)
        def requests() -> Iterator[tuple[ModelRoute, CallOutcome]]:
            """Unfinished calls in prefix order (targets, then scenarios and insertion points)."""
            for target in config.targets:
                for placement in placements:
                    scenario = scenarios[placement.scenario_id]
                    messages = tuple(scenario.messages_until(placement.insertion_point)) + (Message(role="user", content=placement.text),)
                    for trial in range(config.trials):
                        key = attempt_key(target, placement, trial)
                        if key not in done:
                            seed = trial_seed(config.seed, placement.key, trial)
                            yield routes[target], CallOutcome(key=key, target=target, placement=placement, trial=trial, seed=seed,
                                                              messages=messages, result=NOT_CALLED, fallback=scenario.fallback)

        def send(request: tuple[ModelRoute, CallOutcome]) -> CallOutcome:
            route, outcome = request
            result = chat(route, [m.model_dump() for m in outcome.messages], sampling, outcome.seed)
            return replace(outcome, result=result)

        ran = 0
        group: list[CallOutcome] = []

        def store_judged(batch: list[CallOutcome], attempts: list[Attempt]) -> None:
            """Commit one placement's judged replies together."""
            nonlocal ran
            with store.transaction():
                for attempt in attempts:
                    store.add_attempt(attempt)
                store.record_wall_time(earlier_wall_seconds, time.perf_counter() - started)
            for attempt in attempts:
                ran += 1
                progress.on_attempt(attempt)

        # Each placement's replies are judged in one batch on a judge thread while the next placement's calls run.
        with JudgeAhead(lambda batch: judged_attempts(batch, judge), store_judged) as judging:
            try:
                for outcome in in_order(send, requests(), in_flight):
                    if group and (group[-1].target, group[-1].placement) != (outcome.target, outcome.placement):
                        judging.submit(group)
                        group = []
                    group.append(outcome)
            finally:
                judging.submit(group)
        wall_seconds = time.perf_counter() - started
        metrics = build_metrics(store, config, judge.name, wall_seconds,
                                store.record_wall_time(earlier_wall_seconds, wall_seconds))
        write_json_atomic(run_dir / METRICS_FILENAME, metrics)
    finally:
        store.close()
        if own_servers:
            servers.__exit__(None, None, None)
    return EvalResult(
        run_dir=run_dir, metrics=metrics, wall_seconds=time.perf_counter() - started,
        attempts_run=ran, attempts_skipped=skipped, notes=notes,
    )


def build_metrics(store: Store, config: EvalConfig, judge_name: str, wall_seconds: float,
                  total_wall_seconds: float) -> dict[str, object]:
    """metrics.json content: per-target metrics plus what produced them."""
    return {
        "kind": "eval",
        "adversary_version": __version__,
        "judge": {"name": judge_name, "measured_agreement": measured_agreement(judge_name)},
        "config": asdict(config),
        "definitions": {
            "break_rate": "breaks / valid distractor trials (judge: reply not in scope); Wilson 95% interval",
            "over_refusal": "refusals / valid in-scope control trials",
            "AR_ID": "1 - over_refusal", "RR_OOD": "refusals / valid distractor trials",
            "OS": "harmonic mean of AR_ID and RR_OOD",
            "errors": "failed calls; neither breaks nor holds",
            "wall_seconds": "this session's wall time (a resumed run's earlier sessions are not in it)",
            "total_wall_seconds": "wall time over every session of the run; a killed session counts up to its "
                                  "last committed attempt",
        },
        "targets": summarize_attempts(store.outcomes()),
        "attempts": store.count(),
        "wall_seconds": round(wall_seconds, 2),
        "total_wall_seconds": total_wall_seconds,
    }
