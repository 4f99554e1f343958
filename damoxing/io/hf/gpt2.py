"""GPT-2: `GPT2Model` and its heads <-> our decoder in GPT-2 style (learned positions, LayerNorm, GELU).

GPT-2's quirks are undone on the way in and redone on the way out, so the map stays plain: its Conv1D
weights are stored transposed, (in, out), and q|k|v are fused into one `c_attn`.
"""

from __future__ import annotations

import re

import torch

from ...models.decoder import DecoderConfig
from .base import ACT_TO_HF, HFMap, activation, first, layer_heads, no_save, per_block, unsupported

BASE = {
    "wte.weight": "embed.weight",
    "wpe.weight": "positions.weight",
    "ln_f.weight": "norm.weight",
    "ln_f.bias": "norm.bias",
    **per_block(
        (
            ("ln_1", "norm1"),
            ("ln_2", "norm2"),
            ("attn.c_attn.q", "attn.q"),
            ("attn.c_attn.k", "attn.k"),
            ("attn.c_attn.v", "attn.v"),
            ("attn.c_proj", "attn.o"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        ),
        hf_prefix="h.{}.",
    ),
}
HEADS = {
    "GPT2Model": ("none", {}),
    "GPT2LMHeadModel": ("lm", {"lm_head.weight": "head.proj.weight"}),
    "GPT2ForSequenceClassification": ("sequence", {"score.weight": "head.classifier.weight"}),  # no bias
    "GPT2ForTokenClassification": (
        "token",
        {"classifier.weight": "head.classifier.weight", "classifier.bias": "head.classifier.bias"},
    ),
}
IGNORED = re.compile(r"(^|\.)(masked_bias|position_ids)$|^h\.\d+\.attn\.bias$")  # buffers
CONV1D = re.compile(r"\.(c_attn|c_proj|c_fc)\.weight$")


def unfuse(state: dict, config=None) -> dict:
    """Transpose the Conv1D weights to (out, in); split c_attn into c_attn.q/k/v."""
    out = {}
    for name, t in state.items():
        if CONV1D.search(name) and t.dim() == 2:
            t = t.t()
        if ".attn.c_attn." in name:
            for part, piece in zip("qkv", t.chunk(3, dim=0)):
                out[name.replace(".c_attn.", f".c_attn.{part}.")] = piece.contiguous()
        else:
            out[name] = t.contiguous()
    return out


def fuse(state: dict, config=None) -> dict:
    """Inverse of `unfuse`."""
    out = {}
    for name, t in state.items():
        if ".attn.c_attn.q." in name:
            parts = [state[name.replace(".c_attn.q.", f".c_attn.{p}.")] for p in "qkv"]
            t, name = torch.cat(parts, dim=0), name.replace(".c_attn.q.", ".c_attn.")
        elif ".attn.c_attn." in name:
            continue
        if CONV1D.search(name):
            t = t.t()
        out[name] = t.contiguous()
    return out


def display(name: str) -> str:
    """'h.0.attn.c_attn.q.weight' -> 'h.0.attn.c_attn.weight (q part)'."""
    part = re.search(r"\.c_attn\.([qkv])\.", name)
    return re.sub(r"\.c_attn\.[qkv]\.", ".c_attn.", name) + (f" ({part.group(1)} part)" if part else "")


def config_from_hf(cfg: dict, head: str, num_labels: int, keys, source) -> DecoderConfig:
    for key, ok in (
        ("scale_attn_by_inverse_layer_idx", False),
        ("scale_attn_weights", True),
        ("add_cross_attention", False),
        ("reorder_and_upcast_attn", False),
    ):
        if cfg.get(key, ok) != ok:
            unsupported(source, key, cfg[key], f"damoxing's GPT-2 needs {ok}")
    return DecoderConfig(
        vocab_size=cfg["vocab_size"],
        dim=cfg["n_embd"],
        layers=cfg["n_layer"],
        heads=cfg["n_head"],
        layer_heads=tuple(cfg.get("layer_heads") or ()),
        mlp_dim=cfg.get("n_inner") or 4 * cfg["n_embd"],
        max_positions=cfg.get("n_positions", 1024),
        norm_eps=cfg.get("layer_norm_epsilon", 1e-5),
        activation=activation(cfg, source, "activation_function"),
        tie_embeddings=cfg.get("tie_word_embeddings", True),
        dropout=cfg.get("resid_pdrop", 0.1),
        attention_dropout=cfg.get("attn_pdrop", 0.1),
        bos_id=first(cfg.get("bos_token_id")),
        eos_id=first(cfg.get("eos_token_id")),
        pad_id=first(cfg.get("pad_token_id")),
        classifier_dropout=_token_dropout(cfg) if head == "token" else 0.0,
        init_std=cfg.get("initializer_range", 0.02),
        head=head,
        num_labels=num_labels,
    )


def _token_dropout(cfg: dict) -> float:
    """GPT2ForTokenClassification's dropout: classifier_dropout, else hidden_dropout, else 0.1 (as transformers)."""
    for key in ("classifier_dropout", "hidden_dropout"):
        if cfg.get(key) is not None:
            return cfg[key]
    return 0.1


def architecture_for(c) -> str | None:
    if not isinstance(c, DecoderConfig) or (c.position, c.norm, c.mlp) != ("learned", "layernorm", "gelu"):
        return None
    if (
        not (c.attention_bias and c.mlp_bias)
        or (c.kv_heads or c.heads) != c.heads
        or (c.head_dim or c.dim // c.heads) * c.heads != c.dim
    ):
        no_save("GPT-2 needs biases, kv_heads == heads and head_dim == dim / heads")
    if c.head == "sequence" and c.pooling != "last":
        no_save("GPT-2 sequence classification reads the last token (pooling: last)")
    return {head: arch for arch, (head, _) in HEADS.items()}[c.head]


def config_to_hf(c: DecoderConfig) -> dict:
    return dict(
        n_embd=c.dim,
        n_layer=c.layers,
        n_head=c.heads,
        n_inner=c.mlp_dim,
        n_positions=c.max_positions,
        activation_function=ACT_TO_HF[c.activation],
        layer_norm_epsilon=c.norm_eps,
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.attention_dropout,
        tie_word_embeddings=c.tie_embeddings,
        bos_token_id=c.bos_id,
        eos_token_id=c.eos_id,
        pad_token_id=c.pad_id,
        **({"classifier_dropout": c.classifier_dropout} if c.head == "token" else {}),
        **layer_heads(c),
    )


MAP = HFMap(
    "gpt2",
    "transformer.",
    BASE,
    HEADS,
    config_from_hf,
    config_to_hf,
    architecture_for,
    IGNORED,
    from_hf=unfuse,
    to_hf=fuse,
    display=display,
    base_architecture="GPT2Model",
)
