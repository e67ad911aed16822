"""The Python API: load corpora, evaluate targets, run and resume campaigns, read results and export them.

Every function returns the records the CLI uses, prints nothing, and raises `adversary.errors.AdversaryError`
subclasses (ConfigError, CorpusError, ModelError, StoreError) for input a user can fix. The CLI is a thin layer
over these functions.

    from adversary import api
    corpus = api.load_corpus()                                  # the starter corpus
    result = api.evaluate(out="runs/nb", trials=1, max_distractors=4)
    run = api.read_run("runs/nb")                               # metrics, archive members, attempts
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from adversary.campaign import RESUMABLE_CHANGES, CampaignConfig, CampaignProgress, CampaignResult, load_resume_config
from adversary.campaign import run_campaign as _run_campaign
from adversary.campaign_config import build_config, load_config_file
from adversary.corpus import load_corpus as _load_corpus
from adversary.corpus import starter_corpus_dir
from adversary.errors import ConfigError
from adversary.evaluation import METRICS_FILENAME, EvalConfig, EvalProgress, EvalResult, run_eval
from adversary.export import ExportConfig, Exporter, ExportResult, check_sources
from adversary.export.promptfoo import SuiteOptions
from adversary.records import Attempt, Corpus
from adversary.store import STORE_FILENAME, Store, StoreError

ARCHIVE_FILENAME = "archive.jsonl"

__all__ = ["ArchiveMember", "RunResults", "evaluate", "export", "load_corpus", "read_run", "resume", "run_campaign"]


def load_corpus(*paths: str | Path) -> Corpus:
    """Scenarios and distractors from project YAML/JSON, CantTalkAboutThis JSONL/CSV or OffTopicEval .md files or
    folders; no paths: the starter corpus.

    Raises:
        CorpusError: a file, row or field is malformed (named in the message).
    """
    return _load_corpus(Path(p) for p in paths or (starter_corpus_dir(),))


def evaluate(targets: Sequence[str] = ("local/smollm2",), *, out: str | Path, scenarios: Sequence[str | Path] = (),
             on_attempt: Callable[[Attempt], None] | None = None, **options) -> EvalResult:
    """Send the corpus's distractors and in-scope controls to `targets`, judge every reply, store all in `out`.

    Running it again with the same `out` and options resumes. `options` are EvalConfig fields (trials, seed, judge,
    api_base, temperature, max_tokens, max_distractors, ...); `on_attempt` sees every finished attempt.

    Raises:
        ConfigError: an unknown option or a value out of range.
    """
    config = _config(EvalConfig, {"targets": tuple(targets), "scenario_paths": tuple(str(p) for p in scenarios), **options})
    return run_eval(config, Path(out), EvalProgress(on_attempt=on_attempt or (lambda attempt: None)))


def _config(kind, values: dict):
    known = set(kind.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; options: {', '.join(sorted(known))}")
    return kind(**values)


def _progress(progress: CampaignProgress | Callable[[dict], None] | None) -> CampaignProgress:
    if progress is None or isinstance(progress, CampaignProgress):
        return progress or CampaignProgress()
    return CampaignProgress(on_generation=progress)


def run_campaign(config: CampaignConfig | dict | str | Path | None = None, *, out: str | Path,
                 progress: CampaignProgress | Callable[[dict], None] | None = None, **overrides) -> CampaignResult:
    """Run a search campaign into `out`: from a CampaignConfig, a dict of its fields, or a YAML config file, with
    `overrides` (CampaignConfig fields) on top. `progress` is called with each generation's stats (or pass a
    CampaignProgress for every callback).

    Raises:
        ConfigError: a bad config (naming the file, line and field) or an unknown field.
        StoreError: `out` already holds this campaign (use `resume`).
    """
    path, root = None, None
    if isinstance(config, CampaignConfig):
        values = dict(config.__dict__)
    elif isinstance(config, dict):
        values = dict(config)
    elif config is not None:
        path = Path(config)
        values, root = load_config_file(path)
    else:
        values = {}
    values.update(overrides)
    checked = build_config(values, path, root)
    return _run_campaign(checked, Path(out), _progress(progress))


def resume(run_dir: str | Path, *, progress: CampaignProgress | Callable[[dict], None] | None = None,
           **changes) -> CampaignResult:
    """Continue the campaign stored in `run_dir`; only budgets and call limits may change (`changes`).

    Raises:
        ConfigError: a change to anything else.
        StoreError: `run_dir` holds no campaign.
    """
    base = load_resume_config(Path(run_dir))
    fixed = sorted(k for k in changes if k not in RESUMABLE_CHANGES)
    if fixed:
        raise ConfigError(f"a resumed campaign may change only {', '.join(sorted(RESUMABLE_CHANGES))}, not {fixed[0]!r}")
    config = build_config({**base.__dict__, **changes})
    return _run_campaign(config, Path(run_dir), _progress(progress), resume=True)


@dataclass(frozen=True)
class ArchiveMember:
    """One elite of a campaign's archive (a line of archive.jsonl) with every trial the run made of it."""

    id: str
    text: str
    bridge: str | None
    style: str | None
    scenario_id: str
    insertion_turn: int
    breaks: int
    trials: int
    break_rate: float
    ci95: tuple[float, float]
    confirmed: dict
    """Fresh confirmation trials after the search chose it: breaks, trials, break_rate, ci95."""
    record: dict
    """The whole archive.jsonl line (lineage, operator, cluster, novelty, ...)."""
    attempts: tuple[Attempt, ...]
    """Every target call of this distractor: messages, reply, verdict, latency, tokens."""


