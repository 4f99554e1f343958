"""Beam search with transformers' semantics (length_penalty, early_stopping True / False / "never").

Each prompt keeps `num_beams` running hypotheses. Every step scores all beams x vocabulary continuations by their
summed log-probabilities and keeps the best 2 x num_beams (more with several stop tokens), so that num_beams
of them can go on even when some just stopped. A candidate that ends (stop token or max length) among the best
num_beams joins the row's finished hypotheses with score sum / new_length ** length_penalty; the best finished
hypothesis is the answer. The key/value cache follows the surviving beams through `select`. `search` is
the algorithm over any model that steps one token at a time: decoders here, encoder-decoders in seq2seq.py.

Scores are float32, as in transformers, so float64 models give transformers' tokens exactly.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..errors import ConfigError
from .config import GenerationConfig
from .forward import Forward, checked_inputs
from .sampling import History, process

NEG = -1.0e9  # the score of a candidate that must not be chosen


def _gather(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """t (B, K, ...) -> t[b, index[b, j], ...] (B, J, ...)."""
    while index.dim() < t.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(t, index, dim=1)


@torch.no_grad()
def beam_search(
    model, input_ids: torch.Tensor, config: GenerationConfig, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A decoder's best hypothesis for each prompt, (B, T + new); shorter ones padded with config.pad_id."""
    check_deterministic(config)
    attention_mask = checked_inputs(input_ids, attention_mask)
    T = input_ids.shape[1]
    flat_ids = input_ids.repeat_interleave(config.num_beams, dim=0)  # (B*beams, T)
    flat_mask = attention_mask.repeat_interleave(config.num_beams, dim=0)
    forward = Forward(model, flat_ids, flat_mask, None, config.max_new_tokens)
    best, lengths = search(forward, forward.prefill(flat_ids), flat_ids, flat_mask, config)
    return best[:, : T + int(lengths.max())]


def check_deterministic(config: GenerationConfig) -> None:
    if config.sampling:
        raise ConfigError(
            "generation.temperature: beam search is deterministic here; set temperature: 0 "
            "with num_beams > 1, or num_beams: 1 to sample"
        )


