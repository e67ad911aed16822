"""Call limits (requests per minute, calls in flight), ordered concurrency, and litellm Router deployments."""

from __future__ import annotations

import random
import threading
import time

import pytest

from adversary.campaign import CampaignConfig, run_campaign
from adversary.errors import ConfigError
from adversary.evaluation import EvalConfig, run_eval
from adversary.models.chat import load_router
from adversary.models.limits import RateLimiter, in_order
from adversary.store import Store
from tests.fake_openai import FakeOpenAI, off_topic_when


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limiter_spaces_calls_evenly():
    clock = FakeClock()
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        limiter.acquire()
        starts.append(clock.now)
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0]
    clock.now = 10.0
    assert limiter.acquire() == 0.0, "an idle limiter lets the next call through at once"


def test_in_order_keeps_input_order_and_finishes_calls_in_flight_before_an_error():
    def slow_square(x):
        time.sleep(random.random() / 200)
        return x * x

    assert list(in_order(slow_square, range(40), workers=6)) == [x * x for x in range(40)]

    def items():
        yield from range(10)
        raise RuntimeError("budget spent")

    seen = []
    with pytest.raises(RuntimeError):
        for value in in_order(slow_square, items(), workers=4):
            seen.append(value)
    assert seen == [x * x for x in range(10)], "every call handed out was collected"


def test_in_order_stops_handing_out_calls_when_the_caller_stops_reading():
    started = []

    def record(x):
        started.append(x)
        time.sleep(0.01)
        return x

    results = in_order(record, range(1000), workers=3)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    results.close()
    assert len(started) <= 5 + 3, "closing the generator cancels work nobody will read"


class CountingResponder:
    """Wraps a responder; records the most requests it served at the same time."""

    def __init__(self, inner, delay_s: float = 0.05):
        self.inner, self.delay_s = inner, delay_s
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, body):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay_s)
            return self.inner(body)
        finally:
            with self.lock:
                self.active -= 1


def test_a_concurrent_campaign_overlaps_calls_and_its_accounting_matches_the_server(tiny_corpus, tmp_path):
    responder = CountingResponder(off_topic_when("please"))
    with FakeOpenAI(responder) as server:
        config = CampaignConfig(scenario_paths=(str(tiny_corpus),), targets=("fakebot",), mutator="fakebot", judge="keyword",
                                api_base=server.api_base, budget_calls=50, seed=2, concurrency=4,
                                strategies=("tangential", "emotional", "socratic", "two-turn"))
        result = run_campaign(config, tmp_path / "run")
        sent = [r for r in server.requests if r["body"].get("max_tokens") != 1]
    assert responder.peak > 1, "calls overlapped"
    assert result.metrics["calls"] == len(sent) <= 50
    with Store.open(tmp_path / "run") as store:
        assert store.calls() == len(sent)


def _router_file(tmp_path, *servers) -> str:
    lines = ["model_list:"]
    for server in servers:
        lines += ["  - model_name: fakebot", "    litellm_params:", "      model: openai/fakebot",
                  f"      api_base: {server.api_base}", "      api_key: sk-local-no-key"]
    lines += ["router_settings:", "  routing_strategy: simple-shuffle"]
    path = tmp_path / "router.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_router_spreads_an_eval_over_its_deployments(tiny_corpus, tmp_path):
    with FakeOpenAI(off_topic_when("poem")) as first, FakeOpenAI(off_topic_when("poem")) as second:
        config = EvalConfig(scenario_paths=(str(tiny_corpus),), targets=("fakebot",), trials=4, judge="keyword",
                            router=_router_file(tmp_path, first, second), concurrency=3)
        result = run_eval(config, tmp_path / "run")
        served = [len([r for r in s.requests if r["body"].get("max_tokens") != 1]) for s in (first, second)]
    assert min(served) > 0, f"both deployments served calls: {served}"
    assert sum(served) == result.metrics["attempts"] == result.attempts_run


@pytest.mark.parametrize("text, expected", [
    ("model_list: []\n", "non-empty model_list"),
    ("model_list:\n  - model_name: x\n", "model_list[0] needs model_name and litellm_params.model"),
    ("model_list: [\n", "cannot read the router config"),
])
def test_bad_router_configs_name_the_file(tmp_path, text, expected):
    path = tmp_path / "router.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_router(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_a_bad_router_file_fails_before_the_run_directory_is_written(tiny_corpus, tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("model_list: []\n")
    for run in (lambda: run_eval(EvalConfig(scenario_paths=(str(tiny_corpus),), targets=("fakebot",), judge="keyword",
                                            router=str(path)), tmp_path / "eval"),
                lambda: run_campaign(CampaignConfig(scenario_paths=(str(tiny_corpus),), targets=("fakebot",), judge="keyword",
                                                    mutator="fakebot", router=str(path)), tmp_path / "run")):
        with pytest.raises(ConfigError):
            run()
    assert not (tmp_path / "eval").exists() and not (tmp_path / "run").exists()
