"""What the local server's prompt-prefix cache saves, and how many replies it changes.

Runs the same campaign twice on the embedded model, with the cache (the default) and without it
(`ADVERSARY_PROMPT_CACHE_MB=0`), side by side on separate cores when there are two, then compares the
stores: how many target replies and candidates are identical (a reply may differ where float rounding
in a prefix decoded in another batch flips a near tie in sampling), the wall times, and the mean
target-call latencies on seeds (run in prefix order, so they gain least) and on evolved candidates.
The seeds take the first 132 calls of the starter corpus, so budgets well above that show the gain.
Both servers keep their slots, whose cells are a prompt cache of their own; `ADVERSARY_LOCAL_SLOTS=1` in the
environment leaves the state cache alone to compare.

With `--replay RUN_DIR`, sends a stored campaign's target calls instead (`--calls` of them from number
`--start`, in the order they ran, with their seeds and the run's sampling) to a server with the cache and
one without, side by side: the same traffic, without the mutator's calls between generations.

    python bench/prompt_cache.py [--budget-calls 400] [--seed 5] [--keep DIR]
    python bench/prompt_cache.py --replay RUN_DIR [--start 600] [--calls 150]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adversary.campaign import load_resume_config
from adversary.models.chat import Sampling, complete, resolve_route
from adversary.models.local_server import PROMPT_CACHE_ENV, LocalServers, usable_cpus

VARIANTS = {"cache": None, "no cache": "0"}


def start(command: list[str], log_path: Path, cache_mb: str | None, cpu: int | None) -> subprocess.Popen:
    """`command` in a subprocess, pinned to `cpu` when given, with the cache set by `cache_mb` (None: default)."""
    env = dict(os.environ)
    env.pop(PROMPT_CACHE_ENV, None)
    if cache_mb is not None:
        env[PROMPT_CACHE_ENV] = cache_mb
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    return subprocess.Popen(command, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)


def run_variants(commands: dict[str, list[str]], logs: dict[str, Path], what: str) -> bool:
    """Run each variant's command with its cache setting, side by side on separate cores when there are two (else
    one after the other); exit naming the log of one that fails. Returns whether they ran side by side."""
    side_by_side = usable_cpus() >= 2 and hasattr(os, "sched_getaffinity")
    cpus = sorted(os.sched_getaffinity(0))[:2] if side_by_side else [None, None]
    processes = {}
    for (name, cache_mb), cpu in zip(VARIANTS.items(), cpus):
        processes[name] = start(commands[name], logs[name], cache_mb, cpu)
        if not side_by_side:
            processes[name].wait()
    for name, process in processes.items():
        if process.wait() != 0:
            sys.exit(f"the {name} {what} failed; see {logs[name]}")
    return side_by_side


def stored_calls(run_dir: Path, first: int, count: int) -> list[tuple[str, list[dict[str, str]], int | None]]:
    """(target, messages, seed) of a stored run's target calls `first` to `first + count`, in the order they ran."""
    with sqlite3.connect(f"file:{run_dir / 'store.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("select target, messages_json, seed from attempts order by created_at, rowid "
                          "limit ? offset ?", (count, first)).fetchall()
    return [(target, json.loads(messages), seed) for target, messages, seed in rows]


def replay_worker(run_dir: Path, first: int, count: int, out: Path) -> None:
    """Send the stored calls to this process's local server; write [[seconds, reply], ...] to `out`."""
    config = load_resume_config(run_dir)
    sampling = Sampling(temperature=config.temperature, max_tokens=config.max_tokens)
    results = []
    with LocalServers() as servers:
        routes = {}
        for target, messages, seed in stored_calls(run_dir, first, count):
            route = routes.get(target) or routes.setdefault(target, resolve_route(target, servers))
            started = time.perf_counter()
            reply = complete(route, messages, sampling, seed)
            results.append((time.perf_counter() - started, reply.text))
    out.write_text(json.dumps(results))


