"""GGUF (llama.cpp) files of Llama-family models: metadata -> DecoderConfig, tensors -> our state dict.

Tensors are dequantized to float32 with the `gguf` package, or (keep_blocks=True) Q8_0, Q4_0 and Q4_1
tensors are kept as `Blocks`: their integer codes and per-block scales, unchanged, for the int8/int4 layers
of damoxing/compress/quantize.py. llama.cpp's converter permutes the rows of the query and key
projections (its RoPE rotates adjacent pairs (2i, 2i+1), ours rotates (i, i + d/2)); `unpermute` undoes that.

Blocks run as they are (`damoxing.load(path, quantized=True)`, through `load_blocks`).
What maps exactly (the integer codes and the file's fp16 scales are kept as they are):
    Q4_0, Q4_1 linear weights   -> Int4Linear, groups of 32: w = code * d + m (Q4_0: m = -8 d)
    Q8_0 linear weights         -> Int8Linear, groups of 32: w = code * d (run as two int4 planes)
    Q8_0 word embedding         -> Int8Embedding, groups of 32 (its lookup is exact in float32)
    a tied output projection    -> shares the embedding's codes (Q8_0), or keeps the Q4 blocks as Int4Linear
What is re-quantized, and said so in `model.quantization["notes"]`:
    a Q4_0 / Q4_1 word embedding: its rows become int8 with one scale per row (the head, when tied,
    keeps the exact Q4 blocks); any other block type was already dequantized to float32 by the reader.
The kernels take their scales in bf16 (the only fast activation dtype here), so the product is as
close to the fp32 dequantized model as bf16 rounding of the activations and of the scales allows.

Block layouts (32 weights each; ggml-common.h): Q8_0 = fp16 d + 32 int8 codes, w = d * q;
Q4_0 = fp16 d + 16 bytes, w = d * (q - 8); Q4_1 = fp16 d + fp16 m + 16 bytes, w = d * q + m. In the
16 bytes of a Q4 block, the low nibbles hold weights 0-15 and the high nibbles weights 16-31.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..compress.quantize import Int4Linear, Int8Embedding, Int8Linear, share_tied
from ..errors import CheckpointError
from ..models.decoder import DecoderConfig
from ..models.swap import set_module

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


BLOCK = 32  # weights per block in Q8_0, Q4_0, Q4_1
BLOCK_TYPES = ("Q8_0", "Q4_0", "Q4_1")


@dataclass
class Blocks:
    """A GGUF tensor in its own block format: w[n, k] = codes[n, k] * scale[n, k // 32] + minimum[n, k // 32]."""

    kind: str  # Q8_0 | Q4_0 | Q4_1
    codes: torch.Tensor  # (N, K): int8 for Q8_0; uint8 0..15 for Q4_0 and Q4_1
    scale: torch.Tensor  # (N, K / 32) float32, the file's fp16 values
    minimum: torch.Tensor | None  # (N, K / 32) float32: Q4_1's m, Q4_0's -8 d; None for Q8_0

    def dequantize(self) -> torch.Tensor:
        n, k = self.codes.shape
        w = self.codes.float().view(n, -1, BLOCK) * self.scale[..., None]
        if self.minimum is not None:
            w = w + self.minimum[..., None]
        return w.view(n, k)


def decode_blocks(data: np.ndarray, kind: str, shape: tuple[int, int]) -> Blocks:
    """A tensor's raw bytes (N, K / 32 * block bytes) -> Blocks, without touching a value."""
    n, k = shape
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(n, k // BLOCK, -1)  # (N, G, bytes per block)
    scale = raw[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)  # (N, G)
    if kind == "Q8_0":
        codes = raw[..., 2:].copy().view(np.int8).reshape(n, k)
        return Blocks(kind, torch.from_numpy(codes), torch.from_numpy(scale), None)
    if kind == "Q4_1":
        minimum = raw[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        nibbles = raw[..., 4:]
    else:  # Q4_0: w = d * (q - 8) = d * q + (-8 d)
        minimum = -8 * scale
        nibbles = raw[..., 2:]
    codes = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1).reshape(n, k)  # weights 0-15, then 16-31
    return Blocks(kind, torch.from_numpy(codes), torch.from_numpy(scale), torch.from_numpy(minimum))


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's `permute`: rows (head, pair, 2) -> (head, 2, pair)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermuted(t: torch.Tensor, heads: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(unpermute(t.numpy(), heads)))


def _reader(path: Path):
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as error:  # truncated or not a GGUF file: numpy / struct / value errors  # noqa: BLE001
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
        raise CheckpointError(
            f"{path}: unsupported GGUF architecture {arch!r}; damoxing reads {', '.join(ARCHITECTURES)}"
        )

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
        vocab_size=int(vocab),
        dim=dim,
        layers=int(get("block_count")),
        heads=heads,
        kv_heads=kv if kv != heads else None,
        head_dim=head_dim if head_dim * heads != dim else None,
        mlp_dim=int(get("feed_forward_length")),
        max_positions=int(get("context_length", 2048)),
        position="rope",
        rope_base=float(get("rope.freq_base", 10000.0)),
        norm="rmsnorm",
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        mlp="swiglu",
        activation="silu",
        attention_bias=False,
        mlp_bias=False,
        tie_embeddings=not has_output,
        dropout=0.0,
        attention_dropout=0.0,
        bos_id=ids["bos"],
        eos_id=ids["eos"],
        pad_id=ids["padding"],
    )


def read_gguf(path: str | Path, keep_blocks: bool = False) -> tuple[DecoderConfig, dict[str, torch.Tensor | Blocks]]:
    """A GGUF file -> (config, float32 state dict in our names); with `keep_blocks`, Q8_0, Q4_0 and Q4_1
    tensors come as `Blocks` instead."""
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
        shape = [int(n) for n in reversed(t.shape)]  # GGUF lists dims inner-first
        heads = {"attn_q.weight": config.heads, "attn_k.weight": config.kv_heads or config.heads}.get(
            tmpl.removeprefix("blk.{}.")
        )
        name = GGUF_MAP[tmpl].replace("{}", index) if index is not None else GGUF_MAP[tmpl]
        if keep_blocks and t.tensor_type.name in BLOCK_TYPES and len(shape) == 2:
            b = decode_blocks(t.data, t.tensor_type.name, tuple(shape))
            if heads is not None:  # the same row permutation applies to codes and to per-row block scales
                b.codes, b.scale = (_unpermuted(x, heads) for x in (b.codes, b.scale))
                b.minimum = None if b.minimum is None else _unpermuted(b.minimum, heads)
            state[name] = b
            continue
        try:
            w = gguf.quants.dequantize(t.data, t.tensor_type)
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(f"{path}: cannot dequantize {t.name} ({t.tensor_type.name}): {error}") from None
        w = np.array(w, dtype=np.float32).reshape(shape)
        if heads is not None:
            w = unpermute(w, heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(w))  # a copy: the reader maps the file read-only
    return config, state


# ---------------------------------------------------------------------- blocks onto quantized layers
def _int8(blocks: Blocks, like: nn.Linear) -> Int8Linear:
    n, k = blocks.codes.shape
    layer = Int8Linear(k, n, like.bias is not None, groups=k // BLOCK)
    with torch.no_grad():
        layer.weight.copy_(blocks.codes)
        layer.weight_scale.copy_(blocks.scale)
    return layer


def _int4(blocks: Blocks, like: nn.Linear) -> Int4Linear:
    n, k = blocks.codes.shape
    layer = Int4Linear(k, n, like.bias is not None, group_size=BLOCK)
    with torch.no_grad():
        layer.set_codes(blocks.codes, blocks.scale, blocks.minimum)
    return layer


def _linear(blocks: Blocks, like: nn.Linear) -> nn.Module:
    return _int8(blocks, like) if blocks.kind == "Q8_0" else _int4(blocks, like)


def load_blocks(model: nn.Module, blocks: dict[str, Blocks], source) -> dict[str, torch.Tensor]:
    """Swap a quantized layer in for each block tensor (our weight names); returns their state-dict entries.

    Sets `model.quantization`, the section a saved copy writes into config.json.
    """
    modules, notes, tied = {}, [], {}
    entries = {}
    for weight_name, b in blocks.items():
        name = weight_name.removesuffix(".weight")
        like = model.get_submodule(name)
        if b.codes.shape != like.weight.shape:
            raise CheckpointError(
                f"{source}: {weight_name} has shape {list(b.codes.shape)}, the model needs "
                f"{list(like.weight.shape)}; the file's metadata and tensors disagree"
            )
        if isinstance(like, nn.Embedding):
            layer = Int8Embedding(like.num_embeddings, like.embedding_dim, groups=like.embedding_dim // BLOCK)
            if b.kind == "Q8_0":
                with torch.no_grad():
                    layer.weight.copy_(b.codes)
                    layer.weight_scale.copy_(b.scale)
            else:
                layer = Int8Embedding.from_float(nn.Embedding.from_pretrained(b.dequantize()))
                notes.append(f"{name}: {b.kind} rows re-quantized to int8, one scale per row (lookups only)")
            projection = getattr(getattr(model, "head", None), "proj", None)
            if isinstance(projection, nn.Linear) and projection.weight is like.weight:  # tied output projection
                head = _linear(b, projection)
                set_module(model, "head.proj", head)
                modules["head.proj"] = head.kind
                entries.update({f"head.proj.{k}": v for k, v in head.state_dict().items()})
        elif isinstance(like, nn.Linear):
            layer = _linear(b, like)
        else:
            raise CheckpointError(f"{source}: {weight_name} is {b.kind} but {name} is a {type(like).__name__}")
        set_module(model, name, layer)
        modules[name] = layer.kind
        entries.update({f"{name}.{k}": v for k, v in layer.state_dict().items()})
    if "head.proj" in modules and "embed" in modules:
        share_tied(model, "head.proj", "embed")
        if model.head.proj.weight is model.embed.weight:
            tied["head.proj"] = "embed"
    kinds = sorted({b.kind for b in blocks.values()})
    notes.insert(0, f"{', '.join(kinds)} blocks of {source.name} run as stored (codes and fp16 scales unchanged)")
    model.quantization = {"method": "gguf", "group_size": BLOCK, "modules": modules, "tied": tied, "notes": notes}
    return entries
