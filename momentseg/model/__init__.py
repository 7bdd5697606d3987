"""Adapters to the real model classes: Qwen2.5-VL (transformers), SAM2 (sam2), heads, checkpoints."""