@dataclass(frozen=True)
class RunResults:
    """What a run directory holds: its kind (eval or run), metrics, archive (campaigns) and attempts."""

    run_dir: Path
    kind: str
    metrics: dict
    archive: tuple[ArchiveMember, ...]
    corpus: Corpus
    attempts: tuple[Attempt, ...]

    def attempts_of(self, item_id: str) -> tuple[Attempt, ...]:
        """The attempts of one distractor or control turn."""
        return tuple(a for a in self.attempts if a.item_id == item_id)


def read_run(run_dir: str | Path) -> RunResults:
    """The results stored in `run_dir` by `evaluate`, `run_campaign` or the CLI.

    Raises:
        StoreError: `run_dir` holds no adversary run (naming what to run first).
    """
    run_dir = Path(run_dir)
    if not (run_dir / STORE_FILENAME).exists():
        raise StoreError(f"{run_dir} holds no adversary run ({STORE_FILENAME}); run `adversary eval` or `adversary run` first")
    with Store(run_dir / STORE_FILENAME) as store:
        kind = str(store.get_meta("kind") or "eval")
        attempts = tuple(store.attempts())
        corpus = store.load_corpus()
    metrics_path = run_dir / METRICS_FILENAME
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
    archive: list[ArchiveMember] = []
    archive_path = run_dir / ARCHIVE_FILENAME
    if archive_path.exists():
        by_item: dict[str, list[Attempt]] = {}
        for attempt in attempts:
            by_item.setdefault(attempt.item_id, []).append(attempt)
        for line in archive_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                archive.append(ArchiveMember(
                    id=row["id"], text=row["text"], bridge=row.get("bridge"), style=row.get("style"),
                    scenario_id=row["scenario_id"], insertion_turn=row["insertion_turn"], breaks=row["breaks"],
                    trials=row["trials"], break_rate=row["break_rate"], ci95=tuple(row["ci95"]),
                    confirmed=row.get("confirmed") or {}, record=row, attempts=tuple(by_item.get(row["id"], ()))))
    return RunResults(run_dir=run_dir, kind=kind, metrics=metrics, archive=tuple(archive), corpus=corpus, attempts=attempts)


def export(run_dir: str | Path, fmt: str, out: str | Path | None = None, *, force: bool = False,
           provider: str | None = None, api_base: str | None = None, judge_url: str | None = None,
           on_message: Callable[[str], None] = lambda text: None,
           on_checked: Callable[[int, int], None] = lambda done, total: None, **options) -> ExportResult:
    """Export the distractors that broke targets in `run_dir` as `fmt` (sft, dpo, canttalkaboutthis, hf, promptfoo)
    into `out` (default RUN_DIR/export-FMT), written all at once.

    `options` are ExportConfig fields (min_break_rate, max_per_scenario, controls_ratio, dialogue_controls,
    test_fraction, seed, writer_model, judge, verify). `provider` is the promptfoo suite's provider (default: the
    run's target).

    Raises:
        ConfigError: a bad option, an unknown provider, or an existing `out` without `force`.
        StoreError: `run_dir` holds no adversary run.
    """
    from adversary.export.writer import DSPyReplyWriter
    from adversary.judges import build_judge
    from adversary.models.chat import resolve_route
    from adversary.models.embedded import is_local
    from adversary.models.embedder import get_embedder
    from adversary.models.local_server import LocalServers

    config = _config(ExportConfig, {"fmt": fmt, **options})
    config.validate()
    run_dir = Path(run_dir)
    out_dir = Path(out) if out is not None else run_dir / f"export-{fmt}"
    if not (run_dir / STORE_FILENAME).exists():
        raise StoreError(f"{run_dir} holds no adversary run ({STORE_FILENAME}); run `adversary eval` or `adversary run` first")
    with Store(run_dir / STORE_FILENAME) as store:
        run_config = store.get_meta("config") or {}
    suite = SuiteOptions(provider=provider, api_base=api_base, **({"judge_url": judge_url} if judge_url else {}))
    if fmt == "promptfoo":
        from adversary.export.promptfoo import check_provider

        check_provider(suite, run_config)
    check_sources(run_dir, out_dir, force)
    config = replace(config, judge=config.judge or run_config.get("judge", "embedded"))
    embedder = get_embedder(run_config.get("embedder", "local/minilm"), api_base=api_base)
    with LocalServers(log_dir=run_dir) as servers:
        judge = build_judge(config.judge, servers=servers, api_base=api_base, embedder=embedder)
        verifier = build_judge(config.verify, servers=servers, api_base=api_base, embedder=embedder) if config.verify else None
        writer = None
        if fmt != "promptfoo":
            writer_api_base = None if is_local(config.writer_model) else api_base
            writer = DSPyReplyWriter(resolve_route(config.writer_model, servers, writer_api_base))
        exporter = Exporter(config, run_dir, out_dir, judge=judge, writer=writer, embedder=embedder, verifier=verifier,
                            progress=on_message, on_checked=on_checked, suite_options=suite)
        return exporter.run()
