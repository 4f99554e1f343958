"""Using trained models: generation (more pipelines come with later issues)."""
from .generation import generate, generate_stream

__all__ = ["generate", "generate_stream"]
