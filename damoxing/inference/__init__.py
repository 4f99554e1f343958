"""Using trained models: generation (greedy, sampling, beam search), streaming text, chat sessions."""
from .config import GenerationConfig, checkpoint_generation_defaults, load_generation_config
from .generation import Step, generate, generate_stream

__all__ = ["GenerationConfig", "checkpoint_generation_defaults", "load_generation_config", "Step", "generate",
           "generate_stream"]
