"""GGUF (llama.cpp) files of Llama-family models: metadata -> DecoderConfig, tensors -> our state dict.

Tensors are dequantized to float32 with the `gguf` package. llama.cpp's converter permutes the rows of
the query and key projections (its RoPE rotates adjacent pairs (2i, 2i+1), ours rotates (i, i + d/2));
`unpermute` undoes that.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..models.decoder import DecoderConfig

ARCHITECTURES = ("llama",)  # general.architecture values read here

# GGUF tensor name -> ours; "{}" is the block index.
GGUF_MAP = {
    "token_embd.weight": "embed.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "head.proj.weight",
    "blk.{}.attn_q.weight": "blocks.{}.attn.q.weight",
    "blk.{}.attn_k.weight": "blocks.{}.attn.k.weight",
    "blk.{}.attn_v.weight": "blocks.{}.attn.v.weight",
    "blk.{}.attn_output.weight": "blocks.{}.attn.o.weight",
    "blk.{}.ffn_gate.weight": "blocks.{}.mlp.gate.weight",
    "blk.{}.ffn_up.weight": "blocks.{}.mlp.up.weight",
    "blk.{}.ffn_down.weight": "blocks.{}.mlp.down.weight",
    "blk.{}.attn_norm.weight": "blocks.{}.norm1.weight",
    "blk.{}.ffn_norm.weight": "blocks.{}.norm2.weight",
}
IGNORED = ("rope_freqs.weight",)


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's `permute`: rows (head, pair, 2) -> (head, 2, pair)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _reader(path: Path):
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as error:  # truncated or not a GGUF file: numpy / struct / value errors
        raise CheckpointError(f"{path} is not a readable GGUF file ({error}); download it again") from None


def _metadata(reader) -> dict:
    meta = {}
    for key, field in reader.fields.items():
        if key in ("tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.chat_template"):
            continue
        if key == "tokenizer.ggml.tokens":
            meta[key] = len(field.data)  # only the count is needed here
            continue
        meta[key] = field.contents()
    return meta


def config_from_gguf(meta: dict, path: Path, has_output: bool) -> DecoderConfig:
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path}: unsupported GGUF architecture {arch!r}; damoxing reads "
                              f"{', '.join(ARCHITECTURES)}")

    def get(key, default=None):
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise CheckpointError(f"{path}: metadata {arch}.{key} is missing; the file is incomplete")
        return value

    heads = int(get("attention.head_count"))
    kv = int(get("attention.head_count_kv", heads))
    dim = int(get("embedding_length"))
    head_dim = int(get("attention.key_length", dim // heads))
    vocab = meta.get("tokenizer.ggml.tokens") or get("vocab_size")
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise CheckpointError(f"{path}: rope scaling {scaling!r} is not supported (only plain RoPE)")
    ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding")}
    return DecoderConfig(
        vocab_size=int(vocab), dim=dim, layers=int(get("block_count")), heads=heads,
        kv_heads=kv if kv != heads else None, head_dim=head_dim if head_dim * heads != dim else None,
        mlp_dim=int(get("feed_forward_length")), max_positions=int(get("context_length", 2048)),
        position="rope", rope_base=float(get("rope.freq_base", 10000.0)), norm="rmsnorm",
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)), mlp="swiglu", activation="silu",
        attention_bias=False, mlp_bias=False, tie_embeddings=not has_output, dropout=0.0, attention_dropout=0.0,
        bos_id=ids["bos"], eos_id=ids["eos"], pad_id=ids["padding"])


def read_gguf(path: str | Path) -> tuple[DecoderConfig, dict[str, torch.Tensor]]:
    """A GGUF file -> (config, float32 state dict in our names)."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; pass a .gguf file or a model folder")
    reader = _reader(path)
    names = {t.name for t in reader.tensors}
    config = config_from_gguf(_metadata(reader), path, has_output="output.weight" in names)
    state = {}
    for t in reader.tensors:
        if t.name in IGNORED:
            continue
        parts = t.name.split(".")
        tmpl, index = (f"blk.{{}}.{'.'.join(parts[2:])}", parts[1]) if parts[0] == "blk" else (t.name, None)
        if tmpl not in GGUF_MAP:
            raise CheckpointError(f"{path}: unexpected tensor {t.name!r}; not a plain Llama-family model")
        try:
            w = gguf.quants.dequantize(t.data, t.tensor_type)
        except Exception as error:
            raise CheckpointError(f"{path}: cannot dequantize {t.name} ({t.tensor_type.name}): {error}") from None
        w = np.array(w, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])  # GGUF lists dims inner-first
        if tmpl.endswith("attn_q.weight"):
            w = unpermute(w, config.heads)
        elif tmpl.endswith("attn_k.weight"):
            w = unpermute(w, config.kv_heads or config.heads)
        name = GGUF_MAP[tmpl].replace("{}", index) if index is not None else GGUF_MAP[tmpl]
        state[name] = torch.from_numpy(np.ascontiguousarray(w))  # a copy: the reader maps the file read-only
    return config, state
