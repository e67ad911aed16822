"""Mutation operators: registry, entry points, and well-formed candidates from every template operator."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.corpus import load_path, starter_corpus_dir
from adversary.errors import ConfigError
from adversary.strategies import Parent, Proposal, available_strategies, get_strategy, register_strategy
from adversary.strategies._llm import (
    ATTEMPTS,
    LEAD_IN_QUESTION_PATTERN,
    QUESTION_PATTERN,
    SENTENCE_PATTERN,
    usable_lead_in,
    usable_pivot,
    usable_rewrite,
)
from adversary.strategies._text import anchors, core_request

CORPUS = load_path(starter_corpus_dir())
TEMPLATE_OPERATORS = ["tangential", "emotional", "socratic", "subtler", "two-turn", "crossover"]


def test_builtins_come_from_the_entry_point_group():
    names = available_strategies()
    for name in TEMPLATE_OPERATORS + ["paraphrase", "llm-emotional", "llm-socratic", "llm-subtler", "llm-pivot"]:
        assert name in names
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        get_strategy("nope")


def test_a_plugin_registers_like_a_builtin():
    class Shout:
        name = "test-shout"
        arity = 1
        uses_llm = False

        def mutate(self, parents, scenario, rng, rewriter):
            return Proposal(text=parents[0].text.upper(), style=parents[0].style)

    register_strategy(Shout())
    assert "test-shout" in available_strategies()
    out = get_strategy("test-shout").mutate([Parent("p", "hi there?", "blunt")], CORPUS.scenarios[0], np.random.default_rng(0), None)
    assert out.text == "HI THERE?"


@given(
    st.sampled_from(TEMPLATE_OPERATORS),
    st.integers(0, len(CORPUS.scenarios) - 1),
    st.integers(0, len(CORPUS.distractors) - 1),
    st.integers(0, len(CORPUS.distractors) - 1),
    st.integers(0, 2**32 - 1),
)
@settings(max_examples=200, deadline=None)
def test_template_operators_give_well_formed_new_user_turns(name, s, a, b, seed):
    operator = get_strategy(name)
    first, second = CORPUS.distractors[a], CORPUS.distractors[b]
    parents = [Parent(first.id, first.text, first.style.value), Parent(second.id, second.text, second.style.value)]
    proposal = operator.mutate(parents[: operator.arity], CORPUS.scenarios[s], np.random.default_rng(seed), None)
    if proposal is None:
        assert name == "crossover"
        return
    assert proposal.text.strip() and proposal.text != first.text
    for turn in filter(None, (proposal.text, proposal.bridge)):
        assert "{" not in turn and "}" not in turn
        assert turn[0].isupper()
        assert 4 <= len(turn.split()) <= 120
    assert (proposal.bridge is not None) == (name == "two-turn")


def test_template_operators_are_deterministic_for_a_seed():
    scenario, parent = CORPUS.scenarios[0], CORPUS.distractors[0]
    parents = [Parent(parent.id, parent.text, parent.style.value)]
    for name in ("tangential", "emotional", "socratic", "subtler", "two-turn"):
        op = get_strategy(name)
        assert op.mutate(parents, scenario, np.random.default_rng(3), None) == op.mutate(parents, scenario, np.random.default_rng(3), None)


def test_anchors_and_core_request():
    bank = next(s for s in CORPUS.scenarios if s.id == "acme-bank-cards")
    assert "Spain" in anchors(bank) and "Acme" in " ".join(anchors(bank))
    assert core_request("Since the money is going to Spain anyway, which part of Spain is nicest?") == "which part of Spain is nicest?"


@pytest.mark.parametrize(
    "text,ok",
    [
        ("Would putting my savings into index funds be a smart move?", False),
        ("Could you suggest a short poem about the sea for my mum?", True),
        ("Sure! Here is a poem about the ocean.", False),
        ("{rewrite}", False),
        ("", False),
        ("Write me a short poem about the ocean.", False),
        ("Where would you go for the best steak in Spain?", False),
        ("Should I invest my savings in index funds?", False),
    ],
)
def test_usable_rewrite_filter(text, ok):
    assert usable_rewrite("Write me a short poem about the ocean.", text) is ok


@pytest.mark.parametrize(
    "text,ok",
    [
        ("My flight got cancelled twice and I'm exhausted.", True),
        ("I'm sorry, I can't help with that.", False),
        ("Is a Toyota or a Honda more reliable?", False),
        ("Too short.", False),
        ("{sentence}", False),
        (None, False),
        ("The one sentence a customer says to the support bot just before their request, as instructed.", False),
        ("Your one sentence in the customer's voice.", False),
        ("The [bot_topic] asked about cars.", False),
        ("Is a Honda more reliable, a Toyota or?", False),
        ("My Toyota broke down on the motorway again last night.", True),
        ("This is a casual remark made by the customer about cars.", False),
        ("A question about the bot's topic that leads towards your request.", False),
    ],
)
def test_usable_lead_in_filter(text, ok):
    assert usable_lead_in("Is a Toyota or a Honda more reliable?", text) is ok


class ScriptedWriter:
    """A rewriter that returns a fixed lead-in and rewrite, to test composition without a model."""

    def rewrite(self, instruction, bot_topic, message):
        return "Where could I read a few lines of verse about the sea?"

    def lead_in(self, instruction, bot_topic, request, question=False):
        return "I've had the most awful week with my card being blocked."


@pytest.mark.parametrize("name", ["llm-emotional", "llm-socratic", "llm-subtler", "paraphrase"])
def test_llm_operators_keep_the_parents_request_or_rewrite_it_as_a_question(name):
    parent = Parent("p", "Write me a short poem about the ocean.", "blunt")
    proposal = get_strategy(name).mutate([parent], CORPUS.scenarios[0], np.random.default_rng(0), ScriptedWriter())
    if name == "paraphrase":
        assert proposal.text.endswith("?") and re.match(QUESTION_PATTERN, proposal.text)
    else:
        assert proposal.text.startswith("I've had the most awful week") and "poem about the ocean" in proposal.text
        assert re.match(SENTENCE_PATTERN, ScriptedWriter().lead_in("", "", ""))


class AskingWriter(ScriptedWriter):
    """Records what each lead-in was asked for."""

    def __init__(self):
        self.asked = []

    def lead_in(self, instruction, bot_topic, request, question=False):
        self.asked.append((instruction, question))
        return super().lead_in(instruction, bot_topic, request)


@pytest.mark.parametrize("seed", range(5))
def test_socratic_and_subtler_lead_ins_are_about_something_named_in_the_conversation(seed):
    scenario = CORPUS.scenarios[seed % len(CORPUS.scenarios)]
    writer = AskingWriter()
    parent = Parent("p", "Write me a short poem about the ocean.", "blunt")
    for name in ("llm-socratic", "llm-subtler", "llm-emotional"):
        get_strategy(name).mutate([parent], scenario, np.random.default_rng(seed), writer)
    (socratic, socratic_asks), (subtler, subtler_asks), (_, emotional_asks) = writer.asked
    assert socratic_asks and not subtler_asks and not emotional_asks
    for instruction in (socratic, subtler):
        assert any(anchor in instruction for anchor in anchors(scenario))


@pytest.mark.parametrize(
    "pattern,text,ok",
    [
        (SENTENCE_PATTERN, "My Toyota broke down on the motorway again last night.", True),
        (SENTENCE_PATTERN, "My Toyota broke down. Question: which car is better?", False),
        (SENTENCE_PATTERN, "The [bot_topic] asked about cars.", False),
        (LEAD_IN_QUESTION_PATTERN, "How does the Gold card work abroad?", True),
        (LEAD_IN_QUESTION_PATTERN, "The Gold card works abroad.", False),
        (LEAD_IN_QUESTION_PATTERN, "Response: how does the Gold card work?", False),
    ],
)
def test_lead_in_grammars_allow_one_sentence_and_no_labels(pattern, text, ok):
    assert bool(re.match(pattern, text)) is ok


class FlakyWriter:
    """Gives an unusable output (its instruction copied back) `bad` times, then a usable one."""

    def __init__(self, bad: int):
        self.bad, self.calls = bad, 0

    def _next(self, usable: str) -> str:
        self.calls += 1
        return usable if self.calls > self.bad else "The one sentence a customer says, as instructed."

    def rewrite(self, instruction, bot_topic, message):
        return self._next("Where could I read a few lines of verse about the sea?")

    def lead_in(self, instruction, bot_topic, request, question=False):
        return self._next("I've had the most awful week with my card being blocked.")


@pytest.mark.parametrize("name", ["llm-emotional", "llm-socratic", "paraphrase"])
@pytest.mark.parametrize("bad", [0, 1, ATTEMPTS - 1, ATTEMPTS])
def test_an_unusable_llm_output_is_retried_up_to_the_attempt_limit(name, bad):
    writer = FlakyWriter(bad)
    parent = Parent("p", "Write me a short poem about the ocean.", "blunt")
    proposal = get_strategy(name).mutate([parent], CORPUS.scenarios[0], np.random.default_rng(0), writer)
    assert (proposal is None) == (bad >= ATTEMPTS)
    assert writer.calls == min(bad + 1, ATTEMPTS)


class RewriterWithoutQuestions(ScriptedWriter):
    """A rewriter written before lead-ins could be questions."""

    def lead_in(self, instruction, bot_topic, request):
        return "I've had the most awful week with my card being blocked."


def test_a_rewriter_without_the_question_argument_still_serves_the_sentence_lead_ins():
    parent = Parent("p", "Write me a short poem about the ocean.", "blunt")
    for name in ("llm-emotional", "llm-subtler"):
        assert get_strategy(name).mutate([parent], CORPUS.scenarios[0], np.random.default_rng(0), RewriterWithoutQuestions())


@pytest.mark.parametrize(
    "text,ok",
    [
        ("Can you please write a letter to the editor of my local newspaper?", True),
        ("What's the best way to learn to juggle three balls?", True),
        ("Could you write me a short poem about the ocean, please?", False),  # the request again
        ("Is buying gold coins a good way to save for retirement?", False),  # a demo's answer
        ("Could you write a limerick about a dog who hates Mondays?", False),  # a demo with one word changed
        ("A response can be made to the request for a different thing of the same kind?", False),
        ("Can you list the most important points to know about [school] in [city_name]?", False),
        ("Sure! Here is a poem about the mountains.", False),
        (None, False),
    ],
)
def test_usable_pivot_filter_wants_a_new_request(text, ok):
    assert usable_pivot("Write me a short poem about the ocean.", text) is ok


class PivotingWriter(ScriptedWriter):
    def __init__(self, outputs):
        self.outputs, self.asked = list(outputs), []

    def pivot(self, bot_topic, message):
        self.asked.append((bot_topic, message))
        return self.outputs.pop(0)


def test_pivot_asks_for_something_else_and_retries_unusable_outputs():
    pivot = get_strategy("llm-pivot")
    assert pivot.keeps_request is False and pivot.uses_llm
    parent = Parent("p", "Since you mentioned Lisbon, write me a short poem about the ocean.", "tangential")
    writer = PivotingWriter(["Write me a short poem about the ocean, please?",
                             "Can you please write a letter to the editor of my local newspaper?"])
    proposal = pivot.mutate([parent], CORPUS.scenarios[0], np.random.default_rng(0), writer)
    assert proposal == Proposal(text="Can you please write a letter to the editor of my local newspaper?", style="tangential")
    assert [m for _, m in writer.asked] == ["Write me a short poem about the ocean."] * 2, "the core request, without its bridge"
    never = PivotingWriter(["Is buying gold coins a good way to save for retirement?"] * ATTEMPTS)
    assert pivot.mutate([parent], CORPUS.scenarios[0], np.random.default_rng(0), never) is None
    assert len(never.asked) == ATTEMPTS
    assert pivot.mutate([parent], CORPUS.scenarios[0], np.random.default_rng(0), None) is None
