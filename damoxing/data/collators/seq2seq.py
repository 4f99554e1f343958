"""Batches for encoder-decoder training (teacher forcing): sources, targets and the decoder's inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .padding import IGNORE_INDEX, attention_mask_for, example_ids, pad_sequences


class Seq2SeqCollator:
    """Examples {"input_ids": source ids, "labels": target ids (ending with the end token)} -> a batch.

    Returns `input_ids` and `attention_mask` (sources, right-padded with `pad_id`), `labels` (targets,
    -100 on padding), `decoder_input_ids` (the targets shifted right behind `decoder_start_id`, as T5 and
    Marian train) and `decoder_attention_mask`. Examples without labels give the sources only.
    """

    def __init__(self, pad_id: int, decoder_start_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id, self.decoder_start_id, self.pad_to_multiple_of = pad_id, decoder_start_id, pad_to_multiple_of

    def __call__(self, examples: Sequence[Mapping], generators=None) -> dict[str, torch.Tensor]:
        sources = [example_ids(e) for e in examples]
        input_ids = pad_sequences(sources, self.pad_id, self.pad_to_multiple_of)  # (B, S)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask_for(sources, input_ids.shape[1])}
        if "labels" not in examples[0]:
            return batch
        targets = [example_ids(e, "labels") for e in examples]
        labels = pad_sequences(targets, IGNORE_INDEX, self.pad_to_multiple_of)  # (B, T)
        shifted = torch.cat([torch.full((len(targets), 1), self.decoder_start_id), labels[:, :-1]], dim=1)
        batch.update(
            labels=labels,
            decoder_input_ids=shifted.masked_fill(shifted == IGNORE_INDEX, self.pad_id),
            decoder_attention_mask=attention_mask_for(targets, labels.shape[1]),
        )
        return batch
