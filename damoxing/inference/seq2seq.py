"""Decoding for encoder-decoder models: greedy, sampling and beam search, with transformers' semantics.

    config = GenerationConfig(max_new_tokens=64, num_beams=4)
    ids = generate_seq2seq(model, input_ids, attention_mask, config)     # (B, L) new tokens, pad after the end
    texts = translate_texts(model, tokenizer, ["In the beginning ..."], config)

The settings are decoders' GenerationConfig (stop tokens default to the model's eos_id, padding to its
pad_id). Stop strings end the text, as they end a decoder's text (decode_outputs, translate_texts); `logprobs`
is refused with a ConfigError. The source is encoded once; each step runs the decoder on the newest token
only, with the self-attention keys and values cached and the cross-attention keys and values computed once
per source (Seq2SeqCache). Penalties and bans are sampling.py's; beam search is beam.py's `search`, which follows
transformers' `_beam_search` step for step, so both give the same tokens on the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import torch

from ..errors import ConfigError
from .beam import check_deterministic, search
from .config import GenerationConfig
from .sampling import History, make_generator, pick, process
from .streaming import TextStream

DEFAULTS = GenerationConfig(max_new_tokens=128)  # what generate_seq2seq and translate_texts use when given none


class DecoderSteps:
    """The decoder over the running rows: one token per row per step, on a Seq2SeqCache (beam.Steps)."""

    def __init__(self, model, memory: torch.Tensor, memory_mask: torch.Tensor):
        self.model = model
        self.cache = model.new_cache(memory, memory_mask)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N,) newest tokens -> next-token logits (N, V)."""
        return self.model.forward_head(self.model.decode(tokens[:, None], cache=self.cache))[:, -1]

    def select(self, index: torch.Tensor) -> None:
        self.cache.select(index)

    def reorder(self, index: torch.Tensor) -> None:
        """Beams within their source: the cross-attention keys and values stay as they are."""
        self.cache.self_attn.select(index)


def resolved(config: GenerationConfig | None, model) -> GenerationConfig:
    """The settings with the model's defaults: stop at its eos_id, pad with its pad_id."""
    config = config or DEFAULTS
    if config.logprobs:
        raise ConfigError(
            f"generation.logprobs: {config.logprobs}, but encoder-decoder decoding does not report "
            "log-probabilities; set it to 0 (decoders report them: damoxing.inference.generate_stream)"
        )
    c = model.config
    return dataclasses.replace(
        config,
        stop_token_ids=config.stop_token_ids or (c.eos_id,),
        pad_token_id=config.pad_token_id if config.pad_token_id is not None else c.pad_id,
    )


@torch.no_grad()
def generate_seq2seq(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    config: GenerationConfig | None = None,
) -> torch.Tensor:
    """Sources (B, S) -> generated tokens (B, L), without the start token; rows that ended early are padded."""
    config = resolved(config, model)
    if config.num_beams > 1:
        check_deterministic(config)
    model.eval()
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    memory = model.forward_features(input_ids, attention_mask)  # (B, S, C)
    if config.num_beams > 1:
        K = config.num_beams
        steps = DecoderSteps(model, memory.repeat_interleave(K, 0), attention_mask.repeat_interleave(K, 0))
        start = torch.full((len(memory) * K, 1), model.config.decoder_start_id, device=memory.device)  # (B*K, 1)
        best, lengths = search(steps, steps.step(start[:, 0]), start, torch.ones_like(start), config)
        return best[:, 1 : 1 + int(lengths.max())]  # (B, L)
    return _one_beam(model, DecoderSteps(model, memory, attention_mask), len(memory), config)


def _one_beam(model, steps: DecoderSteps, B: int, config: GenerationConfig) -> torch.Tensor:
    """Greedy (or sampled) decoding of B sources. A row that has ended leaves the computation (transformers
    keeps decoding it until the whole batch has ended, then pads it: the tokens are the same)."""
    device = model.device
    start = torch.full((B, 1), model.config.decoder_start_id, dtype=torch.long, device=device)
    stop_ids = torch.tensor(config.stop_token_ids, dtype=torch.long, device=device)
    generator = make_generator(config, device)
    out = torch.full((B, config.max_new_tokens), config.pad_id, dtype=torch.long, device=device)
    alive = torch.arange(B, device=device)  # the rows still decoding
    logits = steps.step(start[:, 0]).float()  # (B, V)
    history = History(start, torch.ones_like(start), config, logits.shape[-1])
    for new in range(config.max_new_tokens):
        tokens = pick(process(logits, history, new, config, stop_ids), config, generator)  # (A,)
        out[alive, new] = tokens
        going = ~torch.isin(tokens, stop_ids)
        if not going.any() or new == config.max_new_tokens - 1:
            return out[:, : new + 1]  # (B, L)
        if not going.all():
            rows = going.nonzero()[:, 0]
            steps.select(rows)
            history.select(rows)
            alive, tokens = alive[going], tokens[going]
        history.append(tokens)
        logits = steps.step(tokens).float()


# ---------------------------------------------------------------------- text in, text out
def encode_sources(tokenizer, texts: Sequence[str], max_length: int | None) -> dict[str, torch.Tensor]:
    """Source texts -> input_ids, attention_mask (right-padded; the tokenizer appends its end token)."""
    batch = tokenizer(list(texts), max_length=max_length, padding=True, truncation=True)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def decode_outputs(tokenizer, ids: torch.Tensor, config: GenerationConfig | None = None) -> list[str]:
    """Generated ids (B, L) -> texts, special tokens removed; with `config.stop_strings` each text ends before
    its first stop string, as a decoder's text does (streaming.TextStream; none of a stop string is kept)."""
    if config is None or not config.stop_strings:
        return [text.strip() for text in tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)]
    return [_until_stop(tokenizer, row, config).strip() for row in ids.tolist()]


def _until_stop(tokenizer, ids: list[int], config: GenerationConfig) -> str:
    stream, text = TextStream(tokenizer, config.stop_strings), ""
    for token in ids:
        if token in config.stop_token_ids:
            break
        text += stream.push(token)
        if stream.stopped:
            return text
    return text + stream.finish()


def translate_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    config: GenerationConfig | None = None,
    max_source_length: int | None = None,
    batch_size: int = 32,
) -> Iterator[str]:
    """Translations of `texts`, a batch at a time (lazily, in order); each ends before its first stop string."""
    config = resolved(config, model)
    for i in range(0, len(texts), batch_size):
        batch = encode_sources(tokenizer, texts[i : i + batch_size], max_source_length)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        ids = generate_seq2seq(model, batch["input_ids"], batch["attention_mask"], config)
        yield from decode_outputs(tokenizer, ids, config)
