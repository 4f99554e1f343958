"""T5 span corruption: drop random spans, replace each by a sentinel, and ask the decoder for the spans.

As in the T5 paper (section 3.1.4): for "Thank you for inviting me to your party last week ." the input
is "Thank you <X> me to your party <Y> week ." and the target is "<X> for inviting <Y> last <Z>":
each dropped span follows the sentinel that replaced it, and a final sentinel closes the target.

The spans follow T5's `random_spans_noise_mask` (noise and kept segments alternate, the segment lengths
split at random), with two changes that make the noise unbiased at every length:
- the number of noise tokens is length * density rounded stochastically (up with probability equal to
  the fraction), so its expectation is exactly length * density; T5 rounds to nearest and keeps at least
  one, so 10 tokens at 0.15 get 0.2 and 2 tokens get 0.5;
- the layout is rotated by a random offset (a span may wrap from the end to the start, then it is two
  spans), so every position is noise with the same probability; T5 always starts with kept tokens, which
  pushes the noise towards the end of short inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..splits import seeded_generator
from .padding import IGNORE_INDEX, Example, attention_mask_for, example_ids, pad_sequences


def _random_segmentation(total: int, segments: int, generator: torch.Generator) -> torch.Tensor:
    """Split `total` items into `segments` non-empty parts of random lengths (they sum to `total`)."""
    cuts = torch.randperm(total - 1, generator=generator)[: segments - 1].sort().values + 1
    edges = torch.cat([torch.tensor([0]), cuts, torch.tensor([total])])
    return edges[1:] - edges[:-1]


def _stochastic_round(x: float, generator: torch.Generator) -> int:
    """floor(x), plus one with probability x - floor(x): an integer whose expectation is x."""
    whole = int(x)
    return whole + int(torch.rand((), generator=generator).item() < x - whole)


def random_spans_noise_mask(
    length: int, noise_density: float, mean_span_length: float, generator: torch.Generator
) -> torch.Tensor:
    """(length,) bool, True on noise tokens: E[mask.sum()] = length * noise_density, and every position is
    equally likely to be noise. Kept and noise segments alternate, rotated by a random offset."""
    num_noise = min(_stochastic_round(length * noise_density, generator), length - 1)
    if num_noise <= 0:
        return torch.zeros(length, dtype=torch.bool)
    num_spans = max(min(round(num_noise / mean_span_length), num_noise, length - num_noise), 1)
    noise_lengths = _random_segmentation(num_noise, num_spans, generator)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, generator)
    mask = torch.zeros(length, dtype=torch.bool)
    start = 0
    for keep, noise in zip(keep_lengths.tolist(), noise_lengths.tolist()):
        start += keep
        mask[start : start + noise] = True
        start += noise
    offset = int(torch.randint(length, (), generator=generator))
    return mask.roll(offset)


class SpanCorruptionCollator:
    """Build encoder inputs and decoder targets for T5-style span corruption, with dynamic padding.

    `sentinel_ids` are the ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order. Called with one
    generator per example (`Batches` seeds them from (seed, epoch, example)), the corruption of an example
    does not depend on its batch, its rank or on resuming; without, the collator's own generator is used.
    Returns
    `input_ids`, `attention_mask`, `labels` (-100 on padding), `decoder_input_ids` (labels shifted
    right behind `decoder_start_id`, default `pad_id`, as in T5) and `decoder_attention_mask`.
    """

    def __init__(
        self,
        sentinel_ids: Sequence[int],
        pad_id: int,
        eos_id: int | None = None,
        noise_density: float = 0.15,
        mean_span_length: float = 3.0,
        decoder_start_id: int | None = None,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
    ):
        if not 0.0 < noise_density < 1.0:
            raise ValueError("noise_density must be in (0, 1)")
        self.sentinel_ids = list(sentinel_ids)
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.noise_density = noise_density
        self.mean_span_length = mean_span_length
        self.decoder_start_id = pad_id if decoder_start_id is None else decoder_start_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.generator = seeded_generator(seed)

    def corrupt(self, ids: Sequence[int], generator: torch.Generator | None = None) -> tuple[list[int], list[int]]:
        """(encoder input, decoder target) for one sequence of ids (EOS appended to both if set)."""
        mask = random_spans_noise_mask(
            len(ids), self.noise_density, self.mean_span_length, generator if generator is not None else self.generator
        ).tolist()
        inputs: list[int] = []
        targets: list[int] = []
        span = -1
        for position, token in enumerate(ids):
            if mask[position]:
                if position == 0 or not mask[position - 1]:
                    span += 1
                    if span + 1 >= len(self.sentinel_ids):
                        raise ValueError(
                            f"a sequence of {len(ids)} tokens needs more than "
                            f"{len(self.sentinel_ids)} sentinel ids; pass more or use shorter inputs"
                        )
                    inputs.append(self.sentinel_ids[span])
                    targets.append(self.sentinel_ids[span])
                targets.append(token)
            else:
                inputs.append(token)
        targets.append(self.sentinel_ids[span + 1])  # the closing sentinel (alone when nothing was dropped)
        if self.eos_id is not None:
            inputs.append(self.eos_id)
            targets.append(self.eos_id)
        return inputs, targets

    def __call__(
        self, examples: Sequence[Example], generators: Sequence[torch.Generator] | None = None
    ) -> dict[str, torch.Tensor]:
        generators = generators or [None] * len(examples)
        pairs = [self.corrupt(example_ids(e), g) for e, g in zip(examples, generators)]
        inputs = [p[0] for p in pairs]
        targets = [p[1] for p in pairs]
        input_ids = pad_sequences(inputs, self.pad_id, self.pad_to_multiple_of)
        labels = pad_sequences(targets, IGNORE_INDEX, self.pad_to_multiple_of)
        decoder_input_ids = torch.cat(
            [torch.full((len(targets), 1), self.decoder_start_id, dtype=torch.long), labels[:, :-1]], dim=1
        )
        decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids == IGNORE_INDEX, self.pad_id)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask_for(inputs, input_ids.shape[1]),
            "labels": labels,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": attention_mask_for(targets, labels.shape[1]),
        }
