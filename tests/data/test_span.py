"""T5 span corruption: the decoder target reconstructs exactly the removed spans, and the noise is unbiased."""

import random

import pytest
import torch
from scipy.stats import chisquare

from damoxing.data import SpanCorruptionCollator
from damoxing.data.collators import random_spans_noise_mask

SENTINELS = list(range(32099, 31999, -1))  # <extra_id_0> = 32099, <extra_id_1> = 32098, ...
PAD, EOS = 0, 1


def reconstruct(inputs: list[int], targets: list[int]) -> list[int]:
    """Put each target span back in place of the sentinel that replaced it."""
    spans, current = {}, None
    for token in targets:
        if token in SENTINELS:
            current = token
            spans[current] = []
        elif token != EOS:
            spans[current].append(token)
    out = []
    for token in inputs:
        out += spans[token] if token in SENTINELS else [token]
    return out


def test_targets_reconstruct_the_removed_spans():
    collator = SpanCorruptionCollator(SENTINELS, pad_id=PAD, eos_id=EOS, seed=0)
    rng = random.Random(0)
    for _ in range(300):
        ids = [rng.randrange(2, 32000) for _ in range(rng.randint(2, 300))]
        inputs, targets = collator.corrupt(ids)
        assert inputs[-1] == EOS and targets[-1] == EOS
        assert reconstruct(inputs[:-1], targets) == ids
        used = [t for t in inputs if t in SENTINELS]
        assert used == SENTINELS[: len(used)]  # sentinels in order
        assert [t for t in targets if t in SENTINELS] == SENTINELS[: len(used) + 1]  # plus a final one


def test_paper_example_layout():
    collator = SpanCorruptionCollator(SENTINELS, pad_id=PAD, eos_id=None, seed=3)
    inputs, targets = collator.corrupt(list(range(100, 111)))
    assert targets[0] == SENTINELS[0] and targets[-1] in SENTINELS
    assert len(inputs) < 11 and len(targets) > 1  # some tokens moved from the input to the target


SAMPLES = 4000  # per length: the mean density has a standard error <= 0.004 even at length 2


@pytest.mark.parametrize("length", [2, 3, 5, 7, 10, 13, 20, 33, 64, 128])
def test_expected_noise_density_is_the_density_at_every_length(length):
    """T5 rounds 0.15 * L to the nearest integer and keeps at least one: L = 10 gave 0.2, L = 2 gave 0.5."""
    g = torch.Generator().manual_seed(length)
    masks = torch.stack([random_spans_noise_mask(length, 0.15, 3.0, g) for _ in range(SAMPLES)])  # (N, L)
    assert abs(masks.float().mean().item() - 0.15) <= 0.01


@pytest.mark.parametrize("length", [4, 10, 25, 100])
def test_masked_positions_spread_evenly_over_the_sequence(length):
    """A chi-square test of the per-position noise counts against a uniform spread (T5's mask leans right)."""
    g = torch.Generator().manual_seed(100 + length)
    counts = torch.stack([random_spans_noise_mask(length, 0.15, 3.0, g) for _ in range(SAMPLES)]).sum(0)
    assert chisquare(counts.double().numpy()).pvalue > 1e-3
    assert counts[0] > 0  # the first position is masked too


def test_per_example_generators_make_the_corruption_independent_of_the_batch():
    from damoxing.training.batches import example_generator

    collator = SpanCorruptionCollator(SENTINELS, pad_id=PAD, eos_id=EOS, seed=0)
    docs = [list(range(10 + i, 40 + i)) for i in range(4)]
    together = collator(docs, [example_generator(0, 1, i) for i in range(4)])
    alone = collator(docs[2:3], [example_generator(0, 1, 2)])
    n = int(alone["attention_mask"].sum())
    assert torch.equal(together["input_ids"][2, :n], alone["input_ids"][0, :n])
    assert collator(docs, [example_generator(0, 1, i) for i in range(4)])["labels"].equal(together["labels"])


def test_noise_density_and_mean_span_length():
    g = torch.Generator().manual_seed(0)
    noise, spans, total = 0, 0, 0
    for _ in range(400):
        mask = random_spans_noise_mask(512, 0.15, 3.0, g)
        noise += int(mask.sum())
        spans += int((mask[1:] & ~mask[:-1]).sum() + mask[0])
        total += 512
    assert abs(noise / total - 0.15) < 0.005
    assert abs(noise / spans - 3.0) < 0.15  # a span wrapping around the end counts twice here


def test_batch_padding_and_decoder_inputs():
    collator = SpanCorruptionCollator(SENTINELS, pad_id=PAD, eos_id=EOS, seed=1)
    batch = collator([list(range(10, 40)), list(range(50, 60))])
    labels, dec = batch["labels"], batch["decoder_input_ids"]
    assert dec[:, 0].tolist() == [PAD, PAD]
    real = labels != -100
    assert torch.equal(dec[:, 1:][real[:, 1:]], labels[:, :-1][real[:, 1:]])
    assert torch.equal(batch["decoder_attention_mask"].bool(), real)
    lengths = batch["attention_mask"].sum(1)
    assert lengths[0] > lengths[1] and batch["input_ids"].shape[1] == lengths[0]
    assert (batch["input_ids"][1, lengths[1] :] == PAD).all()
