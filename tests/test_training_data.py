"""Data preparation for `adversary finetune`: reading exports, fitting examples to a token budget (pure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.errors import CorpusError
from adversary.training.data import TRUNCATION_MARK, Example, fit_to_budget, fits, prepare, read_export, shorten


def words(text: str) -> int:
    return len(text.split())


word = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
text = st.lists(word, min_size=1, max_size=60).map(" ".join)


@st.composite
def examples(draw) -> Example:
    pairs = draw(st.integers(0, 5))
    dialogue = []
    for _ in range(pairs):
        dialogue += [("user", draw(text)), ("assistant", draw(text))]
    prompt = (("system", draw(text)), *dialogue, ("user", draw(text)))
    return Example(prompt=prompt, reply=draw(text), kind=draw(st.sampled_from(["negative", "control"])), scenario_id="s")


@settings(max_examples=300, deadline=None)
@given(examples(), st.integers(20, 200), st.integers(0, 6))
def test_a_fitted_example_keeps_its_reply_last_user_turn_and_system_role(example, budget, overhead):
    fitted = fit_to_budget(example, words, budget, min_system_tokens=4, message_overhead=overhead)
    assert fitted.reply == example.reply and fitted.kind == example.kind
    assert fitted.prompt[-1] == example.prompt[-1]
    assert fitted.prompt[0][0] == "system"
    assert example.prompt[0][1].startswith(fitted.prompt[0][1].removesuffix(TRUNCATION_MARK))
    kept_dialogue = fitted.prompt[1:]
    assert kept_dialogue == example.prompt[len(example.prompt) - len(kept_dialogue):], "only the oldest turns are dropped"
    assert kept_dialogue[0][0] == "user", "turns are dropped in user/assistant pairs"


@settings(max_examples=300, deadline=None)
@given(examples(), st.integers(20, 200), st.integers(0, 6))
def test_an_example_that_fits_is_left_alone_and_a_fitted_one_fits_when_possible(example, budget, overhead):
    fitted = fit_to_budget(example, words, budget, min_system_tokens=4, message_overhead=overhead)
    if fits(example, words, budget, overhead):
        assert fitted == example
    floor = words(example.reply) + words(example.prompt[-1][1]) + 4 + 1 + 3 * overhead
    if floor <= budget:
        assert fits(fitted, words, budget, overhead)


@settings(max_examples=200, deadline=None)
@given(text, st.integers(1, 80))
def test_shorten_is_a_marked_word_prefix_within_the_budget(value, budget):
    cut = shorten(value, words, budget)
    if words(value) <= budget:
        assert cut == value
    else:
        assert cut.endswith(TRUNCATION_MARK) and value.startswith(cut.removesuffix(TRUNCATION_MARK))
        assert words(cut) <= budget or cut == TRUNCATION_MARK


def test_prepare_drops_what_cannot_fit_and_counts_it():
    short = Example(prompt=(("system", "only cards"), ("user", "hi")), reply="hello there", kind="control", scenario_id="s")
    long_reply = Example(prompt=(("system", "only cards"), ("user", "hi")), reply="w " * 500, kind="negative", scenario_id="s")
    kept, dropped = prepare([short, long_reply], words, 50)
    assert kept == [short] and dropped == 1


def _export(folder, fmt="sft", rows=None):
    folder.mkdir()
    (folder / "export.json").write_text(json.dumps({"format": fmt}))
    rows = rows if rows is not None else [{"messages": [{"role": "system", "content": "Only cards."},
                                                        {"role": "user", "content": "Pizza?"},
                                                        {"role": "assistant", "content": "I only help with cards."}],
                                           "metadata": {"kind": "negative", "scenario_id": "bank"}}]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_read_export_reads_sft_rows(tmp_path):
    data = read_export(_export(tmp_path / "e"))
    assert data.fmt == "sft" and len(data.train) == 1 and data.test == ()
    assert data.train[0].reply == "I only help with cards." and data.train[0].prompt[-1] == ("user", "Pizza?")
    assert data.train[0].as_prompt_completion()["completion"] == [{"role": "assistant", "content": "I only help with cards."}]


@pytest.mark.parametrize("make, expected", [
    (lambda p: p, "no such export folder"),
    (lambda p: (p.mkdir(), p)[1], "export.json is missing"),
    (lambda p: _export(p, fmt="promptfoo"), "cannot be trained on"),
    (lambda p: _export(p, rows=[]), "no training rows"),
    (lambda p: _export(p, rows=[{"messages": [{"role": "user", "content": "hi"}]}]), "train.jsonl:1 [messages]"),
])
def test_bad_exports_are_one_clear_error(tmp_path, make, expected):
    folder = make(tmp_path / "e")
    with pytest.raises(CorpusError) as error:
        read_export(folder)
    assert expected in str(error.value) and "\n" not in str(error.value)


def _seed_row(scenario: str, point: int, text: str) -> dict:
    return {"messages": [{"role": "system", "content": scenario}, {"role": "user", "content": text},
                         {"role": "assistant", "content": "I only help with that."}],
            "metadata": {"kind": "negative", "scenario_id": scenario, "insertion_point": point}}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 4)), min_size=1, max_size=8),
       st.integers(0, 40), st.integers(0, 5))
def test_matched_rows_use_every_seed_before_repeating_any_and_fill_the_count(seeds, wanted, seed):
    from adversary.training.baseline import matched_rows, seed_placements

    rows = [_seed_row(scenario, point, f"seed {i}") for i, (scenario, point) in enumerate(seeds)]
    families = seed_placements(rows, lambda s, p: [{"role": "system", "content": s}, {"role": "assistant", "content": f"turn {p}"}],
                               lambda s: range(5))
    assert all(f[0] is r for f, r in zip(families, rows)) and all(len(f) == 5 for f in families)
    chosen = matched_rows(families, wanted, seed)
    assert len(chosen) == wanted
    first_round = [r["messages"][-2]["content"] for r in chosen[:len(rows)]]
    assert len(set(first_round)) == len(first_round), "each seed once before any seed's second placement"
    if wanted >= len(rows):
        assert all(r is row for r, row in zip(sorted(chosen[:len(rows)], key=id), sorted(rows, key=id)))
    placements = [(r["messages"][-2]["content"], r["metadata"]["insertion_point"]) for r in chosen]
    distinct = len(rows) * 5
    assert len(set(placements)) == min(wanted, distinct), "no placement repeats before all are used"
    assert all(r["messages"][-1]["content"] == "I only help with that." for r in chosen)
