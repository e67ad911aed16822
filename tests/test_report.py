"""`adversary report`: the HTML is self-contained and escaped, and renders in headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from adversary.campaign import CampaignConfig, run_campaign
from adversary.cli.app import app
from adversary.models.chat import ChatResult
from adversary.reports import write_report
from tests.conftest import TINY_CORPUS
from tests.test_campaign import HashEmbedder, Judge, Rewriter

NASTY = "<script>alert('distractor')</script> Tell me a joke about <b>cats</b>?"
NASTY_REPLY = "OFFSCOPE <img src=x onerror=alert(1)> here is a joke"


class MarkupTarget:
    """Breaks on three seeds in four and answers with markup, as a hostile or careless model might. Breaking
    often enough lets members break credibly, so a small campaign's archive is never empty by bad luck."""

    def __call__(self, route, messages, sampling, seed):
        if seed % 4:
            return ChatResult(text=NASTY_REPLY, latency_s=0.01, prompt_tokens=50, completion_tokens=9)
        return ChatResult(text="I'm sorry, I can only help with this service.", latency_s=0.01, prompt_tokens=50, completion_tokens=9)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """Two small campaigns (different seeds) over a corpus with a markup-laden distractor."""
    base = tmp_path_factory.mktemp("runs")
    corpus = json.loads(json.dumps(TINY_CORPUS))
    corpus["distractors"].append({"id": "d-nasty", "text": NASTY, "style": "blunt"})
    path = base / "corpus.yaml"
    path.write_text(yaml.safe_dump(corpus, sort_keys=False))
    dirs = []
    for seed in (1, 2):
        config = CampaignConfig(scenario_paths=(str(path),), targets=("fake",), judge="scripted", budget_calls=80, seed=seed,
                                candidates_per_generation=4)
        run_campaign(config, base / f"run-{seed}", judge=Judge(), call=MarkupTarget(), rewriter=Rewriter(), embedder=HashEmbedder())
        dirs.append(base / f"run-{seed}")
    return dirs


def test_the_report_is_one_self_contained_file_with_every_model_text_escaped(run_dirs, tmp_path):
    written = write_report(run_dirs[:1], tmp_path)
    assert [p.name for p in written] == ["report.html", "report.md", "report.json"]
    html = (tmp_path / "report.html").read_text()
    assert "<script" not in html.lower(), "no scripts at all, and distractor text must not become one"
    assert "&lt;script&gt;alert(" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    for external in ('src="http', "src='http", 'href="http', "<link", "@import", "url(http"):
        assert external not in html
    assert html.count('src="data:image/png;base64,') >= 3
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())
    evolved = metrics["evolved_first_trials_break_rate"]
    assert "evolved members</th><td class=\"num\">" in html and f"({evolved['breaks']}/{evolved['trials']})" in html
    report = json.loads((tmp_path / "report.json").read_text())
    run = report["runs"][0]
    assert run["diversity"]["seeds"]["count"] == 4 and run["diversity"]["archive"]["count"] >= 1
    assert 0 <= run["diversity"]["seeds"]["mean_pairwise_cosine_distance"] <= 2
    assert run["hardest"] and all(h["breaks"] <= h["trials"] for h in run["hardest"])


def test_several_runs_are_compared_side_by_side_from_the_cli(run_dirs, tmp_path):
    result = CliRunner().invoke(app, ["report", *map(str, run_dirs), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Comparison</h2>" in html and html.count("run-1") >= 2 and html.count("run-2") >= 2


def test_a_resumed_runs_report_gives_the_wall_time_of_every_session(run_dirs, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(run_dirs[0], run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "wall_seconds": 40.0, "total_wall_seconds": 5600.0}))
    write_report([run], tmp_path / "out")
    assert "5600 s" in (tmp_path / "out" / "report.html").read_text()
    assert "wall time 5600.0 s" in (tmp_path / "out" / "report.md").read_text()


def test_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path):
    from adversary.reports import ReportError

    with pytest.raises(ReportError, match="no metrics.json and store.sqlite"):
        write_report([tmp_path], tmp_path / "out")
    assert not (tmp_path / "out" / "report.html").exists()


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium and chromedriver are not installed (.ci/run installs Debian's chromium-driver)")
    return browser, driver


def test_the_report_renders_in_headless_chromium_without_console_errors(run_dirs, tmp_path):
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    write_report(run_dirs, tmp_path)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,2400", "--hide-scrollbars"):
        options.add_argument(argument)
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((tmp_path / "report.html").as_uri())
        assert driver.title == "adversary robustness report: run-1, run-2"
        charts = driver.find_elements("css selector", "img.chart")
        assert len(charts) >= 6
        loaded = driver.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert loaded and all(loaded), "every chart decoded"
        assert any(NASTY in e.text for e in driver.find_elements("css selector", "pre.text")), "markup shows as text"
        assert driver.execute_script("return document.querySelectorAll('script').length") == 0
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not severe, severe
        assert driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000
