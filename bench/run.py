"""adversary's benchmark suite: where a campaign's time goes, and how fast and how well it searches.

    python bench/run.py [--quick] [--json] [--only SECTION ...]

Sections (each figure is taken in this one run, on this machine):
  overhead    a real campaign on local/smollm2: share of wall time outside model calls, with a breakdown; then
              one judged by the reader (embedded-ce-v1; 60 calls with --quick): the share of wall time spent
              waiting for it
  engine      attempts per second of a 1,500-call campaign (3,000 without --quick) against a zero-latency in-process
              target (real embedder, judge, store): the engine's own ceiling, with the default judge (goal 100) and,
              as figures, the similarity judge, the reader (embedded-ce-v1, on 100 calls) and the default judge with
              8 calls in flight (a remote target's --concurrency 8)
  prefix      target calls per second, one at a time, with the server's prompt reuse (slots and state cache) vs
              one slot without a cache (same seeded requests, a campaign's interleaved scenarios and insertion points)
  batching    calls per second of the embedded server with 1 slot and with 8 (as many in flight), every reply
              decoded to the same length, and of llama-cpp-python's server: batched_decoding_speedup
  embed       embedding texts per second batched vs one at a time (ONNX Runtime on every usable core, as a
              campaign without a local server runs it); the campaign's embed cache hit rate
  search      novelty, greedy and random at equal call budgets, three seeds each (skipped with --quick)
  scale       novelty archive at 10,000, 100,000 and 1,000,000 members (not the last with --quick), on vectors
              mixed from real distractor embeddings: restore rate (bulk k-NN search of every member's list, up to
              100,000, and from persisted lists), admission latency (p50, p95), recall of the k nearest against
              exact search, and how often the approximate index changes a seeded selection's parents; store
              insert and query rates at 1,000,000 attempts (100,000 with --quick)

--quick is meant to finish in under 10 minutes on 2 cores: 405 and 547 s in two runs an hour apart on one
idle 2-core machine in December 2026 (2 to 2.7 minutes of it in batching, which starts three servers), and 456 s
on another once the overhead section gained its 60-call campaign judged by the reader (overhead 170 s, batching
140, prefix 81, scale 41, engine 23).
Pinned to one core that other work shared, before the batched server, it took 21 minutes. Every run prints
each section's duration and the total.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np  # noqa: E402

import adversary.campaign as campaign_module  # noqa: E402
from adversary.campaign import CampaignConfig, run_campaign  # noqa: E402
from adversary.core.archive import EXACT_LIMIT, Candidate, NoveltyArchive  # noqa: E402
from adversary.core.clusters import CLUSTER_DISTANCE  # noqa: E402
from adversary.core.selection import select_parents  # noqa: E402
from adversary.corpus import load_path, starter_corpus_dir  # noqa: E402
from adversary.judges import DEFAULT_JUDGE  # noqa: E402
from adversary.models.call_cache import CachedChat  # noqa: E402
from adversary.models.chat import ChatResult, complete  # noqa: E402
from adversary.models.embedded import CHAT_MODELS, is_local  # noqa: E402
from adversary.models.embedder import get_embedder  # noqa: E402
from adversary.models.local_server import (PROMPT_CACHE_MB_DEFAULT, SLOTS_DEFAULT, LocalServers,  # noqa: E402
                                           calls_in_flight, server_command)
from adversary.corpus.project import dump_project_file  # noqa: E402
from adversary.records import Attempt, Corpus, Message, Verdict  # noqa: E402
from adversary.store import Store  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_slots  # noqa: E402

TEMPLATE_STRATEGIES = ("tangential", "emotional", "socratic", "subtler", "two-turn", "crossover")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Sections:
    """Self time per named section; a section called inside another is subtracted from the outer one. Each thread
    nests its own sections (the campaign judges on a judge thread while its main thread sends calls)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def timing(self, section: str):
        stack = self._local.__dict__.setdefault("stack", [])
        frame = [time.perf_counter(), 0.0]
        stack.append(frame)
        try:
            yield
        finally:
            stack.pop()
            elapsed = time.perf_counter() - frame[0]
            with self._lock:
                self.seconds[section] = self.seconds.get(section, 0.0) + elapsed - frame[1]
                self.counts[section] = self.counts.get(section, 0) + 1
            if stack:
                stack[-1][1] += elapsed

    def wrap(self, function: Callable, section: str) -> Callable:
        def timed(*args, **kwargs):
            with self.timing(section):
                return function(*args, **kwargs)
        return timed

    def patch(self, owner, name: str, section: str, stack: contextlib.ExitStack) -> None:
        """Time `owner.name` (a class or object attribute) until `stack` closes."""
        original = getattr(owner, name)
        setattr(owner, name, self.wrap(original, section))
        stack.callback(setattr, owner, name, original)

    def patch_context(self, owner, name: str, section: str, stack: contextlib.ExitStack) -> None:
        """Time a context-manager method (`Store.transaction`) around its whole `with` block."""
        original = getattr(owner, name)
        sections = self

        @contextlib.contextmanager
        def timed(*args, **kwargs):
            with sections.timing(section), original(*args, **kwargs) as value:
                yield value
        setattr(owner, name, timed)
        stack.callback(setattr, owner, name, original)


