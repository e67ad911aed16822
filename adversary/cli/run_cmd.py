"""`adversary run` and `adversary init`: search campaigns from a config file and flags."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adversary.campaign import DEFAULT_STRATEGIES, RESUMABLE_CHANGES, CampaignProgress, load_resume_config, run_campaign
from adversary.campaign_config import build_config, load_config_file
from adversary.cli.log_lines import CampaignStatus, LogLines
from adversary.core.selection import SEARCH_MODES
from adversary.errors import ConfigError
from adversary.fileio import write_text_atomic
from adversary.judges import JUDGE_HELP
from adversary.reports import wall_time_text, write_report

EXAMPLE_CONFIG = """\
# adversary campaign config. Run it with:  adversary run campaign.yaml
# Every key is optional; command-line flags override what is set here.

# Scenario files or folders: project .yaml/.json, CantTalkAboutThis .jsonl/.csv, OffTopicEval .md.
# Empty: the starter corpus that ships with adversary.
scenario_paths: []

# Models are litellm names. local/smollm2 is the embedded offline model (no API key, no network);
# local/smollm2+PATH is it with the LoRA adapter of a finetune output folder (or a GGUF LoRA file);
# a tail @SCALE (local/smollm2-guarded@0.5) multiplies an adapter's update by SCALE.
# Examples: openai/gpt-4o-mini (OPENAI_API_KEY), ollama/llama3.1, or a bare name with api_base.
targets: [local/smollm2]
mutator: local/smollm2          # rewrites distractors for the LLM-backed strategies
judge: embedded                 # embedded | embedded:WEIGHTS.json | embedded-sim | keyword | a litellm model | topic-control:MODEL
embedder: local/minilm          # novelty space: local/minilm or a litellm embedding model
api_base: null                  # OpenAI-compatible base URL for non-local models

search: novelty                 # novelty (novelty search with local competition) | greedy | random
# Mutation operators (adversary.strategies entry points; plugins add more). Also available: llm-subtler, and
# llm-pivot, the one that changes the request itself (with explore_share, for targets that resist the seeds).
strategies: [{strategies}]
seed: 0

# Budgets: the run stops cleanly at the first one reached; --resume continues with a larger one.
budget_calls: 1500              # target calls
budget_usd: null                # provider cost as litellm prices it
max_minutes: null

candidates_per_generation: 8
initial_trials: 2               # trials every new candidate gets, per target
max_trials: 8                   # promising candidates get more, up to this
elite_max_trials: null          # the current elites keep being raced up to this (null: twice max_trials), so a lucky 8/8 can regress
k_neighbors: 5                  # novelty = mean cosine distance to the k nearest archive members
duplicate_threshold: 0.92       # cosine similarity at which a candidate duplicates a member
min_parent_similarity: 0.3      # a mutant less similar than this to its parent has drifted away
explore_share: 0.0              # share of parents drawn from every member, not only the breaking ones: raise it
                                # (e.g. 0.5) against a target that resists nearly every seed
temperature: 0.7
max_tokens: 96

# Call limits (may change on --resume): calls in flight at once (threads; null: one per local server slot,
# ADVERSARY_LOCAL_SLOTS, when every target is local, else 1) and requests per minute to each target.
concurrency: null
requests_per_minute: null
router: null                    # litellm Router YAML (model_list): one target name spread over several deployments

