"""Prefix-aware call order: calls that share a prompt prefix run back to back.

A local llama.cpp server keeps the KV cache of the prompt it evaluated last and re-evaluates only
the part of the next prompt that differs. Calls to one target that share a scenario (system prompt)
and insertion point (dialogue) therefore run much faster consecutively than interleaved with
other scenarios: `bench/run.py` measures the speedup as `prefix_reuse_speedup`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

PrefixKey = tuple[str, str, int, str]
"""(target, scenario, insertion point, bridge turn or ""): calls with equal keys share their whole prefix."""


def prefix_order(items: Sequence[T], key: Callable[[T], PrefixKey]) -> list[T]:
    """`items` grouped by prefix key. Groups keep the order in which their first item appeared, items
    within a group keep their relative order, so the schedule is deterministic and priorities survive
    (a group that held the first item runs first). Within one target and scenario, insertion points
    ascend so consecutive groups still share the system prompt and the dialogue's opening turns."""
    first_seen: dict[tuple[str, str], int] = {}
    for position, item in enumerate(items):
        target, scenario, _, _ = key(item)
        first_seen.setdefault((target, scenario), position)
    indexed = list(enumerate(items))
    indexed.sort(key=lambda pair: (first_seen[key(pair[1])[:2]], key(pair[1])[2], key(pair[1])[3], pair[0]))
    return [item for _, item in indexed]


def shared_prefix_fraction(keys: Sequence[PrefixKey]) -> float:
    """Fraction of calls whose prefix key equals the previous call's: how much a one-slot prompt cache can reuse."""
    if len(keys) < 2:
        return 0.0
    return sum(1 for previous, current in zip(keys, keys[1:]) if previous == current) / (len(keys) - 1)