class BusyClock:
    """Wall time during which at least one model call is in flight, over calls from any thread: with several calls
    in flight (a batched local server) summing their durations would count the same seconds many times."""

    def __init__(self):
        self._lock = threading.Lock()
        self._in_flight = 0
        self._since = 0.0
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            with self._lock:
                if self._in_flight == 0:
                    self._since = time.perf_counter()
                self._in_flight += 1
                self.calls += 1
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self.seconds += time.perf_counter() - self._since
        return timed


def _instrumented_campaign(config: CampaignConfig, run_dir: Path, servers: LocalServers | None,
                           call=None) -> tuple[dict, Sections, float, object]:
    """Run a campaign with every engine stage timed; returns metrics, sections (with "model": the wall time any
    model call was in flight, and its call count), wall seconds and the embedder."""
    sections = Sections()
    model = BusyClock()
    if servers is not None:  # start the local targets first, so the embedder sees them and keeps off their cores
        for target in config.targets:
            if is_local(target):
                servers.endpoint(target)
    embedder = get_embedder(config.embedder)
    started = time.perf_counter()
    with sections.timing("embedding model load"):
        embedder.embed(["load the embedding model"])
    embedder.embed = sections.wrap(embedder.embed, "embed")
    chat = model.wrap(call or CachedChat(complete))
    with contextlib.ExitStack() as stack:
        for name in ("add", "restore", "novelty", "is_duplicate", "nearest_similarity", "current_novelty", "record"):
            sections.patch(NoveltyArchive, name, "novelty", stack)
        for name in ("add_attempt", "add_candidate", "save_generation", "set_meta", "get_meta", "finished_keys",
                     "trial_counts", "calls", "candidates", "generations", "attempts", "totals", "outcomes"):
            sections.patch(Store, name, "store", stack)
        sections.patch_context(Store, "transaction", "store", stack)
        for name in ("elite_ids", "_plan_more_trials"):
            sections.patch(campaign_module.Campaign, name, "selection and clustering", stack)
        sections.patch(campaign_module, "judged_attempts", "judge", stack)
        sections.patch(campaign_module, "write_outputs", "outputs", stack)
        original_init = campaign_module.Campaign.__init__

        def init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            if self.rewriter is not None:
                for method in ("rewrite", "lead_in"):
                    if hasattr(self.rewriter, method):
                        setattr(self.rewriter, method, model.wrap(getattr(self.rewriter, method)))
        campaign_module.Campaign.__init__ = init
        stack.callback(setattr, campaign_module.Campaign, "__init__", original_init)
        result = run_campaign(config, run_dir, servers=servers, call=chat, embedder=embedder)
        wall = time.perf_counter() - started
    sections.seconds["model"], sections.counts["model"] = model.seconds, model.calls
    return result.metrics, sections, wall, embedder


def _breakdown(sections: Sections, wall: float) -> dict:
    """Seconds per section; with calls in flight on other threads the engine's own sections overlap the model's
    time, so "other" is what no section covers, at least zero."""
    measured = sum(sections.seconds.values())
    parts = {name: round(seconds, 3) for name, seconds in sorted(sections.seconds.items(), key=lambda kv: -kv[1])}
    parts["other (campaign code, corpus loading)"] = round(max(0.0, wall - measured), 3)
    return parts


def _corpus_subset(scenarios: int, workdir: Path) -> Path:
    """The starter corpus cut to its first `scenarios` scenarios and their bound distractors, so a small
    budget reaches the mutation generations instead of spending itself on seeds."""
    corpus = load_path(starter_corpus_dir())
    keep = corpus.scenarios[:scenarios]
    ids = {s.id for s in keep}
    subset = Corpus(scenarios=keep, distractors=tuple(d for d in corpus.distractors if d.scenario_id in ids))
    path = workdir / f"starter-{scenarios}.yaml"
    path.write_text(dump_project_file(subset))
    return path


