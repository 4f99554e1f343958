"""Autoregressive decoding with a key/value cache: greedy, sampling, and (in beam.py) beam search.

    config = GenerationConfig(max_new_tokens=64, temperature=0.7, top_p=0.9, stop_token_ids=(2,), seed=0)
    ids = generate(model, input_ids, config, attention_mask)         # (B, T + new), finished rows padded
    for step in generate_stream(model, input_ids, config): ...       # one Step per new token

Prompts of different lengths are left-padded: positions come from the attention mask, so each row decodes as if
alone, and each row stops on its own (at a stop token). Text, stop strings and streaming text are in streaming.py.
For speed on a CPU, call `prepare_for_decoding(model)` (fast.py) once after loading.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..layers import KVCache
from .beam import beam_search
from .config import GenerationConfig
from .forward import Forward, checked_inputs
from .sampling import History, make_generator, pick, process


@dataclass
class Step:
    """One new token per row."""

    tokens: torch.Tensor  # (B,) the new tokens; rows that had already stopped get the pad id
    active: torch.Tensor  # (B,) bool: the row was still generating (its token is real)
    finished: torch.Tensor  # (B,) bool: the row has stopped (this token was a stop token, or it stopped before)
    logprobs: torch.Tensor | None = None  # (B,) log-probability of each token under the model (config.logprobs)
    top_ids: torch.Tensor | None = None  # (B, n) the n most probable tokens
    top_logprobs: torch.Tensor | None = None  # (B, n) and their log-probabilities


def _checked_config(config: GenerationConfig | None) -> GenerationConfig:
    if config is None:
        return GenerationConfig()
    if not isinstance(config, GenerationConfig):
        raise ConfigError(
            f"generation: expected a GenerationConfig, got {config!r}; for example "
            "generate(model, input_ids, GenerationConfig(max_new_tokens=32))"
        )
    return config


@torch.no_grad()
def generate_stream(
    model,
    input_ids: torch.Tensor,  # (B, T) prompts, left-padded when they differ in length
    config: GenerationConfig | None = None,
    attention_mask: torch.Tensor | None = None,  # (B, T) 1 = token, 0 = padding
    cache: KVCache | None = None,  # may hold the first cache.length tokens already (a continued conversation)
) -> Iterator[Step]:
    """Yield one Step per new token until every row stopped or max_new_tokens; greedy or sampling."""
    config = _checked_config(config)
    if config.num_beams > 1:
        raise ConfigError(
            f"generation.num_beams: {config.num_beams} beams cannot stream token by token; "
            "use generate() for beam search, or num_beams: 1"
        )
    attention_mask = checked_inputs(input_ids, attention_mask)
    forward = Forward(model, input_ids, attention_mask, cache, config.max_new_tokens)
    logits = forward.prefill(input_ids)  # (B, V)
    history = History(input_ids, attention_mask, config, logits.shape[-1])
    stop_ids = torch.tensor(config.stop_token_ids, dtype=torch.long, device=input_ids.device)
    generator = make_generator(config, input_ids.device)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for new in range(config.max_new_tokens):
        logits = logits.float()
        tokens = pick(process(logits, history, new, config, stop_ids), config, generator)  # (B,)
        active = ~finished
        tokens = tokens.masked_fill(finished, config.pad_id)
        finished = finished | torch.isin(tokens, stop_ids)
        yield Step(tokens, active, finished, *_logprobs(logits, tokens, config.logprobs))
        if new == config.max_new_tokens - 1 or bool(finished.all()):
            return
        history.append(tokens)
        logits = forward.step(tokens)


def _logprobs(logits: torch.Tensor, tokens: torch.Tensor, n: int) -> tuple:
    """Log-probabilities under the model (before penalties and filters): of `tokens`, and the top n."""
    if not n:
        return None, None, None
    logprobs = logits.log_softmax(-1)  # (B, V)
    top = logprobs.topk(n, dim=-1)
    return logprobs.gather(-1, tokens[:, None])[:, 0], top.indices, top.values


@torch.no_grad()
def generate(
    model, input_ids: torch.Tensor, config: GenerationConfig | None = None, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Prompts plus their continuations, (B, T + new); rows that stopped early are padded with config.pad_id.

    Greedy when config.temperature is 0, sampling when it is > 0, beam search when config.num_beams > 1.
    """
    config = _checked_config(config)
    if config.num_beams > 1:
        return beam_search(model, input_ids, config, attention_mask)
    new = [step.tokens for step in generate_stream(model, input_ids, config, attention_mask)]
    return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)
