"""Packed causal LM: full blocks, no padding, positions and documents restart, attention stays inside.

That a packed token computes what it computes alone, through the real decoder: test_packing_model.py."""

import random

import torch

from damoxing.data import PackedCLMCollator, pack_documents
from damoxing.layers.masks import document_mask

EOS, PAD = 1, 0


def make_documents(count: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(2, 100) for _ in range(rng.randint(1, 40))] for _ in range(count)]


def test_blocks_are_full_and_unpadded():
    documents = make_documents(100, seed=0)
    blocks = list(pack_documents(documents, block_size=32, eos_id=EOS))
    stream = [t for d in documents for t in d + [EOS]]
    assert len(blocks) == len(stream) // 32
    assert all(len(b["input_ids"]) == 32 for b in blocks)
    assert [t for b in blocks for t in b["input_ids"]] == stream[: 32 * len(blocks)]
    batch = PackedCLMCollator()(blocks)
    assert not (batch["input_ids"] == PAD).any()
    assert "attention_mask" not in batch  # every position is a real token


def test_positions_and_documents_restart_at_each_document():
    blocks = list(pack_documents([[5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15]], block_size=5, eos_id=EOS))
    assert [b["input_ids"] for b in blocks] == [[5, 6, 7, EOS, 8], [9, EOS, 10, 11, 12]]
    assert [b["position_ids"] for b in blocks] == [[0, 1, 2, 3, 0], [0, 1, 0, 1, 2]]
    assert [b["document_ids"] for b in blocks] == [[0, 0, 0, 0, 1], [0, 0, 1, 1, 1]]
    batch = PackedCLMCollator()(blocks)
    assert batch["labels"].tolist() == [[-100, 6, 7, EOS, -100], [-100, EOS, -100, 11, 12]]


def test_document_mask_keeps_attention_inside_each_document():
    mask = document_mask(torch.tensor([[0, 0, 1, 1, 1]]))
    assert mask.shape == (1, 1, 5, 5)  # (B, 1, T, T): broadcast over heads; attention adds the causal triangle
    expected = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]])
    assert torch.equal(mask[0, 0], expected.bool())


def test_packing_is_lazy():
    pulled = []

    def documents():
        for i in range(10_000):
            pulled.append(i)
            yield [2, 3, 4]

    first = next(pack_documents(documents(), block_size=8, eos_id=EOS))
    assert len(first["input_ids"]) == 8 and len(pulled) == 2
