"""Crash safety: `kill -9` an `adversary run` subprocess at random moments, resume, and lose or repeat nothing."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.fake_openai import FakeOpenAI, off_topic_when

BUDGET = "90"


def _command(tiny_corpus, server, run_dir, resume=False, concurrency=1):
    if resume:
        return [sys.executable, "-m", "adversary", "run", "--resume", str(run_dir)]
    return [sys.executable, "-m", "adversary", "run", "--scenarios", str(tiny_corpus), "--target", "fakebot", "--mutator",
            "fakebot", "--judge", "keyword", "--api-base", server.api_base, "--budget-calls", BUDGET, "--seed", "5",
            "--concurrency", str(concurrency), "--out", str(run_dir)]


def _attempts(run_dir) -> int:
    try:
        with sqlite3.connect(run_dir / "store.sqlite", timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0])
    except sqlite3.Error:
        return 0


def _archive(run_dir) -> list[tuple]:
    rows = [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines()]
    return sorted((r["id"], r["breaks"], r["trials"], r["confirmed"]["trials"]) for r in rows)


@pytest.mark.parametrize("concurrency", [1, 4], ids=["one-call-at-a-time", "batched"])
def test_kill_9_at_random_moments_then_resume_reaches_the_uninterrupted_archive(tiny_corpus, tmp_path, concurrency):
    """With several calls in flight (as against a batched local server) a kill loses the calls in flight, and the
    resumed run still reaches the archive of an uninterrupted one: replies are stored in plan order."""
    rng = random.Random(2026)
    with FakeOpenAI(off_topic_when("please")) as server:
        whole = subprocess.run(_command(tiny_corpus, server, tmp_path / "whole", concurrency=concurrency),
                               capture_output=True, text=True, timeout=600)
        assert whole.returncode == 0, whole.stderr[-1500:]
        run_dir = tmp_path / "killed"
        kills = 0
        for target_attempts in sorted(rng.sample(range(3, int(BUDGET) - 10), 3)):
            resume = (run_dir / "store.sqlite").exists()
            process = subprocess.Popen(_command(tiny_corpus, server, run_dir, resume, concurrency), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 300
            while process.poll() is None and _attempts(run_dir) < target_attempts and time.time() < deadline:
                time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=60)
        requests_before_last = len(server.requests)
        finished_before_last = _attempts(run_dir)
        final = subprocess.run(_command(tiny_corpus, server, run_dir, resume=True), capture_output=True, text=True, timeout=600)
        assert final.returncode == 0, final.stderr[-1500:]
        assert "resuming" in final.stderr
        resumed_requests = [r for r in server.requests[requests_before_last:] if r["body"].get("max_tokens") != 1]
    assert kills >= 2, "the run was killed mid-flight"
    assert _archive(run_dir) == _archive(tmp_path / "whole")
    assert json.loads((run_dir / "metrics.json").read_text())["calls"] == json.loads((tmp_path / "whole" / "metrics.json").read_text())["calls"]
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        finished = {r[0] for r in db.execute("SELECT messages_json || '|' || seed FROM attempts")}
    assert len(finished) == _attempts(run_dir)
    assert _attempts(run_dir) - finished_before_last <= len(resumed_requests), "the last resume redid no finished attempt"
