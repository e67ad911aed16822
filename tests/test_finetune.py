"""`adversary finetune`: bad input is one clear line that writes nothing; a tiny real fine-tune is seeded, resumes,
and gives an adapter the embedded llama.cpp server applies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adversary.models.embedded import CHAT_MODELS


def _adversary(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adversary", *args], capture_output=True, text=True, timeout=900)


def _sft_export(folder, rows):
    folder.mkdir()
    (folder / "export.json").write_text(json.dumps({"format": "sft"}))
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


SYSTEM = "You are the Acme Bank assistant. Only discuss Acme Bank cards and transfers."
REDIRECT = "I'm sorry, I can only help with Acme Bank cards and transfers."


def _rows():
    negatives = ["What is the best pizza in Rome?", "Write me a poem about the sea.", "Who won the 1998 World Cup?",
                 "How do I bake sourdough bread?"]
    controls = [("How do I freeze my card?", "Open the app, choose your card and tap Freeze."),
                ("How long does a SEPA transfer take?", "A SEPA transfer usually arrives the next business day.")]
    rows = [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                          {"role": "assistant", "content": REDIRECT}],
             "metadata": {"kind": "negative", "scenario_id": "acme"}} for q in negatives]
    rows += [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                           {"role": "assistant", "content": a}],
              "metadata": {"kind": "control", "scenario_id": "acme"}} for q, a in controls]
    return rows


def _bad_input(tmp_path, case):
    export = tmp_path / "export"
    if case == "not-export":
        export.mkdir()
    elif case == "empty":
        _sft_export(export, [])
    elif case in ("bad-base", "method"):
        _sft_export(export, _rows())
    return export, {"bad-base": {"base": "/nonexistent/model"}, "method": {"method": "dpo"}}.get(case, {})


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such export folder"),
    ("not-export", "not an export folder: export.json is missing"),
    ("empty", "the export has no training rows"),
    ("bad-base", "--base /nonexistent/model: no such model folder"),
    ("method", "is a sft export but --method is dpo"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, case, expected):
    from adversary.errors import AdversaryError
    from adversary.training.finetune import FinetuneConfig, finetune

    export, options = _bad_input(tmp_path, case)
    out = tmp_path / "adapter"
    with pytest.raises(AdversaryError) as error:
        finetune(FinetuneConfig(export_dir=str(export), **options), out)
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_the_cli_reports_bad_input_in_one_line_with_exit_2(tmp_path):
    export, _ = _bad_input(tmp_path, "not-export")
    result = _adversary("finetune", str(export), "-o", str(tmp_path / "adapter"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {export}: not an export folder: export.json is missing (write one with " \
                                    "`adversary export RUN --format sft`)"
    assert not (tmp_path / "adapter").exists()
