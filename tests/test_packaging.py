"""The built wheel ships the adversary namespace mapping, the starter corpus and the shipped judges."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_maps_top_level_folders_under_adversary(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )
    wheel = next(tmp_path.glob("adversary-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "adversary/strategies/__init__.py",
        "adversary/reports/__init__.py",
        "adversary/corpora/starter/scenarios.yaml",
        "adversary/corpora/starter/distractors.yaml",
        "adversary/cli/__init__.py",
        "adversary/corpora/labels/embedded_judge.json",
        "adversary/corpora/labels/embedded_ce/judge.json",
        "adversary/corpora/labels/embedded_ce/adapter_config.json",
        "adversary/corpora/labels/embedded_ce/adapter_model.safetensors",
        "adversary/corpora/labels/embedded_ce/head.safetensors",
        "adversary/models/adapters/smollm2-guarded.gguf",
        "adversary/training/finetune.py",
    ):
        assert required in names, required
    assert not any(n.startswith(("strategies/", "reports/", "corpora/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "adversary = adversary.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_namespace_imports():
    import adversary.corpora
    import adversary.reports
    import adversary.strategies

    assert hasattr(adversary.reports, "render_markdown")
    assert adversary.strategies.ENTRY_POINT_GROUP == "adversary.strategies"
    assert Path(adversary.corpora.__file__).parent.joinpath("starter", "scenarios.yaml").is_file()
