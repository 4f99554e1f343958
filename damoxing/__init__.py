"""damoxing (大模型): build, pretrain, fine-tune, evaluate and use Transformer models, readably."""
from .models import Decoder, DecoderConfig, Encoder, EncoderConfig, create_model, preset

__version__ = "0.1.0"


def load(path, dtype=None):
    """Load a model (Hugging Face folder or GGUF file) in eval mode."""
    from .checkpoint import load_model

    return load_model(path, dtype=dtype)


def load_tokenizer(path):
    """Load the tokenizer of a Hugging Face folder or GGUF file."""
    from .tokenizer import Tokenizer

    return Tokenizer.load(path)


def save(model, tokenizer, path, dtype=None) -> None:
    """Write the Hugging Face layout (config.json, model.safetensors, tokenizer files), atomically."""
    from .checkpoint import save_model

    save_model(model, tokenizer, path, dtype=dtype)


__all__ = ["load", "load_tokenizer", "save", "create_model", "preset", "Encoder", "EncoderConfig", "Decoder",
           "DecoderConfig"]
