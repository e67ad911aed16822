"""Load: a long campaign against a local fake OpenAI-compatible server; memory must stay flat, the store consistent.

    python bench/load.py [--attempts 10000] [--concurrency 4] [--corpus starter|tiny] [--json]

The fake server answers instantly (off-scope when the turn says "please"), so the campaign's own
machinery is what runs: litellm calls, the keyword judge, novelty archive, clustering, SQLite. RSS is
sampled every half second; the figures are RSS after the first tenth of the run, at the end, the growth
between them per 1,000 calls, and the peak.
Consistency: every stored attempt is unique, the store's call count equals the requests the server saw,
and metrics.json agrees with both.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from adversary.campaign import CampaignConfig, CampaignProgress, run_campaign  # noqa: E402
from tests.conftest import TINY_CORPUS  # noqa: E402
from tests.fake_openai import FakeOpenAI, off_topic_when  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """Samples this process's RSS with the campaign's call count until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[int, float]] = []
        self.calls = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            self.samples.append((self.calls, rss_mb()))

    def stop(self) -> None:
        self._done.set()
        self.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=10_000, help="target-call budget of the campaign")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--corpus", choices=("starter", "tiny"), default="starter",
                        help="seed corpus: the starter corpus (13 scenarios, 66 seeds), or the tests' one-scenario corpus, "
                             "whose mutations soon repeat, so most generations propose only duplicates")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adversary-load-") as tmp, FakeOpenAI(off_topic_when("please"), keep_requests=False) as server:
        if args.corpus == "tiny":
            corpus = Path(tmp) / "tiny.yaml"
            corpus.write_text(yaml.safe_dump(TINY_CORPUS))
            paths = (str(corpus),)
        else:
            paths = ()
        run_dir = Path(tmp) / "run"
        config = CampaignConfig(scenario_paths=paths, targets=("fakebot",), mutator="fakebot", judge="keyword",
                                api_base=server.api_base, budget_calls=args.attempts, seed=0, concurrency=args.concurrency,
                                strategies=("tangential", "emotional", "socratic", "subtler", "two-turn", "crossover"),
                                max_trials=4, confirm_fraction=0.05)
        sampler = RssSampler()
        progress = CampaignProgress(on_call=lambda calls: setattr(sampler, "calls", calls))
        sampler.start()
        started = time.perf_counter()
        result = run_campaign(config, run_dir, progress)
        wall = time.perf_counter() - started
        sampler.stop()
        sent = server.chat_requests
        with sqlite3.connect(run_dir / "store.sqlite") as db:
            attempts, stored_calls, keys = db.execute("SELECT COUNT(*), SUM(calls), COUNT(DISTINCT key) FROM attempts").fetchone()
            duplicates = db.execute("SELECT COUNT(*) - COUNT(DISTINCT messages_json || seed) FROM attempts").fetchone()[0]
            candidates = db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
    tenth = next((rss for calls, rss in sampler.samples if calls >= args.attempts / 10), None)
    figures = {
        "attempts": attempts,
        "target_calls": stored_calls,
        "server_requests": sent,
        "metrics_calls": result.metrics["calls"],
        "consistent": stored_calls == sent == result.metrics["calls"] and keys == attempts and duplicates == 0,
        "candidates": candidates,
        "archive_members": result.metrics["members"],
        "wall_seconds": round(wall, 1),
        "attempts_per_second": round(attempts / wall, 1),
        "rss_mb_after_first_tenth": None if tenth is None else round(tenth, 1),
        "rss_mb_at_end": round(sampler.samples[-1][1], 1) if sampler.samples else None,
        "rss_mb_growth_per_1000_calls_after_first_tenth": None if tenth is None or not sampler.samples else round(
            (sampler.samples[-1][1] - tenth) / max(1, (sampler.samples[-1][0] - args.attempts / 10) / 1000), 1),
        "peak_rss_mb": round(max(rss for _, rss in sampler.samples), 1) if sampler.samples else None,
        "stop_reason": result.stop_reason,
    }
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
