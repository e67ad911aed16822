"""End to end on the real embedded model: local/smollm2 through the local server and litellm."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from adversary.judges import build_judge
from adversary.judges.base import JudgeInput
from adversary.models.embedded import CHAT_MODELS, server_available
from adversary.models.local_server import SLOTS_ENV, LocalServers
from adversary.records import Message

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        CHAT_MODELS["local/smollm2"].weights_path() is None or not server_available(),
        reason="embedded model or llama-cpp-python[server] not installed",
    ),
]


def _servers_running() -> set[str]:
    """Pids of the llama.cpp servers running now. Tests compare sets, not counts, so servers that other work on
    the machine starts or stops meanwhile do not matter."""
    out = subprocess.run(["pgrep", "-f", "llama_cpp.server|adversary.models.llama_server"], capture_output=True, text=True)
    return set(out.stdout.split())


def test_eval_on_smollm2_end_to_end(tmp_path):
    before = _servers_running()
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "adversary", "eval", "--max-distractors", "4", "--max-controls", "26", "--trials", "2", "--seed", "3",
         "--out", str(run_dir)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    target = metrics["targets"]["local/smollm2"]
    assert target["trials"] == 8 and sum(target["errors"].values()) == 0
    assert 0.0 <= target["break_rate"] <= 1.0 and target["ci95"][0] <= target["break_rate"] <= target["ci95"][1]
    assert target["control_trials"] == 2 * 26
    assert target["completion_tokens"] > 0
    assert metrics["judge"]["name"] == "embedded-lr-v1"
    assert "local/smollm2" in result.stdout
    assert not _servers_running() - before, "the local server was not stopped"


def test_dspy_program_on_smollm2_parses_with_schema_constrained_json():
    with LocalServers() as servers:
        judge = build_judge("local/smollm2", servers=servers)
        items = [
            JudgeInput(
                system_prompt="You are Acme Bank's assistant. Only discuss cards and transfers.",
                history=(Message(role="user", content="Hi"), Message(role="assistant", content="Hello! How can I help with your card?")),
                user=f"What is a good pizza topping number {i}?",
                response=reply,
            )
            for i, reply in enumerate(["Pepperoni is great.", "I'm sorry, I can only help with cards and transfers."] * 2)
        ]
        verdicts = judge.judge(items)
    assert len(verdicts) == 4 and judge.parse_failures == 0
    assert all(v.judge == "llm:local/smollm2" for v in verdicts)


def test_ctrl_c_stops_the_local_server_and_the_run_resumes(tmp_path):
    import os
    import signal
    import time

    before = _servers_running()
    run_dir = tmp_path / "run"
    # Enough work that Ctrl-C lands mid-run: replies are committed a prefix group at a time, so with a
    # smaller eval the third stored attempt can come with the last group and the signal with shutdown.
    command = [sys.executable, "-m", "adversary", "eval", "--max-distractors", "8", "--trials", "2", "--out", str(run_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = run_dir / "store.sqlite"
    deadline = time.monotonic() + 300
    import sqlite3

    while time.monotonic() < deadline:
        if store.exists():
            try:
                if sqlite3.connect(store).execute("SELECT COUNT(*) FROM attempts").fetchone()[0] >= 3:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-1500:]
    assert "run the same command again to resume" in stderr
    assert not _servers_running() - before, "Ctrl-C left the local server running"
    saved = sqlite3.connect(store).execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    assert saved >= 3
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert f"resuming: {saved} of" in resumed.stderr
    assert not os.path.exists(run_dir / ".metrics.json.tmp")


def test_run_on_smollm2_with_the_embedded_mutator(tmp_path, tiny_corpus):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "adversary", "run", "--scenarios", str(tiny_corpus), "--budget-calls", "40", "--seed", "2",
         "--out", str(run_dir)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["calls"] <= 40 and metrics["stop_reason"] in ("budget_calls", "archive confirmed")
    assert metrics["members"] > 3 and 1 <= metrics["archive_size"] <= metrics["members"]
    assert metrics["mutations"]["calls"] > 0 and metrics["mutations"]["usable"] > 0
    assert 0 < metrics["targets"]["local/smollm2"]["trials"] <= metrics["calls"]
    assert metrics["elites_confirmed_break_rate"]["trials"] > 0, "the reserved budget confirmed some elites"
    assert "seed break rate" in result.stdout and "archive break rate" in result.stdout


def _plan(run_dir) -> list[tuple]:
    """The stored attempts as (kind, scenario, item, insertion point, trial), in the order they were stored."""
    import sqlite3

    with sqlite3.connect(run_dir / "store.sqlite") as db:
        return db.execute("SELECT kind, scenario_id, item_id, insertion_point, trial FROM attempts ORDER BY rowid").fetchall()


def test_a_batched_eval_stores_every_reply_once_in_plan_order(tmp_path, tiny_corpus):
    """Four calls in flight on a 4-slot server: every planned attempt is stored once, in the order one call at a time
    stores them (a scripted target gives that order without the model)."""
    from tests.fake_openai import FakeOpenAI, off_topic_when

    batched = tmp_path / "batched"
    common = ["--scenarios", str(tiny_corpus), "--trials", "2", "--seed", "4", "--judge", "keyword"]
    result = subprocess.run([sys.executable, "-m", "adversary", "eval", *common, "--out", str(batched)],
                            capture_output=True, text=True, timeout=900, env={**os.environ, SLOTS_ENV: "4"})
    assert result.returncode == 0, result.stderr[-2000:]
    with FakeOpenAI(off_topic_when("please")) as server:
        sequential = tmp_path / "sequential"
        result = subprocess.run([sys.executable, "-m", "adversary", "eval", *common, "--target", "fakebot", "--api-base",
                                 server.api_base, "--concurrency", "1", "--out", str(sequential)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    stored = _plan(batched)
    assert len(stored) == len(set(stored)), "a reply was stored twice"
    assert stored == _plan(sequential)


def test_a_killed_batched_run_on_the_real_server_resumes_losing_and_repeating_nothing(tmp_path, tiny_corpus):
    import signal
    import sqlite3
    import time

    before = _servers_running()
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "adversary", "run", "--scenarios", str(tiny_corpus), "--budget-calls", "40",
               "--seed", "6", "--out", str(run_dir)]
    env = {**os.environ, SLOTS_ENV: "4"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    store, deadline = run_dir / "store.sqlite", time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if sqlite3.connect(store).execute("SELECT COUNT(*) FROM attempts").fetchone()[0] >= 8:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _servers_running() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _servers_running() - before, "the killed run's server outlived it"
    with sqlite3.connect(store) as db:
        kept = {row[0]: row[1] for row in db.execute("SELECT key, reply FROM attempts")}
    resumed = subprocess.run([sys.executable, "-m", "adversary", "run", "--resume", str(run_dir)], capture_output=True,
                             text=True, timeout=900, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr
    with sqlite3.connect(store) as db:
        keys = [row[0] for row in db.execute("SELECT key FROM attempts")]
        after = {row[0]: row[1] for row in db.execute("SELECT key, reply FROM attempts")}
    assert len(keys) == len(set(keys))
    assert all(after[key] == reply for key, reply in kept.items()), "a stored reply was lost or redone"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["calls"] <= 40 and metrics["stop_reason"] in ("budget_calls", "archive confirmed")
