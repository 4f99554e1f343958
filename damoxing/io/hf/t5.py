"""T5: `T5ForConditionalGeneration` / `T5Model` (the original and the v1.1 layout) <-> our encoder-decoder.

The original T5 has a ReLU MLP (`wi`, `wo`) and scales the decoder output by d_model ** -0.5 before the
projection tied to the embeddings; v1.1 has a gated GELU MLP (`wi_0`, `wi_1`, `wo`) and an untied `lm_head`.
Two quirks are renamed on the way in and back on the way out, so the map stays plain: the relative
position bias lives in block 0 only (shared by every block: ours is one table per stack), and `wo` is the
second layer of either MLP (ours: `fc2` or `down`).
"""

from __future__ import annotations

import re

from ...models.seq2seq import Seq2SeqConfig
from .base import ACT_FROM_HF, ACT_TO_HF, HFMap, first, no_save, per_block, unless_equal, unsupported

ATTENTION = ("q", "k", "v", "o")
BASE = {
    "shared.weight": "embed.weight",
    "encoder.relative_attention_bias.weight": "encoder.relative.embed.weight",  # see from_hf
    "decoder.relative_attention_bias.weight": "decoder.relative.embed.weight",
    "encoder.final_layer_norm.weight": "encoder.norm.weight",
    "decoder.final_layer_norm.weight": "decoder.norm.weight",
    **per_block(
        [(f"layer.0.SelfAttention.{p}", f"attn.{p}") for p in ATTENTION]
        + [
            ("layer.0.layer_norm", "norm1"),
            ("layer.1.layer_norm", "norm2"),
            ("layer.1.DenseReluDense.wi", "mlp.fc1"),
            ("layer.1.DenseReluDense.wo", "mlp.fc2"),
            ("layer.1.DenseReluDense.wi_0", "mlp.gate"),
            ("layer.1.DenseReluDense.wi_1", "mlp.up"),
            ("layer.1.DenseReluDense.wo_gated", "mlp.down"),
        ],
        params=("weight",),
        hf_prefix="encoder.block.{}.",
        ours_prefix="encoder.blocks.{}.",
    ),
    **per_block(
        [(f"layer.0.SelfAttention.{p}", f"attn.{p}") for p in ATTENTION]
        + [(f"layer.1.EncDecAttention.{p}", f"cross_attn.{p}") for p in ATTENTION]
        + [
            ("layer.0.layer_norm", "norm1"),
            ("layer.1.layer_norm", "norm_cross"),
            ("layer.2.layer_norm", "norm2"),
            ("layer.2.DenseReluDense.wi", "mlp.fc1"),
            ("layer.2.DenseReluDense.wo", "mlp.fc2"),
            ("layer.2.DenseReluDense.wi_0", "mlp.gate"),
            ("layer.2.DenseReluDense.wi_1", "mlp.up"),
            ("layer.2.DenseReluDense.wo_gated", "mlp.down"),
        ],
        params=("weight",),
        hf_prefix="decoder.block.{}.",
        ours_prefix="decoder.blocks.{}.",
    ),
}
HEADS = {
    "T5Model": ("none", {}),
    "T5ForConditionalGeneration": ("lm", {"lm_head.weight": "head.proj.weight"}),
}
# copies of the shared embedding, and a bias table transformers creates but never uses
IGNORED = re.compile(r"^(encoder|decoder)\.embed_tokens\.weight$|EncDecAttention\.relative_attention_bias\.weight$")
RELATIVE = re.compile(r"^(encoder|decoder)\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight$")
GATED_WO = re.compile(r"\.DenseReluDense\.wo\.")


def from_hf(state: dict, config=None) -> dict:
    """Block 0's relative bias -> one per stack; `wo` of a gated MLP -> `wo_gated`."""
    gated = any(".DenseReluDense.wi_0." in k for k in state)
    out = {}
    for name, tensor in state.items():
        if RELATIVE.match(name):
            name = f"{name.split('.')[0]}.relative_attention_bias.weight"
        elif gated:
            name = GATED_WO.sub(".DenseReluDense.wo_gated.", name)
        out[name] = tensor
    return out


def to_hf(state: dict, config=None) -> dict:
    out = {}
    for name, tensor in state.items():
        stack = name.split(".")[0]
        if name == f"{stack}.relative_attention_bias.weight":
            name = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        out[name.replace(".DenseReluDense.wo_gated.", ".DenseReluDense.wo.")] = tensor
    return out


