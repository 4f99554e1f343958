"""Masked-language-model batches (BERT): choose 15% of tokens, 80% -> [MASK], 10% -> random, 10% unchanged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..splits import seeded_generator
from .padding import IGNORE_INDEX, Example, attention_mask_for, example_ids, pad_sequences


class MLMCollator:
    """Pad a batch and mask it for MLM; independent of any tokenizer class.

    Arguments: `vocab_size`, `mask_id`, `pad_id`, `special_ids` (never chosen: [CLS], [SEP], ...),
    `continuation` (optional bool list/tensor over the vocabulary, True for WordPiece `##` pieces:
    turns on whole-word masking, a piece is chosen exactly when its word is), `mlm_probability`,
    `mask_fraction` / `random_fraction` (of chosen tokens; the rest stay unchanged), `seed`.

    Examples are id lists or dicts with `input_ids` and optionally `token_type_ids` and
    `next_sentence_label` (as built by `MLMChunkCollator`), which are padded / passed through, and `continued`:
    per token, 1 where it begins inside a word (from a word segmenter such as jieba, for Chinese one character
    per token: see data/word_boundaries.py); it turns on whole-word masking with those words, joined with the
    `##` pieces of `continuation` when both are given.
    Returns `input_ids`, `attention_mask`, `labels` (the original id at chosen positions, -100 elsewhere)
    and `masked_positions`: a (N, 2) long tensor of (row, column) of the chosen positions in row-major
    order, equal to `(labels != -100).nonzero()`, so `hidden[mp[:, 0], mp[:, 1]]` gives the (N, C)
    features to project onto the vocabulary and `labels[mp[:, 0], mp[:, 1]]` their targets.
    Random replacements are drawn from the non-special part of the vocabulary. With `at_least_one`, a row
    that has an eligible token but drew none gets one word chosen at random (every row then has a target).

    `collator(examples)` masks the padded batch with the collator's own generator, so the masks depend on
    the batch. `collator(examples, generators)`, one `torch.Generator` per example, masks each example on
    its own unpadded length with its own generator: the masks then do not depend on which examples are
    batched together or on padding (the Trainer seeds them from (seed, epoch, example) for exact resume).
    """

    def __init__(
        self,
        vocab_size: int,
        mask_id: int,
        pad_id: int,
        special_ids: Sequence[int] = (),
        continuation: Sequence[bool] | torch.Tensor | None = None,
        mlm_probability: float = 0.15,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
        at_least_one: bool = False,
    ):
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError("mlm_probability must be in (0, 1)")
        if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1:
            raise ValueError("mask_fraction and random_fraction must be >= 0 and sum to at most 1")
        self.vocab_size = vocab_size
        self.mask_id = mask_id
        self.pad_id = pad_id
        self.special = torch.zeros(vocab_size, dtype=torch.bool)
        self.special[torch.as_tensor(sorted({*special_ids, mask_id, pad_id}), dtype=torch.long)] = True
        self.continuation = None
        if continuation is not None:
            self.continuation = torch.as_tensor(continuation, dtype=torch.bool)
            if self.continuation.shape != (vocab_size,):
                raise ValueError(f"continuation must have one flag per vocabulary entry ({vocab_size})")
        self.random_pool = (~self.special).nonzero().flatten()
        self.mlm_probability = mlm_probability
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction
        self.pad_to_multiple_of = pad_to_multiple_of
        self.at_least_one = at_least_one
        self.generator = seeded_generator(seed)

    def __call__(
        self, examples: Sequence[Example], generators: Sequence[torch.Generator] | None = None
    ) -> dict[str, torch.Tensor]:
        ids = [example_ids(e) for e in examples]
        input_ids = pad_sequences(ids, self.pad_id, self.pad_to_multiple_of)
        attention_mask = attention_mask_for(ids, input_ids.shape[1])
        batch = {"attention_mask": attention_mask}
        first = examples[0]
        if isinstance(first, Mapping) and "token_type_ids" in first:
            types = [example_ids(e, "token_type_ids") for e in examples]
            batch["token_type_ids"] = pad_sequences(types, 0, self.pad_to_multiple_of)
        if isinstance(first, Mapping) and "next_sentence_label" in first:
            batch["next_sentence_label"] = torch.tensor([int(e["next_sentence_label"]) for e in examples])
        continued = None
        if isinstance(first, Mapping) and "continued" in first:
            flags = [example_ids(e, "continued") for e in examples]
            continued = pad_sequences(flags, 0, self.pad_to_multiple_of).bool()
        if generators is None:
            masked, labels, positions = self.mask_tokens(input_ids, attention_mask, continued=continued)
        else:
            if len(generators) != len(ids):
                raise ValueError(f"{len(generators)} generators for {len(ids)} examples")
            masked, labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
            for row, (seq, g) in enumerate(zip(ids, generators)):
                n = len(seq)
                words = None if continued is None else continued[row : row + 1, :n]
                m, y, _ = self.mask_tokens(
                    input_ids[row : row + 1, :n], attention_mask[row : row + 1, :n], g, continued=words
                )
                masked[row, :n], labels[row, :n] = m[0], y[0]
            positions = (labels != IGNORE_INDEX).nonzero()
        return {"input_ids": masked, **batch, "labels": labels, "masked_positions": positions}

    def choose(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        generator: torch.Generator | None = None,
        continued: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, L) bool: the positions chosen for prediction (whole words when `continuation` is set or
        `continued`, (B, L) bool, marks the tokens that begin inside a word)."""
        g = self.generator if generator is None else generator
        eligible = attention_mask.bool() & ~self.special[input_ids]
        draw = torch.rand(input_ids.shape, generator=g) < self.mlm_probability
        if self.continuation is None and continued is None:
            chosen = draw & eligible
            if self.at_least_one:
                self._choose_one_if_none(chosen, eligible, g)
            return chosen
        # A word starts at an eligible token that does not continue (a '##' piece, or inside a segmenter's
        # word) an eligible token.
        inside = torch.zeros_like(eligible) if self.continuation is None else self.continuation[input_ids]
        if continued is not None:
            inside = inside | continued.bool()
        follows_eligible = torch.zeros_like(eligible)
        follows_eligible[:, 1:] = eligible[:, :-1]
        starts = eligible & ~(inside & follows_eligible)
        columns = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        word_start = torch.where(starts, columns, torch.zeros_like(columns)).cummax(dim=1).values
        chosen_starts = draw & starts
        if self.at_least_one:
            self._choose_one_if_none(chosen_starts, starts, g)
        return chosen_starts.gather(1, word_start) & eligible

    @staticmethod
    def _choose_one_if_none(chosen: torch.Tensor, candidates: torch.Tensor, g: torch.Generator) -> None:
        """In place: each row with a candidate but nothing chosen gets one candidate, uniformly at random."""
        empty = (candidates.any(dim=1) & ~chosen.any(dim=1)).nonzero().flatten()
        if len(empty):
            pick = torch.multinomial(candidates[empty].float(), 1, generator=g).flatten()
            chosen[empty, pick] = True

    def mask_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        generator: torch.Generator | None = None,
        continued: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (masked input_ids, labels, masked_positions) for a padded batch (random draws from
        `generator`, or the collator's own; `continued` as in `choose`)."""
        g = self.generator if generator is None else generator
        chosen = self.choose(input_ids, attention_mask, g, continued)
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        roll = torch.rand(input_ids.shape, generator=g)
        to_mask = chosen & (roll < self.mask_fraction)
        to_random = chosen & (roll >= self.mask_fraction) & (roll < self.mask_fraction + self.random_fraction)
        masked = input_ids.clone()
        masked[to_mask] = self.mask_id
        picks = torch.randint(len(self.random_pool), (int(to_random.sum()),), generator=g)
        masked[to_random] = self.random_pool[picks]
        return masked, labels, chosen.nonzero()
