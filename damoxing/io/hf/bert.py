"""BERT: `BertModel` and its heads <-> our encoder (`models/encoder.py`)."""

from __future__ import annotations

import re

from ...models.encoder import EncoderConfig
from .base import ACT_TO_HF, HFMap, activation, layer_heads, no_save, per_block, unsupported

BASE = {
    "embeddings.word_embeddings.weight": "embed.tokens.weight",
    "embeddings.position_embeddings.weight": "embed.positions.weight",
    "embeddings.token_type_embeddings.weight": "embed.segments.weight",
    "embeddings.LayerNorm.weight": "embed.norm.weight",
    "embeddings.LayerNorm.bias": "embed.norm.bias",
    "pooler.dense.weight": "pooler.weight",
    "pooler.dense.bias": "pooler.bias",
    **per_block(
        (
            ("attention.self.query", "attn.q"),
            ("attention.self.key", "attn.k"),
            ("attention.self.value", "attn.v"),
            ("attention.output.dense", "attn.o"),
            ("attention.output.LayerNorm", "norm1"),
            ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2"),
            ("output.LayerNorm", "norm2"),
        ),
        hf_prefix="encoder.layer.{}.",
    ),
}


def _mlm(head: str) -> dict[str, str]:  # `head` is "head" (BertForMaskedLM) or "head.mlm" (BertForPreTraining)
    return {
        "cls.predictions.transform.dense.weight": f"{head}.transform.weight",
        "cls.predictions.transform.dense.bias": f"{head}.transform.bias",
        "cls.predictions.transform.LayerNorm.weight": f"{head}.norm.weight",
        "cls.predictions.transform.LayerNorm.bias": f"{head}.norm.bias",
        "cls.predictions.bias": f"{head}.decoder.bias",
    }


NSP = {"cls.seq_relationship.weight": "head.nsp.weight", "cls.seq_relationship.bias": "head.nsp.bias"}
CLASSIFIER = {"classifier.weight": "head.classifier.weight", "classifier.bias": "head.classifier.bias"}
HEADS = {
    "BertModel": ("none", {}),
    "BertForPreTraining": ("pretraining", {**_mlm("head.mlm"), **NSP}),
    "BertForMaskedLM": ("mlm", _mlm("head")),
    "BertForSequenceClassification": ("sequence", CLASSIFIER),
    "BertForTokenClassification": ("token", CLASSIFIER),
}
# position ids are a buffer; the MLM decoder is tied to the word embeddings
IGNORED = re.compile(r"(^|\.)position_ids$|^cls\.predictions\.decoder\.(weight|bias)$")


def from_hf(state: dict, config=None) -> dict:
    """Names of the original TensorFlow BERT checkpoints: LayerNorm gamma/beta."""
    return {
        re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k)): v
        for k, v in state.items()
    }


def config_from_hf(cfg: dict, head: str, num_labels: int, keys, source) -> EncoderConfig:
    """`keys` are the checkpoint's weight names: the pooler is kept when the file has one."""
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        unsupported(source, "position_embedding_type", cfg["position_embedding_type"], "only 'absolute'")
    pooler = head in ("pretraining", "sequence") or any(k.endswith("pooler.dense.weight") for k in keys)
    drop = cfg.get("hidden_dropout_prob", 0.1)
    return EncoderConfig(
        vocab_size=cfg["vocab_size"],
        dim=cfg["hidden_size"],
        layers=cfg["num_hidden_layers"],
        heads=cfg["num_attention_heads"],
        layer_heads=tuple(cfg.get("layer_heads") or ()),
        mlp_dim=cfg["intermediate_size"],
        max_positions=cfg.get("max_position_embeddings", 512),
        type_vocab_size=cfg.get("type_vocab_size", 2),
        activation=activation(cfg, source),
        norm_eps=cfg.get("layer_norm_eps", 1e-12),
        dropout=drop,
        attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1),
        pad_id=cfg.get("pad_token_id") or 0,
        pooler=pooler,
        pooling="pooler" if pooler else "cls",
        init_std=cfg.get("initializer_range", 0.02),
        classifier_dropout=cfg.get("classifier_dropout") if cfg.get("classifier_dropout") is not None else drop,
        head=head,
        num_labels=num_labels,
    )


def architecture_for(c) -> str | None:
    if not isinstance(c, EncoderConfig) or c.position == "rope":  # rotary positions: RoFormer (roformer.py)
        return None
    if c.position != "learned" or not c.type_vocab_size:
        no_save("BERT needs position: learned (or rope, saved as RoFormer) and type_vocab_size > 0")
    if c.head in ("pretraining", "sequence") and c.pooling != "pooler":
        no_save(f"BERT's {c.head} head reads the pooler; this model uses pooling: {c.pooling}")
    if c.head in ("pretraining", "sequence") and c.pooler_activation != "tanh":
        no_save(f"BERT's pooler is dense + tanh; this model's pooler_activation is {c.pooler_activation}")
    return {head: arch for arch, (head, _) in HEADS.items()}[c.head]


def config_to_hf(c: EncoderConfig) -> dict:
    return dict(
        hidden_size=c.dim,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        intermediate_size=c.mlp_dim,
        hidden_act=ACT_TO_HF[c.activation],
        hidden_dropout_prob=c.dropout,
        attention_probs_dropout_prob=c.attention_dropout,
        max_position_embeddings=c.max_positions,
        type_vocab_size=c.type_vocab_size,
        layer_norm_eps=c.norm_eps,
        pad_token_id=c.pad_id,
        position_embedding_type="absolute",
        classifier_dropout=c.classifier_dropout,
        **layer_heads(c),
    )


def keep_on_save(arch: str, name: str) -> bool:
    """The MLM and token heads of transformers have no pooler: ours is not stored there."""
    return not (arch in ("BertForMaskedLM", "BertForTokenClassification") and name.startswith("pooler."))


MAP = HFMap(
    "bert",
    "bert.",
    BASE,
    HEADS,
    config_from_hf,
    config_to_hf,
    architecture_for,
    IGNORED,
    from_hf=from_hf,
    keep_on_save=keep_on_save,
    base_architecture="BertModel",
)
