"""Packed causal LM: full blocks, no padding, positions and documents restart, attention stays inside."""
import math
import random

import torch
from torch import nn

from damoxing.data import CausalLMCollator, PackedCLMCollator, pack_documents, packed_attention_mask

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


def test_packed_attention_mask_is_block_diagonal_causal():
    mask = packed_attention_mask(torch.tensor([[0, 0, 1, 1, 1]]))[0]
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]])
    assert torch.equal(mask, expected.bool())


def test_packing_is_lazy():
    pulled = []

    def documents():
        for i in range(10_000):
            pulled.append(i)
            yield [2, 3, 4]

    first = next(pack_documents(documents(), block_size=8, eos_id=EOS))
    assert len(first["input_ids"]) == 8 and len(pulled) == 2


class TinyCausalLM(nn.Module):
    """A one-layer attention LM reading only input_ids, position_ids and the packed mask (a stand-in model)."""

    def __init__(self, vocab: int = 100, dim: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(64, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, vocab)

    def hidden(self, input_ids, position_ids, document_ids):
        x = self.embed(input_ids) + self.pos(position_ids)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~packed_attention_mask(document_ids), float("-inf"))
        return x + scores.softmax(-1) @ v

    def token_losses(self, batch):
        hidden = self.hidden(batch["input_ids"], batch["position_ids"], batch["document_ids"])
        logits = self.out(hidden)[:, :-1]
        labels = batch["labels"][:, 1:]
        return hidden, nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none",
                                                   ignore_index=-100)


def test_packed_equals_alone_for_a_reference_model():
    torch.manual_seed(0)
    model = TinyCausalLM().double()
    documents = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16, 17, 18]]
    packed = PackedCLMCollator()(list(pack_documents(documents, block_size=17, eos_id=EOS)))
    hidden, losses = model.token_losses(packed)
    start = 0
    for document in documents:
        alone = PackedCLMCollator()(list(pack_documents([document], len(document) + 1, eos_id=EOS)))
        h_alone, l_alone = model.token_losses(alone)
        n = len(document) + 1
        # float64: only summation order differs, <= n * eps * sum|terms| with n <= 100 (vocab), |terms| <= ~5:
        # ~1e-13; 1e-12 on values ~1-5 (the default rtol, 1e-5, would hide float32-sized errors)
        torch.testing.assert_close(hidden[0, start:start + n], h_alone[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(losses[0, start:start + n - 1], l_alone[0], rtol=0, atol=1e-12)
        start += n
    assert (losses[0, [4, 8]] == 0).all()  # EOS never predicts the next document's first token


def test_unpacked_collator_pads_dynamically():
    batch = CausalLMCollator(pad_id=PAD)([[5, 6, 7], [8]])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