def bench_overhead(servers: LocalServers, budget: int, scenarios: int | None, workdir: Path,
                   judge: str = DEFAULT_JUDGE) -> dict:
    paths = () if scenarios is None else (str(_corpus_subset(scenarios, workdir)),)
    log(f"overhead: a {budget}-call campaign on local/smollm2 (novelty search, default strategies, "
        f"{'all' if scenarios is None else scenarios} starter scenarios, judge {judge})")
    config = CampaignConfig(budget_calls=budget, seed=11, scenario_paths=paths, judge=judge)
    metrics, sections, wall, _ = _instrumented_campaign(config, workdir / f"overhead-{judge}", servers)
    model = sections.seconds.get("model", 0.0)
    outside = wall - model
    load = sections.seconds.get("embedding model load", 0.0)
    return {
        "judge": judge,
        "engine_overhead_fraction": round(outside / wall, 4),
        "goal": "<= 0.10",
        "definition": "share of wall time with no model call in flight (the model waiting for the engine)",
        "judge_wait_fraction": round(metrics["judge_wait_seconds"] / wall, 4),
        "judge_wait_definition": "share of wall time the campaign waited for its judge (judging runs on a judge "
                                 "thread beside the calls); issue 23 asks under 0.10 with the reading judge",
        "judge_seconds": round(sections.seconds.get("judge", 0.0), 2),
        "calls_in_flight": calls_in_flight(config.concurrency, config.targets),
        "engine_overhead_fraction_without_model_loading": round((outside - load) / (wall - load), 4),
        "generations": len(metrics["generations"]),
        "mutator_calls": metrics["mutator"]["calls_this_session"],
        "wall_seconds": round(wall, 1),
        "model_seconds": round(model, 1),
        "target_calls": metrics["calls"],
        "model_calls_including_mutator": sections.counts.get("model", 0),
        "seconds_per_target_call": round(wall / max(1, metrics["calls"]), 3),
        "breakdown_seconds": _breakdown(sections, wall),
    }


READER_JUDGE = "embedded-ce-v1"


def _section_error(exc: Exception) -> dict:
    """A part of a section that failed (a judge whose weights are missing), reported without sinking the rest."""
    return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}


def bench_overheads(servers: LocalServers, budget: int, reader_budget: int, scenarios: int | None,
                    workdir: Path) -> dict:
    """The overhead with the default judge (the goal's figure), then a campaign judged by the reading judge, whose
    wait share says how much of its cost the judge thread hides behind the calls."""
    result = bench_overhead(servers, budget, scenarios, workdir)
    try:
        reader = bench_overhead(servers, reader_budget, scenarios, workdir, judge=READER_JUDGE)
    except Exception as exc:  # a judge whose weights are missing must not sink the other sections
        result["reading_judge"] = _section_error(exc)
        return result
    result["reading_judge"] = {k: reader[k] for k in (
        "judge", "judge_wait_fraction", "judge_seconds", "engine_overhead_fraction", "wall_seconds", "model_seconds",
        "target_calls")}
    return result


class ZeroLatencyTarget:
    """An in-process target that answers instantly (off-scope content for odd seeds, a redirect otherwise) and
    notes when it was first called, so start-up (corpus, seed embeddings) is told apart from the steady state."""

    def __init__(self):
        self.first_call: float | None = None

    def __call__(self, route, messages, sampling, seed=None) -> ChatResult:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        if (seed or 0) % 2:
            user = messages[-1]["content"]
            text = f"Sure! Here is what I know. {user} It is a fascinating subject with a long history and many opinions."
        else:
            text = "I'm sorry, I can only help with questions about this service. Is there anything else I can do?"
        return ChatResult(text=text, latency_s=0.0, prompt_tokens=0, completion_tokens=0)


ENGINE_GOAL = 100.0
"""Issue 25 item 9: the engine's own work reaches at least this many attempts/s against the zero-latency target."""


def bench_engine(budget: int, workdir: Path, judge: str = DEFAULT_JUDGE, concurrency: int | None = None) -> dict:
    log(f"engine: a {budget}-call campaign against a zero-latency in-process target (template strategies, real "
        f"embedder, judge {judge}, store, {concurrency or 1} call(s) in flight)")
    config = CampaignConfig(budget_calls=budget, seed=3, strategies=TEMPLATE_STRATEGIES, targets=("instant-target",),
                            mutator="instant-target", judge=judge, concurrency=concurrency)
    target = ZeroLatencyTarget()
    run_dir = workdir / f"engine-{judge}-{budget}-{concurrency or 1}"
    started = time.perf_counter()
    metrics, sections, wall, embedder = _instrumented_campaign(config, run_dir, None, call=target)
    load = sections.seconds.pop("embedding model load", 0.0)
    wall -= load
    startup = (target.first_call or started) - started - load
    with Store.open(run_dir) as store:
        proposed = len(store.candidates())
    return {
        "judge": judge,
        "attempts_per_second": round(metrics["calls"] / wall, 2),
        "attempts_per_second_after_startup": round(metrics["calls"] / max(wall - startup, 1e-9), 2),
        "startup_seconds": round(startup, 2),
        "candidates_per_second": round(proposed / wall, 2),
        "candidates_proposed": proposed,
        "target_calls": metrics["calls"],
        "wall_seconds": round(wall, 2),
        "embedding_model_load_seconds": round(load, 2),
        "embedder": {"backend": getattr(embedder, "backend", None), "threads": getattr(embedder, "threads", None)},
        "breakdown_seconds": _breakdown(sections, wall),
        "embed_cache_hit_rate": round(embedder.hits / max(1, embedder.hits + embedder.misses), 4),
        "texts_embedded": embedder.misses,
        "texts_requested": embedder.hits + embedder.misses,
    }


