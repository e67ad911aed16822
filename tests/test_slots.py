"""Which slot a batched server gives a request, and which slot states it keeps (core.slots, no llama.cpp)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adversary.core.slots import (MIN_REUSE_TOKENS, StateCache, choose_slot, common_prefix, reusable,
                                  worth_saving, worth_waiting)

tokens = st.lists(st.integers(0, 3), max_size=40)


@given(tokens, tokens)
def test_common_prefix_is_the_length_of_the_shared_start(a, b):
    n = common_prefix(a, b)
    assert a[:n] == b[:n]
    assert n == min(len(a), len(b)) or a[n] != b[n]


@given(st.dictionaries(st.integers(0, 7), tokens, min_size=1), tokens.filter(bool),
       st.dictionaries(st.integers(0, 7), st.integers(0, 100)), st.lists(tokens.map(tuple), max_size=4))
def test_a_request_keeps_the_most_it_can_and_always_decodes_a_prompt_token(idle, prompt, last_used, cached):
    choice = choose_slot(idle, last_used, prompt, cached)
    assert choice.slot in idle
    assert choice.keep < len(prompt), "the last prompt token is decoded again to give the first reply token's logits"
    best_slot = max(reusable(held, prompt) for held in idle.values())
    if choice.restore is None:
        assert choice.keep == reusable(idle[choice.slot], prompt) == best_slot
    else:
        assert choice.restore in cached and choice.keep == reusable(choice.restore, prompt)
        assert choice.keep >= best_slot + MIN_REUSE_TOKENS
        oldest = min(idle, key=lambda s: (last_used.get(s, -1), s))
        assert choice.slot == oldest, "a restored state overwrites the least recently used idle slot"


def test_equal_slots_go_by_least_recent_use_and_no_slot_is_an_error():
    prompt = [1, 2, 3]
    assert choose_slot({0: [9], 1: [9], 2: [9]}, {0: 5, 1: 2, 2: 7}, prompt).slot == 1
    assert choose_slot({0: [1, 2, 9], 1: [9]}, {0: 9, 1: 0}, prompt).slot == 0, "a shared prefix beats age"
    with pytest.raises(ValueError):
        choose_slot({}, {}, prompt)


def test_a_cached_state_is_restored_only_when_it_saves_enough_tokens():
    system = list(range(100))
    prompt = system + [500]
    slot_holds = {0: system[:50], 1: [7]}
    small_gain = [tuple(system[:50 + MIN_REUSE_TOKENS - 1])]
    assert choose_slot(slot_holds, {}, prompt, small_gain).restore is None
    big_gain = [tuple(system)]
    choice = choose_slot(slot_holds, {0: 3, 1: 1}, prompt, big_gain)
    assert choice.restore == tuple(system) and choice.keep == 100 and choice.slot == 1


def test_a_slot_is_saved_before_a_request_discards_most_of_it():
    held = list(range(100))
    assert worth_saving(held, 0) and worth_saving(held, 49)
    assert not worth_saving(held, 50), "a request that keeps half of it leaves the rest to be rebuilt cheaply"
    assert not worth_saving(held[:MIN_REUSE_TOKENS - 1], 0)


def test_the_cache_counts_bytes_and_evicts_the_least_recently_used():
    cache: StateCache[str] = StateCache(capacity_bytes=250)
    cache.put((1, 2, 3), "a", 100)
    cache.put((4, 5, 6), "b", 100)
    assert cache.get((1, 2, 3)) == "a"
    cache.put((7, 8, 9), "c", 100)
    assert cache.size_bytes == 200 and set(cache.keys()) == {(1, 2, 3), (7, 8, 9)}
    with pytest.raises(KeyError):
        cache.get((4, 5, 6))  # used least recently, so evicted
    cache.put((10,), "too big", 251)
    assert (10,) not in cache


def test_a_new_state_replaces_the_states_it_shares_most_of_their_tokens_with():
    cache: StateCache[str] = StateCache(capacity_bytes=10_000)
    conversation = tuple(range(100))
    cache.put(conversation + (500, 501), "first", 10)
    cache.put(conversation[:30] + (600,), "short", 10)
    cache.put(conversation + (700, 701), "newest", 10)
    assert cache.keys() == [conversation + (700, 701)], "the newest state serves every prompt the others served"
    cache.put((5,) * 300, "long", 10)
    cache.put((5,) * 10 + (6,), "small part", 10)
    assert (5,) * 300 in cache, "a state sharing a small part of a longer one leaves it"


def test_a_negative_capacity_is_refused():
    with pytest.raises(ValueError):
        StateCache(-1)


def test_a_request_waits_for_a_busy_slot_evaluating_a_prompt_it_shares_more_of():
    system = list(range(200))
    prompt = system + [7, 8]
    assert worth_waiting(prompt, available=0, filling=[system + [9]])
    assert not worth_waiting(prompt, available=200 - MIN_REUSE_TOKENS + 1, filling=[system + [9]])
    assert not worth_waiting(prompt, available=0, filling=[[5] + system])
    assert not worth_waiting(prompt, available=0, filling=[])
