"""`adversary finetune`: bad input is one clear line that writes nothing; a tiny real fine-tune is seeded, resumes,
and gives an adapter the embedded llama.cpp server applies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adversary.models.embedded import CHAT_MODELS


def _adversary(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adversary", *args], capture_output=True, text=True, timeout=900)


def _sft_export(folder, rows):
    folder.mkdir()
    (folder / "export.json").write_text(json.dumps({"format": "sft"}))
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


SYSTEM = "You are the Acme Bank assistant. Only discuss Acme Bank cards and transfers."
REDIRECT = "I'm sorry, I can only help with Acme Bank cards and transfers."


def _rows():
    negatives = ["What is the best pizza in Rome?", "Write me a poem about the sea.", "Who won the 1998 World Cup?",
                 "How do I bake sourdough bread?"]
    controls = [("How do I freeze my card?", "Open the app, choose your card and tap Freeze."),
                ("How long does a SEPA transfer take?", "A SEPA transfer usually arrives the next business day.")]
    rows = [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                          {"role": "assistant", "content": REDIRECT}],
             "metadata": {"kind": "negative", "scenario_id": "acme"}} for q in negatives]
    rows += [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                           {"role": "assistant", "content": a}],
              "metadata": {"kind": "control", "scenario_id": "acme"}} for q, a in controls]
    return rows


def _bad_input(tmp_path, case):
    export = tmp_path / "export"
    if case == "not-export":
        export.mkdir()
    elif case == "empty":
        _sft_export(export, [])
    elif case in ("bad-base", "method"):
        _sft_export(export, _rows())
    return export, {"bad-base": {"base": "/nonexistent/model"}, "method": {"method": "dpo"}}.get(case, {})


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such export folder"),
    ("not-export", "not an export folder: export.json is missing"),
    ("empty", "the export has no training rows"),
    ("bad-base", "--base /nonexistent/model: no such model folder"),
    ("method", "is a sft export but --method is dpo"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, case, expected):
    from adversary.errors import AdversaryError
    from adversary.training.finetune import FinetuneConfig, finetune

    export, options = _bad_input(tmp_path, case)
    out = tmp_path / "adapter"
    with pytest.raises(AdversaryError) as error:
        finetune(FinetuneConfig(export_dir=str(export), **options), out)
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_the_cli_reports_bad_input_in_one_line_with_exit_2(tmp_path):
    export, _ = _bad_input(tmp_path, "not-export")
    result = _adversary("finetune", str(export), "-o", str(tmp_path / "adapter"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {export}: not an export folder: export.json is missing (write one with " \
                                    "`adversary export RUN --format sft`)"
    assert not (tmp_path / "adapter").exists()


def _tensors(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.integration
@pytest.mark.skipif(CHAT_MODELS["local/smollm2"].weights_path() is None, reason="the embedded model is not installed")
def test_a_tiny_finetune_is_seeded_resumes_from_its_checkpoint_and_serves_as_a_target(tmp_path):
    import numpy as np

    from adversary.errors import ConfigError
    from adversary.models.chat import resolve_route
    from adversary.models.local_server import LocalServers
    from adversary.training.finetune import FinetuneConfig, finetune

    export = _sft_export(tmp_path / "export", _rows())
    config = FinetuneConfig(export_dir=str(export), max_steps=2, batch_size=2, lora_rank=4, lora_alpha=8,
                            max_tokens=128, save_every=1, seed=3)
    steps = []
    first = finetune(config, tmp_path / "first", threads=1, on_step=lambda step, total, loss: steps.append((step, total)))
    assert first.steps == 2 and steps[-1] == (2, 2) and first.rows["train"] == 6 and first.train_loss > 0
    assert {"adapter_config.json", "adapter_model.safetensors", "adapter.gguf"} <= {p.name for p in (tmp_path / "first").iterdir()}
    with pytest.raises(ConfigError, match="already holds a trained adapter"):
        finetune(config, tmp_path / "first", threads=1)

    # A run killed after its first checkpoint: what is left is OUT's settings and checkpoint-1.
    killed = tmp_path / "killed"
    finetune(config, killed, threads=1)
    for leftover in ("finetune.json", "adapter_model.safetensors", "adapter_config.json", "adapter.gguf"):
        (killed / leftover).unlink()
    import shutil

    shutil.rmtree(killed / "checkpoints" / "checkpoint-2")
    resumed = finetune(config, killed, threads=1)
    assert resumed.steps == 2 and resumed.resumed_at_step == 1 and first.resumed_at_step == 0
    a, b = _tensors(tmp_path / "first"), _tensors(killed)
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a), "same seed, same adapter"
    assert any(np.abs(a[k]).max() > 0 for k in a if "lora_B" in k), "training moved the adapter off its zero init"

    with LocalServers(log_dir=tmp_path, threads=1) as servers:
        route = resolve_route(f"local/smollm2+{tmp_path / 'first'}", servers)
        import litellm

        reply = litellm.completion(**route.completion_kwargs(), temperature=0.0, max_tokens=16,
                                   messages=[{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": "What is the best pizza in Rome?"}])
    assert reply.choices[0].message.content.strip()


@pytest.mark.skipif(CHAT_MODELS["local/smollm2"].weights_path() is None, reason="the embedded model is not installed")
def test_a_hugging_face_folder_as_base_gives_a_peft_adapter_only(tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from adversary.training.finetune import FinetuneConfig, finetune

    weights = CHAT_MODELS["local/smollm2"].weights_path()
    tokenizer = AutoTokenizer.from_pretrained(str(weights.parent), gguf_file=weights.name)
    torch.manual_seed(0)
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    base = tmp_path / "hf-model"
    tiny.save_pretrained(base)
    tokenizer.save_pretrained(base)
    export = _sft_export(tmp_path / "export", _rows())
    result = finetune(FinetuneConfig(export_dir=str(export), base=str(base), max_steps=1, batch_size=2, lora_rank=2,
                                     lora_alpha=4, max_tokens=128), tmp_path / "adapter", threads=1)
    written = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert result.files == ["adapter_config.json", "adapter_model.safetensors"] and "adapter.gguf" not in written
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 2


@pytest.mark.skipif(CHAT_MODELS["local/smollm2"].weights_path() is None, reason="the embedded model is not installed")
def test_the_trainer_runs_in_fp32_not_in_trls_default_bf16(tmp_path):
    """TRL's configs default to bf16 autocast, which on a CPU without bf16 matrix instructions is ten times slower
    (and trains with other numerics than on a CPU that has them)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from adversary.training.finetune import FinetuneConfig, _trainer, read_training_export, training_examples

    weights = CHAT_MODELS["local/smollm2"].weights_path()
    tokenizer = AutoTokenizer.from_pretrained(str(weights.parent), gguf_file=weights.name)
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2))
    config = FinetuneConfig(export_dir=str(_sft_export(tmp_path / "export", _rows())), max_steps=1, batch_size=2,
                            max_tokens=128)
    train, test, _ = training_examples(config, read_training_export(config), tokenizer)
    trainer = _trainer(config, tiny, tokenizer, train, test, tmp_path / "out", [])
    assert trainer.args.bf16 is False and trainer.args.fp16 is False
