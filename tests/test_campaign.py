"""The search campaign with scripted target, judge, rewriter and embedder: budgets, outputs, resume, replay."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from adversary.campaign import CampaignConfig, run_campaign
from adversary.models.chat import ChatResult
from adversary.records import Verdict
from adversary.store import Store, StoreError


class HashEmbedder:
    """Deterministic bag-of-words vectors: similar texts share words, so similar vectors."""

    name = "hash-embedder"
    dimensions = 64

    def embed(self, texts):
        rows = []
        for text in texts:
            vector = np.zeros(self.dimensions, dtype=np.float32)
            for word in text.lower().split():
                vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimensions] += 1
            rows.append(vector / (np.linalg.norm(vector) or 1))
        return np.stack(rows)


class Target:
    """Breaks on pressure words always, otherwise on odd seeds one time in three."""

    def __init__(self):
        self.calls = []

    def __call__(self, route, messages, sampling, seed):
        user = messages[-1]["content"]
        self.calls.append((user, seed))
        pressured = any(w in user.lower() for w in ("please", "urgent", "since you mentioned"))
        broke = pressured or seed % 3 == 0
        return ChatResult(text="OFFSCOPE answer" if broke else "I'm sorry, I can only help with this service.", latency_s=0.0)


class Judge:
    name = "scripted"

    def judge(self, items):
        return [Verdict(in_scope="OFFSCOPE" not in i.response, refusal="sorry" in i.response, judge=self.name) for i in items]


class Rewriter:
    calls = 0
    failures = 0

    def rewrite(self, instruction, topic, message):
        self.calls += 1
        return f"Could you tell me, as a {topic} customer, {message.lower()}"


def _run(tiny_corpus, run_dir, resume=False, budget=120, search="novelty", target=None):
    config = CampaignConfig(scenario_paths=(str(tiny_corpus),), targets=("fake",), judge="scripted", budget_calls=budget,
                            search=search, seed=1, candidates_per_generation=4, initial_trials=2, max_trials=6)
    target = target or Target()
    result = run_campaign(config, run_dir, resume=resume, judge=Judge(), call=target, rewriter=Rewriter(), embedder=HashEmbedder())
    return result, target


@pytest.mark.parametrize("search", ["novelty", "greedy", "random"])
def test_campaign_stops_at_the_call_budget_and_writes_outputs(tiny_corpus, tmp_path, search):
    result, target = _run(tiny_corpus, tmp_path / "run", search=search)
    assert result.stop_reason == "budget_calls"
    assert len(target.calls) == 120 == result.metrics["calls"]
    archive = [json.loads(line) for line in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    assert len(archive) == result.metrics["archive_size"] > 3
    assert any(e["operator"] != "seed" and e["parents"] for e in archive)
    for entry in archive:
        if entry["trials"]:
            assert entry["ci95"][0] <= entry["break_rate"] <= entry["ci95"][1]
    m = result.metrics
    assert m["seed_break_rate"]["members"] == 3
    assert m["generations"] and m["generations"][-1]["archive_size"] <= m["archive_size"]
    assert 0 <= m["mutations"]["usable"] <= m["mutations"]["calls"]


def test_resume_with_a_larger_budget_repeats_no_finished_attempt(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    _, first = _run(tiny_corpus, run_dir, budget=60)
    result, second = _run(tiny_corpus, run_dir, resume=True, budget=120)
    assert len(first.calls) + len(second.calls) == 120 == result.metrics["calls"]
    with Store.open(run_dir) as store:
        keys = [a.key for a in store.attempts()]
    assert len(keys) == len(set(keys))


def test_an_uninterrupted_run_and_a_resumed_one_reach_the_same_archive(tiny_corpus, tmp_path):
    whole, _ = _run(tiny_corpus, tmp_path / "whole", budget=100)
    _run(tiny_corpus, tmp_path / "split", budget=50)
    resumed, _ = _run(tiny_corpus, tmp_path / "split", resume=True, budget=100)
    read = lambda p: [(e["id"], e["breaks"], e["trials"]) for e in map(json.loads, (p / "archive.jsonl").read_text().splitlines())]
    assert sorted(read(tmp_path / "whole")) == sorted(read(tmp_path / "split"))


def test_starting_over_an_existing_campaign_is_refused(tiny_corpus, tmp_path):
    _run(tiny_corpus, tmp_path / "run", budget=20)
    with pytest.raises(StoreError, match="--resume"):
        _run(tiny_corpus, tmp_path / "run", budget=20)
