"""From next-token logits to the next token: penalties, filters, greedy choice or a seeded draw.

The steps run in transformers' order, so the same settings pick the same tokens: repetition penalty ->
no-repeat n-grams -> banned tokens -> min_new_tokens -> forced end token -> temperature -> top-k -> top-p -> min-p.
Scores are float32 (float64 logits included), as in transformers.
"""

from __future__ import annotations

import torch

from .config import GenerationConfig


class History:
    """The tokens each row has seen (prompt and output), for the repetition penalty and the n-gram ban.

    `ids` (N, capacity) and `valid` (N, capacity) grow by one column per step; left padding is not valid.
    `seen` (N, V) marks every token a row has seen (only kept when the repetition penalty is on).
    """

    def __init__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, config: GenerationConfig, vocab_size: int
    ):
        N, T = input_ids.shape
        self.length = T
        self.ids = input_ids.new_zeros((N, T + config.max_new_tokens))
        self.valid = torch.zeros_like(self.ids, dtype=torch.bool)
        self.ids[:, :T], self.valid[:, :T] = input_ids, attention_mask.bool()
        self.seen = None
        if config.repetition_penalty != 1.0:
            self.seen = torch.zeros(N, vocab_size + 1, dtype=torch.bool, device=input_ids.device)
            self.seen.scatter_(1, input_ids.masked_fill(~self.valid[:, :T], vocab_size), True)  # padding: spare column
            self.seen = self.seen[:, :vocab_size]

    def append(self, tokens: torch.Tensor) -> None:  # (N,)
        self.ids[:, self.length] = tokens
        self.valid[:, self.length] = True
        self.length += 1
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)

    def select(self, index: torch.Tensor) -> None:
        """Keep rows `index` (beam search)."""
        self.ids, self.valid = self.ids[index], self.valid[index]
        if self.seen is not None:
            self.seen = self.seen[index]


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Scores of seen tokens move towards -inf: divided by `penalty` when positive, multiplied when negative."""
    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalized, scores)


def ban_repeated_ngrams(scores: torch.Tensor, history: History, n: int) -> torch.Tensor:
    """-inf for every token that would complete an n-gram the row already contains."""
    if history.length < n:
        return scores
    ids, valid = history.ids[:, : history.length], history.valid[:, : history.length]
    prefix = ids[:, history.length - n + 1 :]  # (N, n-1) the last n-1 tokens
    windows = ids.unfold(1, n, 1)  # (N, L-n+1, n) every n-gram so far
    matches = (windows[..., :-1] == prefix[:, None]).all(-1) & valid.unfold(1, n, 1).all(-1)  # (N, L-n+1)
    V = scores.shape[-1]
    banned = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, torch.where(matches, windows[..., -1], V), True)  # non-matching windows: spare column
    return scores.masked_fill(banned[:, :V], float("-inf"))


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest scores (and any tied with the k-th); the rest become -inf."""
    kth = torch.topk(scores, min(k, scores.shape[-1])).values[..., -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def top_p_filter(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the fewest most probable tokens whose probabilities sum to at least p."""
    ascending, order = torch.sort(scores, descending=False)
    cumulative = ascending.softmax(-1).cumsum(-1)
    drop = cumulative <= 1 - p  # the least probable tokens whose mass stays within 1 - p
    drop[..., -1] = False  # the most probable token always stays
    return scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def min_p_filter(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least p times that of the most probable token."""
    probs = scores.softmax(-1)
    drop = probs < p * probs.amax(-1, keepdim=True)
    drop.scatter_(-1, probs.argmax(-1, keepdim=True), False)
    return scores.masked_fill(drop, float("-inf"))


def process(
    scores: torch.Tensor, history: History, new_tokens: int, config: GenerationConfig, stop_ids: torch.Tensor
) -> torch.Tensor:
    """Penalties and bans on (N, V) float32 scores (logits, or log-probabilities in beam search)."""
    if history.seen is not None:
        scores = repetition_penalty(scores, history.seen, config.repetition_penalty)
    if config.no_repeat_ngram_size:
        scores = ban_repeated_ngrams(scores, history, config.no_repeat_ngram_size)
    if config.bad_token_ids:
        scores = scores.index_fill(-1, torch.tensor(config.bad_token_ids, device=scores.device), float("-inf"))
    if new_tokens < config.min_new_tokens and len(stop_ids):
        scores = scores.index_fill(-1, stop_ids, float("-inf"))
    if config.forced_eos_token_id is not None and new_tokens == config.max_new_tokens - 1:
        scores = torch.full_like(scores, float("-inf")).index_fill(
            -1, torch.tensor([config.forced_eos_token_id], device=scores.device), 0.0
        )
    return scores


def warp(scores: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """Temperature and the sampling filters (only when sampling)."""
    if config.temperature != 1.0:
        scores = scores / config.temperature
    if config.top_k:
        scores = top_k_filter(scores, config.top_k)
    if config.top_p < 1.0:
        scores = top_p_filter(scores, config.top_p)
    if config.min_p > 0.0:
        scores = min_p_filter(scores, config.min_p)
    return scores


def pick(scores: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """(N, V) processed scores -> (N,) next tokens: the argmax, or a draw from the warped distribution."""
    if not config.sampling:
        return scores.argmax(-1)
    probs = warp(scores, config).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def make_generator(config: GenerationConfig, device: torch.device) -> torch.Generator | None:
    """A generator seeded with config.seed (None: torch's global one)."""
    if config.seed is None:
        return None
    return torch.Generator(device).manual_seed(config.seed)
