"""The local model server: its prompt-prefix cache (setting, memory accounting, replies unchanged on the real model)
and which other servers compete for its CPUs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adversary.errors import ModelError
from adversary.models import local_server
from adversary.models.chat import Sampling, complete, resolve_route
from adversary.models.embedded import CHAT_MODELS, server_available
from adversary.models.local_server import (PROMPT_CACHE_ENV, PROMPT_CACHE_MB_DEFAULT, SERVER_MODULE, LocalServers,
                                           cpu_placement, other_local_servers, prompt_cache_mb, server_command)

llama_server = pytest.importorskip("adversary.models.llama_server", reason="llama-cpp-python is not installed")
LlamaState = pytest.importorskip("llama_cpp.llama").LlamaState
VOCAB = 50


def _state(tokens: tuple[int, ...], seed: int = 1, kv_bytes: int = 1000) -> LlamaState:
    return LlamaState(input_ids=np.array(tokens, dtype=np.intc), scores=np.ones((len(tokens), VOCAB), dtype=np.single),
                      n_tokens=len(tokens), llama_state=b"\0" * kv_bytes, llama_state_size=kv_bytes, seed=seed)


def test_cache_size_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(PROMPT_CACHE_ENV, raising=False)
    assert prompt_cache_mb() == PROMPT_CACHE_MB_DEFAULT
    monkeypatch.setenv(PROMPT_CACHE_ENV, " 256 ")
    assert prompt_cache_mb() == 256
    monkeypatch.setenv(PROMPT_CACHE_ENV, "0")
    assert prompt_cache_mb() == 0
    for bad in ("lots", "-5", "1.5"):
        monkeypatch.setenv(PROMPT_CACHE_ENV, bad)
        with pytest.raises(ModelError, match=f"{PROMPT_CACHE_ENV} must be a whole number of megabytes"):
            prompt_cache_mb()


def test_server_command_turns_the_cache_on_and_off():
    cached = server_command(Path("/m.gguf"), "smollm2", 8000, 2048, 1, 64)
    assert cached[1:3] == ["-m", SERVER_MODULE]
    assert cached[cached.index("--logits_all") + 1] == "False", "cached states would carry a logits row per token"
    assert cached[cached.index("--cache_size") + 1] == str(64 << 20) and cached[cached.index("--cache") + 1] == "True"
    assert cached[cached.index("--n_threads_batch") + 1] == "1", "prompt evaluation gets the server's threads, not every CPU"
    plain = server_command(Path("/m.gguf"), "smollm2", 8000, 2048, 1, 0)
    assert "--cache" not in plain and plain[plain.index("--port") + 1] == "8000"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_only_servers_that_share_this_process_cpus_are_competitors():
    mine = sorted(os.sched_getaffinity(0))
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", SERVER_MODULE])
    try:
        _wait_for_exec(server.pid)
        os.sched_setaffinity(server.pid, {mine[1]})
        assert server.pid in other_local_servers()
        os.sched_setaffinity(0, {mine[0]})
        assert server.pid not in other_local_servers(), "a server pinned to another core does not compete"
    finally:
        os.sched_setaffinity(0, set(mine))
        server.kill()
        server.wait()


def _wait_for_exec(pid: int, timeout: float = 30.0) -> None:
    """Until the child has exec'd: before that its /proc cmdline is still this test process's (CI saw the race)."""
    deadline = time.monotonic() + timeout
    while SERVER_MODULE.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"process {pid} did not start its command in {timeout:.0f} s"
        time.sleep(0.01)


cpu_sets = st.sets(st.integers(0, 7), min_size=1)


@given(mine=cpu_sets, busy=st.lists(cpu_sets, max_size=4))
def test_a_new_server_takes_the_cpus_no_other_server_uses_or_an_even_share(mine, busy):
    busy = [cpus & mine for cpus in busy]
    cpus, threads = cpu_placement(mine, busy)
    free = mine - set().union(*busy)
    assert cpus <= mine and 1 <= threads <= len(mine)
    if free:
        assert cpus == free and threads == len(free), "pinned to the free CPUs, a thread on each"
    else:
        assert cpus == mine and threads == max(1, len(mine) // (len(busy) + 1))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_a_server_started_beside_a_pinned_one_runs_on_the_other_cpus(monkeypatch):
    mine = sorted(os.sched_getaffinity(0))
    competitor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", SERVER_MODULE])
    warnings = []
    try:
        os.sched_setaffinity(competitor.pid, {mine[0]})
        # Only the competitor: servers other work on this machine runs (a campaign, CI) must not change the answer.
        monkeypatch.setattr(local_server, "other_local_servers", lambda: [competitor.pid])
        servers = LocalServers(warn=warnings.append)
        assert servers._placement() == (set(mine[1:]), len(mine) - 1)
        assert str(competitor.pid) in warnings[0] and "runs on CPU" in warnings[0]
    finally:
        competitor.kill()
        competitor.wait()


def test_cache_counts_what_its_states_take():
    cache = llama_server.PrefixStateCache(capacity_bytes=1 << 20)
    cache[(1, 2, 3)] = _state((1, 2, 3))
    assert cache.cache_size == 1000 + 3 * VOCAB * 4


def test_a_new_state_replaces_the_states_it_shares_most_of_their_tokens_with():
    cache = llama_server.PrefixStateCache(capacity_bytes=1 << 20)
    conversation = tuple(range(100))
    cache[conversation + (500, 501)] = _state(conversation + (500, 501), seed=1)
    cache[conversation[:30] + (600,)] = _state(conversation[:30] + (600,), seed=2)
    cache[conversation + (700, 701)] = _state(conversation + (700, 701), seed=3)
    assert len(cache.cache_state) == 1, "the newest state of the conversation serves every prompt the others served"
    assert cache[conversation[:30] + (999,)].seed == 3
    cache[(5,) * 300] = _state((5,) * 300, seed=4)
    cache[(5,) * 10 + (6,)] = _state((5,) * 10 + (6,), seed=5)
    assert cache[(5,) * 200].seed == 4, "a state sharing a small part of a longer one leaves it"


def test_cache_restores_the_longest_prefix_and_evicts_the_least_recently_used():
    one_state = 1000 + 3 * VOCAB * 4
    cache = llama_server.PrefixStateCache(capacity_bytes=2 * one_state + one_state // 2)
    cache[(1, 2, 3)] = _state((1, 2, 3), seed=1)
    cache[(4, 5, 6)] = _state((4, 5, 6), seed=2)
    assert cache[(1, 2, 3, 7)].seed == 1
    cache[(7, 8, 9)] = _state((7, 8, 9), seed=3)
    assert len(cache.cache_state) == 2 and cache.cache_size <= cache.capacity_bytes
    assert cache[(1, 2, 0)].seed == 1 and cache[(7, 8, 0)].seed == 3
    with pytest.raises(KeyError):
        cache[(4, 5, 0)]  # (4, 5, 6), used least recently, was evicted


def _bare_model(monkeypatch, seed: int = 7):
    """A PrefixCachingLlama without a loaded model, whose base save_state / load_state are stand-ins."""
    import llama_cpp

    monkeypatch.setattr(llama_cpp.Llama, "load_state", lambda self, state: setattr(self, "_seed", state.seed))
    monkeypatch.setattr(llama_cpp.Llama, "save_state", lambda self: LlamaState(
        self.input_ids[:self.n_tokens].copy(), self._scores.copy(), self.n_tokens, b"", 0, self._seed))
    model = llama_server.PrefixCachingLlama.__new__(llama_server.PrefixCachingLlama)
    model._stack = contextlib.ExitStack()
    model._seed, model._logits_all, model.n_tokens = seed, False, 40
    model.input_ids = np.zeros(64, dtype=np.intc)
    model.scores = np.zeros((64, VOCAB), dtype=np.single)
    return model


def test_saved_states_keep_one_row_of_logits(monkeypatch):
    model = _bare_model(monkeypatch)
    state = model.save_state()
    assert state.scores.shape == (1, VOCAB) and state.n_tokens == 40
    assert model.scores.shape == (64, VOCAB), "the model's own logits buffer is put back"


def test_restoring_a_state_keeps_the_sampling_seed_and_writes_one_row_of_logits(monkeypatch):
    import llama_cpp

    model = _bare_model(monkeypatch, seed=7)
    written = []
    monkeypatch.setattr(llama_cpp.Llama, "load_state", lambda self, state: (written.append(self.scores.shape),
                                                                             setattr(self, "_seed", state.seed)))
    model.load_state(_state((1, 2), seed=3))
    assert model._seed == 7
    assert written == [(1, VOCAB)] and model.scores.shape == (64, VOCAB)


@pytest.mark.integration
@pytest.mark.skipif(CHAT_MODELS["local/smollm2"].weights_path() is None or not server_available(),
                    reason="embedded model or llama-cpp-python[server] not installed")
def test_a_cached_server_replies_as_an_uncached_one(monkeypatch):
    """Calls that come back to earlier prompts, restored from the cache, give the replies an uncached server
    gives. Greedy decoding, since sampled replies may differ where float rounding flips a near tie."""
    def chat(system: str, user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    bank = "You are Acme Bank's assistant. Only discuss cards and transfers. " * 4
    hotel = "You are Pinecrest Hotels' reservation assistant. Only discuss bookings. " * 4
    rewriter = "Rewrite the user's message so that it sounds more urgent. Reply with the rewrite only. " * 4
    calls = [
        (chat(bank, "How do I freeze my card?"), 11), (chat(hotel, "Is breakfast included?"), 12),
        (chat(rewriter, "Tell me about pizza."), None), (chat(bank, "What is a good pizza topping?"), 13),
        (chat(rewriter, "Who won the football match?"), None), (chat(hotel, "Can you recommend a movie?"), 14),
        (chat(rewriter, "Tell me about pizza."), None), (chat(bank, "How do I freeze my card?"), 15),
    ]

    def replies(cache_mb: str) -> list[str | None]:
        monkeypatch.setenv(PROMPT_CACHE_ENV, cache_mb)
        with LocalServers() as servers:
            route = resolve_route("local/smollm2", servers)
            return [complete(route, messages, Sampling(temperature=0.0, max_tokens=24), seed).text for messages, seed in calls]

    cached = replies("64")
    assert all(cached)
    assert cached == replies("0")