def bench_engines(budget: int, reader_budget: int, workdir: Path) -> dict:
    """The engine's ceiling with the default judge (the goal's figure), the similarity judge and the reader."""
    default = bench_engine(budget, workdir)
    result = {**default, "goal": f">= {ENGINE_GOAL:g} attempts/s with the default judge, a {budget}-call campaign",
              "goal_met": default["attempts_per_second"] >= ENGINE_GOAL, "other_judges": {}}
    for judge, calls in (("embedded-sim", budget), (READER_JUDGE, reader_budget)):
        try:
            other = bench_engine(calls, workdir, judge)
        except Exception as exc:  # a judge whose weights are missing must not sink the other sections
            result["other_judges"][judge] = _section_error(exc)
            continue
        result["other_judges"][judge] = {k: other[k] for k in (
            "attempts_per_second", "attempts_per_second_after_startup", "target_calls", "wall_seconds")}
        result["other_judges"][judge]["judge_seconds"] = other["breakdown_seconds"].get("judge", 0.0)
    remote = bench_engine(budget, workdir, concurrency=8)
    result["concurrency_8"] = {
        "what": "the default judge with 8 calls in flight, as a remote target with --concurrency 8 runs: each prefix "
                "group is judged as it completes, beside the calls",
        **{k: remote[k] for k in ("attempts_per_second", "attempts_per_second_after_startup", "target_calls",
                                  "wall_seconds")}}
    return result


