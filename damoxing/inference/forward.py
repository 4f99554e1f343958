"""The model over a growing batch of sequences, with its key/value cache, for every decoding method."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..layers import KVCache


class Forward:
    """The model over a growing batch of sequences: the prompt once, then one new token per row per step.

    Positions and the attention mask follow each row's left padding; the cache holds every position fed so far.
    With a `cache` that already holds the first `cache.length` tokens of the prompt, only the rest is fed.
    """

    def __init__(
        self,
        model,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: KVCache | None,
        max_new_tokens: int,
    ):
        B, T = input_ids.shape
        self.model = model
        self.cache = cache if cache is not None else model.new_cache()
        if self.cache.length >= T:
            self.cache.crop(T - 1)  # the last prompt token must run to give the first logits
        self.cache.reserve(T + max_new_tokens)
        padded = attention_mask is not None and not bool(attention_mask.all())
        self.mask = None  # no padding: no mask at all (the fastest attention path)
        if padded:
            self.mask = attention_mask.new_ones((B, T + max_new_tokens))  # (B, capacity) 1 = token
            self.mask[:, :T] = attention_mask
            self.positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        else:
            self.positions = torch.arange(T, device=input_ids.device).expand(B, T)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Feed the prompt (what the cache lacks of it); logits of its last position, (B, V)."""
        start, T = self.cache.length, input_ids.shape[1]
        mask = self.mask[:, :T] if self.mask is not None else None
        hidden = self.model.forward_features(
            input_ids[:, start:], mask, self.positions[:, start:], cache=self.cache
        )  # (B, T - start, C)
        self.positions = self.positions[:, -1:]  # (B, 1)
        return self.model.forward_head(hidden[:, -1:])[:, -1]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row, (B,); the next logits, (B, V)."""
        self.positions = self.positions + 1
        mask = self.mask[:, : self.cache.length + 1] if self.mask is not None else None
        hidden = self.model.forward_features(tokens[:, None], mask, self.positions, cache=self.cache)  # (B, 1, C)
        return self.model.forward_head(hidden)[:, -1]

    def select(self, index: torch.Tensor) -> None:
        """Keep rows `index` (beam search)."""
        self.cache.select(index)
        self.positions = self.positions[index]
        if self.mask is not None:
            self.mask = self.mask[index]

    reorder = select  # beams within their prompt: the same rows to keep (see beam.Steps)


def checked_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ConfigError(f"input_ids: expected (batch, length) with length >= 1, got shape {list(input_ids.shape)}")
    if attention_mask is None:
        return torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ConfigError(
            f"attention_mask: shape {list(attention_mask.shape)} differs from input_ids {list(input_ids.shape)}"
        )
    if not bool(attention_mask[:, -1].all()):
        raise ConfigError("attention_mask: prompts must be left-padded (every row's last token real) to generate")
    return attention_mask
