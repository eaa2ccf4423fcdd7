"""LoRA finetuning of Qwen2.5-VL with new item tokens whose embedding/LM-head rows alone train."""
