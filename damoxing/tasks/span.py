"""`span_corruption`: T5's pretraining objective for encoder-decoder models.

Records are documents of text, tokenised and cut into pieces of `data.seq_len` tokens (the end token
included). The collator replaces random spans (noise density 0.15, mean span 3) with sentinel tokens in
the encoder input; the decoder target is the sentinels followed by the tokens they hide. The loss is the
decoder's cross-entropy over the target (teacher forcing, `target_loss`). Each example is corrupted with
its own generator from `Batches`, so a resumed run sees the same corruption as an uninterrupted one.
"""

from __future__ import annotations

import torch

from ..data.collators import SpanCorruptionCollator
from ..errors import ConfigError
from ..layers.losses import IGNORE_INDEX
from .base import Task, TaskOutput, target_loss


class SpanCorruption(Task):
    name = "span_corruption"
    head = "lm"
    family = "seq2seq"
    pretraining = True
    perplexity = "loss"

    def loss(self, model, batch: dict) -> TaskOutput:
        return target_loss(model, batch)

    def items(self, batch: dict) -> int:
        """Source tokens plus target tokens."""
        return int(batch["attention_mask"].sum()) + int((batch["labels"] != IGNORE_INDEX).sum())

    def head_fraction(self, data) -> float:
        return 1.0

    def prepare(self, tokenizer, docs: list[str], run) -> tuple[list[list[int]], object]:
        """Documents -> (pieces of data.seq_len token ids, a span-corruption collator)."""
        sentinels = [tokenizer.token_to_id(f"<extra_id_{i}>") for i in range(1000)]
        sentinels = sentinels[: sentinels.index(None)] if None in sentinels else sentinels
        if len(sentinels) < 2 or tokenizer.pad_id is None or tokenizer.eos_id is None:
            raise ConfigError(
                "tokenizer: span corruption needs a pad and an end token and <extra_id_N> sentinel "
                "tokens (a T5-style vocabulary); train one with tokenizer.kind: unigram and "
                "tokenizer.extra_ids: 100"
            )
        ids = tokenizer(docs, add_special_tokens=False, padding=False, truncation=False, return_tensors=None)[
            "input_ids"
        ]
        n = run.data.seq_len - 1  # room for the EOS the collator appends
        pieces = [doc[i : i + n] for doc in ids for i in range(0, len(doc), n) if doc[i : i + n]]
        collator = SpanCorruptionCollator(sentinels, tokenizer.pad_id, tokenizer.eos_id, seed=run.train.seed)
        return pieces, collator

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": (batch["labels"] != IGNORE_INDEX).sum()}
