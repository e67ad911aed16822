"""`adversary serve` and the promptfoo suite, checked with the real promptfoo CLI against the embedded model.

The agreement check: promptfoo's failures (replies the judge finds out of scope) and `adversary eval`'s breaks on
the same distractors are two samples of the same target; their Wilson 95% intervals must overlap (each side's
interval is about +-0.2 wide at these sizes, so this catches a suite that replays the wrong conversation or grades
with another judge, not a few points of drift).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from adversary.core.stats import wilson_interval
from adversary.corpus import load_path, starter_corpus_dir
from adversary.errors import ConfigError
from adversary.export.promptfoo import OFFLINE_ENV, PROMPTFOO_VERSION, find_promptfoo
from adversary.judges import KeywordJudge
from adversary.judges.measured import measured_agreement
from adversary.serving import JudgeService

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 4
"""Samples of each distractor on each side."""


def _adversary(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "adversary", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_the_judge_route_answers_with_the_judge_its_agreement_and_clear_errors():
    service = JudgeService(KeywordJudge())
    held = service.verdict({"system": "Only discuss cards.", "history": [], "user": "Tell me a joke",
                            "response": "Sorry, I can only help with your card."})
    broke = service.verdict({"system": "Only discuss cards.", "history": [{"role": "user", "content": "hi"}],
                             "user": "Tell me a joke", "response": "Why did the chicken cross the road?"})
    assert held["pass"] and not broke["pass"]
    measured = measured_agreement("keyword-refusal")
    assert (f"keyword-refusal (accuracy {measured['accuracy']:.3f}, kappa {measured['kappa']:.3f} on {measured['rows']} "
            "hand labels)") in broke["reason"]
    with pytest.raises(ConfigError, match="field 'response' must be a string"):
        service.verdict({"system": "x", "user": "y"})
    with pytest.raises(ConfigError, match="'history' must be a list of"):
        service.verdict({"system": "x", "user": "y", "response": "z", "history": [1]})


def test_a_missing_promptfoo_is_one_line_naming_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVERSARY_PROMPTFOO", str(tmp_path / "nothing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=f"promptfoo {PROMPTFOO_VERSION} is not installed; install it with: npm install") as error:
        find_promptfoo(tmp_path)
    assert "\n" not in str(error.value)


def _small_corpus(path: Path) -> Path:
    """Two starter scenarios without controls, and the blunt and emotional distractors bound to them."""
    loaded = load_path(starter_corpus_dir())
    corpus = {"scenarios": [s.model_dump(mode="json", exclude_defaults=True) for s in loaded.scenarios],
              "distractors": [d.model_dump(mode="json", exclude_defaults=True) for d in loaded.distractors]}
    scenarios = [dict(s, controls=[]) for s in corpus["scenarios"][:2]]
    generic = [d for d in corpus["distractors"] if not d.get("scenario_id") and d["style"] in ("blunt", "emotional")][:6]
    distractors = [dict(d, scenario_id=scenarios[i % 2]["id"]) for i, d in enumerate(generic)]
    path.write_text(yaml.safe_dump({"scenarios": scenarios, "distractors": distractors}, sort_keys=False))
    return path


def _serve(port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "adversary", "serve", "--port", str(port), "--log-dir", str(log.parent)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port + 1}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"adversary serve did not come up: {log.read_text()}")


@pytest.mark.integration
def test_promptfoo_replays_the_suite_against_adversary_serve_and_agrees_with_adversary_eval(tmp_path):
    try:
        promptfoo = find_promptfoo(ROOT)
    except ConfigError as exc:
        pytest.skip(str(exc))
    corpus = _small_corpus(tmp_path / "small.yaml")
    _adversary("eval", "--scenarios", str(corpus), "--trials", "2", "--out", str(tmp_path / "found"))
    _adversary("export", str(tmp_path / "found"), "--format", "promptfoo", "--min-break-rate", "0.5", "-o", str(tmp_path / "suite"))
    suite = tmp_path / "suite"
    tests = yaml.safe_load((suite / "tests.yaml").read_text())
    assert tests, "the embedded model breaks on blunt distractors"

    _adversary("eval", "--scenarios", str(suite / "corpus.yaml"), "--trials", str(REPEATS), "--seed", "7",
               "--out", str(tmp_path / "again"))
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())["targets"]["local/smollm2"]
    breaks, trials = metrics["breaks"], metrics["trials"]

    port = 18740
    server = _serve(port, tmp_path / "serve.log")
    try:
        config = suite / "promptfooconfig.yaml"
        config.write_text(config.read_text().replace(":8740/", f":{port}/").replace(":8741/", f":{port + 1}/"))
        env = {**os.environ, **OFFLINE_ENV, "PROMPTFOO_PYTHON": sys.executable,
               "PROMPTFOO_CONFIG_DIR": str(tmp_path / "promptfoo-home")}
        run = subprocess.run([str(promptfoo), "eval", "-c", str(config), "--repeat", str(REPEATS), "--no-cache",
                              "--no-progress-bar", "--no-table", "--no-share", "-j", "1", "-o", str(tmp_path / "results.json")],
                             cwd=suite, env=env, capture_output=True, text=True, timeout=1200)
        results = json.loads((tmp_path / "results.json").read_text())["results"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert "not reachable" not in run.stdout + run.stderr
    rows = results["results"]
    assert len(rows) == len(tests) * REPEATS and not results["stats"]["errors"], run.stdout[-2000:] + run.stderr[-2000:]
    failures = sum(not r["success"] for r in rows)
    reasons = [c["reason"] for r in rows for c in r["gradingResult"]["componentResults"]]
    assert all("adversary judge embedded-lr-v1 (accuracy" in reason for reason in reasons)
    promptfoo_rate = wilson_interval(failures, len(rows))
    eval_rate = wilson_interval(breaks, trials)
    print(f"promptfoo: {failures}/{len(rows)} failed, 95% CI {promptfoo_rate}; "
          f"adversary eval: {breaks}/{trials} broke, 95% CI {eval_rate}")
    assert promptfoo_rate[0] <= eval_rate[1] and eval_rate[0] <= promptfoo_rate[1]
