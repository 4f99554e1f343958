"""damoxing (大模型): build, pretrain, fine-tune, evaluate and use Transformer models, readably.

    model = damoxing.load("folder-or-file.gguf")        # a Hugging Face folder or a GGUF file, in eval mode
    tok = damoxing.load_tokenizer("folder-or-file.gguf")
    damoxing.save(model, tok, "out/")                   # the Hugging Face layout, written atomically

This module is the package's face for users; nothing inside the package imports it.
"""

from .io.checkpoint import load_model as load
from .io.checkpoint import save_model as save
from .models import Decoder, DecoderConfig, Encoder, EncoderConfig, create_model, preset
from .tokenizer import load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "Decoder",
    "DecoderConfig",
    "Encoder",
    "EncoderConfig",
    "create_model",
    "load",
    "load_tokenizer",
    "preset",
    "save",
]
