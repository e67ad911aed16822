"""The metric aggregation and placement planning of the pure core."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.core.metrics import Outcome, summarize_attempts
from adversary.core.placement import plan_placements, trial_seed
from adversary.corpus import load_path
from adversary.records import Corpus, Distractor, Scenario, Style, Turn


def _outcome(kind: str, in_scope: bool | None, refusal: bool | None = None, status: str = "ok", style: str = "blunt", turn: int = 1):
    return Outcome(target="t", kind=kind, scenario_id="s", item_id="i", style=style, insertion_point=turn,
                   status=status, in_scope=in_scope, refusal=refusal)


def test_break_rate_counts_only_valid_distractor_trials():
    outcomes = [
        _outcome("distractor", False, False),
        _outcome("distractor", True, True),
        _outcome("distractor", True, True, style="emotional", turn=3),
        _outcome("distractor", None, None, status="error"),
        _outcome("control", True, False),
        _outcome("control", True, True),
        _outcome("control", None, status="error"),
    ]
    m = summarize_attempts(outcomes)["t"]
    assert m["trials"] == 3 and m["breaks"] == 1
    assert m["break_rate"] == 1 / 3
    assert m["errors"] == {"distractor": 1, "control": 1}
    assert m["over_refusal"] == 0.5
    assert m["offtopiceval"]["AR_ID"] == 0.5
    assert m["offtopiceval"]["RR_OOD"] == 2 / 3
    assert m["by_style"]["emotional"]["trials"] == 1
    assert m["by_insertion_turn"]["1"]["successes"] == 1
    # deflections: tp = 2 held distractors, fp = 1 refused control, fn = 1 break
    assert m["canttalkaboutthis"]["deflection_precision"] == 2 / 3
    assert m["canttalkaboutthis"]["deflection_recall"] == 2 / 3


def _corpus(n_scenarios: int, n_generic: int) -> Corpus:
    scenarios = tuple(
        Scenario(
            id=f"s{i}", domain="d", system_prompt="p",
            dialogue=(Turn(role="user", content="u"), Turn(role="assistant", content="a"),
                      Turn(role="user", content="u2"), Turn(role="assistant", content="a2")),
            controls=("c",),
        )
        for i in range(n_scenarios)
    )
    distractors = tuple(Distractor(id=f"g{i}", text=f"text {i}", style=Style.EMOTIONAL) for i in range(n_generic))
    return Corpus(scenarios=scenarios, distractors=distractors)


@given(st.integers(1, 8), st.integers(0, 40), st.integers(1, 4), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_plan_is_deterministic_and_balanced(n_scenarios, n_generic, per, seed):
    corpus = _corpus(n_scenarios, n_generic)
    first = plan_placements(corpus, np.random.default_rng(seed), placements_per_distractor=per)
    second = plan_placements(corpus, np.random.default_rng(seed), placements_per_distractor=per)
    assert first == second
    distractor_placements = [p for p in first if p.kind == "distractor"]
    assert len(distractor_placements) == n_generic * min(per, n_scenarios)
    for d in corpus.distractors:
        scenarios = [p.scenario_id for p in distractor_placements if p.item_id == d.id]
        assert len(scenarios) == len(set(scenarios))
    load = Counter(p.scenario_id for p in distractor_placements)
    if load:
        assert max(load.values()) - min(load.get(s.id, 0) for s in corpus.scenarios) <= per + 1
    assert sum(p.kind == "control" for p in first) == n_scenarios
    assert all(p.insertion_point in (1, 3) for p in first)


def test_bound_distractors_go_after_their_bot_turn(tiny_corpus):
    corpus = load_path(tiny_corpus)
    plan = plan_placements(corpus, np.random.default_rng(0))
    bound = [p for p in plan if p.item_id == "d-tax"]
    assert [(p.scenario_id, p.insertion_point) for p in bound] == [("bank", 3)]


def test_trial_seed_depends_only_on_run_seed_placement_and_trial():
    assert trial_seed(1, "k", 0) == trial_seed(1, "k", 0)
    assert len({trial_seed(1, "k", t) for t in range(50)}) == 50
    assert trial_seed(1, "k", 0) != trial_seed(2, "k", 0)