def _feed_forward(cfg: dict, source) -> tuple[bool, str]:
    """(gated, our activation) from feed_forward_proj: 'relu', 'gated-gelu' (= gelu_new), 'gated-silu', ..."""
    proj = cfg.get("feed_forward_proj", "relu")
    parts = proj.split("-")
    gated = len(parts) == 2 and parts[0] == "gated"
    act = "gelu_new" if proj == "gated-gelu" else parts[-1]
    if len(parts) > 2 or (len(parts) == 2 and not gated) or act not in ACT_FROM_HF:
        unsupported(source, "feed_forward_proj", proj, f"'ACT' or 'gated-ACT' with ACT one of {', '.join(ACT_FROM_HF)}")
    return gated, ACT_FROM_HF[act]


def config_from_hf(cfg: dict, head: str, num_labels: int, keys, source) -> Seq2SeqConfig:
    """Tied or not: transformers 5 writes `scale_decoder_outputs` and keeps `lm_head.weight` in the file only
    when it is untied; older files say `tie_word_embeddings` (false in v1.1) and may hold a tied copy."""
    gated, act = _feed_forward(cfg, source)
    tie_flag = cfg.get("tie_word_embeddings", True) is not False
    if "scale_decoder_outputs" in cfg:
        tied, scale = "lm_head.weight" not in keys, bool(cfg["scale_decoder_outputs"])
    else:
        tied, scale = tie_flag or "lm_head.weight" not in keys, tie_flag
    heads, dim, d_kv = cfg["num_heads"], cfg["d_model"], cfg.get("d_kv", 64)
    pad = first(cfg.get("pad_token_id", 0))
    return Seq2SeqConfig(
        vocab_size=cfg["vocab_size"],
        dim=dim,
        layers=cfg["num_layers"],
        decoder_layers=unless_equal(cfg.get("num_decoder_layers"), cfg["num_layers"]),
        heads=heads,
        head_dim=d_kv if d_kv * heads != dim else None,
        mlp_dim=cfg["d_ff"],
        max_positions=cfg.get("n_positions", 512),
        position="relative",
        relative_buckets=cfg.get("relative_attention_num_buckets", 32),
        relative_max_distance=cfg.get("relative_attention_max_distance", 128),
        norm="rmsnorm",
        norm_position="pre",
        norm_eps=cfg.get("layer_norm_epsilon", 1e-6),
        mlp="gated" if gated else "mlp",
        activation=act,
        bias=False,
        scale_attention=False,
        scale_embeddings=False,
        tie_embeddings=tied,
        scale_output=scale,
        logits_bias=False,
        dropout=cfg.get("dropout_rate", 0.1),
        attention_dropout=cfg.get("dropout_rate", 0.1),
        pad_id=pad,
        eos_id=first(cfg.get("eos_token_id", 1)),
        decoder_start_id=first(cfg.get("decoder_start_token_id", pad)),
        init_std=cfg.get("initializer_range", 0.02),
        head=head,
    )


T5_STYLE = {
    "position": "relative",
    "norm": "rmsnorm",
    "norm_position": "pre",
    "bias": False,
    "scale_attention": False,
    "scale_embeddings": False,
    "logits_bias": False,
}


def architecture_for(c) -> str | None:
    if not isinstance(c, Seq2SeqConfig) or c.position != "relative":
        return None
    wrong = [f"{k}: {getattr(c, k)}" for k, v in T5_STYLE.items() if getattr(c, k) != v]
    if wrong:
        no_save(
            f"T5 (relative positions) needs {', '.join(f'{k}: {v}' for k, v in T5_STYLE.items())}; "
            f"this model has {', '.join(wrong)}"
        )
    return {head: arch for arch, (head, _) in HEADS.items()}[c.head]


def config_to_hf(c: Seq2SeqConfig) -> dict:
    act = ACT_TO_HF[c.activation]
    proj = ("gated-gelu" if c.activation == "gelu_tanh" else f"gated-{act}") if c.mlp == "gated" else act
    return {
        "d_model": c.dim,
        "d_kv": c.head_dim or c.dim // c.heads,
        "d_ff": c.mlp_dim,
        "num_layers": c.layers,
        "num_decoder_layers": c.num_decoder_layers,
        "num_heads": c.heads,
        "relative_attention_num_buckets": c.relative_buckets,
        "relative_attention_max_distance": c.relative_max_distance,
        "dropout_rate": c.dropout,
        "layer_norm_epsilon": c.norm_eps,
        "feed_forward_proj": proj,
        "tie_word_embeddings": c.tie_embeddings,
        "scale_decoder_outputs": c.scale_output,
        "is_encoder_decoder": True,
        "pad_token_id": c.pad_id,
        "eos_token_id": c.eos_id,
        "decoder_start_token_id": c.decoder_start_id,
        "n_positions": c.max_positions,
    }


MAP = HFMap(
    "t5",
    "",
    BASE,
    HEADS,
    config_from_hf,
    config_to_hf,
    architecture_for,
    IGNORED,
    from_hf=from_hf,
    to_hf=to_hf,
    base_architecture="T5Model",
)
