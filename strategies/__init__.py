"""Mutation strategies (installed as `adversary.strategies`).

Public names:
    Strategy            the Protocol every mutation operator implements
    register_strategy   add an operator to the registry
    available_strategies, get_strategy
    ENTRY_POINT_GROUP   "adversary.strategies": other packages register operators there

The search engine (a later milestone) asks strategies for candidate distractors; the built-in
operators register through the same registry and entry-point group as third-party ones.
"""

from adversary.strategies._registry import (
    ENTRY_POINT_GROUP,
    Strategy,
    available_strategies,
    get_strategy,
    register_strategy,
)

__all__ = ["ENTRY_POINT_GROUP", "Strategy", "available_strategies", "get_strategy", "register_strategy"]
