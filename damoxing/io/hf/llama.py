"""Llama: `LlamaModel` and its heads <-> our decoder in Llama style (RoPE, RMSNorm, SwiGLU, GQA)."""

from __future__ import annotations

import re

from ...models.decoder import DecoderConfig
from .base import HFMap, activation, first, layer_heads, no_save, per_block, unsupported

BASE = {
    "embed_tokens.weight": "embed.weight",
    "norm.weight": "norm.weight",
    "layers.{}.input_layernorm.weight": "blocks.{}.norm1.weight",
    "layers.{}.post_attention_layernorm.weight": "blocks.{}.norm2.weight",
    **per_block(
        (
            ("self_attn.q_proj", "attn.q"),
            ("self_attn.k_proj", "attn.k"),
            ("self_attn.v_proj", "attn.v"),
            ("self_attn.o_proj", "attn.o"),
            ("mlp.gate_proj", "mlp.gate"),
            ("mlp.up_proj", "mlp.up"),
            ("mlp.down_proj", "mlp.down"),
        ),
        hf_prefix="layers.{}.",
    ),
}
HEADS = {
    "LlamaModel": ("none", {}),
    "LlamaForCausalLM": ("lm", {"lm_head.weight": "head.proj.weight"}),
    "LlamaForSequenceClassification": ("sequence", {"score.weight": "head.classifier.weight"}),  # no bias
}
IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")  # a buffer


def config_from_hf(cfg: dict, head: str, num_labels: int, keys, source) -> DecoderConfig:
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        unsupported(source, "rope_parameters.rope_type", rope.get("rope_type", rope.get("type")), "only plain RoPE")
    if activation(cfg, source, default="silu") != "silu":
        unsupported(source, "hidden_act", cfg["hidden_act"], "Llama's SwiGLU uses silu")
    heads, dim = cfg["num_attention_heads"], cfg["hidden_size"]
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or dim // heads
    return DecoderConfig(
        vocab_size=cfg["vocab_size"],
        dim=dim,
        layers=cfg["num_hidden_layers"],
        heads=heads,
        layer_heads=tuple(cfg.get("layer_heads") or ()),
        kv_heads=kv if kv != heads else None,
        head_dim=head_dim if head_dim * heads != dim else None,
        mlp_dim=cfg["intermediate_size"],
        max_positions=cfg.get("max_position_embeddings", 2048),
        position="rope",
        rope_base=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        norm="rmsnorm",
        norm_eps=cfg.get("rms_norm_eps", 1e-6),
        mlp="swiglu",
        activation="silu",
        attention_bias=cfg.get("attention_bias", False),
        mlp_bias=cfg.get("mlp_bias", False),
        tie_embeddings=cfg.get("tie_word_embeddings", False),
        dropout=0.0,
        attention_dropout=cfg.get("attention_dropout", 0.0),
        bos_id=first(cfg.get("bos_token_id")),
        eos_id=first(cfg.get("eos_token_id")),
        pad_id=first(cfg.get("pad_token_id")),
        init_std=cfg.get("initializer_range", 0.02),
        head=head,
        num_labels=num_labels,
    )


def architecture_for(c) -> str | None:
    if not isinstance(c, DecoderConfig) or (c.position, c.norm, c.mlp) != ("rope", "rmsnorm", "swiglu"):
        return None
    if c.head not in ("none", "lm", "sequence") or (c.head == "sequence" and c.pooling != "last"):
        no_save(f"Llama has no {c.head} head with pooling {c.pooling}")
    return {head: arch for arch, (head, _) in HEADS.items()}[c.head]


def config_to_hf(c: DecoderConfig) -> dict:
    return dict(
        hidden_size=c.dim,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        num_key_value_heads=c.kv_heads or c.heads,
        head_dim=c.head_dim or c.dim // c.heads,
        intermediate_size=c.mlp_dim,
        hidden_act="silu",
        max_position_embeddings=c.max_positions,
        rms_norm_eps=c.norm_eps,
        rope_theta=c.rope_base,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_base},
        attention_bias=c.attention_bias,
        mlp_bias=c.mlp_bias,
        attention_dropout=c.attention_dropout,
        tie_word_embeddings=c.tie_embeddings,
        bos_token_id=c.bos_id,
        eos_token_id=c.eos_id,
        pad_token_id=c.pad_id,
        **layer_heads(c),
    )


MAP = HFMap(
    "llama",
    "model.",
    BASE,
    HEADS,
    config_from_hf,
    config_to_hf,
    architecture_for,
    IGNORED,
    base_architecture="LlamaModel",
)
