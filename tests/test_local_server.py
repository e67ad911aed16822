"""The local model server: slots and prompt-state cache settings, the batched server on the real model (replies as
one at a time, concurrent requests), and which other servers compete for its CPUs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adversary.errors import ModelError
from adversary.models import local_server
from adversary.models.chat import Sampling, complete, resolve_route
from adversary.models.embedded import CHAT_MODELS, server_available
from adversary.models.local_server import (MAX_SLOTS, PROMPT_CACHE_ENV, PROMPT_CACHE_MB_DEFAULT, SERVER_MODULE,
                                           SLOTS_DEFAULT, SLOTS_ENV, LocalServers, calls_in_flight, cpu_placement,
                                           local_slots, other_local_servers, prompt_cache_mb, server_command)

from adversary.core.slots import common_prefix

llama_server = pytest.importorskip("adversary.models.llama_server", reason="llama-cpp-python is not installed")



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


def test_server_command_sets_slots_context_and_cache():
    command = server_command(Path("/m.gguf"), "smollm2", 8000, 2048, 1, 64, slots=4)
    assert command[1:3] == ["-m", SERVER_MODULE]
    assert command[command.index("--cache_mb") + 1] == "64" and command[command.index("--slots") + 1] == "4"
    assert command[command.index("--n_ctx") + 1] == "2048", "every slot holds the model's whole context"
    assert command[command.index("--n_threads") + 1] == "1" and command[command.index("--port") + 1] == "8000"
    args = llama_server.parse_args(command[3:])
    assert (args.slots, args.n_ctx, args.cache_mb, args.n_threads) == (4, 2048, 64, 1)


def test_slots_come_from_the_environment_and_bad_counts_give_one_line(monkeypatch):
    monkeypatch.delenv(SLOTS_ENV, raising=False)
    assert local_slots() == SLOTS_DEFAULT
    monkeypatch.setenv(SLOTS_ENV, " 3 ")
    assert local_slots() == 3
    for bad in ("0", "-2", "many", "1.5", str(MAX_SLOTS + 1)):
        monkeypatch.setenv(SLOTS_ENV, bad)
        with pytest.raises(ModelError, match=f"^{SLOTS_ENV} must be a whole number of slots from 1 to {MAX_SLOTS}"):
            local_slots()


def test_the_server_refuses_bad_slot_counts_in_one_line(capsys):
    for bad in ("0", str(MAX_SLOTS + 1)):
        with pytest.raises(SystemExit) as exit_info:
            llama_server.parse_args(["--model", "m.gguf", "--model_alias", "a", "--port", "1", "--slots", bad])
        assert exit_info.value.code == 2
        assert f"--slots must be between 1 and {MAX_SLOTS}" in capsys.readouterr().err


def test_local_targets_get_a_call_in_flight_per_slot_and_remote_ones_their_concurrency(monkeypatch):
    monkeypatch.setenv(SLOTS_ENV, "6")
    assert calls_in_flight(None, ["local/smollm2", "local/smollm2-guarded"]) == 6
    assert calls_in_flight(None, ["local/smollm2", "openai/gpt-4o-mini"]) == 1
    assert calls_in_flight(3, ["local/smollm2"]) == 3


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
        monkeypatch.setenv(SLOTS_ENV, "1")  # one slot: every return to an earlier prompt is the cache's work
        with LocalServers() as servers:
            route = resolve_route("local/smollm2", servers)
            return [complete(route, messages, Sampling(temperature=0.0, max_tokens=24), seed).text for messages, seed in calls]

    cached = replies("64")
    assert all(cached)
    assert cached == replies("0")


@pytest.mark.integration
@pytest.mark.skipif(CHAT_MODELS["local/smollm2"].weights_path() is None or not server_available(),
                    reason="embedded model or llama-cpp-python[server] not installed")
def test_concurrent_requests_are_decoded_together_and_each_gets_its_own_reply(monkeypatch):
    """Four greedy requests sent at once to a 4-slot server share decode steps, and each reply is its own request's:
    closer to what that request gets alone than to any other request's reply (batched logits may flip a near tie,
    so exact equality is not required of every reply)."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    system = "You are Acme Bank's assistant. Only discuss cards and transfers."
    questions = ["How do I freeze my card?", "Tell me a joke about cats.", "What is the capital of France?",
                 "Write a haiku about the sea."]
    monkeypatch.setenv(SLOTS_ENV, "4")
    monkeypatch.setenv(PROMPT_CACHE_ENV, "0")
    with LocalServers() as servers:
        route = resolve_route("local/smollm2", servers)

        def ask(question: str) -> str:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
            return complete(route, messages, Sampling(temperature=0.0, max_tokens=32), 1).text

        alone = [ask(q) for q in questions]
        before = httpx.get(route.api_base.removesuffix("/v1") + "/stats").json()
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(ask, questions))
        after = httpx.get(route.api_base.removesuffix("/v1") + "/stats").json()
    generated = after["generated_tokens"] - before["generated_tokens"]
    decodes = after["decode_calls"] - before["decode_calls"]
    assert after["requests"] - before["requests"] == 4
    assert decodes < generated * 0.6, f"{decodes} decode calls for {generated} tokens: the requests were not batched"
    assert all(together)
    for i, reply in enumerate(together):
        shared = [common_prefix(reply, other) for other in alone]
        assert shared[i] == max(shared) and shared[i] >= 10, (i, reply, alone)
    assert sum(a == b for a, b in zip(alone, together)) >= 2


@pytest.mark.integration
@pytest.mark.skipif(CHAT_MODELS["local/smollm2"].weights_path() is None or not server_available(),
                    reason="embedded model or llama-cpp-python[server] not installed")
def test_a_prompt_longer_than_a_slot_is_refused_in_one_line_and_the_server_goes_on(monkeypatch):
    import httpx

    monkeypatch.setenv(SLOTS_ENV, "2")
    with LocalServers() as servers:
        route = resolve_route("local/smollm2", servers)
        url = route.api_base + "/chat/completions"
        long = httpx.post(url, json={"messages": [{"role": "user", "content": "word " * 5000}], "max_tokens": 4},
                          timeout=120)
        assert long.status_code == 400
        assert re.fullmatch(r"the prompt has \d+ tokens; a slot holds 4096", long.json()["error"]["message"])
        bad = httpx.post(url, json={"messages": "hello"}, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"]["message"] == "messages must be a non-empty list"
        fine = httpx.post(url, json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, timeout=120)
        assert fine.status_code == 200 and fine.json()["usage"]["completion_tokens"] <= 4
