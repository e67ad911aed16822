"""Prefix-aware scheduling (pure), the identical-call cache and the embedding cache."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.core.schedule import prefix_order, shared_prefix_fraction
from adversary.models.call_cache import CachedChat, call_key
from adversary.models.chat import ChatResult, ModelRoute, Sampling
from adversary.models.embedder import CachedEmbedder

keys = st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from(["s1", "s2", "s3"]), st.integers(1, 4), st.sampled_from(["", "b"]))


@given(st.lists(keys, max_size=60))
@settings(max_examples=150, deadline=None)
def test_prefix_order_is_a_permutation_that_groups_equal_prefixes(items):
    indexed = list(enumerate(items))
    ordered = prefix_order(indexed, lambda pair: pair[1])
    assert sorted(ordered) == sorted(indexed)
    seen, previous = set(), None
    for _, key in ordered:
        if key != previous:
            assert key not in seen, "a prefix group is split"
            seen.add(key)
        previous = key
    for key in set(items):
        positions = [i for i, k in ordered if k == key]
        assert positions == sorted(positions), "items of one group keep their order"
    if items:
        assert ordered[0][1][:2] == items[0][:2], "the first item's target and scenario run first"
    assert shared_prefix_fraction([k for _, k in ordered]) >= shared_prefix_fraction(items) or len(items) < 2


def test_shared_prefix_fraction_counts_consecutive_equal_keys():
    a, b = ("t", "s", 1, ""), ("t", "s", 2, "")
    assert shared_prefix_fraction([a, a, b, b]) == 2 / 3
    assert shared_prefix_fraction([a, b, a, b]) == 0.0
    assert shared_prefix_fraction([a]) == 0.0


class CountingModel:
    def __init__(self, fail_first: int = 0):
        self.calls = 0
        self.fail_first = fail_first

    def __call__(self, route, messages, sampling, seed=None):
        self.calls += 1
        if self.calls <= self.fail_first:
            return ChatResult(text=None, latency_s=0.1, error="InternalServerError: boom")
        return ChatResult(text=f"reply {seed}", latency_s=0.5, prompt_tokens=10, completion_tokens=3)


ROUTE = ModelRoute(name="m", litellm_model="openai/m", api_base="http://127.0.0.1:1/v1", api_key="sk-secret-key-123456")
MESSAGES = [{"role": "system", "content": "Only banking."}, {"role": "user", "content": "Tell me a joke"}]


def test_identical_calls_run_once_and_hits_cost_nothing():
    model = CountingModel()
    chat = CachedChat(model)
    sampling = Sampling(temperature=0.7)
    first = chat(ROUTE, MESSAGES, sampling, 7)
    again = chat(ROUTE, MESSAGES, sampling, 7)
    other_seed = chat(ROUTE, MESSAGES, sampling, 8)
    assert model.calls == 2 and (chat.hits, chat.misses) == (1, 2)
    assert again.text == first.text and again.latency_s == 0.0 and again.tries == 0
    assert other_seed.text != first.text


def test_greedy_calls_ignore_the_seed_and_other_parameters_do_not():
    greedy = Sampling(temperature=0.0)
    assert call_key(ROUTE, MESSAGES, greedy, 1) == call_key(ROUTE, MESSAGES, greedy, 2)
    assert call_key(ROUTE, MESSAGES, Sampling(temperature=0.7), 1) != call_key(ROUTE, MESSAGES, Sampling(temperature=0.7), 2)
    assert call_key(ROUTE, MESSAGES, greedy, 1) != call_key(ROUTE, MESSAGES, Sampling(temperature=0.0, max_tokens=5), 1)
    other_endpoint = ModelRoute(name="m", litellm_model="openai/m", api_base="http://127.0.0.1:2/v1")
    assert call_key(ROUTE, MESSAGES, greedy, 1) != call_key(other_endpoint, MESSAGES, greedy, 1)
    assert "sk-secret" not in call_key(ROUTE, MESSAGES, greedy, 1)


def test_failures_are_not_cached_and_the_cache_is_bounded():
    model = CountingModel(fail_first=1)
    chat = CachedChat(model, max_entries=2)
    sampling = Sampling()
    assert not chat(ROUTE, MESSAGES, sampling, 1).ok
    assert chat(ROUTE, MESSAGES, sampling, 1).ok
    assert model.calls == 2
    for seed in (2, 3, 4):
        chat(ROUTE, MESSAGES, sampling, seed)
    chat(ROUTE, MESSAGES, sampling, 1)
    assert model.calls == 6, "the oldest entry was evicted"


class _CountingEmbedder(CachedEmbedder):
    """Encodes a text as a fixed function of its characters and counts what it was asked to encode."""

    name = "counting"

    def __init__(self, max_cached: int):
        super().__init__(batch_size=3, max_cached=max_cached)
        self.encoded: list[str] = []

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.encoded.extend(texts)
        return np.array([[len(t) + 1.0, sum(map(ord, t)) % 7 + 1.0, 1.0] for t in texts], dtype=np.float32)

    @property
    def dimensions(self) -> int:
        return 3


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(st.sampled_from(["a", "bb", "ccc", "dddd", "e", "ff", "g g"]), max_size=6), max_size=12),
       max_cached=st.integers(1, 5))
def test_embed_cache_stays_bounded_and_never_changes_a_vector(batches, max_cached):
    cached, fresh = _CountingEmbedder(max_cached), _CountingEmbedder(10_000)
    for batch in batches:
        assert np.array_equal(cached.embed(batch), fresh.embed(batch))
        assert len(cached._cache) <= max_cached
    assert cached.hits + cached.misses == sum(map(len, batches))


def test_embed_cache_keeps_recently_used_texts():
    embedder = _CountingEmbedder(max_cached=2)
    embedder.embed(["a", "bb"])
    embedder.embed(["a"])
    embedder.embed(["ccc"])
    embedder.encoded.clear()
    embedder.embed(["a", "bb"])
    assert embedder.encoded == ["bb"], "'a' was used last, so 'bb' was the one evicted"
