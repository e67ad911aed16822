"""Fine-tuning on exported hard negatives: data preparation, the LoRA trainer, and the GGUF adapter writer."""
