"""Which decoding slot a request goes to, and which prompt states a batched server keeps (pure, no llama.cpp).

A batched server decodes several requests at once, each in its own slot (a llama.cpp sequence with its own KV
cells). A finished slot keeps its cells, so a request that shares a prefix with it (the same scenario's
conversation, the same mutation instruction) only evaluates the rest of its prompt. Slots are few and prompt
families many, so a slot's state is also saved to a size-bounded `StateCache` before a request overwrites it,
and restored into a slot when a later request shares more with it than with any idle slot. A busy slot is a
source too: requests of one prefix arrive together (a campaign sends them in prefix order), and copying the
first one's cells is much cheaper than evaluating the prefix again in every slot.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

State = TypeVar("State")

MIN_REUSE_TOKENS = 16
"""Shared prefixes shorter than this (the chat template's opening tokens) are not worth a state restore."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def reusable(held: Sequence[int], prompt: Sequence[int]) -> int:
    """Tokens of `held` a request for `prompt` can keep: their common prefix, less one token when it covers the
    whole prompt (the last prompt token must be decoded again to give the logits the first reply token needs)."""
    return min(common_prefix(held, prompt), max(len(prompt) - 1, 0))


@dataclass(frozen=True)
class SlotChoice:
    """Where a request runs: `slot`, keeping the first `keep` tokens of its KV cells, after restoring the cached
    state `restore` into it (None: the slot's own cells)."""

    slot: int
    keep: int
    restore: tuple[int, ...] | None = None


def choose_slot(idle: Mapping[int, Sequence[int]], last_used: Mapping[int, int], prompt: Sequence[int],
                cached: Sequence[tuple[int, ...]] = ()) -> SlotChoice:
    """The idle slot for `prompt`: the one whose held tokens share its longest prefix (least recently used among
    equals); if a state held elsewhere shares a longer one, by at least `MIN_REUSE_TOKENS`, it is restored into the
    least recently used idle slot instead.

    Args:
        idle: held tokens of each idle slot (at least one).
        last_used: when each slot last took a request (larger is later; missing is never).
        prompt: the request's prompt tokens.
        cached: tokens of the states that can be copied into a slot (the cache's keys, busy slots' held tokens).
    """
    if not idle:
        raise ValueError("no idle slot")
    by_age = sorted(idle, key=lambda slot: (last_used.get(slot, -1), slot))
    best = max(by_age, key=lambda slot: reusable(idle[slot], prompt))  # max keeps the first (oldest) of equals
    keep = reusable(idle[best], prompt)
    if cached:
        key = max(cached, key=lambda k: reusable(k, prompt))
        from_cache = reusable(key, prompt)
        if from_cache >= keep + MIN_REUSE_TOKENS:
            return SlotChoice(slot=by_age[0], keep=from_cache, restore=key)
    return SlotChoice(slot=best, keep=keep)


def worth_waiting(prompt: Sequence[int], available: int, filling: Iterable[Sequence[int]]) -> bool:
    """Whether a request should wait for a busy slot still evaluating a prompt it shares more of, then copy that
    slot's cells: true when one of the `filling` prompts gives it at least `MIN_REUSE_TOKENS` more than the
    `available` tokens it could reuse now. Requests of one prefix arrive together, and evaluating the prefix once
    and copying it is far cheaper than evaluating it in every slot at the same time."""
    return any(reusable(tokens, prompt) >= available + MIN_REUSE_TOKENS for tokens in filling)


def worth_saving(held: Sequence[int], keep: int) -> bool:
    """Whether a slot's held tokens should go to the cache before a request keeps only `keep` of them: the request
    discards at least half of them, and there are enough to be worth restoring."""
    return len(held) >= MIN_REUSE_TOKENS and 2 * keep < len(held)


class StateCache(Generic[State]):
    """Saved slot states by the tokens they hold, least recently used out first, within `capacity_bytes`.

    States of one prompt family (one scenario's conversation at several insertion points) would pile up although
    any of them restores the shared prefix, so a new state replaces those it shares at least half of their tokens
    with; the capacity then holds many more families.
    """

    def __init__(self, capacity_bytes: int):
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[tuple[int, ...], tuple[State, int]] = OrderedDict()

    @property
    def size_bytes(self) -> int:
        return sum(size for _, size in self._states.values())

    def keys(self) -> list[tuple[int, ...]]:
        return list(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: object) -> bool:
        return key in self._states

    def put(self, key: Sequence[int], state: State, size_bytes: int) -> None:
        """Keep `state` (of `size_bytes`) for `key`, dropping the states it supersedes and the least recently used
        ones beyond the capacity; a state larger than the whole capacity is not kept."""
        key = tuple(key)
        for older in [k for k in self._states if 2 * common_prefix(k, key) >= len(k)]:
            del self._states[older]
        if size_bytes > self.capacity_bytes:
            return
        self._states[key] = (state, size_bytes)
        while self.size_bytes > self.capacity_bytes:
            self._states.popitem(last=False)

    def get(self, key: Sequence[int]) -> State:
        """The state saved for `key`, now the most recently used. Raises KeyError when absent."""
        key = tuple(key)
        state, _ = self._states[key]
        self._states.move_to_end(key)
        return state
