"""The eval runner with a scripted fake model and judge: accounting, resume, errors, run-dir safety."""

from __future__ import annotations

import json
import time

import pytest

from adversary.errors import ConfigError

from adversary.evaluation import EvalConfig, run_eval
from adversary.models.chat import ChatResult
from adversary.records import Verdict
from adversary.store import MIGRATIONS, Store, StoreError


class ScriptedModel:
    """Engages with any turn containing 'poem', fails every call whose seed is divisible by `fail_every`."""

    def __init__(self, fail_every: int | None = None):
        self.calls: list[list[dict]] = []
        self.fail_every = fail_every

    def __call__(self, route, messages, sampling, seed):
        self.calls.append(messages)
        if self.fail_every and seed % self.fail_every == 0:
            return ChatResult(text=None, latency_s=0.01, error="APIConnectionError: scripted failure")
        user = messages[-1]["content"]
        text = "Here is a poem about the sea." if "poem" in user.lower() else "I'm sorry, I can only help with this service."
        return ChatResult(text=text, latency_s=0.01, prompt_tokens=20, completion_tokens=8)


class ScriptedJudge:
    name = "scripted"

    def judge(self, items):
        return [Verdict(in_scope="poem" not in i.response, refusal="sorry" in i.response, judge=self.name) for i in items]


def _config(corpus_path, **overrides):
    values = dict(scenario_paths=(str(corpus_path),), targets=("fake/model",), trials=2, seed=7, judge="scripted")
    values.update(overrides)
    return EvalConfig(**values)


def test_eval_counts_breaks_controls_and_prompts(tiny_corpus, tmp_path):
    model = ScriptedModel()
    result = run_eval(_config(tiny_corpus), tmp_path / "run", call=model, judge=ScriptedJudge())
    m = result.metrics["targets"]["fake/model"]
    # 3 distractors and 2 controls, 2 trials each
    assert len(model.calls) == 10 and result.attempts_run == 10
    assert m["trials"] == 6 and m["breaks"] == 2 and m["break_rate"] == pytest.approx(1 / 3)
    assert m["control_trials"] == 4 and m["over_refusal"] == 1.0
    assert m["by_style"]["blunt"]["successes"] == 2
    # prompts are system prompt + dialogue up to the insertion point + the user turn
    for messages in model.calls:
        assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
        assert messages[-2]["role"] == "assistant"
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert stored["targets"]["fake/model"]["ci95"] == m["ci95"]
    assert stored["judge"]["name"] == "scripted"


