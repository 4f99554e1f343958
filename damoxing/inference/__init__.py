"""Using trained models: generation (greedy, sampling, beam search), streaming text, chat sessions."""

from .config import GenerationConfig, checkpoint_generation_defaults, load_generation_config
from .fast import prepare_for_decoding
from .generation import Step, generate, generate_stream
from .session import ChatSession, PrefixCache
from .streaming import StreamedText, TextStream, generate_text, stream_text

__all__ = [
    "ChatSession",
    "GenerationConfig",
    "PrefixCache",
    "Step",
    "StreamedText",
    "TextStream",
    "checkpoint_generation_defaults",
    "generate",
    "generate_stream",
    "generate_text",
    "load_generation_config",
    "prepare_for_decoding",
    "stream_text",
]
