"""Fault injection: a fake OpenAI-compatible server fails at random; the accounting must match what it did."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from adversary.evaluation import EvalConfig, run_eval
from adversary.models.chat import MAX_BACKOFF_S, ModelRoute, Sampling, complete, retry_delay
from adversary.store import Store
from tests.fake_openai import FAULTS, FakeOpenAI, FaultInjector, completion, off_topic_when

FAST = dict(timeout_s=0.5, backoff_s=0.01)


def _fast(route, messages, sampling, seed):
    return complete(route, messages, replace(sampling, **FAST), seed)


def _route(server) -> ModelRoute:
    return ModelRoute(name="fakebot", litellm_model="openai/fakebot", api_base=server.api_base, api_key="sk-test-not-a-real-key")


def test_backoff_grows_exponentially_with_full_jitter_and_honours_retry_after():
    assert retry_delay(0, 1.0, draw=1.0) == 1.0 and retry_delay(3, 1.0, draw=1.0) == 8.0
    assert retry_delay(20, 1.0, draw=1.0) == MAX_BACKOFF_S
    assert retry_delay(2, 1.0, draw=0.25) == 1.0
    assert retry_delay(5, 1.0, retry_after_s=0.0) == 0.0 and retry_delay(0, 1.0, retry_after_s=999) == MAX_BACKOFF_S


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_kind_is_retried_or_reported_and_never_raises(fault):
    answers = iter([fault, "ok"])

    class OneFault(FaultInjector):
        def __call__(self, body):
            kind = next(answers, "ok")
            self.log.append((kind, body))
            return self.inner(body) if kind == "ok" else __import__("tests.fake_openai", fromlist=["Fault"]).Fault(kind, 1.0)

    injector = OneFault(lambda body: (200, completion("fine")), rate=0)
    with FakeOpenAI(injector) as server:
        result = complete(_route(server), [{"role": "user", "content": "hi"}], Sampling(retries=2, **FAST), seed=1)
    if result.ok:
        assert result.text == "fine" and result.tries == 2
    else:
        assert result.tries == 1 and result.error, "a non-transient failure is reported at once"
    assert len(injector.log) == result.tries


def test_a_call_that_keeps_failing_is_an_error_after_its_retries():
    with FakeOpenAI(lambda body: (500, {"error": {"message": "down"}})) as server:
        result = complete(_route(server), [{"role": "user", "content": "hi"}], Sampling(retries=3, **FAST))
        assert not result.ok and result.tries == 4 and len(server.requests) == 4
    assert "sk-test" not in result.error


def test_eval_accounting_matches_what_a_faulty_server_did(tiny_corpus, tmp_path):
    injector = FaultInjector(off_topic_when("poem"), rate=0.4, seed=11, timeout_sleep_s=1.0)
    with FakeOpenAI(injector) as server:
        config = EvalConfig(scenario_paths=(str(tiny_corpus),), targets=("fakebot",), trials=10, seed=0, judge="keyword",
                            api_base=server.api_base)
        result = run_eval(config, tmp_path / "run", call=_fast)
    calls: dict[str, list[str]] = {}
    for outcome, body in injector.log:
        key = json.dumps([body.get("seed"), body["messages"]], sort_keys=True)
        calls.setdefault(key, []).append(outcome)
    injected = sum(outcome != "ok" for outcome, _ in injector.log)
    assert injected >= 10, "the run saw real faults"
    assert all(len(outcomes) <= Sampling().retries + 1 and "ok" not in outcomes[:-1] for outcomes in calls.values())
    failed = sum(outcomes[-1] != "ok" for outcomes in calls.values())
    engaged = sum(outcomes[-1] == "ok" and "poem" in json.loads(key)[1][-1]["content"].lower() for key, outcomes in calls.items())
    with Store.open(tmp_path / "run") as store:
        attempts = list(store.attempts())
    assert len(attempts) == len(calls)
    assert sum(a.status == "error" for a in attempts) == failed
    assert sum(bool(a.broke) for a in attempts) == engaged
    target = result.metrics["targets"]["fakebot"]
    assert sum(target["errors"].values()) == failed
    assert target["trials"] + target["control_trials"] == len(calls) - failed


def test_campaign_accounting_matches_what_a_faulty_server_did(tiny_corpus, tmp_path):
    from adversary.campaign import CampaignConfig, run_campaign

    injector = FaultInjector(off_topic_when("please"), rate=0.3, seed=5, timeout_sleep_s=1.0)
    with FakeOpenAI(injector) as server:
        config = CampaignConfig(scenario_paths=(str(tiny_corpus),), targets=("fakebot",), mutator="fakebot", judge="keyword",
                                api_base=server.api_base, budget_calls=60, seed=4,
                                strategies=("tangential", "emotional", "socratic", "subtler", "crossover"))
        result = run_campaign(config, tmp_path / "run", call=_fast)
    assert result.stop_reason in ("budget_calls", "archive confirmed")
    calls: dict[str, list[str]] = {}
    for outcome, body in injector.log:
        calls.setdefault(json.dumps([body.get("seed"), body["messages"]], sort_keys=True), []).append(outcome)
    assert sum(outcome != "ok" for outcome, _ in injector.log) >= 10, "the run saw real faults"
    with Store.open(tmp_path / "run") as store:
        attempts = list(store.attempts())
    assert len(attempts) == len(calls), "one stored attempt per distinct request (a failed one retried later is replaced)"
    assert sum(a.status == "error" for a in attempts) == sum(outcomes[-1] != "ok" for outcomes in calls.values())
    engaged = sum(outcomes[-1] == "ok" and "please" in json.loads(key)[1][-1]["content"].lower() for key, outcomes in calls.items())
    assert sum(bool(a.broke) for a in attempts) == engaged
    assert result.metrics["errors"] == sum(a.status == "error" for a in attempts)


def test_ctrl_c_stops_model_calls_even_when_a_library_swallows_the_interrupt(monkeypatch):
    """A bridge that turns KeyboardInterrupt into a retryable error must not keep the run sending requests."""
    import os
    import signal

    import litellm

    from adversary.models import chat
    from adversary.models.interrupt import ctrl_c_stops_model_calls

    calls = []

    def swallowing_completion(**kwargs):
        calls.append(kwargs)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise litellm.APIConnectionError(message="interrupted", llm_provider="openai", model="fake") from None
        raise AssertionError("the signal did not arrive")

    monkeypatch.setattr(litellm, "completion", swallowing_completion)
    route = chat.ModelRoute(name="fake", litellm_model="openai/fake", api_key="sk-test")
    handler_before = signal.getsignal(signal.SIGINT)
    with ctrl_c_stops_model_calls(), pytest.raises(KeyboardInterrupt):
        chat.complete(route, [{"role": "user", "content": "hi"}], chat.Sampling(retries=3, backoff_s=0.0))
    assert len(calls) == 1, "no request starts after Ctrl-C"
    assert signal.getsignal(signal.SIGINT) is handler_before
    chat.raise_if_interrupted()  # leaving the block forgets the interrupt


def test_after_ctrl_c_a_dspy_program_sends_no_request():
    """The mutator and LLM judges call models through dspy; after Ctrl-C they must not start a request either."""
    import os
    import signal

    from adversary.models.dspy_lm import make_lm
    from adversary.models.interrupt import ctrl_c_stops_model_calls

    with FakeOpenAI(off_topic_when("poem")) as server, ctrl_c_stops_model_calls():
        lm = make_lm(ModelRoute(name="fake", litellm_model="openai/fake", api_base=server.api_base, api_key="sk-test"), cache=False)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass  # a library swallowing it looks the same from here on
        with pytest.raises(KeyboardInterrupt):
            lm("write a poem")
        assert server.requests == []