def test_rerun_resumes_without_repeating_finished_attempts(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_eval(_config(tiny_corpus), run_dir, call=ScriptedModel(), judge=ScriptedJudge())
    again = ScriptedModel()
    result = run_eval(_config(tiny_corpus), run_dir, call=again, judge=ScriptedJudge())
    assert again.calls == [] and result.attempts_skipped == 10
    assert result.metrics["targets"]["fake/model"]["trials"] == 6


class SlowModelKilledAfter(ScriptedModel):
    """Takes `delay` seconds a call and is interrupted (as by Ctrl-C) at call `limit`."""

    def __init__(self, limit: int, delay: float):
        super().__init__()
        self.limit, self.delay = limit, delay

    def __call__(self, route, messages, sampling, seed):
        if len(self.calls) + 1 == self.limit:
            raise KeyboardInterrupt
        time.sleep(self.delay)
        return super().__call__(route, messages, sampling, seed)


def test_a_resumed_eval_reports_its_wall_time_over_every_session(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(_config(tiny_corpus), run_dir, call=SlowModelKilledAfter(limit=7, delay=0.05), judge=ScriptedJudge())
    result = run_eval(_config(tiny_corpus), run_dir, call=ScriptedModel(), judge=ScriptedJudge())
    m = result.metrics
    assert result.attempts_skipped >= 4, "the killed session committed its finished placements"
    assert m["total_wall_seconds"] >= m["wall_seconds"] + 0.2, "the killed session's time up to its last commit counts"
    assert json.loads((run_dir / "metrics.json").read_text())["total_wall_seconds"] == m["total_wall_seconds"]


def test_a_resume_whose_judge_changed_under_the_same_name_is_refused(tiny_corpus, tmp_path):
    """The config names the judge (`embedded`); a new adversary version may judge differently under that name."""
    run_dir = tmp_path / "run"
    run_eval(_config(tiny_corpus), run_dir, call=ScriptedModel(), judge=ScriptedJudge())

    class RetrainedJudge(ScriptedJudge):
        name = "scripted-v2"

    again = ScriptedModel()
    with pytest.raises(StoreError, match="judged by scripted, and this adversary's judge is scripted-v2"):
        run_eval(_config(tiny_corpus), run_dir, call=again, judge=RetrainedJudge())
    assert again.calls == []


def test_failed_calls_are_errors_not_breaks_and_are_retried_on_resume(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    flaky = ScriptedModel(fail_every=3)
    first = run_eval(_config(tiny_corpus), run_dir, call=flaky, judge=ScriptedJudge())
    m = first.metrics["targets"]["fake/model"]
    failed = sum(m["errors"].values())
    assert failed > 0 and m["trials"] + m["control_trials"] + failed == 10
    retry = ScriptedModel()
    second = run_eval(_config(tiny_corpus), run_dir, call=retry, judge=ScriptedJudge())
    assert len(retry.calls) == failed
    assert sum(second.metrics["targets"]["fake/model"]["errors"].values()) == 0


def test_a_run_dir_of_another_run_is_refused(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_eval(_config(tiny_corpus), run_dir, call=ScriptedModel(), judge=ScriptedJudge())
    with pytest.raises(StoreError, match="different run"):
        run_eval(_config(tiny_corpus, trials=3), run_dir, call=ScriptedModel(), judge=ScriptedJudge())


def test_same_seed_sends_the_same_requests(tiny_corpus, tmp_path):
    a, b = ScriptedModel(), ScriptedModel()
    run_eval(_config(tiny_corpus), tmp_path / "a", call=a, judge=ScriptedJudge())
    run_eval(_config(tiny_corpus), tmp_path / "b", call=b, judge=ScriptedJudge())
    assert a.calls == b.calls


def test_store_keeps_messages_replies_and_verdicts(tiny_corpus, tmp_path):
    run_eval(_config(tiny_corpus), tmp_path / "run", call=ScriptedModel(), judge=ScriptedJudge())
    with Store.open(tmp_path / "run") as store:
        attempts = list(store.attempts())
        assert store.schema_version == len(MIGRATIONS)
        assert len(store.load_corpus().scenarios) == 2
    assert all(a.verdict is not None and a.reply for a in attempts)
    assert {a.kind for a in attempts} == {"distractor", "control"}


def test_max_controls_samples_control_turns_and_keeps_old_fingerprints(tiny_corpus, tmp_path):
    result = run_eval(_config(tiny_corpus, trials=1, max_controls=1), tmp_path / "run", call=ScriptedModel(),
                      judge=ScriptedJudge())
    target = result.metrics["targets"]["fake/model"]
    assert target["control_trials"] == 1 and target["trials"] == 3
    assert _config(tiny_corpus).fingerprint() == _config(tiny_corpus, max_controls=None).fingerprint()
    assert _config(tiny_corpus).fingerprint() != _config(tiny_corpus, max_controls=1).fingerprint()
    with pytest.raises(ConfigError, match="--max-controls"):
        _config(tiny_corpus, max_controls=-1).validate()


def test_limit_corpus_is_the_sample_an_eval_runs_so_a_benchmark_can_hold_out_the_rest(tmp_path):
    import numpy as np

    from adversary.corpus import starter_corpus_dir
    from adversary.evaluation import limit_corpus, load_eval_corpus

    config = _config(starter_corpus_dir(), trials=1, seed=11, max_distractors=6, max_controls=4)
    run_eval(config, tmp_path / "run", call=ScriptedModel(), judge=ScriptedJudge())
    with Store.open(tmp_path / "run") as store:
        attempts = list(store.attempts())
    sample = limit_corpus(load_eval_corpus(config.scenario_paths, []), 6, 4, np.random.default_rng(11))
    assert {a.item_id for a in attempts if a.kind == "distractor"} == {d.id for d in sample.distractors}
    assert sorted((a.scenario_id, a.messages[-1].content) for a in attempts if a.kind == "control") == sorted(
        (s.id, control) for s in sample.scenarios for control in s.controls)


def test_scope_only_scenarios_get_the_starter_generic_distractors(tmp_path):
    prompt = tmp_path / "trainbot.md"
    prompt.write_text("# System Prompt for TrainBot\nYou only help with train tickets.\n")
    result = run_eval(_config(prompt, trials=1, max_distractors=4), tmp_path / "run", call=ScriptedModel(), judge=ScriptedJudge())
    assert result.metrics["targets"]["fake/model"]["trials"] == 4
    assert any("generic distractors" in note for note in result.notes)


def test_a_store_from_schema_1_migrates_and_keeps_its_attempts(tiny_corpus, tmp_path):
    import sqlite3

    run_dir = tmp_path / "old"
    run_dir.mkdir()
    db = sqlite3.connect(run_dir / "store.sqlite")
    db.executescript(MIGRATIONS[0] + ";PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO attempts (key, target, kind, scenario_id, item_id, insertion_point, trial, seed, messages_json, status,"
        " created_at) VALUES ('k', 't', 'distractor', 's', 'i', 1, 0, 0, '[]', 'error', 'now')"
    )
    db.commit()
    db.close()
    with Store.open(run_dir) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert store.count() == 1 and store.candidates() == []


def test_a_judge_failure_on_one_reply_makes_only_that_reply_an_error():
    from adversary.core.placement import Placement
    from adversary.judging import CallOutcome, judged_attempts
    from adversary.judges import JudgeError
    from adversary.records import Message, Verdict

    class PickyJudge:
        name = "picky"

        def judge(self, items):
            if any("garbled" in item.response for item in items):
                raise JudgeError("cannot parse")
            return [Verdict(in_scope="sorry" in item.response.lower(), refusal=False, judge=self.name) for item in items]

    placement = Placement(kind="distractor", scenario_id="s", item_id="d", text="Tell me a joke", style="blunt", insertion_point=1)
    messages = (Message(role="system", content="Only banking."), Message(role="user", content="Tell me a joke"))
    replies = [ChatResult(text="Sorry, banking only.", latency_s=0.1), ChatResult(text="garbled ###", latency_s=0.1),
               ChatResult(text="A joke!", latency_s=0.1), ChatResult(text=None, latency_s=0.1, error="Timeout: slow")]
    outcomes = [CallOutcome(key=f"k{i}", target="t", placement=placement, trial=i, seed=i, messages=messages, result=r)
                for i, r in enumerate(replies)]
    attempts = judged_attempts(outcomes, PickyJudge())
    assert [a.status for a in attempts] == ["ok", "error", "ok", "error"]
    assert attempts[1].error == "judge: cannot parse" and attempts[1].reply == "garbled ###"
    assert attempts[0].verdict.in_scope is True and attempts[2].broke
    assert attempts[3].error == "Timeout: slow" and attempts[3].verdict is None
