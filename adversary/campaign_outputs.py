"""What a finished (or stopped) campaign writes: archive.jsonl, the elites with their lineage and confirmation
trials, and metrics.json, the figures `adversary run` prints and reports read (seed and archive break rates,
breaking clusters, mutation yield), each defined in the file itself."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from adversary import __version__
from adversary.core.archive import Candidate, Elite, NoveltyArchive
from adversary.core.clusters import CLUSTER_DISTANCE, cluster_labels, clusters_without_seeds, count_clusters
from adversary.core.metrics import summarize_attempts
from adversary.core.selection import CREDIBLE_PROBABILITY, breaks_credibly
from adversary.core.stats import wilson_interval
from adversary.fileio import write_json_atomic, write_text_atomic
from adversary.judges.measured import measured_agreement

if TYPE_CHECKING:
    from adversary.campaign import Campaign

MUTATION_OUTCOMES = ("calls", "usable", "duplicates", "drifted", "inapplicable")
CONFIRM_TRIAL_BASE = 1000
"""Confirmation trials are numbered from here, so they never collide with the search's own trials."""


def generation_stats(archive: NoveltyArchive, elite_ids: list[str], generation: int, calls: int) -> dict:
    """Search progress after a generation: archive (elite) size, the elites' best and mean break rate (raw, and as
    posterior means, which the live progress shows because a raw 4/4 reads as 100% beside a 15/16), QD score."""
    elites = [archive.get(i) for i in elite_ids]
    rates = [e.breaks / e.trials for e in elites if e.trials]
    posterior_means = [e.fitness.mean for e in elites if e.trials]
    return {
        "generation": generation,
        "calls": calls,
        "members": len(archive),
        "archive_size": len(elites),
        "elite_calls_per_trial": sum(e.candidate.calls_per_trial for e in elites),
        "best_break_rate": max(rates) if rates else None,
        "best_posterior_mean": max(posterior_means, default=None),
        "mean_break_rate": float(np.mean(rates)) if rates else None,
        "mean_posterior_mean": float(np.mean(posterior_means)) if posterior_means else None,
        "qd_score": float(sum(posterior_means)),
    }


def _pooled(counts: list[tuple[int, int]]) -> dict:
    """Pooled break rate with its Wilson interval over (breaks, trials) pairs."""
    breaks = sum(b for b, _ in counts)
    trials = sum(t for _, t in counts)
    lo, hi = wilson_interval(breaks, trials)
    return {"break_rate": breaks / trials if trials else None, "ci95": [lo, hi], "breaks": breaks, "trials": trials,
            "members": len(counts), "members_with_trials": sum(1 for _, t in counts if t)}


def mutation_summary(per_operator: dict[str, dict[str, int]], archive: NoveltyArchive) -> dict:
    """Totals and per-operator mutation outcomes, with each operator's usable fraction and the pooled
    search break rate of the members it produced."""
    produced: dict[str, list[tuple[int, int]]] = {}
    for elite in archive.elites:
        produced.setdefault(elite.candidate.operator, []).append((elite.breaks, elite.trials))
    by_operator = {}
    for name, counts in sorted(per_operator.items()):
        by_operator[name] = dict(counts, usable_fraction=counts["usable"] / counts["calls"] if counts["calls"] else None,
                                 members=_pooled(produced.get(name, [])))
    totals = {key: sum(c[key] for c in per_operator.values()) for key in MUTATION_OUTCOMES}
    totals["usable_fraction"] = totals["usable"] / totals["calls"] if totals["calls"] else None
    return dict(totals, by_operator=by_operator)


def _lineage(archive: NoveltyArchive, candidate: Candidate) -> list[str]:
    """Ids from the candidate back to its seed along first parents."""
    chain, seen = [], {candidate.id}
    while candidate.parents and candidate.parents[0] in archive and candidate.parents[0] not in seen:
        candidate = archive.get(candidate.parents[0]).candidate
        seen.add(candidate.id)
        chain.append(candidate.id)
    return chain


