"""Fine-tuning on exported hard negatives: data preparation (data.py, baseline.py), the LoRA trainer (finetune.py), and
the GGUF adapter writer that lets llama.cpp apply the adapter (gguf_lora.py)."""
