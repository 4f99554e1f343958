"""Beam search with transformers' semantics (length_penalty, early_stopping True / False / "never").

Each prompt keeps `num_beams` running hypotheses. Every step scores all beams x vocabulary continuations by their
summed log-probabilities and keeps the best 2 x num_beams (more with several stop tokens), so that num_beams
of them can go on even when some just stopped. A candidate that ends (stop token or max length) among the best
num_beams joins the row's finished hypotheses with score sum / new_length ** length_penalty; the best finished
hypothesis is the answer. The key/value cache follows the surviving beams through `select`.

Scores are float32, as in transformers, so float64 models give transformers' tokens exactly.
"""

from __future__ import annotations

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
    """The best hypothesis of each prompt, (B, T + new); shorter ones padded with config.pad_id."""
    if config.sampling:
        raise ConfigError(
            "generation.temperature: beam search is deterministic here; set temperature: 0 "
            "with num_beams > 1, or num_beams: 1 to sample"
        )
    attention_mask = checked_inputs(input_ids, attention_mask)
    B, T = input_ids.shape
    beams, max_length, device = config.num_beams, T + config.max_new_tokens, input_ids.device
    flat_ids = input_ids.repeat_interleave(beams, dim=0)  # (B*beams, T)
    flat_mask = attention_mask.repeat_interleave(beams, dim=0)
    forward = Forward(model, flat_ids, flat_mask, None, config.max_new_tokens)
    logits = forward.prefill(flat_ids)  # (B*beams, V)
    V = logits.shape[-1]
    history = History(flat_ids, flat_mask, config, V)
    stop_ids = torch.tensor(config.stop_token_ids, dtype=torch.long, device=device)
    keep = max(2, 1 + len(stop_ids)) * beams  # candidates kept per step
    top_beams = torch.arange(keep, device=device) < beams  # only these may finish

    running = torch.full((B, beams, max_length), config.pad_id, dtype=torch.long, device=device)
    running[:, :, :T] = flat_ids.view(B, beams, T)
    running_scores = torch.zeros(B, beams, device=device)  # summed log-probabilities (float32)
    running_scores[:, 1:] = NEG  # all beams start equal: only the first may expand, or they would repeat
    done = running.clone()  # finished hypotheses, best first
    done_scores = torch.full((B, beams), NEG, device=device)
    done_lengths = torch.zeros(B, beams, dtype=torch.long, device=device)
    is_done = torch.zeros(B, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)  # a running beam may still beat a finished one
    row_offset = torch.arange(B, device=device)[:, None] * beams

    for cur_len in range(T, max_length):
        new = cur_len - T
        log_probs = process(logits.float().log_softmax(-1), history, new, config, stop_ids)  # (B*beams, V)
        log_probs = (log_probs.view(B, beams, V) + running_scores[:, :, None]).view(B, beams * V)

        # 1. the best `keep` continuations over all beams of a row
        cand_scores, cand = torch.topk(log_probs, keep)  # (B, keep)
        cand_beam, cand_token = cand // V, cand % V
        cand_seqs = _gather(running, cand_beam)  # (B, keep, max_length)
        cand_seqs[:, :, cur_len] = cand_token
        ends = torch.isin(cand_token, stop_ids) | (cur_len + 1 >= max_length)  # (B, keep)

        # 2. the best `beams` that did not end run on
        open_scores = cand_scores + ends.to(torch.float32) * NEG
        best_open = torch.topk(open_scores, beams)[1]  # (B, beams)
        running = _gather(cand_seqs, best_open)
        running_scores = _gather(open_scores, best_open)
        source = _gather(cand_beam, best_open) + row_offset  # (B, beams) flat row each survivor continues

        # 3. candidates that just ended (among the best `beams`) join the finished ones if they score higher
        just_done = ends & top_beams[None, :]
        scores = cand_scores / ((cur_len + 1 - T) ** config.length_penalty)
        all_done = is_done.all(-1, keepdim=True) & (config.early_stopping is True)
        scores += all_done.to(torch.float32) * NEG  # early_stopping=True: a full row takes no more
        scores += (~improvable).to(torch.float32) * NEG
        scores += (~just_done) * NEG
        merged = torch.topk(torch.cat((done_scores, scores), dim=1), beams)[1]
        done = _gather(torch.cat((done, cand_seqs), dim=1), merged)
        done_scores = _gather(torch.cat((done_scores, scores), dim=1), merged)
        lengths = torch.full_like(cand_token, new + 1)
        done_lengths = _gather(torch.cat((done_lengths, lengths), dim=1), merged)
        is_done = _gather(torch.cat((is_done, just_done), dim=1), merged)

        # 4. stop when no running beam can improve on the finished ones, or nothing can continue
        improvable = improvable & _can_improve(
            running_scores, done_scores, is_done, cur_len + 1 - T, config.max_new_tokens, config
        )
        full = bool(is_done.all()) and config.early_stopping is True
        if not bool(improvable.any()) or full or bool(ends.all()):
            break
        flat_source = source.flatten()
        forward.select(flat_source)
        history.select(flat_source)
        tokens = running[:, :, cur_len].flatten()  # (B*beams,)
        history.append(tokens)
        logits = forward.step(tokens)

    return done[:, 0, : T + int(done_lengths[:, 0].max())]


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
