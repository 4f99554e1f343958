"""Autoregressive decoding with a key/value cache: greedy, temperature, top-k and top-p sampling.

Prompts may be left-padded: positions come from the attention mask, so each row decodes as if alone.
"""
from __future__ import annotations

from typing import Iterator

import torch


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
          generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) logits -> (B,) next token ids."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest set whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


@torch.no_grad()
def generate_stream(
    model,
    input_ids: torch.Tensor,  # (B, T) prompt, left-padded when rows differ in length
    max_new_tokens: int = 32,
    attention_mask: torch.Tensor | None = None,  # (B, T) 1 = token, 0 = padding
    temperature: float = 0.0,  # 0 = greedy
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,), one step at a time. Rows that emitted EOS repeat it."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    cache = model.new_cache()
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
    hidden = model.forward_features(input_ids, attention_mask, positions, cache=cache)  # (B, T, C)
    logits = model.forward_head(hidden[:, -1:])[:, -1]  # (B, V)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for step in range(max_new_tokens):
        token = _pick(logits, temperature, top_k, top_p, generator)  # (B,)
        if eos_id is not None:
            token = token.masked_fill(done, eos_id)
            done |= token == eos_id
        yield token
        if step == max_new_tokens - 1 or bool(done.all()):
            return
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1  # (B, 1)
        hidden = model.forward_features(token[:, None], attention_mask, positions, cache=cache)  # (B, 1, C)
        logits = model.forward_head(hidden)[:, -1]


def generate(model, input_ids: torch.Tensor, max_new_tokens: int = 32, **options) -> torch.Tensor:
    """Prompt plus up to `max_new_tokens` new tokens: (B, T + new)."""
    new = list(generate_stream(model, input_ids, max_new_tokens, **options))
    return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1) if new else input_ids