def replay(run_dir: Path, first: int, count: int, root: Path) -> dict:
    """Both servers on the same stored traffic: identical replies and mean seconds per call."""
    outputs = {name: root / f"replay-{name.replace(' ', '-')}.json" for name in VARIANTS}
    side_by_side = run_variants({name: [sys.executable, __file__, "--replay-worker", str(run_dir), "--start", str(first),
                                        "--calls", str(count), "--out", str(path)] for name, path in outputs.items()},
                                {name: path.with_suffix(".log") for name, path in outputs.items()}, "replay")
    results = {name: json.loads(path.read_text()) for name, path in outputs.items()}
    cached, plain = results["cache"], results["no cache"]
    return {
        "replayed": {"run": str(run_dir), "start": first, "calls": len(cached)},
        "side_by_side": side_by_side,
        "identical_replies": sum(a[1] == b[1] for a, b in zip(cached, plain)),
        "mean_call_seconds": {name: round(sum(s for s, _ in calls) / max(1, len(calls)), 3) for name, calls in results.items()},
        "speedup": round(sum(s for s, _ in plain) / max(1e-9, sum(s for s, _ in cached)), 2),
    }


def read_store(run_dir: Path) -> tuple[dict[str, tuple[str | None, float | None, bool]], list[str]]:
    """(attempt key -> (reply, latency, whether the candidate is a seed)), and the candidates' texts in admission order."""
    with sqlite3.connect(f"file:{run_dir / 'store.sqlite'}?mode=ro", uri=True) as db:
        attempts = {key: (reply, latency, operator == "seed") for key, reply, latency, operator in db.execute(
            "select a.key, a.reply, a.latency_s, c.operator from attempts a join candidates c on c.id = a.item_id")}
        candidates = [text for (text,) in db.execute("select text from candidates order by seq")]
    return attempts, candidates


def mean_latency(attempts: dict[str, tuple[str | None, float | None, bool]], seeds: bool) -> float | None:
    """Mean latency of the calls on seeds (which run in prefix order, so gain least) or on evolved candidates."""
    latencies = [latency for _, latency, is_seed in attempts.values() if is_seed == seeds and latency]
    return round(sum(latencies) / len(latencies), 3) if latencies else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-calls", type=int, default=400)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the two runs here instead of a temporary folder")
    parser.add_argument("--replay", type=Path, metavar="RUN_DIR", help="replay this stored campaign's target calls")
    parser.add_argument("--start", type=int, default=600, help="with --replay: the first stored call to send")
    parser.add_argument("--calls", type=int, default=150, help="with --replay: how many stored calls to send")
    parser.add_argument("--replay-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay_worker:
        replay_worker(args.replay_worker, args.start, args.calls, args.out)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-prompt-cache-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.replay:
        print(json.dumps(replay(args.replay, args.start, args.calls, root), indent=2))
        return
    dirs = {name: root / name.replace(" ", "-") for name in VARIANTS}
    side_by_side = run_variants({name: [sys.executable, "-m", "adversary", "run", "--budget-calls", str(args.budget_calls),
                                        "--seed", str(args.seed), "--judge", "embedded-sim", "--out", str(path)]
                                 for name, path in dirs.items()},
                                {name: path.with_suffix(".log") for name, path in dirs.items()}, "campaign")
    walls = {name: json.loads((path / "metrics.json").read_text())["wall_seconds"] for name, path in dirs.items()}
    stores = {name: read_store(dirs[name]) for name in VARIANTS}
    (cached, cached_candidates), (plain, plain_candidates) = stores["cache"], stores["no cache"]
    same_keys = cached.keys() & plain.keys()
    identical = sum(cached[key][0] == plain[key][0] for key in same_keys)
    summary = {
        "budget_calls": args.budget_calls,
        "side_by_side": side_by_side,
        "attempts": {name: len(store[0]) for name, store in stores.items()},
        "identical_replies": identical,
        "compared_replies": len(same_keys),
        "identical_candidates": sum(a == b for a, b in zip(cached_candidates, plain_candidates)),
        "candidates": {name: len(store[1]) for name, store in stores.items()},
        "wall_seconds": {name: round(wall, 1) for name, wall in walls.items()},
        "mean_call_seconds_seeds": {name: mean_latency(store[0], seeds=True) for name, store in stores.items()},
        "mean_call_seconds_evolved": {name: mean_latency(store[0], seeds=False) for name, store in stores.items()},
        "runs": str(root),
    }
    summary["speedup"] = round(walls["no cache"] / walls["cache"], 2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
