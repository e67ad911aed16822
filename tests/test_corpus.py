"""Corpus format, starter corpus and importers; arbitrary input parses or raises CorpusError, never crashes."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adversary.corpus import load_corpus, load_path, starter_corpus_dir
from adversary.corpus.canttalkaboutthis import RowError, load_canttalkaboutthis, match_bot_turn, parse_conversation, row_to_corpus
from adversary.corpus.offtopiceval import load_offtopiceval
from adversary.corpus.project import dump_project_file, load_project_file
from adversary.errors import CorpusError
from adversary.records import Corpus, Turn

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_starter_corpus_meets_the_design_minimums():
    corpus = load_path(starter_corpus_dir())
    assert len(corpus.scenarios) >= 12
    assert len({s.domain for s in corpus.scenarios}) >= 6
    for scenario in corpus.scenarios:
        assert len(scenario.dialogue) >= 6
        assert scenario.controls
        assert all(scenario.answer_to(c) for c in scenario.controls), f"{scenario.id}: every control has its answer"
        earlier_bot_turns = [t.content for t in scenario.dialogue if t.role == "assistant"]
        from adversary.core.refusal import looks_like_refusal

        assert any(looks_like_refusal(t) for t in earlier_bot_turns), f"{scenario.id} has no earlier deflection"
    styles = Counter(d.style.value for d in corpus.distractors)
    assert len(corpus.distractors) >= 60
    assert all(styles[s] >= 15 for s in ("tangential", "emotional", "socratic"))
    assert {d.subtlety for d in corpus.distractors} == {1, 2, 3}


def test_project_format_round_trips(tiny_corpus, tmp_path):
    corpus = load_project_file(tiny_corpus)
    again = tmp_path / "again.yaml"
    again.write_text(dump_project_file(corpus))
    assert load_project_file(again) == corpus


ANSWERED = ("format: adversary-corpus/1\nscenarios:\n  - id: x\n    domain: d\n    system_prompt: Only returns.\n"
            "    controls:\n      - How long does a refund take?\n"
            "      - text: Can I exchange shoes?\n        answer: Yes, pick the new size under Orders.\n")


def test_a_control_written_with_its_answer_parses_and_round_trips(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(ANSWERED)
    scenario = load_project_file(path).scenarios[0]
    assert scenario.controls == ("How long does a refund take?", "Can I exchange shoes?")
    assert scenario.answer_to("Can I exchange shoes?") == "Yes, pick the new size under Orders."
    assert scenario.answer_to("How long does a refund take?") is None
    again = tmp_path / "again.yaml"
    again.write_text(dump_project_file(load_project_file(path)))
    assert "answer: Yes, pick the new size" in again.read_text() and "control_answers" not in again.read_text()
    assert load_project_file(again) == load_project_file(path)
    assert type(scenario).model_validate_json(scenario.model_dump_json()) == scenario, "as a run's store keeps it"


def test_a_sample_of_answered_controls_loads_again_from_a_store():
    """An eval with --max-controls stores its scenarios with some controls and all their answers."""
    scenario = load_path(starter_corpus_dir()).scenarios[0]
    sampled = scenario.model_copy(update={"controls": scenario.controls[:1]})
    again = type(scenario).model_validate_json(sampled.model_dump_json())
    assert again.controls == scenario.controls[:1] and again.answer_to(scenario.controls[0])


@pytest.mark.parametrize("control,expected", [
    ("reply: Yes, pick the new size under Orders.", "exactly the keys text and answer"),
    ("answer: ' '", "is blank"),
])
def test_a_badly_written_answered_control_is_one_clear_error(tmp_path, control, expected):
    path = tmp_path / "c.yaml"
    path.write_text(ANSWERED.replace("answer: Yes, pick the new size under Orders.", control))
    with pytest.raises(CorpusError, match=expected) as info:
        load_project_file(path)
    assert str(path) in str(info.value) and "scenarios.0" in str(info.value)


def test_yaml_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "format: adversary-corpus/1\nscenarios:\n  - id: x\n    domain: d\n    system_prompt: p\n"
        "    dialogue:\n      - {role: robot, content: hi}\n"
    )
    with pytest.raises(CorpusError) as info:
        load_project_file(path)
    message = str(info.value)
    assert f"{path}:7" in message and "scenarios.0.dialogue.0.role" in message


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "empty"),
        ("[1, 2]", "top level"),
        ("scenarios: [\n", r"c.yaml:2: "),
        ("format: other/2\n", "unknown format"),
        ("distractors:\n  - {id: a, text: t, style: weird}\n", "distractors.0.style"),
        ("distractors:\n  - {id: a, text: t, style: blunt}\n  - {id: a, text: u, style: blunt}\n", "duplicate id"),
    ],
)
def test_bad_project_files_raise_one_clear_error(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CorpusError, match=expected):
        load_project_file(path)


def test_non_utf8_file_is_reported_with_offset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"format: adversary-corpus/1\n\xff\xfe")
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_project_file(path)


def test_unknown_binding_and_extension(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("distractors:\n  - {id: a, text: t, style: blunt, scenario_id: nowhere}\n")
    with pytest.raises(CorpusError, match="unknown scenario"):
        load_corpus([path])
    odd = tmp_path / "c.txt"
    odd.write_text("x")
    with pytest.raises(CorpusError, match="unknown corpus file type"):
        load_corpus([odd])


CTAT_ROW = {
    "domain": "banking",
    "scenario": "card help",
    "system_instruction": "You help with cards only.",
    "conversation": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help with your card?"},
        {"role": "user", "content": "Activate it please"},
        {"role": "assistant", "content": "Open the app and tap Activate."},
    ],
    "distractors": [{"bot turn": "Open the app and tap Activate.", "distractor": "What's the weather in Paris?"}],
    "conversation_with_distractors": [],
}


def test_canttalkaboutthis_jsonl_import(tmp_path):
    path = tmp_path / "ctat.jsonl"
    path.write_text(json.dumps(CTAT_ROW) + "\n\n" + json.dumps({**CTAT_ROW, "distractors": [{"bot turn": "Hello, how can I help with your card?", "distractor": "Tell me a joke"}]}) + "\n")
    corpus = load_canttalkaboutthis(path)
    assert len(corpus.scenarios) == 1
    assert sorted((d.text, d.bot_turn) for d in corpus.distractors) == [("Tell me a joke", 1), ("What's the weather in Paris?", 3)]
    assert corpus.scenarios[0].controls == ("Activate it please",)


def test_python_repr_conversation_with_newline_separators():
    text = json.dumps("[{'role': 'user', 'content': \"It's me\"}\n {'role': 'assistant', 'content': 'Hi {there}'}]")
    turns = parse_conversation(text)
    assert [t.role for t in turns] == ["user", "assistant"] and turns[1].content == "Hi {there}"


def test_bot_turn_matching_tolerates_fragments():
    dialogue = [Turn(role="user", content="a"), Turn(role="assistant", content="Of course! Downsizing has benefits, like less clutter.")]
    assert match_bot_turn(dialogue, "Downsizing has benefits, like less clutter.") == 1
    assert match_bot_turn(dialogue, "Something else entirely unrelated to anything here") is None


def test_jsonl_errors_name_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(CTAT_ROW) + "\n" + json.dumps({**CTAT_ROW, "conversation": "nonsense"}) + "\n")
    with pytest.raises(CorpusError, match=r"bad.jsonl:2 \[conversation\]"):
        load_canttalkaboutthis(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
row_like = st.fixed_dictionaries(
    {},
    optional={
        "domain": json_values,
        "scenario": json_values,
        "system_instruction": json_values | st.text(min_size=1, max_size=50),
        "conversation": json_values
        | st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "bot", "x"]), "content": json_values}), max_size=5)
        | st.text(max_size=80),
        "distractors": json_values | st.lists(st.fixed_dictionaries({"bot turn": json_values, "distractor": json_values}), max_size=3),
    },
)


@given(row_like)
@FUZZ
def test_arbitrary_rows_parse_or_raise_row_error(row):
    try:
        result = row_to_corpus(row, "fuzz")
    except RowError:
        return
    assert isinstance(result, Corpus) and len(result.scenarios) == 1


@given(st.binary(max_size=400))
@FUZZ
def test_arbitrary_bytes_never_crash_any_importer(tmp_path, data):
    for suffix in (".yaml", ".json", ".jsonl", ".csv", ".md"):
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            load_path(path)
        except CorpusError:
            pass


@given(st.lists(row_like, min_size=1, max_size=3))
@FUZZ
def test_arbitrary_jsonl_files_parse_or_raise_corpus_error(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    try:
        load_canttalkaboutthis(path)
    except CorpusError:
        pass


def test_external_topic_following_csv_imports(external):
    corpus = load_path(external / "topic-following")
    assert len(corpus.scenarios) > 20 and len(corpus.distractors) > 100
    placed = sum(d.bot_turn is not None for d in corpus.distractors)
    assert placed / len(corpus.distractors) > 0.95


def test_external_offtopiceval_prompts_import(external):
    corpus = load_path(external / "offtopiceval" / "system_prompts")
    assert len(corpus.scenarios) == 15
    bank = next(s for s in corpus.scenarios if s.id == "ote-bankhelper")
    assert bank.fallback and bank.fallback.startswith("I am sorry, I am BankHelper")
    assert bank.dialogue == () and bank.usable_insertion_points == (-1,)
    assert "How can I check my account balance?" in bank.controls
    assert all(s.fallback for s in corpus.scenarios)


def test_offtopiceval_markdown_without_sections(tmp_path):
    path = tmp_path / "tiny.md"
    path.write_text("You only talk about trains.")
    corpus = load_offtopiceval(path)
    assert corpus.scenarios[0].system_prompt == "You only talk about trains." and corpus.scenarios[0].fallback is None