def _prefix_jobs(per_group: int, groups: int) -> list[tuple[tuple, list[dict], int]]:
    """`groups` prefixes (two insertion points of each of groups/2 scenarios), `per_group` distractors each;
    every job carries its own sampling seed, so both orders decode exactly the same requests."""
    corpus = load_path(starter_corpus_dir())
    texts = [d.text for d in corpus.distractors]
    jobs = []
    scenarios = [s for s in corpus.scenarios if len(s.usable_insertion_points) >= 2]
    for index, scenario in enumerate(scenarios[: max(1, groups // 2)]):
        for point in scenario.usable_insertion_points[:2]:
            for j in range(per_group):
                text = texts[(index * 7 + point * 3 + j) % len(texts)]
                messages = [m.model_dump() for m in scenario.messages_until(point)] + [{"role": "user", "content": text}]
                jobs.append((("local/smollm2", scenario.id, point, ""), messages, len(jobs)))
    return jobs


def bench_prefix(log_dir: Path, per_group: int, groups: int, rounds: int) -> dict:
    """What prompt reuse gains a user: the same seeded requests, one at a time in a campaign's interleaved order
    (scenarios and insertion points taking turns), each reply ending where the model ends it (at most the campaign's
    max_tokens), as in a campaign, against the default server (its slots and its state cache keep earlier prompts)
    and one with a single slot and no cache (it keeps only the previous call's prompt, as llama.cpp does by itself),
    started one after the other on the same CPUs; rounds alternate the two so drift in the machine's load hits
    both. A reused prefix gives exactly the logits of a full evaluation and calls run one at a time, so both decode
    the same replies (their token counts are reported to show it). Also the prompt tokens each evaluated, and the
    speedup if evaluating prompts cost nothing."""
    jobs = _prefix_jobs(per_group, groups)
    by_prefix: dict[tuple, list] = {}
    for job in jobs:
        by_prefix.setdefault(job[0], []).append(job)
    interleaved = [(messages, seed) for batch in zip(*by_prefix.values()) for _, messages, seed in batch]
    log(f"prefix: {len(interleaved)} target calls ({len(by_prefix)} prefixes, interleaved) with and without prompt "
        f"reuse, {rounds} round(s)")
    model = CHAT_MODELS["local/smollm2"]
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    runs: dict[str, list[dict]] = {"reuse": [], "no reuse": []}
    for _ in range(rounds):
        for name, cache_mb, slots in (("reuse", PROMPT_CACHE_MB_DEFAULT, SLOTS_DEFAULT), ("no reuse", 0, 1)):
            port = server_slots._free_port()
            command = server_command(model.weights_path(), model.alias, port, model.context_tokens, threads, cache_mb,
                                     slots=slots)
            runs[name].append(server_slots.measure(command, port, "/v1/models", 1, interleaved,
                                                   CampaignConfig.max_tokens, log_dir / f"prefix-{name}.log",
                                                   ignore_eos=False))
    total = {name: {key: sum(run[key] for run in rows) for key in ("wall_s", "requests", "prompt_tokens",
                                                                    "prompt_tokens_reused", "tokens_decoded")}
             for name, rows in runs.items()}
    rate = {name: t["requests"] / t["wall_s"] for name, t in total.items()}
    evaluated = {name: t["prompt_tokens"] - t["prompt_tokens_reused"] for name, t in total.items()}
    seconds_per_prompt_token = ((total["no reuse"]["wall_s"] - total["reuse"]["wall_s"])
                                / max(1, evaluated["no reuse"] - evaluated["reuse"]))
    no_prompt_cost = total["no reuse"]["wall_s"] - evaluated["no reuse"] * seconds_per_prompt_token
    return {
        "prefix_reuse_speedup": round(rate["reuse"] / rate["no reuse"], 3),
        "goal": ">= 1.5",
        "reuse_calls_per_second": round(rate["reuse"], 3),
        "no_reuse_calls_per_second": round(rate["no reuse"], 3),
        "prompt_tokens_evaluated": evaluated,
        "prompt_tokens": total["reuse"]["prompt_tokens"],
        "tokens_decoded": {name: t["tokens_decoded"] for name, t in total.items()},
        "speedup_if_prompts_were_free": round(total["no reuse"]["wall_s"] / max(no_prompt_cost, 1e-9), 3),
        "calls_per_variant_per_round": len(interleaved),
        "rounds": rounds,
        "prefixes": len(by_prefix),
        "note": f"same requests and seeds, one at a time, replies of at most {CampaignConfig.max_tokens} tokens "
                "ending where the model ends them, against the "
                f"default server ({SLOTS_DEFAULT} slots, {PROMPT_CACHE_MB_DEFAULT} MB state cache) and one with one "
                "slot and no cache; the last figure is the ceiling prompt reuse can reach when decoding the reply "
                "costs what it does",
    }


def bench_batching(log_dir: Path, requests: int) -> dict:
    """Batched decoding: a campaign's mix of requests, each decoded to the same length, through the embedded model's
    server with one slot and with SLOTS_DEFAULT slots (as many in flight), and llama-cpp-python's server (what
    adversary ran before), one after the other on this process's CPUs (bench/server_slots.py)."""
    log(f"batching: {requests} requests of {CampaignConfig.max_tokens} tokens, 1 and {SLOTS_DEFAULT} slots, and "
        "llama-cpp-python's server")
    result = server_slots.compare(CHAT_MODELS["local/smollm2"].weights_path(), None, [1, SLOTS_DEFAULT],
                                  server_slots.campaign_requests(requests), CampaignConfig.max_tokens, log_dir,
                                  python_server=True)
    return {"batched_decoding_speedup": result.pop("batched_decoding_speedup"), "goal": ">= 2.0", **result}


def bench_embed(count: int) -> dict:
    corpus = load_path(starter_corpus_dir())
    base = [d.text for d in corpus.distractors]
    texts = [f"{base[i % len(base)]} (variant {i})" for i in range(count)]
    batched = get_embedder()
    batched.embed(["load the model"])
    started = time.perf_counter()
    batched.embed(texts)
    batched_rate = count / (time.perf_counter() - started)
    single = get_embedder()
    single.embed(["load the model"])
    started = time.perf_counter()
    for text in texts[: count // 4]:
        single.embed([text])
    single_rate = (count // 4) / (time.perf_counter() - started)
    started = time.perf_counter()
    batched.embed(texts)
    cached_rate = count / (time.perf_counter() - started)
    log(f"embed: {count} texts batched ({batched.batch_size} per batch) vs one at a time; then the same texts again (cache)")
    return {
        "texts_per_second_batched": round(batched_rate, 1),
        "texts_per_second_one_at_a_time": round(single_rate, 1),
        "batching_speedup": round(batched_rate / single_rate, 2),
        "texts_per_second_cached": round(cached_rate, 1),
        "backend": getattr(batched, "backend", None),
        "threads": getattr(batched, "threads", None),
        "texts_embedded_twice": batched.misses - count - 1,
    }


def bench_search(servers: LocalServers, budget: int, seeds: tuple[int, ...], scenarios: int | None, workdir: Path) -> dict:
    paths = () if scenarios is None else (str(_corpus_subset(scenarios, workdir)),)
    results: dict[str, list[dict]] = {}
    for mode in ("novelty", "greedy", "random"):
        for seed in seeds:
            log(f"search: {mode}, seed {seed}, {budget} target calls, {'all' if scenarios is None else scenarios} starter scenarios")
            config = CampaignConfig(budget_calls=budget, seed=seed, search=mode, scenario_paths=paths)
            started = time.perf_counter()
            metrics = run_campaign(config, workdir / f"search-{mode}-{seed}", servers=servers).metrics
            breaking = metrics["breaking_members"]["evolved"]
            results.setdefault(mode, []).append({
                "seed": seed,
                "archive_break_rate": metrics["archive_break_rate"]["break_rate"],
                "archive_break_rate_ci95": metrics["archive_break_rate"]["ci95"],
                "seed_break_rate": metrics["seed_break_rate"]["break_rate"],
                "breaking_clusters": metrics["breaking_clusters"],
                "breaking_evolved_members": breaking,
                "target_calls_per_breaking_distractor": round(metrics["calls"] / breaking, 2) if breaking else None,
                "calls": metrics["calls"],
                "wall_seconds": round(time.perf_counter() - started, 1),
            })
    summary = {}
    for mode, runs in results.items():
        rates = [r["archive_break_rate"] for r in runs if r["archive_break_rate"] is not None]
        per_breaking = [r["target_calls_per_breaking_distractor"] for r in runs if r["target_calls_per_breaking_distractor"]]
        summary[mode] = {
            "mean_archive_break_rate": round(float(np.mean(rates)), 4) if rates else None,
            "mean_breaking_clusters_evolved": round(float(np.mean([r["breaking_clusters"]["evolved"] for r in runs])), 2),
            "mean_breaking_clusters_all": round(float(np.mean([r["breaking_clusters"]["all"] for r in runs])), 2),
            "mean_target_calls_per_breaking_distractor": round(float(np.mean(per_breaking)), 2) if per_breaking else None,
            "runs": runs,
        }
    return {"budget_calls": budget, "seeds": list(seeds), "starter_scenarios": scenarios or "all",
            "clustering": CLUSTER_DISTANCE, "modes": summary}


EXTERNAL_DISTRACTORS = Path(__file__).resolve().parents[2] / "shared" / "external" / "topic-following"
"""Human-written distractors (CantTalkAboutThis style) beside the checkout; embedded when present, never copied."""
NEWCOMERS = 400
"""Members admitted (half timed, half checked against brute force) and queries asked at each archive size."""
PARENTS_CHANGED_MEMBERS = 30_000
"""Archive size at which exact and approximate selection are compared: past `EXACT_LIMIT`, where the default
archive turns approximate."""


def _real_distractor_embeddings() -> tuple[np.ndarray, dict]:
    """MiniLM embeddings of the starter corpus's distractors and, when present, the external human-written ones."""
    texts = [d.text for d in load_path(starter_corpus_dir()).distractors]
    sources = {"starter": len(texts)}
    if EXTERNAL_DISTRACTORS.is_dir():
        external = [d.text for d in load_path(EXTERNAL_DISTRACTORS).distractors]
        sources["topic-following"] = len(external)
        texts += external
    texts = sorted(set(texts))
    return get_embedder().embed(texts), {**sources, "distinct": len(texts)}


def _campaign_like_vectors(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit vectors shaped like a campaign's archive: each a random convex mix of two real distractor
    embeddings (as crossover and bridge mutations combine parents) plus a variation drawn from the real
    embeddings' own covariance (a Gaussian combination of their centred rows), never isotropic noise."""
    centred = (real - real.mean(axis=0)) / np.sqrt(len(real))
    vectors = np.empty((count, real.shape[1]), dtype=np.float32)
    for start in range(0, count, 50_000):
        size = min(50_000, count - start)
        weights = rng.dirichlet((1.0, 1.0), size=size).astype(np.float32)
        parents = real[rng.integers(len(real), size=(size, 2))]
        block = np.einsum("np,npd->nd", weights, parents)
        block += rng.standard_normal((size, len(real)), dtype=np.float32) @ centred
        vectors[start:start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def _exact_top(matrix: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Positions of each query's k most similar rows of `matrix` by brute force (`exclude`: a row per query to skip)."""
    scores = queries @ matrix.T
    if exclude is not None:
        scores[np.arange(len(queries)), exclude] = -np.inf
    return np.argpartition(-scores, k, axis=1)[:, :k]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])), 4)


def _member(i: int) -> Candidate:
    return Candidate(id=f"m{i}", text="", style="x", scenario_id=None, operator="seed", generation=0)


def _timed_admissions(archive: NoveltyArchive, newcomers: np.ndarray, first_id: int) -> dict:
    """Latency of admitting each newcomer the way a campaign does (`measure`, then `add` with it)."""
    latencies = []
    for i, vector in enumerate(newcomers):
        started = time.perf_counter()
        archive.add(_member(first_id + i), vector, measured=archive.measure(vector))
        latencies.append(time.perf_counter() - started)
    return {"p50": round(1000 * float(np.median(latencies)), 3), "p95": round(1000 * float(np.quantile(latencies, 0.95)), 3)}


def _archive_at(size: int, vectors: np.ndarray, build_lists: bool) -> tuple[NoveltyArchive, dict]:
    """An archive of `vectors` restored in bulk, timed: with every neighbour list rebuilt by one bulk k-NN
    search (when `build_lists`), then from those lists as a store persists them (placeholders of the right
    shape when not built, which restore at the same speed but leave admissions no list to enter)."""
    members = [_member(i) for i in range(size)]
    timing: dict[str, object] = {}
    if build_lists:
        searched = NoveltyArchive(dimensions=vectors.shape[1])
        started = time.perf_counter()
        searched.restore_many(members, vectors, [1.0] * size)
        timing["restore_members_per_second_bulk_search"] = round(size / (time.perf_counter() - started))
        lists = searched.neighbours()
    else:
        width = min(NoveltyArchive.k_neighbors, size - 1)
        lists = (np.ones((size, width), dtype=np.float32), (np.arange(size)[:, None] + np.arange(1, width + 1)) % size)
        timing["lists"] = ("placeholders at similarity 1 (a bulk k-NN search of every member would take too long "
                           "here): admissions enter no other member's list, and no list recall is measured")
    archive = NoveltyArchive(dimensions=vectors.shape[1])
    started = time.perf_counter()
    archive.restore_many(members, vectors, [1.0] * size, neighbours=lists)
    timing["restore_members_per_second"] = round(size / (time.perf_counter() - started))
    return archive, timing


def _admission_list_recall(archive: NoveltyArchive, newcomers: np.ndarray, first_id: int) -> dict:
    """Admit `newcomers` and check the archive's lists against brute force: the newcomer's own k nearest, and the
    members whose lists it should have entered (more similar than their k-th neighbour just before)."""
    own, entered, admitted = [], [], []
    members = np.stack([archive.vector(e.candidate.id) for e in archive.elites])
    k = archive.k_neighbors
    for i, vector in enumerate(newcomers):
        scores = np.concatenate([members @ vector, np.array(admitted, dtype=np.float32).reshape(-1, len(vector)) @ vector])
        should_enter = np.flatnonzero(scores > archive.neighbours()[0][:, -1] + 1e-5)
        if not archive.add(_member(first_id + i), vector):
            continue
        admitted.append(vector)
        positions = archive.neighbours()[1]
        own.append(len(set(positions[-1]) & set(np.argpartition(-scores, k)[:k])) / k)
        entered.extend(len(archive) - 1 in positions[m] for m in should_enter)
    return {"newcomers": len(own), "own_list_recall": round(float(np.mean(own)), 4),
            "entries_due": len(entered), "entries_made_recall": round(float(np.mean(entered)), 4) if entered else None}


def _parents_changed(real: np.ndarray, size: int, rng: np.random.Generator) -> dict:
    """How often the approximate index changes a seeded selection's parents: the same `size` members and
    trial outcomes, novelty-search parents drawn with one seed from an exact archive and from the default one
    (approximate at this size), both restored by a bulk k-NN search."""
    vectors = _campaign_like_vectors(real, size, rng)
    outcomes = rng.integers(0, 9, size=size)
    chosen, lists = {}, {}
    for name, limit in (("exact", None), ("approximate", EXACT_LIMIT)):
        archive = NoveltyArchive(dimensions=vectors.shape[1], exact_limit=limit)
        archive.restore_many([_member(i) for i in range(size)], vectors, [1.0] * size)
        for i, breaks in enumerate(outcomes):
            archive.record(f"m{i}", int(breaks), 8)
        chosen[name] = select_parents(archive, 2000, "novelty", np.random.default_rng(7))
        lists[name] = archive.neighbours()[1]
    return {"members": size, "parents_drawn": 2000,
            "share_of_parents_changed": round(float(np.mean([a != b for a, b in zip(chosen["exact"], chosen["approximate"])])), 4),
            "neighbour_list_recall": _recall(lists["approximate"], lists["exact"])}


def bench_archive(sizes: tuple[int, ...], lists_up_to: int) -> dict:
    """Restore rate, admission latency and recall of the novelty archive at each size, on vectors made from real
    distractor embeddings."""
    real, sources = _real_distractor_embeddings()
    rng = np.random.default_rng(0)
    log(f"scale: novelty archive at {', '.join(f'{s:,}' for s in sizes)} members ({sources['distinct']} real distractor embeddings mixed)")
    results: dict[str, object] = {"real_embeddings": sources, "k_neighbors": NoveltyArchive.k_neighbors,
                                  "exact_limit": EXACT_LIMIT, "goals": {"restore_members_per_second_at_100000": ">= 10000",
                                  "admission_p50_ms": "<= 2 at 100,000, <= 10 at 1,000,000", "recall_where_approximate": ">= 0.95"}}
    for size in sizes:
        vectors = _campaign_like_vectors(real, size + 2 * NEWCOMERS, rng)
        members, newcomers, queries = vectors[:size], vectors[size:size + NEWCOMERS], vectors[size + NEWCOMERS:]
        archive, timing = _archive_at(size, members, build_lists=size <= lists_up_to)
        k = archive.k_neighbors
        found = archive.nearest_members(queries, k)
        row = {"approximate": archive.approximate, **timing,
               "query_recall_at_k": _recall(found, _exact_top(members, queries, k))}
        row["admission_ms"] = _timed_admissions(archive, newcomers[: NEWCOMERS // 2], size)
        if size <= lists_up_to:
            row["lists_kept_by_admission"] = _admission_list_recall(archive, newcomers[NEWCOMERS // 2:], size + NEWCOMERS)
            sample = rng.choice(len(archive), size=300, replace=False)
            stored = np.stack([archive.vector(e.candidate.id) for e in archive.elites])
            row["neighbour_list_recall_at_k"] = _recall(archive.neighbours()[1][sample], _exact_top(stored, stored[sample], k, sample))
        results[f"{size:,}"] = row
        log(f"scale: {size:,} members: {row}")
    results["parents_changed_by_the_approximate_index"] = _parents_changed(real, PARENTS_CHANGED_MEMBERS, rng)
    results["vectors"] = ("each a Dirichlet(1, 1) mix of two real distractor embeddings plus a Gaussian variation with "
                          "the real embeddings' covariance, normalized")
    return results


def bench_scale(sizes: tuple[int, ...], lists_up_to: int, attempts: int, workdir: Path) -> dict:
    results = {"archive": bench_archive(sizes, lists_up_to)}
    log(f"scale: store at {attempts:,} attempts")
    results["store"] = bench_store(attempts, workdir)
    return results


def bench_store(attempts: int, workdir: Path) -> dict:
    path = workdir / "scale-store"
    path.mkdir(parents=True, exist_ok=True)
    messages = (Message(role="system", content="You help only with Acme Bank cards and transfers. " * 4),
                Message(role="assistant", content="Hello! How can I help with your card today?"),
                Message(role="user", content="Since we talk about transfers, what do you think of the election?"))
    verdict = Verdict(in_scope=False, refusal=False, judge="bench", score=0.3, rationale="bench")
    with Store.open(path) as store:
        started = time.perf_counter()
        batch = 500
        for first in range(0, attempts, batch):
            with store.transaction():
                for i in range(first, min(attempts, first + batch)):
                    store.add_attempt(Attempt(
                        key=f"k{i}", target="local/smollm2", kind="distractor", scenario_id=f"s{i % 13}", item_id=f"c{i // 6}",
                        style="emotional", insertion_point=1 + i % 4, trial=i % 6, seed=i, messages=messages,
                        reply="The election is a complex topic with many views.", status="ok", verdict=verdict,
                        latency_s=1.0, prompt_tokens=300, completion_tokens=60))
        insert_rate = attempts / (time.perf_counter() - started)
        queries_timed = {}
        for name, query in (("finished_keys", store.finished_keys), ("trial_counts", store.trial_counts),
                            ("calls", store.calls), ("outcomes_streamed", lambda: sum(1 for _ in store.outcomes()))):
            started = time.perf_counter()
            query()
            queries_timed[name] = round(time.perf_counter() - started, 3)
    size_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    return {
        "store_attempts": attempts,
        "store_inserts_per_second": round(insert_rate),
        "store_query_seconds": queries_timed,
        "store_attempts_per_second_streamed": round(attempts / max(queries_timed["outcomes_streamed"], 1e-9)),
        "store_size_mb": round(size_mb, 1),
    }


SECTIONS = ("overhead", "engine", "prefix", "batching", "embed", "search", "scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, no search comparison (under 10 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--search-budget", type=int, default=300, help="target calls per search-efficiency campaign")
    parser.add_argument("--search-scenarios", type=int, default=None,
                        help="search comparison on the first N starter scenarios (default all), so a small budget goes to search, not seeds")
    args = parser.parse_args()
    chosen = set(args.only or SECTIONS)
    if args.quick and not args.only:
        chosen.discard("search")
    started = time.perf_counter()
    results: dict[str, object] = {"quick": args.quick, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="adversary-bench-") as tmp, LocalServers(log_dir=Path(tmp)) as servers:
        workdir = Path(tmp)
        sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
        sections: dict[str, Callable[[], dict]] = {
            "engine": lambda: bench_engines(1500 if args.quick else 3000, 100 if args.quick else 300, workdir),
            "embed": lambda: bench_embed(256 if args.quick else 1024),
            "scale": lambda: bench_scale(sizes, 100_000, 100_000 if args.quick else 1_000_000, workdir),
            "prefix": lambda: bench_prefix(workdir, per_group=4 if args.quick else 6, groups=8 if args.quick else 12,
                                           rounds=1 if args.quick else 2),
            "batching": lambda: bench_batching(workdir, 32 if args.quick else 64),
            "overhead": lambda: bench_overheads(servers, 120 if args.quick else 400, 60 if args.quick else 400,
                                                4 if args.quick else None, workdir),
            "search": lambda: bench_search(servers, args.search_budget, (0, 1, 2), args.search_scenarios, workdir),
        }
        section_seconds = {}
        for name, section in sections.items():
            if name in chosen:
                section_started = time.perf_counter()
                results[name] = section()
                section_seconds[name] = round(time.perf_counter() - section_started, 1)
        if args.quick and "search" not in chosen:
            results["search"] = {"skipped": "--quick; run without it (or --only search) for the three-seed comparison"}
    results["section_seconds"] = section_seconds
    results["duration_seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(results))
    else:
        _print_text(results)


def _print_text(results: dict, indent: int = 0) -> None:
    for key, value in results.items():
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            _print_text(value, indent + 2)
        else:
            print(" " * indent + f"{key}: {json.dumps(value) if isinstance(value, list) else value}")


if __name__ == "__main__":
    main()
