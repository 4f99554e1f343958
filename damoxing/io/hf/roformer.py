"""RoFormer (Su et al. 2021, the Chinese BERT with rotary positions): `RoFormerModel` and its heads <-> our
encoder with `position: rope` (`models/encoder.py`).

The layout is BERT's without the position table. Two differences are translated:
- transformers rotates the channel pairs (2i, 2i + 1) of each head, we rotate (i, i + d/2) (layers/positions.py,
  the Llama layout). Loading reorders each head's query and key rows (weights and biases) from the first order
  to the second, saving reorders them back: every attention score stays the same. The fixed sinusoidal table
  transformers keeps as `encoder.embed_positions.weight` is written on save and not read (ours is computed).
- RoFormerForSequenceClassification's head is dense -> hidden_act -> out_proj over [CLS]: our pooler with
  `pooler_activation` equal to `activation`, then the classifier (transformers also drops out before the dense
  layer while training; we do not).
"""

from __future__ import annotations

import dataclasses
import re

import torch

from ...layers.positions import sinusoidal_table
from ...models.encoder import EncoderConfig
from . import bert
from .base import HFMap, no_save, unsupported

# BERT's keys without its position table and pooler (RoFormerModel has neither)
BASE = {k: v for k, v in bert.BASE.items() if k != "embeddings.position_embeddings.weight" and "pooler" not in k}
SEQUENCE = {
    "classifier.dense.weight": "pooler.weight",
    "classifier.dense.bias": "pooler.bias",
    "classifier.out_proj.weight": "head.classifier.weight",
    "classifier.out_proj.bias": "head.classifier.bias",
}
HEADS = {
    "RoFormerModel": ("none", {}),
    "RoFormerForMaskedLM": ("mlm", bert._mlm("head")),
    "RoFormerForSequenceClassification": ("sequence", SEQUENCE),
    "RoFormerForTokenClassification": ("token", bert.CLASSIFIER),
}
POSITIONS = "encoder.embed_positions.weight"  # transformers' fixed sinusoidal table: ours is computed
IGNORED = re.compile(r"(^|\.)encoder\.embed_positions\.weight$|^cls\.predictions\.decoder\.(weight|bias)$")
ROTATED = re.compile(r"\.attention\.self\.(query|key)\.(weight|bias)$")
BASE_ROPE = 10000.0  # transformers' RoFormer has no other


def _pairs_to_halves(t: torch.Tensor, d: int) -> torch.Tensor:
    """Rows (H * d, ...) in each head's order 0, 1, 2, ... d-1 (pairs (2i, 2i + 1)) -> 0, 2, 4, ..., 1, 3, 5, ..."""
    return t.reshape(-1, d // 2, 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape)


def _halves_to_pairs(t: torch.Tensor, d: int) -> torch.Tensor:
    """Inverse of `_pairs_to_halves`."""
    return t.reshape(-1, 2, d // 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape)


def from_hf(state: dict, config: EncoderConfig) -> dict:
    d = config.dim // config.heads
    return {k: _pairs_to_halves(v, d) if ROTATED.search(k) else v for k, v in state.items()}


def to_hf(state: dict, config: EncoderConfig) -> dict:
    d = config.dim // config.heads
    out = {k: _halves_to_pairs(v, d) if ROTATED.search(k) else v for k, v in state.items()}
    prefix = "roformer." if any(k.startswith("roformer.") for k in out) else ""
    # transformers' RoFormerSinusoidalPositionalEmbedding: [sin | cos] (the same float32 values)
    out[prefix + POSITIONS] = sinusoidal_table(config.max_positions, d, BASE_ROPE, layout="halves")
    return out


def config_from_hf(cfg: dict, head: str, num_labels: int, keys, source) -> EncoderConfig:
    """BERT's translation, then rotary positions and the classification head's activation."""
    if cfg.get("embedding_size", cfg["hidden_size"]) != cfg["hidden_size"]:
        unsupported(source, "embedding_size", cfg["embedding_size"], f"only hidden_size ({cfg['hidden_size']})")
    if cfg.get("rotary_value"):
        unsupported(source, "rotary_value", True, "rotary positions on queries and keys only")
    if cfg.get("is_decoder"):
        unsupported(source, "is_decoder", True, "RoFormer as an encoder only")
    c = bert.config_from_hf(
        {**cfg, "max_position_embeddings": cfg.get("max_position_embeddings", 1536)}, head, num_labels, keys, source
    )
    return dataclasses.replace(
        c, position="rope", rope_base=BASE_ROPE, pooler_activation=c.activation, classifier_dropout=c.dropout
    )


def architecture_for(c) -> str | None:
    if not isinstance(c, EncoderConfig) or c.position != "rope":
        return None
    if c.rope_base != BASE_ROPE or not c.type_vocab_size:
        no_save(
            f"RoFormer needs rope_base: {BASE_ROPE:g} and type_vocab_size > 0 (this model: {c.rope_base:g}, "
            f"{c.type_vocab_size})"
        )
    if c.head == "pretraining":
        no_save("RoFormer has no masked-LM + next-sentence architecture; pretrain with task masked_lm")
    if c.head == "sequence" and (c.pooling != "pooler" or c.pooler_activation != c.activation):
        no_save(
            "RoFormer's sequence head is dense + activation over [CLS]: it needs pooling: pooler and "
            f"pooler_activation: {c.activation} (this model: pooling {c.pooling}, pooler_activation "
            f"{c.pooler_activation})"
        )
    return {head: arch for arch, (head, _) in HEADS.items()}[c.head]


def config_to_hf(c: EncoderConfig) -> dict:
    """BERT's fields without its position type and classifier dropout, and RoFormer's own two."""
    fields = bert.config_to_hf(c)
    for key in ("position_embedding_type", "classifier_dropout"):
        del fields[key]
    return {**fields, "embedding_size": c.dim, "rotary_value": False}


def keep_on_save(arch: str, name: str) -> bool:
    """Only the sequence head has a pooler (its dense layer); the other architectures store none."""
    return arch == "RoFormerForSequenceClassification" or not name.startswith("pooler.")


MAP = HFMap(
    "roformer",
    "roformer.",
    BASE,
    HEADS,
    config_from_hf,
    config_to_hf,
    architecture_for,
    IGNORED,
    from_hf=from_hf,
    to_hf=to_hf,
    keep_on_save=keep_on_save,
    base_architecture="RoFormerModel",
)
