"""`span_corruption`: T5's pretraining objective for encoder-decoder models.

Records are documents of text, tokenised and cut into pieces of `data.seq_len` tokens. The collator
replaces random spans (noise density 0.15, mean span 3) with sentinel tokens in the encoder input; the
decoder target is the sentinels followed by the tokens they hide. The loss is the decoder's
cross-entropy over the target: the model is called as `model(input_ids, attention_mask,
decoder_input_ids, decoder_attention_mask)` and returns (B, T_target, V) logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.collators import SpanCorruptionCollator
from ..errors import ConfigError
from ..layers.losses import IGNORE_INDEX, wide
from .base import Task, TaskOutput, accuracy


class SpanCorruption(Task):
    name = "span_corruption"
    head = "lm"
    family = "seq2seq"
    pretraining = True
    perplexity = "loss"

    def loss(self, model, batch: dict) -> TaskOutput:
        logits = model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
                       batch.get("decoder_attention_mask"))  # (B, T, V)
        logits = wide(logits)
        y = batch["labels"]
        where = y != IGNORE_INDEX
        loss = F.cross_entropy(logits[where], y[where], reduction="sum")
        return TaskOutput({"loss": loss}, {"accuracy": accuracy(logits[where], y[where])})

    def items(self, batch: dict) -> int:
        """Source tokens plus target tokens."""
        return int(batch["attention_mask"].sum()) + int((batch["labels"] != IGNORE_INDEX).sum())

    def head_fraction(self, data) -> float:
        return 1.0

    def prepare(self, tokenizer, docs: list[str], run) -> tuple[list[list[int]], object]:
        """Documents -> (pieces of data.seq_len token ids, a span-corruption collator)."""
        sentinels = [tokenizer.token_to_id(f"<extra_id_{i}>") for i in range(100)]
        sentinels = [i for i in sentinels if i is not None]
        if not sentinels or tokenizer.pad_id is None:
            raise ConfigError("tokenizer: span corruption needs <extra_id_N> sentinel tokens and a pad token "
                              "(a T5-style vocabulary).")
        ids = tokenizer(docs, add_special_tokens=False, padding=False, truncation=False, return_tensors=None)["input_ids"]
        n = run.data.seq_len - 1  # room for the EOS the collator appends
        pieces = [doc[i:i + n] for doc in ids for i in range(0, len(doc), n) if doc[i:i + n]]
        collator = SpanCorruptionCollator(sentinels, tokenizer.pad_id, tokenizer.eos_id, seed=run.train.seed)
        return pieces, lambda examples, generators: collator(examples)

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": (batch["labels"] != IGNORE_INDEX).sum()}
