"""Read what a report shows from a run directory: metrics.json, the store, archive.jsonl, embeddings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adversary.core.clusters import CLUSTER_DISTANCE, count_clusters
from adversary.core.stats import BetaPosterior, wilson_interval
from adversary.errors import AdversaryError
from adversary.judges.measured import measured_agreement
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL
from adversary.models.embedder import get_embedder
from adversary.reports._analysis import SELF_BLEU_N, mean_pairwise_cosine_distance, pca_2d, self_bleu, transfer_matrix
from adversary.store import STORE_FILENAME, Store

HARDEST = 10


class ReportError(AdversaryError):
    """A run directory cannot be reported on."""


@dataclass
class RunReport:
    """Everything one run contributes to a report."""

    name: str
    run_dir: Path
    metrics: dict
    totals: dict
    hardest: list[dict] = field(default_factory=list)
    transfer: dict | None = None
    diversity: dict = field(default_factory=dict)
    archive_map: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.metrics.get("kind", "eval")


def _hardest(store: Store, pooled: dict[str, tuple[int, int]]) -> list[dict]:
    """The distractors with the highest posterior break rate over all targets, with real off-scope replies."""
    ranked = sorted(pooled.items(), key=lambda kv: (-BetaPosterior(kv[1][0], kv[1][1] - kv[1][0]).mean, kv[0]))
    hardest = []
    for item, (breaks, trials) in ranked[:HARDEST]:
        replies: dict[str, str] = {}
        text = bridge = style = scenario = None
        for attempt in store.attempts("item_id = ? AND kind = 'distractor' AND status = 'ok'", (item,)):
            text, style, scenario = attempt.messages[-1].content, attempt.style, attempt.scenario_id
            if attempt.calls == 2:
                bridge = attempt.messages[-3].content
            if attempt.broke and attempt.target not in replies:
                replies[attempt.target] = attempt.reply or ""
        lo, hi = wilson_interval(breaks, trials)
        hardest.append({"item": item, "text": text, "bridge": bridge, "style": style, "scenario": scenario,
                        "breaks": breaks, "trials": trials, "break_rate": breaks / trials if trials else None,
                        "ci95": [lo, hi], "replies": replies})
    return hardest


def _diversity(texts: list[str], vectors: np.ndarray) -> dict:
    return {
        "count": len(texts),
        "mean_pairwise_cosine_distance": mean_pairwise_cosine_distance(vectors) if len(texts) else None,
        "self_bleu": self_bleu(texts),
        "clusters": count_clusters(vectors) if len(texts) else 0,
    }


def _archive_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "archive.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def collect(run_dir: Path, embed: bool = True) -> RunReport:
    """Read one run directory. `embed=False` skips the figures that need sentence embeddings."""
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists() or not (run_dir / STORE_FILENAME).exists():
        raise ReportError(f"{run_dir}: no metrics.json and store.sqlite; is it an adversary run directory?")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{metrics_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    judge = metrics.get("judge")
    if isinstance(judge, dict) and not judge.get("measured_agreement") and judge.get("name"):
        # A run made before its judge was calibrated shows the judge's figures as measured since.
        judge["measured_agreement"] = measured_agreement(judge["name"])
    with Store(run_dir / STORE_FILENAME) as store:
        totals = store.totals()
        counts = store.break_counts_by_target()
        report = RunReport(name=run_dir.name, run_dir=run_dir, metrics=metrics, totals=totals)
        pooled = store.trial_counts()
        report.hardest = _hardest(store, pooled)
        if len(counts) > 1:
            report.transfer = transfer_matrix(counts)
        if embed:
            _add_embedding_figures(report, store, pooled)
    return report


def _add_embedding_figures(report: RunReport, store: Store, pooled: dict[str, tuple[int, int]]) -> None:
    """Diversity of seeds versus archive, and the archive's 2-D map (runs); diversity of the set (evals)."""
    config = report.metrics.get("config", {})
    embedder = get_embedder(config.get("embedder", DEFAULT_EMBEDDING_MODEL), api_base=config.get("api_base"))
    if report.kind == "run":
        members = store.candidates(admitted_only=True)
        seeds = [m for m in members if m["operator"] == "seed"]
        archive = _archive_rows(report.run_dir)
        texts = {m["id"]: (f"{m['bridge']} {m['text']}" if m.get("bridge") else m["text"]) for m in members}
        ids = list(texts)
        missing = [texts[m["id"]] for m in members if m["vector"] is None]
        fresh = iter(embedder.embed(missing)) if missing else iter(())
        # The campaign stored each member's vector; only stores from before schema 4 need embedding again.
        vectors = np.stack([m["vector"] if m["vector"] is not None else next(fresh) for m in members]) if ids else np.zeros((0, 1))
        position = {cid: i for i, cid in enumerate(ids)}
        seed_ids = [m["id"] for m in seeds]
        elite_ids = [row["id"] for row in archive if row["id"] in position]
        report.diversity = {
            "seeds": _diversity([texts[i] for i in seed_ids], vectors[[position[i] for i in seed_ids]]),
            "archive": _diversity([texts[i] for i in elite_ids], vectors[[position[i] for i in elite_ids]]),
        }
        points = pca_2d(vectors) if ids else np.zeros((0, 2))
        elites = set(elite_ids)
        operators = {m["id"]: m["operator"] for m in members}
        for cid, (x, y) in zip(ids, points):
            breaks, trials = pooled.get(cid, (0, 0))
            if trials:
                report.archive_map.append({"x": float(x), "y": float(y), "break_rate": breaks / trials, "trials": trials,
                                           "seed": operators[cid] == "seed", "elite": cid in elites})
    else:
        texts: dict[str, str] = {}
        for attempt in store.attempts("kind = 'distractor' AND status = 'ok' AND trial = 0"):
            texts.setdefault(attempt.item_id, attempt.messages[-1].content)
        unique = sorted(set(texts.values()))
        vectors = embedder.embed(unique) if unique else np.zeros((0, 1))
        report.diversity = {"distractors": _diversity(unique, vectors)}
    report.diversity["definitions"] = {
        "mean_pairwise_cosine_distance": "mean of 1 - cosine over all pairs of sentence embeddings (higher = more diverse)",
        "self_bleu": f"mean BLEU-{SELF_BLEU_N} of each text against all others (lower = more diverse)",
        "clusters": f"average-linkage clusters at cosine distance {CLUSTER_DISTANCE}",
    }
