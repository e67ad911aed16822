"""Mutation strategies (installed as `adversary.strategies`).

Public names:
    Strategy            the Protocol every mutation operator implements
    Parent, Proposal    what an operator reads and returns
    Rewriter            the LLM rewriting interface LLM-backed operators use
    register_strategy   add an operator to the registry
    available_strategies, get_strategy
    ENTRY_POINT_GROUP   "adversary.strategies": other packages register operators there

Built-in operators (registered through the entry-point group, like plugins): tangential, emotional,
socratic, subtler, two-turn, crossover (no LLM needed), and paraphrase, llm-emotional, llm-socratic,
llm-subtler, llm-pivot (a dspy program on the --mutator model). All but llm-pivot keep the parent's request.
"""

from adversary.strategies._registry import (
    ENTRY_POINT_GROUP,
    Parent,
    Proposal,
    Rewriter,
    Strategy,
    available_strategies,
    get_strategy,
    register_strategy,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Parent",
    "Proposal",
    "Rewriter",
    "Strategy",
    "available_strategies",
    "get_strategy",
    "register_strategy",
]