def _breaking_clusters(archive: NoveltyArchive, elites: list[Elite]) -> int:
    breaking = [archive.vector(e.candidate.id) for e in elites if breaks_credibly(e)]
    return count_clusters(np.stack(breaking)) if breaking else 0


def _all_breaking_clusters(archive: NoveltyArchive) -> dict[str, int]:
    """Clusters among every credibly breaking member (`all`), and those of them that hold no credibly breaking seed
    (`without_seeds`: what the search found beyond variations on seeds that already broke), from one clustering."""
    breaking = [e for e in archive.elites if breaks_credibly(e)]
    if not breaking:
        return {"all": 0, "without_seeds": 0}
    labels = cluster_labels(np.stack([archive.vector(e.candidate.id) for e in breaking]))
    return {"all": int(labels.max()) + 1,
            "without_seeds": clusters_without_seeds(labels, [e.candidate.operator == "seed" for e in breaking])}


def write_outputs(campaign: Campaign, stop_reason: str, wall_seconds: float) -> dict:
    """archive.jsonl (the elites) and metrics.json in the run directory; returns the metrics."""
    store, archive, config = campaign.store, campaign.archive, campaign.config
    elite_ids = store.get_meta("confirming") or campaign.elite_ids()
    confirmed = store.trial_counts(first_trial=CONFIRM_TRIAL_BASE)
    cluster_of = {}
    evaluated = [e for e in archive.elites if e.trials]
    if evaluated:
        labels = cluster_labels(np.stack([archive.vector(e.candidate.id) for e in evaluated]))
        cluster_of = {e.candidate.id: int(label) for e, label in zip(evaluated, labels)}
    cluster_sizes = np.bincount(list(cluster_of.values())) if cluster_of else np.zeros(0, dtype=int)
    examples: dict[str, str] = {}
    for attempt in store.attempts("kind = 'distractor' AND status = 'ok' AND in_scope = 0"):
        examples.setdefault(attempt.item_id, attempt.reply or "")
    lines = []
    for cid in sorted(elite_ids, key=lambda i: -archive.get(i).fitness.mean):
        elite = archive.get(cid)
        cand = elite.candidate
        scenario_id, point = campaign.places[cid]
        c_breaks, c_trials = confirmed.get(cid, (0, 0))
        lines.append(json.dumps({
            "id": cid, "text": cand.text, "bridge": cand.bridge, "style": cand.style, "operator": cand.operator,
            "generation": cand.generation, "parents": list(cand.parents), "lineage": _lineage(archive, cand),
            "scenario_id": scenario_id, "insertion_turn": point, "breaks": elite.breaks, "trials": elite.trials,
            "break_rate": elite.break_rate, "ci95": list(elite.ci95), "posterior_mean": elite.fitness.mean,
            "confirmed": {"breaks": c_breaks, "trials": c_trials, "break_rate": c_breaks / c_trials if c_trials else None,
                          "ci95": list(wilson_interval(c_breaks, c_trials))},
            "novelty_at_admission": elite.novelty, "cluster": cluster_of.get(cid),
            "cluster_members": int(cluster_sizes[cluster_of[cid]]) if cid in cluster_of else None,
            "example_off_scope_reply": examples.get(cid),
        }, ensure_ascii=False))
    write_text_atomic(campaign.run_dir / "archive.jsonl", "\n".join(lines) + ("\n" if lines else ""))

    seeds = [e for e in archive.elites if e.candidate.operator == "seed"]
    evolved = [e for e in archive.elites if e.candidate.operator != "seed"]
    first_trials = store.trial_counts(end_trial=config.initial_trials)
    evolved_elites = [i for i in elite_ids if archive.get(i).candidate.operator != "seed"]
    mutations = mutation_summary(campaign.mutations, archive)
    rewriter = campaign.rewriter
    mutator = {"model": config.mutator, "calls_this_session": getattr(rewriter, "calls", 0),
               "failed_this_session": getattr(rewriter, "failures", 0)}
    totals = store.totals()
    metrics = {
        "kind": "run",
        "adversary_version": __version__,
        "judge": {"name": campaign.judge.name, "measured_agreement": measured_agreement(campaign.judge.name)},
        "config": asdict(config),
        "stop_reason": stop_reason,
        "targets": summarize_attempts(store.outcomes()),
        "archive_size": len(elite_ids),
        "members": len(archive),
        "calls": totals["calls"],
        "errors": totals["errors"],
        "seed_break_rate": _pooled([first_trials.get(e.candidate.id, (0, 0)) for e in seeds]),
        "archive_break_rate": _pooled([confirmed.get(i, (0, 0)) for i in evolved_elites]),
        "elites_confirmed_break_rate": _pooled([confirmed.get(i, (0, 0)) for i in elite_ids]),
        "evolved_search_break_rate": _pooled([(e.breaks, e.trials) for e in evolved]),
        "evolved_first_trials_break_rate": _pooled([first_trials.get(e.candidate.id, (0, 0)) for e in evolved]),
        "breaking_clusters": {"seeds": _breaking_clusters(archive, seeds), "evolved": _breaking_clusters(archive, evolved),
                              **_all_breaking_clusters(archive)},
        "breaking_members": {"seeds": sum(map(breaks_credibly, seeds)), "evolved": sum(map(breaks_credibly, evolved))},
        "mutations": mutations,
        "mutator": mutator,
        "generations": [g[2] for g in store.generations() if g[2]],
        "wall_seconds": round(wall_seconds, 2),
        "judge_wait_seconds": round(campaign.judge_wait_seconds, 2),
        "total_wall_seconds": campaign.record_wall_time(wall_seconds),
        "cost_usd": round(campaign.spent_usd, 6),
        "definitions": {
            "archive": "the elites: among credibly breaking members, the fittest (posterior mean - 1 sd) of each "
                       "embedding cluster",
            "credibly_breaking": f"a member whose Beta(1 + breaks, 1 + holds) posterior puts probability at least "
                                 f"{CREDIBLE_PROBABILITY} on a break rate above 0.5 (search trials)",
            "clusters": f"average-linkage agglomerative clustering of unit embeddings cut at cosine distance {CLUSTER_DISTANCE}",
            "seed_break_rate": f"pooled breaks / valid trials of every seed over its first {config.initial_trials} trials "
                               "(trials every seed gets, so no selection bias), measured in this run",
            "archive_break_rate": "pooled breaks / valid confirmation trials of the evolved elites: fresh trials run after "
                                  "the search chose them, so free of the winner's curse",
            "elites_confirmed_break_rate": "as archive_break_rate, over every elite including seeds that stayed best",
            "evolved_search_break_rate": "pooled breaks / valid search trials of every evolved member (selection-biased)",
            "evolved_first_trials_break_rate": f"as seed_break_rate, over every evolved member's first "
                                               f"{config.initial_trials} trials: what the mutations produce, before "
                                               "the search picks among them, comparable with the seeds' rate",
            "breaking_clusters": "clusters among credibly breaking members; without_seeds: those of them that hold no "
                                 "credibly breaking seed (regions the search reached beyond the seeds that broke)",
            "breaking_members": "credibly breaking members",
            "trials": "each trial of a member uses the next of its scenario's insertion points, cycling",
            "wall_seconds": "this session's wall time (a resumed run's earlier sessions are not in it)",
            "judge_wait_seconds": "this session's time spent waiting for the judge: replies are judged on a judge "
                                  "thread while the next calls run, so this is the judging no call could hide",
            "total_wall_seconds": "wall time over every session of the run; a killed session counts up to its "
                                  "last saved generation",
        },
    }
    write_json_atomic(campaign.run_dir / "metrics.json", metrics)
    return metrics
