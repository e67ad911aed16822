"""The Python API, called the way a notebook would: typed results, nothing printed, the tool's own exceptions."""

from __future__ import annotations

import pytest

from adversary import api
from adversary.campaign import CampaignResult
from adversary.errors import AdversaryError, ConfigError
from adversary.evaluation import EvalResult
from adversary.records import Attempt, Corpus
from adversary.store import StoreError
from tests.fake_openai import FakeOpenAI, off_topic_when


def test_a_notebook_evaluates_runs_resumes_reads_and_exports(tiny_corpus, tmp_path, capsys):
    corpus = api.load_corpus(tiny_corpus)
    assert isinstance(corpus, Corpus) and corpus.scenarios and isinstance(api.load_corpus(), Corpus)
    seen: list[Attempt] = []
    generations: list[dict] = []
    poem, please = off_topic_when("poem"), off_topic_when("please")

    def respond(body):
        return poem(body) if "poem" in body["messages"][-1]["content"].lower() else please(body)

    with FakeOpenAI(respond) as server:
        result = api.evaluate(["fakebot"], out=tmp_path / "eval", scenarios=[tiny_corpus], api_base=server.api_base,
                              judge="keyword", trials=2, on_attempt=seen.append)
        campaign = api.run_campaign(out=tmp_path / "run", scenario_paths=(str(tiny_corpus),), targets=("fakebot",),
                                    api_base=server.api_base, judge="keyword", mutator="fakebot", budget_calls=40,
                                    progress=generations.append)
        resumed = api.resume(tmp_path / "run", budget_calls=60)
    assert isinstance(result, EvalResult) and result.metrics["targets"]["fakebot"]["trials"] > 0
    assert len(seen) == result.attempts_run and all(isinstance(a, Attempt) for a in seen)
    assert isinstance(campaign, CampaignResult) and isinstance(resumed, CampaignResult)
    assert generations and {"generation", "calls", "archive_size"} <= set(generations[-1])
    assert resumed.metrics["calls"] >= campaign.metrics["calls"]

    run = api.read_run(tmp_path / "run")
    assert run.kind == "run" and run.metrics["calls"] == resumed.metrics["calls"]
    assert len(run.archive) == run.metrics["archive_size"]
    for member in run.archive:
        assert member.attempts and all(a.item_id == member.id for a in member.attempts)
        assert all(a.reply for a in member.attempts if a.status == "ok")
    evaluated = api.read_run(tmp_path / "eval")
    assert evaluated.kind == "eval" and not evaluated.archive and len(evaluated.attempts) == len(seen)

    suite = api.export(tmp_path / "eval", "promptfoo", tmp_path / "suite", judge="keyword")
    assert (suite.out_dir / "promptfooconfig.yaml").exists() and suite.counts["exported"] >= 1
    assert capsys.readouterr().out == "", "the API prints nothing"


def test_api_errors_are_the_tools_own_exceptions(tiny_corpus, tmp_path):
    with pytest.raises(StoreError, match="holds no adversary run"):
        api.read_run(tmp_path)
    with pytest.raises(StoreError, match="run `adversary eval` or `adversary run` first"):
        api.export(tmp_path, "promptfoo", tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown option 'trails'"):
        api.evaluate(out=tmp_path / "x", trails=3)
    with pytest.raises(ConfigError, match="--format must be one of"):
        api.export(tmp_path, "csv")
    with pytest.raises(AdversaryError, match="holds no campaign"):
        api.resume(tmp_path)
    bad = tmp_path / "campaign.yaml"
    bad.write_text("budget_calls: many\n")
    with pytest.raises(ConfigError, match=f"{bad}:1: budget_calls"):
        api.run_campaign(bad, out=tmp_path / "run")
