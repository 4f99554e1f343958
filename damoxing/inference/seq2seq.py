"""Decoding for encoder-decoder models: greedy and beam search, with transformers' semantics.

    config = Seq2SeqGenerationConfig(max_new_tokens=64, num_beams=4)
    ids = generate_seq2seq(model, input_ids, attention_mask, config)     # (B, L) new tokens, pad after the end
    texts = translate_texts(model, tokenizer, ["In the beginning ..."], config)

The source is encoded once; each step runs the decoder on the newest token only, with the self-attention
keys and values cached and the cross-attention keys and values computed once per source (Seq2SeqCache).
Beam search follows `transformers`' `_beam_search` step for step (top 2k candidates, finished hypotheses
scored by sum of log-probabilities / generated length ** length_penalty, the same early-stopping rules),
so both give the same tokens on the same model. (The decoder-only `generation.py` has its own config;
the two are to be unified.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ..config import check, check_choice, check_positive

NEG = -1.0e9  # transformers' "impossible" score (float32)


@dataclass(frozen=True)
class Seq2SeqGenerationConfig:
    max_new_tokens: int = 128  # tokens after the start token, the end token included
    num_beams: int = 1  # 1: greedy
    length_penalty: float = 1.0  # a finished beam scores sum(log p) / length ** length_penalty
    early_stopping: bool | str = False  # True: stop when num_beams are finished; False: transformers' heuristic;
    #                                     "never": only when no running beam can do better
    stop_token_ids: tuple[int, ...] = ()  # default: the model's eos_id
    pad_token_id: int | None = None  # fills finished rows; default: the model's pad_id
    bad_token_ids: tuple[int, ...] = ()  # never generated (Marian bans its pad token)
    forced_eos_token_id: int | None = None  # the last step allowed must emit this token (Marian: its eos)

    def __post_init__(self):
        for key in ("stop_token_ids", "bad_token_ids"):
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, int) else tuple(value))
        check_positive("generation.max_new_tokens", self.max_new_tokens)
        check_positive("generation.num_beams", self.num_beams)
        check(
            isinstance(self.length_penalty, (int, float)),
            "generation.length_penalty",
            f"must be a number, got {self.length_penalty!r}.",
        )
        check_choice("generation.early_stopping", self.early_stopping, (False, True, "never"))


def _ids(config: Seq2SeqGenerationConfig, model) -> tuple[torch.Tensor, int]:
    c = model.config
    stops = config.stop_token_ids or (c.eos_id,)
    pad = config.pad_token_id if config.pad_token_id is not None else c.pad_id
    return torch.tensor(stops, device=model.device), pad


def _next_log_probs(model, tokens: torch.Tensor, cache, config: Seq2SeqGenerationConfig, last: bool) -> torch.Tensor:
    """The newest tokens (N,) -> log-probabilities of the next token (N, V), in float32 as transformers;
    banned tokens get -inf, and on the `last` step allowed only the forced end token is possible."""
    logits = model.forward_head(model.decode(tokens[:, None], cache=cache))[:, -1].float()  # (N, V)
    log_probs = logits.log_softmax(-1)
    if config.bad_token_ids:
        log_probs[:, list(config.bad_token_ids)] = float("-inf")
    if last and config.forced_eos_token_id is not None:
        log_probs.fill_(float("-inf"))[:, config.forced_eos_token_id] = 0.0
    return log_probs


@torch.no_grad()
def generate_seq2seq(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    config: Seq2SeqGenerationConfig | None = None,
) -> torch.Tensor:
    """Sources (B, S) -> generated tokens (B, L), without the start token; rows that ended early are padded."""
    config = config or Seq2SeqGenerationConfig()
    model.eval()
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    memory = model.forward_features(input_ids, attention_mask)  # (B, S, C)
    if config.num_beams > 1:
        return _beam_search(model, memory, attention_mask, config)
    return _greedy(model, memory, attention_mask, config)


def _greedy(model, memory: torch.Tensor, memory_mask: torch.Tensor, config: Seq2SeqGenerationConfig) -> torch.Tensor:
    """The most probable token at each step. A row that has ended leaves the computation (transformers keeps
    decoding it until the whole batch has ended, then pads it: the tokens are the same)."""
    stops, pad = _ids(config, model)
    B, device = memory.shape[0], memory.device
    cache = model.new_cache(memory, memory_mask)
    out = torch.full((B, config.max_new_tokens), pad, dtype=torch.long, device=device)
    alive = torch.arange(B, device=device)  # the rows still decoding
    tokens = torch.full((B,), model.config.decoder_start_id, dtype=torch.long, device=device)
    for step in range(config.max_new_tokens):
        log_probs = _next_log_probs(model, tokens, cache, config, last=step == config.max_new_tokens - 1)  # (A, V)
        tokens = log_probs.argmax(-1)  # (A,)
        out[alive, step] = tokens
        going = ~torch.isin(tokens, stops)
        if not going.any():
            return out[:, : step + 1]
        if not going.all():
            cache.select(going.nonzero()[:, 0])
            alive, tokens = alive[going], tokens[going]
    return out  # (B, L)


def _beam_search(model, memory: torch.Tensor, memory_mask: torch.Tensor, config: Seq2SeqGenerationConfig):
    """transformers' vectorised beam search. Sequences hold the start token at 0, as there (prompt length 1).

    A batch item whose finished hypotheses can no longer change (no running beam can beat them, or with
    early_stopping True it has num_beams of them) leaves the computation; transformers keeps decoding it
    until the whole batch is done, and the tokens are the same.
    """
    stops, pad = _ids(config, model)
    B, K, device = memory.shape[0], config.num_beams, memory.device
    keep = max(2, 1 + len(stops)) * K  # candidates per step: enough to keep K running after K of them finish
    max_length = 1 + config.max_new_tokens
    lp, early = config.length_penalty, config.early_stopping
    cache = model.new_cache(memory.repeat_interleave(K, 0), memory_mask.repeat_interleave(K, 0))  # (B*K, S, C)

    # every item's best finished hypotheses: sequences, scores, lengths, and whether each slot holds one
    done = torch.full((B, K, max_length), pad, dtype=torch.long, device=device)
    done[:, :, 0] = model.config.decoder_start_id
    done_scores = torch.full((B, K), NEG, device=device)
    done_lengths = torch.ones(B, K, dtype=torch.long, device=device)
    finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)
    # the items still decoding (A of them) and their running beams
    alive = torch.arange(B, device=device)
    running = done.clone()  # (A, K, L)
    running_scores = torch.zeros(B, K, device=device)
    running_scores[:, 1:] = NEG  # only the first beam expands at step one
    top_k_mask = torch.arange(keep, device=device) < K

    cur_len = 1
    while True:
        A = len(alive)
        log_probs = _next_log_probs(
            model, running[:, :, cur_len - 1].reshape(-1), cache, config, last=cur_len == max_length - 1
        )  # (A*K, V)
        V = log_probs.shape[-1]
        scores = (log_probs.view(A, K, V) + running_scores[:, :, None]).view(A, K * V)
        top_scores, top_index = scores.topk(keep, dim=-1)  # (A, 2K)
        beam, token = top_index // V, top_index % V
        candidates = running.gather(1, beam[:, :, None].expand(-1, -1, max_length)).clone()  # (A, 2K, L)
        candidates[:, :, cur_len] = token
        hits = torch.isin(token, stops) | (cur_len + 1 >= max_length)  # (A, 2K) the candidate ends here

        # the K best candidates that go on
        go_on = top_scores + hits.float() * NEG
        nxt = go_on.topk(K, dim=-1).indices  # (A, K)
        running = candidates.gather(1, nxt[:, :, None].expand(-1, -1, max_length))
        running_scores = go_on.gather(1, nxt)
        parents = beam.gather(1, nxt) + torch.arange(A, device=device)[:, None] * K  # (A, K) their cache rows

        # the finished ones among the top K join the finished hypotheses if they score better
        just = hits & top_k_mask
        fin, imp = finished[alive], improvable[alive]
        final = top_scores / (cur_len**lp)
        final = final + (fin.all(-1, keepdim=True) & (early is True)).float() * NEG
        final = final + (~imp).float() * NEG + (~just).float() * NEG
        merged = torch.cat([done_scores[alive], final], dim=1)
        order = merged.topk(K, dim=-1).indices  # (A, K)
        sequences = torch.cat([done[alive], candidates], dim=1)  # (A, 3K, L)
        done[alive] = sequences.gather(1, order[:, :, None].expand(-1, -1, max_length))
        done_scores[alive] = merged.gather(1, order)
        lengths = torch.cat([done_lengths[alive], torch.full_like(just, cur_len + 1, dtype=torch.long)], dim=1)
        done_lengths[alive] = lengths.gather(1, order)
        finished[alive] = fin = torch.cat([fin, just], dim=1).gather(1, order)

        cur_len += 1
        best_length = max_length - 1 if early == "never" and lp > 0.0 else cur_len - 1
        best_running = running_scores[:, :1] / (best_length**lp)
        worst_done = torch.where(fin, done_scores[alive].min(1, keepdim=True).values, torch.tensor(NEG, device=device))
        improvable[alive] = imp = imp & (best_running > worst_done).any(-1, keepdim=True)
        going = imp[:, 0] & ~(fin.all(-1) & (early is True))  # (A,) items whose result can still change
        if bool(hits.all()) or not bool(going.any()):
            break
        if bool(going.all()):
            cache.self_attn.select(parents.reshape(-1))
        else:  # the settled items leave: their rows go from the cache and the running beams
            cache.select(parents[going].reshape(-1))
            alive, running, running_scores = alive[going], running[going], running_scores[going]
    best = done[:, 0, 1 : int(done_lengths[:, 0].max())]  # (B, L) without the start token
    ends = torch.arange(1, best.shape[1] + 1, device=device)[None, :] >= done_lengths[:, :1]
    return best.masked_fill(ends, pad)


# ---------------------------------------------------------------------- text in, text out
def encode_sources(tokenizer, texts: Sequence[str], max_length: int | None) -> dict[str, torch.Tensor]:
    """Source texts -> input_ids, attention_mask (right-padded; the tokenizer appends its end token)."""
    batch = tokenizer(list(texts), max_length=max_length, padding=True, truncation=True)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def decode_outputs(tokenizer, ids: torch.Tensor) -> list[str]:
    """Generated ids (B, L) -> texts, special tokens removed."""
    return [text.strip() for text in tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)]


def translate_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    config: Seq2SeqGenerationConfig | None = None,
    max_source_length: int | None = None,
    batch_size: int = 32,
) -> Iterator[str]:
    """Translations of `texts`, a batch at a time (lazily, in order)."""
    for i in range(0, len(texts), batch_size):
        batch = encode_sources(tokenizer, texts[i : i + batch_size], max_source_length)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        yield from decode_outputs(
            tokenizer, generate_seq2seq(model, batch["input_ids"], batch["attention_mask"], config)
        )
