"""The CLI end to end through litellm against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import typer
from typer.testing import CliRunner

from adversary.cli.app import app
from tests.fake_openai import FakeOpenAI, off_topic_when

runner = CliRunner()


def _adversary(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adversary", *args], capture_output=True, text=True, timeout=300, env=env)


def test_eval_through_litellm_with_fail_over_gate(tiny_corpus, tmp_path):
    with FakeOpenAI(off_topic_when("poem")) as server:
        args = ["eval", "--scenarios", str(tiny_corpus), "--target", "fakebot", "--api-base", server.api_base,
                "--judge", "keyword", "--trials", "2", "--out", str(tmp_path / "run")]
        result = runner.invoke(app, [*args, "--fail-over", "0.9"])
        assert result.exit_code == 0, result.output
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        target = metrics["targets"]["fakebot"]
        assert target["breaks"] == 2 and target["trials"] == 6
        assert re.search(r"\] evaluating: (\d+) of \1 attempts, 2 breaks, 0 errors", result.output), "a log gets status lines"
        assert (tmp_path / "run" / "report.md").read_text().startswith("# adversary robustness report")
        seeds = {r["body"].get("seed") for r in server.requests if r["body"].get("max_tokens") != 1}
        assert len(seeds) > 1
        gated = runner.invoke(app, [*args, "--fail-over", "0.2"])
        assert gated.exit_code == 3


def test_unreachable_api_base_is_one_line_and_nonzero(tiny_corpus, tmp_path):
    result = _adversary("eval", "--scenarios", str(tiny_corpus), "--target", "nothing", "--api-base", "http://127.0.0.1:9/v1",
                        "--judge", "keyword", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot reach model nothing at http://127.0.0.1:9/v1")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_bad_corpus_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  - id: x\n")
    result = _adversary("corpora", "validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {bad}:2 [scenarios.0.domain]: Field required"


def test_corpora_commands(tmp_path, tiny_corpus):
    listed = runner.invoke(app, ["corpora", "list"])
    assert listed.exit_code == 0 and "acme-bank-cards" in listed.output
    shown = runner.invoke(app, ["corpora", "show", "bank", str(tiny_corpus)])
    assert shown.exit_code == 0 and "How do I freeze my card?" in shown.output
    starter = runner.invoke(app, ["corpora", "show", "acme-bank-cards"], terminal_width=400)
    assert starter.exit_code == 0 and "  answer: You can freeze it right away in the Acme app" in starter.output
    out = tmp_path / "imported.yaml"
    imported = runner.invoke(app, ["corpora", "import", str(tiny_corpus), "-o", str(out)])
    assert imported.exit_code == 0 and out.exists()
    refused = _adversary("corpora", "import", str(tiny_corpus), "-o", str(out))
    assert refused.returncode == 2 and "--force" in refused.stderr


def test_models_lists_the_embedded_models():
    result = runner.invoke(app, ["models"])
    assert "local/smollm2" in result.output and "local/minilm" in result.output


def test_init_then_run_then_resume_through_litellm(tiny_corpus, tmp_path):
    config = tmp_path / "campaign.yaml"
    assert runner.invoke(app, ["init", str(config)]).exit_code == 0
    assert runner.invoke(app, ["init", str(config)]).exit_code != 0
    run_dir = tmp_path / "run"
    with FakeOpenAI(off_topic_when("please")) as server:
        args = ["run", str(config), "--scenarios", str(tiny_corpus), "--target", "fakebot", "--api-base", server.api_base,
                "--judge", "keyword", "--mutator", "fakebot", "--budget-calls", "40", "--out", str(run_dir)]
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        assert "seed break rate" in first.output
        assert re.search(r"\] seeds: \d+ of 40 target calls", first.output), "a log gets status lines"
        resumed = runner.invoke(app, ["run", "--resume", str(run_dir), "--budget-calls", "60"])
        assert resumed.exit_code == 0, resumed.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # When nothing broke, the run ends holding back one elite's confirmation (confirm_trials calls) it had no use for.
    assert 60 - metrics["config"]["confirm_trials"] <= metrics["calls"] <= 60
    assert metrics["stop_reason"] in ("budget_calls", "archive confirmed")
    elites = [json.loads(line) for line in (run_dir / "archive.jsonl").read_text().splitlines()]
    assert len(elites) == metrics["archive_size"] == metrics["breaking_clusters"]["all"]
    assert all(e["posterior_mean"] > 0.5 for e in elites), "the archive holds breaking members only"


def test_run_hints_at_what_it_did_not_try_when_few_seeds_break_and_nothing_new_did(tiny_corpus, tmp_path):
    with FakeOpenAI(off_topic_when("no distractor says this")) as server:
        common = ["run", "--scenarios", str(tiny_corpus), "--target", "fakebot", "--api-base", server.api_base,
                  "--judge", "keyword", "--mutator", "fakebot", "--budget-calls", "40"]
        plain = runner.invoke(app, [*common, "--out", str(tmp_path / "plain")])
        explored = runner.invoke(app, [*common, "--explore", "0.5", "--out", str(tmp_path / "explored")])
        bad = runner.invoke(app, [*common, "--explore", "1.5", "--out", str(tmp_path / "bad")])
    assert plain.exit_code == 0 and explored.exit_code == 0, plain.output + explored.output
    assert "hint: 0% of the seeds break this target" in plain.output
    assert "--explore 0.5" in plain.output and "llm-pivot" in plain.output
    assert "llm-pivot" in explored.output and "--explore 0.5" not in explored.output
    assert json.loads((tmp_path / "explored" / "metrics.json").read_text())["config"]["explore_share"] == 0.5
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()


def test_the_example_config_states_the_defaults(tmp_path):
    from dataclasses import asdict

    from adversary.campaign import CampaignConfig
    from adversary.campaign_config import load_config_file

    config = tmp_path / "campaign.yaml"
    assert runner.invoke(app, ["init", str(config)]).exit_code == 0
    written, _ = load_config_file(config)
    written = {k: tuple(v) if isinstance(v, list) else v for k, v in written.items()}
    defaults = asdict(CampaignConfig())
    assert {k: v for k, v in written.items() if k != "scenario_paths"} == {k: defaults[k] for k in written if k != "scenario_paths"}
    assert set(written) == set(defaults)


def test_bad_run_config_is_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("budget_call: 5\n")
    result = _adversary("run", str(config))
    assert result.returncode == 2 and result.stderr.startswith(f"error: {config}:1: unknown key 'budget_call'")
    config.write_text("search: sideways\n")
    result = _adversary("run", str(config), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "search must be one of novelty, greedy, random" in result.stderr


def test_a_bad_slot_count_for_the_local_server_is_one_line_and_writes_nothing(tmp_path, tiny_corpus):
    import os

    from adversary.models.local_server import MAX_SLOTS, SLOTS_ENV

    for command in (["eval", "--scenarios", str(tiny_corpus)], ["run", "--scenarios", str(tiny_corpus)]):
        for bad in ("0", str(MAX_SLOTS + 1)):
            run_dir = tmp_path / f"{command[0]}-{bad}"
            result = _adversary(*command, "--out", str(run_dir), env={**os.environ, SLOTS_ENV: bad})
            assert result.returncode == 2, result.stderr[-1000:]
            last = result.stderr.strip().splitlines()[-1]
            assert last == f"error: {SLOTS_ENV} must be a whole number of slots from 1 to {MAX_SLOTS}, not '{bad}'"
            assert "Traceback" not in result.stderr and not run_dir.exists()


def test_a_bad_embedder_backend_is_one_line_and_writes_nothing(tmp_path, tiny_corpus):
    import os

    from adversary.models.embedder import BACKEND_ENV

    for command in (["eval", "--scenarios", str(tiny_corpus)], ["run", "--scenarios", str(tiny_corpus)]):
        run_dir = tmp_path / command[0]
        result = _adversary(*command, "--out", str(run_dir), env={**os.environ, BACKEND_ENV: "gpu"})
        assert result.returncode == 2, result.stderr[-1000:]
        assert result.stderr.strip().splitlines()[-1] == f"error: {BACKEND_ENV}='gpu': choose one of onnx, torch"
        assert "Traceback" not in result.stderr and not run_dir.exists()


def test_version_prints_and_exits_zero():
    from adversary import __version__

    result = _adversary("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"adversary {__version__}"


def test_every_command_help_shows_examples_and_the_root_offers_completion():
    from adversary.cli.examples import EXAMPLES

    for command in EXAMPLES:
        args = command.split()
        result = runner.invoke(app, [*args, "--help"], terminal_width=200)
        assert result.exit_code == 0, (command, result.output)
        assert "Examples:" in result.output and EXAMPLES[command][0][0] in result.output, command
    root = runner.invoke(app, ["--help"], terminal_width=200)
    assert "--install-completion" in root.output and "--show-completion" in root.output
    registered = {c.name for c in typer.main.get_command(app).commands.values()}
    assert registered <= {c.split()[0] for c in EXAMPLES}


def test_export_bad_input_is_one_line_naming_what_to_do(tmp_path):
    from adversary.store import Store

    missing = _adversary("export", str(tmp_path), "--format", "promptfoo")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == (f"error: {tmp_path} holds no adversary run (store.sqlite); run `adversary eval` or "
                                      "`adversary run` first")
    Store.open(tmp_path / "run").close()
    unknown = _adversary("export", str(tmp_path / "run"), "--format", "promptfoo", "--provider", "gpt4")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert unknown.stderr.startswith("error: unknown provider 'gpt4'; use a promptfoo provider id")
    assert not (tmp_path / "run" / "export-promptfoo").exists()
