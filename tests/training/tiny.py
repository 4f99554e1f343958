"""Tiny models and synthetic batch sources for the training tests (no tokenizer, no files)."""

from __future__ import annotations

import torch

from damoxing.data import pack_documents
from damoxing.data.collators import collate_clm
from damoxing.io.checkpoint import load_into, save_model
from damoxing.models import DecoderConfig, EncoderConfig, create_model
from damoxing.training.batches import Batches

VOCAB = 97


def tiny_encoder(seed: int = 0, dropout: float = 0.0):
    torch.manual_seed(seed)
    return create_model(
        EncoderConfig(
            vocab_size=VOCAB,
            dim=32,
            layers=2,
            heads=2,
            mlp_dim=64,
            max_positions=64,
            dropout=dropout,
            attention_dropout=dropout,
            head="pretraining",
        )
    )


def tiny_decoder(seed: int = 0, dropout: float = 0.0):
    torch.manual_seed(seed)
    return create_model(
        DecoderConfig(
            vocab_size=VOCAB,
            dim=32,
            layers=2,
            heads=2,
            mlp_dim=64,
            max_positions=64,
            dropout=dropout,
            attention_dropout=dropout,
        )
    )


def clm_blocks(n: int = 64, seq_len: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, seq_len), generator=g)
    return list(pack_documents(ids.tolist(), seq_len, eos_id=None))  # one block per row


def mlm_nsp_batch(b: int = 8, t: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, t), generator=g)
    labels = torch.full_like(ids, -100)
    where = torch.rand(b, t, generator=g) < 0.25
    where[:, 1] = True
    labels[where] = ids[where]
    inputs = ids.masked_fill(where, 4)
    mask = torch.ones_like(ids)
    mask[: b // 2, -3:] = 0  # some padding
    labels[mask == 0] = -100
    types = torch.zeros_like(ids)
    types[:, t // 2 :] = 1
    return {
        "input_ids": inputs,
        "attention_mask": mask,
        "token_type_ids": types,
        "labels": labels,
        "next_sentence_label": torch.randint(0, 2, (b,), generator=g),
    }


def clm_source(batch_size: int, n: int = 64, seq_len: int = 16, rank: int = 0, world: int = 1, seed: int = 0):
    return Batches(clm_blocks(n, seq_len), collate_clm(), batch_size, seed=seed, rank=rank, world=world)


class FixedBatches:
    """A batch source that yields the same batch once per epoch (for overfitting one batch)."""

    def __init__(self, batch: dict):
        self.batch = batch

    def __len__(self) -> int:
        return 1

    def batches(self, epoch: int, start: int = 0):
        if start == 0:
            yield self.batch


# What the recipes hand the Trainer: checkpoints in the Hugging Face layout (no tokenizer here).
HF = {"save": lambda model, folder: save_model(model, None, folder), "load": load_into}
NO_SAVE = {"save": lambda model, folder: None, "load": lambda model, folder: None}