# The archive is the fittest breaking member of each embedding cluster. At the end, the budget's last share (what
# confirming needs, at most confirm_fraction) re-measures the elites on fresh trials: archive_break_rate.
confirm_fraction: 0.2
confirm_trials: 8
""".replace("{strategies}", ", ".join(DEFAULT_STRATEGIES))

def init_command(path: Path = typer.Argument(Path("campaign.yaml"), help="Where to write the example config.")) -> None:
    """Write a commented example campaign config that runs on the embedded default."""
    if path.exists():
        raise ConfigError(f"{path} exists; choose another path")
    write_text_atomic(path, EXAMPLE_CONFIG)
    Console().print(f"wrote {path}; run it with: adversary run {path}", markup=False)


def run_command(
    config_path: Path = typer.Argument(None, metavar="[CONFIG]", help="Campaign config (YAML); see `adversary init`."),
    scenarios: list[Path] = typer.Option(None, "--scenarios", "-s", help="Scenario file or folder (repeatable), as in `eval`."),
    target: list[str] = typer.Option(None, "--target", "-t", help="Target model (repeatable)."),
    mutator: str = typer.Option(None, "--mutator", help="Model behind the LLM-backed strategies."),
    judge: str = typer.Option(None, "--judge", help=JUDGE_HELP),
    budget_calls: int = typer.Option(None, "--budget-calls", help="Stop after this many target calls."),
    budget_usd: float = typer.Option(None, "--budget-usd", help="Stop after this much provider cost."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Stop after this many minutes."),
    seed: int = typer.Option(None, "--seed", help="Seed of the search and of sampling."),
    search: str = typer.Option(None, "--search", help=f"Search: {' | '.join(SEARCH_MODES)}."),
    explore: float = typer.Option(None, "--explore", min=0.0, max=1.0, metavar="SHARE",
                                  help="Share of parents drawn from every member, not only the breaking ones (default 0). "
                                       "Against a target that resists nearly every seed (local/smollm2-guarded), 0.5 "
                                       "lets the search mutate members that hold instead of re-wrapping the few that break."),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible base URL for non-local models."),
    concurrency: int = typer.Option(None, "--concurrency", min=1, help="Target calls in flight at once (default: one per local server slot, ADVERSARY_LOCAL_SLOTS, when every target is local; else 1)."),
    rpm: float = typer.Option(None, "--rpm", help="At most this many requests per minute to each target."),
    router: Path = typer.Option(None, "--router", help="litellm Router YAML (model_list): spread a target over its deployments."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory. Default: runs/run-TIMESTAMP."),
    resume: Path = typer.Option(None, "--resume", help="Continue the campaign stored in this run directory."),
) -> None:
    """Search for distractors that break the targets: mutate, select by novelty and break rate, keep an archive."""
    console = Console(stderr=True, soft_wrap=True)
    overrides = {
        "scenario_paths": tuple(str(p) for p in scenarios) if scenarios else None,
        "targets": tuple(target) if target else None,
        "mutator": mutator, "judge": judge, "budget_calls": budget_calls, "budget_usd": budget_usd,
        "max_minutes": max_minutes, "seed": seed, "search": search, "explore_share": explore, "api_base": api_base,
        "concurrency": concurrency, "requests_per_minute": rpm, "router": str(router) if router else None,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if resume is not None:
        base = load_resume_config(resume)
        changed = {k for k in overrides if k not in RESUMABLE_CHANGES}
        if changed or config_path is not None:
            raise ConfigError("with --resume only the budgets (--budget-calls, --budget-usd, --max-minutes) and the call "
                              "limits (--concurrency, --rpm) may change")
        values = {**base.__dict__, **overrides}
        run_dir, path, root = resume, None, None
    else:
        values, root = load_config_file(config_path) if config_path else ({}, None)
        values.update(overrides)
        run_dir, path = out or Path("runs") / f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}", config_path
    config = build_config(values, path, root)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("gen {task.fields[gen]} · archive {task.fields[size]} · break rate best {task.fields[best]} · mean {task.fields[mean]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("target calls", total=config.budget_calls, gen=0, size=0, best="–", mean="–")

        status = CampaignStatus(LogLines(console), config.budget_calls, resumed=resume is not None)

        def on_generation(stats: dict) -> None:
            fmt = lambda v: "–" if v is None else f"{100 * v:.0f}%"
            best, mean = fmt(stats["best_posterior_mean"]), fmt(stats["mean_posterior_mean"])
            bar.update(task, completed=stats["calls"], gen=stats["generation"], size=stats["archive_size"],
                       best=best, mean=mean)
            status.generation(stats["generation"], stats["calls"], stats["archive_size"], best, mean)

        def on_call(calls: int) -> None:
            bar.update(task, completed=calls)
            status.calls(calls)

        progress = CampaignProgress(on_generation=on_generation, on_call=on_call, on_message=console.print,
                                    on_confirming=status.confirming)
        try:
            result = run_campaign(config, run_dir, progress, resume=resume is not None)
        except KeyboardInterrupt:
            bar.stop()
            console.print(f"interrupted: everything finished is saved; continue with: adversary run --resume {run_dir}")
            raise typer.Exit(130) from None
    write_report([run_dir], run_dir)
    m = result.metrics
    out_console = Console(soft_wrap=True)
    pct = lambda r: "–" if r["break_rate"] is None else f"{100 * r['break_rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] ({r['breaks']}/{r['trials']})"
    out_console.print(f"stopped: {result.stop_reason} after {m['calls']} target calls in {wall_time_text(m)}", markup=False)
    out_console.print(f"seed break rate:    {pct(m['seed_break_rate'])} (first trials of all {m['seed_break_rate']['members']} seeds)", markup=False)
    archive = m["archive_break_rate"]
    out_console.print(f"archive break rate: {pct(archive)} (fresh confirmation trials of {archive['members_with_trials']} "
                      f"of {archive['members']} evolved elites)", markup=False)
    evolved = m["evolved_first_trials_break_rate"]
    out_console.print(f"evolved members:    {pct(evolved)} (first trials of all {evolved['members']} evolved members, "
                      "as for the seeds)", markup=False)
    clusters = m["breaking_clusters"]
    out_console.print(f"archive: {m['archive_size']} elites (one per cluster) of {m['members']} members; breaking clusters: "
                      f"{clusters['evolved']} evolved, {clusters['seeds']} seeds, {clusters['without_seeds']} with no "
                      "breaking seed", markup=False)
    mut = m["mutations"]
    usable = "–" if mut["usable_fraction"] is None else f"{100 * mut['usable_fraction']:.0f}%"
    out_console.print(f"mutations {mut['calls']}, usable {mut['usable']} ({usable}), duplicates {mut['duplicates']}, "
                      f"drifted {mut['drifted']}, inapplicable {mut['inapplicable']}", markup=False)
    seeds = m["seed_break_rate"]["break_rate"]
    remedies = [text for missing, text in (
        (config.explore_share == 0.0, "--explore 0.5 also mutates the members that hold"),
        ("llm-pivot" not in config.strategies, "llm-pivot among its strategies (a config from `adversary init`) changes "
                                               "what they ask, not only how")) if missing]
    if remedies and seeds is not None and seeds < 0.25 and clusters["without_seeds"] == 0 and mut["calls"]:
        out_console.print(f"hint: {100 * seeds:.0f}% of the seeds break this target and every breaking member grew from them; "
                          f"in a new run, {' and '.join(remedies)}", markup=False)
    out_console.print(f"wrote {run_dir}/archive.jsonl, metrics.json, report.html, report.md", markup=False)
