"""Training on a campaign's exports: LoRA adapters for the embedded chat model, and their GGUF form for llama.cpp.

Public names:
    write_gguf_lora   -- gguf_lora.py
"""

from adversary.training.gguf_lora import write_gguf_lora

__all__ = ["write_gguf_lora"]
