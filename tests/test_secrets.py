"""A planted API key never reaches stores, logs, reports or exports."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.fake_openai import FakeOpenAI, off_topic_when

PLANTED = "sk-planted-SECRET-0123456789abcdef"


def test_a_planted_key_is_sent_to_the_server_but_written_nowhere(tiny_corpus, tmp_path):
    env = {**os.environ, "OPENAI_API_KEY": PLANTED}
    with FakeOpenAI(off_topic_when("please")) as server:
        common = ["--scenarios", str(tiny_corpus), "--target", "fakebot", "--api-base", server.api_base, "--judge", "keyword"]
        commands = [
            ["eval", *common, "--trials", "2", "--out", str(tmp_path / "eval")],
            ["run", *common, "--mutator", "fakebot", "--budget-calls", "40", "--out", str(tmp_path / "run")],
            ["report", str(tmp_path / "eval"), str(tmp_path / "run"), "-o", str(tmp_path / "report")],
            ["export", str(tmp_path / "eval"), "--format", "dpo", "--writer", "fakebot", "--api-base", server.api_base,
             "--out", str(tmp_path / "export")],
        ]
        outputs = []
        for command in commands:
            result = subprocess.run([sys.executable, "-m", "adversary", *command], capture_output=True, text=True, env=env,
                                    timeout=600)
            assert result.returncode == 0, (command[0], result.stderr[-1500:])
            outputs += [result.stdout, result.stderr]
        sent = [r["headers"].get("Authorization", r["headers"].get("authorization", "")) for r in server.requests]
    assert any(PLANTED in header for header in sent), "the key did reach the model server"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        assert PLANTED.encode() not in path.read_bytes(), path
    assert not any(PLANTED in text for text in outputs)