class Steps(Protocol):
    """The model over the running rows, one token per row per step (Forward for decoders; encoder-decoders
    have their own in seq2seq.py)."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:  # (N,) -> next-token logits (N, V)
        ...

    def select(self, index: torch.Tensor) -> None:  # keep rows `index` (any rows, in any number)
        ...

    def reorder(self, index: torch.Tensor) -> None:  # as select, where each row stays within its prompt's beams
        ...


def search(
    steps: Steps, logits: torch.Tensor, prompts: torch.Tensor, prompt_mask: torch.Tensor, config: GenerationConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search over `steps`, whose rows are each prompt repeated num_beams times: prompts and prompt_mask
    (B*beams, T), logits (B*beams, V) the next-token logits after them. -> each prompt's best hypothesis
    (B, T + max_new_tokens), padded with config.pad_id, and its number of new tokens (B,).

    A prompt whose finished hypotheses can no longer change (no running beam can beat them, or with
    early_stopping True it has num_beams of them) leaves the computation; transformers keeps decoding it
    until the whole batch is done, and the tokens are the same.
    """
    N, T = prompts.shape
    beams, max_length, device = config.num_beams, T + config.max_new_tokens, prompts.device
    B, V = N // beams, logits.shape[-1]
    history = History(prompts, prompt_mask, config, V)
    stop_ids = torch.tensor(config.stop_token_ids, dtype=torch.long, device=device)
    keep = max(2, 1 + len(stop_ids)) * beams  # candidates kept per step
    top_beams = torch.arange(keep, device=device) < beams  # only these may finish
    early = config.early_stopping

    # every prompt's finished hypotheses, best first: sequences, scores, new lengths, whether each slot holds one
    done = torch.full((B, beams, max_length), config.pad_id, dtype=torch.long, device=device)
    done[:, :, :T] = prompts.view(B, beams, T)
    done_scores = torch.full((B, beams), NEG, device=device)
    done_lengths = torch.zeros(B, beams, dtype=torch.long, device=device)
    is_done = torch.zeros(B, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)  # a running beam may still beat a finished one
    # the prompts still decoding (A of them) and their running beams
    alive = torch.arange(B, device=device)
    running = done.clone()  # (A, beams, max_length)
    running_scores = torch.zeros(B, beams, device=device)  # summed log-probabilities (float32)
    running_scores[:, 1:] = NEG  # all beams start equal: only the first may expand, or they would repeat

    for cur_len in range(T, max_length):
        new, A = cur_len - T, len(alive)
        log_probs = process(logits.float().log_softmax(-1), history, new, config, stop_ids)  # (A*beams, V)
        log_probs = (log_probs.view(A, beams, V) + running_scores[:, :, None]).view(A, beams * V)

        # 1. the best `keep` continuations over all beams of a prompt
        cand_scores, cand = torch.topk(log_probs, keep)  # (A, keep)
        cand_beam, cand_token = cand // V, cand % V
        cand_seqs = _gather(running, cand_beam)  # (A, keep, max_length)
        cand_seqs[:, :, cur_len] = cand_token
        ends = torch.isin(cand_token, stop_ids) | (cur_len + 1 >= max_length)  # (A, keep)

        # 2. the best `beams` that did not end run on
        open_scores = cand_scores + ends.to(torch.float32) * NEG
        best_open = torch.topk(open_scores, beams)[1]  # (A, beams)
        running = _gather(cand_seqs, best_open)
        running_scores = _gather(open_scores, best_open)
        row_offset = torch.arange(A, device=device)[:, None] * beams
        source = _gather(cand_beam, best_open) + row_offset  # (A, beams) the row each survivor continues

        # 3. candidates that just ended (among the best `beams`) join the finished ones if they score higher
        fin, imp = is_done[alive], improvable[alive]
        just_done = ends & top_beams[None, :]
        scores = cand_scores / ((new + 1) ** config.length_penalty)
        full = fin.all(-1, keepdim=True) & (early is True)
        scores += full.to(torch.float32) * NEG  # early_stopping=True: a full prompt takes no more
        scores += (~imp).to(torch.float32) * NEG
        scores += (~just_done) * NEG
        merged = torch.cat((done_scores[alive], scores), dim=1)
        order = torch.topk(merged, beams)[1]  # (A, beams)
        done[alive] = _gather(torch.cat((done[alive], cand_seqs), dim=1), order)
        done_scores[alive] = _gather(merged, order)
        lengths = torch.cat((done_lengths[alive], torch.full_like(cand_token, new + 1)), dim=1)
        done_lengths[alive] = _gather(lengths, order)
        is_done[alive] = fin = _gather(torch.cat((fin, just_done), dim=1), order)

        # 4. a prompt is settled when no running beam can improve on its finished ones (or it is full)
        imp = imp & _can_improve(running_scores, done_scores[alive], fin, new + 1, config.max_new_tokens, config)
        improvable[alive] = imp
        going = imp[:, 0] & ~(fin.all(-1) & (early is True))  # (A,)
        if bool(ends.all()) or not bool(going.any()):
            break
        if bool(going.all()):
            rows = source.flatten()
            steps.reorder(rows)
        else:  # the settled prompts leave: their rows go from the model's cache and the running beams
            rows = source[going].flatten()
            steps.select(rows)
            alive, running, running_scores = alive[going], running[going], running_scores[going]
        history.select(rows)
        tokens = running[:, :, cur_len].flatten()  # (A*beams,)
        history.append(tokens)
        logits = steps.step(tokens)

    return done[:, 0], done_lengths[:, 0]


def _can_improve(
    running_scores: torch.Tensor,
    done_scores: torch.Tensor,
    is_done: torch.Tensor,
    length: int,
    max_new_tokens: int,
    config: GenerationConfig,
) -> torch.Tensor:
    """(B, 1): could the best running beam still beat the worst finished hypothesis? (transformers' heuristic)

    early_stopping=False assumes the best score is reached at the current length; "never" with a positive
    length_penalty assumes it is reached at the maximum length (longer can only score higher then).
    """
    if config.early_stopping == "never" and config.length_penalty > 0.0:
        length = max_new_tokens
    best_possible = running_scores[:, :1] / (length**config.length_penalty)
    worst_done = torch.where(is_done, done_scores.min(dim=1, keepdim=True)[0], NEG)
    return (best_possible > worst_done).any(dim=-1, keepdim=True)
