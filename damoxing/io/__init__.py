"""Checkpoints in and out: Hugging Face folders (one key map per architecture in `hf/`) and GGUF files."""

from .checkpoint import convert, load_model, save_model

__all__ = ["convert", "load_model", "save_model"]
