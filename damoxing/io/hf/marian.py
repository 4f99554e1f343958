"""Marian: `MarianMTModel` / `MarianModel` <-> our encoder-decoder (sinusoidal positions, post-norm).

Marian is the original Transformer with SiLU ("swish") and a bias on the logits (`final_logits_bias`, a
(1, V) buffer; ours is the output projection's bias). The `transformer` presets (ReLU, no logits bias)
are saved as MarianMTModel too. The sinusoidal tables are not stored (transformers rebuilds them), and
both stacks read the one shared embedding: separate source and target vocabularies are not supported.
"""

from __future__ import annotations

import re

from ...models.seq2seq import Seq2SeqConfig
from .base import ACT_TO_HF, HFMap, activation, first, no_save, per_block, unless_equal, unsupported

ATTENTION = (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o"))
BASE = {
    "shared.weight": "embed.weight",
    **per_block(
        [(f"self_attn.{hf}", f"attn.{ours}") for hf, ours in ATTENTION]
        + [("self_attn_layer_norm", "norm1"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"), ("final_layer_norm", "norm2")],
        hf_prefix="encoder.layers.{}.",
        ours_prefix="encoder.blocks.{}.",
    ),
    **per_block(
        [(f"self_attn.{hf}", f"attn.{ours}") for hf, ours in ATTENTION]
        + [(f"encoder_attn.{hf}", f"cross_attn.{ours}") for hf, ours in ATTENTION]
        + [
            ("self_attn_layer_norm", "norm1"),
            ("encoder_attn_layer_norm", "norm_cross"),
            ("fc1", "mlp.fc1"),
            ("fc2", "mlp.fc2"),
            ("final_layer_norm", "norm2"),
        ],
        hf_prefix="decoder.layers.{}.",
        ours_prefix="decoder.blocks.{}.",
    ),
}
HEADS = {
    "MarianModel": ("none", {}),
    "MarianMTModel": ("lm", {"lm_head.weight": "head.proj.weight", "final_logits_bias": "head.proj.bias"}),
}
IGNORED = re.compile(r"(^|\.)(encoder|decoder)\.(embed_positions|embed_tokens)\.weight$")  # tables, tied copies


def from_hf(state: dict, config=None) -> dict:
    """final_logits_bias (1, V) -> (V,)."""
    return {k: v.reshape(-1) if k == "final_logits_bias" else v for k, v in state.items()}


def to_hf(state: dict, config=None) -> dict:
    return {k: v.reshape(1, -1) if k == "final_logits_bias" else v for k, v in state.items()}


def config_from_hf(cfg: dict, head: str, num_labels: int, keys, source) -> Seq2SeqConfig:
    vocab = cfg["vocab_size"]
    if (cfg.get("decoder_vocab_size") or vocab) != vocab or cfg.get("share_encoder_decoder_embeddings") is False:
        unsupported(
            source,
            "decoder_vocab_size",
            cfg.get("decoder_vocab_size"),
            "damoxing reads Marian models with one vocabulary shared by source and target",
        )
    for enc, dec in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if cfg.get(enc, 16) != cfg.get(dec, 16):
            unsupported(source, dec, cfg.get(dec), f"it must equal {enc} ({cfg.get(enc)})")
    pad = first(cfg.get("pad_token_id", vocab - 1))
    return Seq2SeqConfig(
        vocab_size=vocab,
        dim=cfg["d_model"],
        layers=cfg["encoder_layers"],
        decoder_layers=unless_equal(cfg["decoder_layers"], cfg["encoder_layers"]),
        heads=cfg["encoder_attention_heads"],
        mlp_dim=cfg["encoder_ffn_dim"],
        max_positions=cfg.get("max_position_embeddings", 1024),
        position="sinusoidal",
        norm="layernorm",
        norm_position="post",
        norm_eps=1e-5,
        mlp="mlp",
        activation=activation(cfg, source, "activation_function"),
        bias=True,
        scale_attention=True,
        scale_embeddings=bool(cfg.get("scale_embedding", False)),
        tie_embeddings=cfg.get("tie_word_embeddings", True) is not False,
        scale_output=False,
        logits_bias="final_logits_bias" in keys,
        dropout=cfg.get("dropout", 0.1),
        attention_dropout=cfg.get("attention_dropout", 0.0),
        pad_id=pad,
        eos_id=first(cfg.get("eos_token_id", 0)),
        decoder_start_id=first(cfg.get("decoder_start_token_id", pad)),
        init_std=cfg.get("init_std", 0.02),
        head=head,
    )


MARIAN_STYLE = {
    "position": "sinusoidal",
    "norm": "layernorm",
    "norm_position": "post",
    "mlp": "mlp",
    "bias": True,
    "scale_attention": True,
    "scale_output": False,
    "norm_eps": 1e-5,
}


def architecture_for(c) -> str | None:
    if not isinstance(c, Seq2SeqConfig) or c.position != "sinusoidal":
        return None
    wrong = [f"{k}: {getattr(c, k)}" for k, v in MARIAN_STYLE.items() if getattr(c, k) != v]
    if wrong:
        no_save(
            f"Marian (sinusoidal positions) needs {', '.join(f'{k}: {v}' for k, v in MARIAN_STYLE.items())}; "
            f"this model has {', '.join(wrong)}"
        )
    return {head: arch for arch, (head, _) in HEADS.items()}[c.head]


def config_to_hf(c: Seq2SeqConfig) -> dict:
    return {
        "d_model": c.dim,
        "encoder_layers": c.layers,
        "decoder_layers": c.num_decoder_layers,
        "encoder_attention_heads": c.heads,
        "decoder_attention_heads": c.heads,
        "encoder_ffn_dim": c.mlp_dim,
        "decoder_ffn_dim": c.mlp_dim,
        "activation_function": ACT_TO_HF[c.activation],
        "max_position_embeddings": c.max_positions,
        "scale_embedding": c.scale_embeddings,
        "dropout": c.dropout,
        "attention_dropout": c.attention_dropout,
        "activation_dropout": 0.0,
        "init_std": c.init_std,
        "pad_token_id": c.pad_id,
        "eos_token_id": c.eos_id,
        "forced_eos_token_id": c.eos_id,
        "decoder_start_token_id": c.decoder_start_id,
        "decoder_vocab_size": c.vocab_size,
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": c.tie_embeddings,
        "is_encoder_decoder": True,
    }


MAP = HFMap(
    "marian",
    "model.",
    BASE,
    HEADS,
    config_from_hf,
    config_to_hf,
    architecture_for,
    IGNORED,
    from_hf=from_hf,
    to_hf=to_hf,
    base_architecture="MarianModel",
)
