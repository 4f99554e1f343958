"""Generated tokens as text deltas: never half a UTF-8 character, never any part of a stop string.

    for delta in stream_text(model, tokenizer, "Once upon a time", config):
        print(delta, end="", flush=True)

Byte-level BPE (GPT-2, Llama 3, SmolLM2) splits a Chinese character or an emoji over several tokens, and
sentencepiece falls back to single bytes; a token that ends inside a character decodes to U+FFFD, so its text
waits for the next token. The deltas concatenate to exactly the text of the whole output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import torch

from .config import GenerationConfig
from .generation import generate_stream

INCOMPLETE = "\ufffd"  # what the decoders give for the bytes of a character not yet complete
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # sentencepiece's byte-fallback tokens


class IncrementalDecoder:
    """Token ids in, text out piece by piece.

    Each push decodes a short window, from the start of the last emitted piece to the end, and emits what it
    decodes to beyond that piece's text (the method of vLLM and TGI). The window starts on a character boundary,
    so the pieces add up to the text of decoding everything. Sentencepiece's byte fallback decodes a run of byte
    tokens as a whole (one invalid byte turns the whole run into U+FFFD), so text waits for the run to end.
    """

    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self.tokenizer, self.skip_special_tokens = tokenizer, skip_special_tokens
        self.byte_fallback = bool(getattr(tokenizer.backend.model, "byte_fallback", False))
        self.ids: list[int] = []
        self.start = 0  # window start: where the last emitted piece begins
        self.done = 0  # ids up to here are emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token: int) -> str:
        """The text this token completes ("" while a character is unfinished)."""
        self.ids.append(token)
        if self.byte_fallback and BYTE_TOKEN.fullmatch(self.tokenizer.id_to_token(token) or ""):
            return ""  # inside a run of byte tokens
        return self._emit(final=False)

    def flush(self) -> str:
        """Whatever is left, unfinished characters included (at the end of the output)."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        before = self._decode(self.ids[self.start : self.done])
        after = self._decode(self.ids[self.start :])
        if len(after) <= len(before) or (after.endswith(INCOMPLETE) and not final):
            return ""
        self.start, self.done = self.done, len(self.ids)
        return after[len(before) :]


class TextStream:
    """Token ids in, text deltas out; stops at the first stop string, none of which ever reaches the output.

    Text that might be the beginning of a stop string is held back until the next tokens show it is not.
    """

    def __init__(self, tokenizer, stop_strings: Sequence[str] = (), skip_special_tokens: bool = True):
        self.decoder = IncrementalDecoder(tokenizer, skip_special_tokens)
        self.stop_strings = tuple(stop_strings)
        self.held = ""  # decoded text not yet released: it may start a stop string
        self.stopped = False  # a stop string was found: no more text

    def push(self, token: int) -> str:
        if self.stopped:
            return ""
        return self._release(self.held + self.decoder.push(token), final=False)

    def finish(self) -> str:
        """The held-back text, once the output has ended without completing a stop string."""
        if self.stopped:
            return ""
        return self._release(self.held + self.decoder.flush(), final=True)

    def _release(self, text: str, final: bool) -> str:
        found = [i for i in (text.find(s) for s in self.stop_strings) if i >= 0]
        if found:
            self.stopped, self.held = True, ""
            return text[: min(found)]
        keep = 0 if final else self._partial_stop(text)
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def _partial_stop(self, text: str) -> int:
        """Length of the longest end of `text` that is the beginning of a stop string."""
        for n in range(min(len(text), max((len(s) for s in self.stop_strings), default=0)), 0, -1):
            if any(s.startswith(text[-n:]) for s in self.stop_strings):
                return n
        return 0


class StreamedText:
    """One continuation of a prompt as text: iterate for the deltas; afterwards read token_ids, text and
    finish_reason ("stop": a stop token or stop string, "length": max_new_tokens reached)."""

    def __init__(self, model, tokenizer, prompt_ids: Sequence[int], config: GenerationConfig | None = None, cache=None):
        self.model, self.tokenizer, self.prompt_ids = model, tokenizer, list(prompt_ids)
        self.config, self.cache = config or GenerationConfig(), cache
        self.token_ids: list[int] = []  # every generated token, a final stop token included
        self.text = ""
        self.finish_reason: str | None = None

    def __iter__(self) -> Iterator[str]:
        device = next(self.model.parameters()).device
        stream = TextStream(self.tokenizer, self.config.stop_strings)
        stop_ids = set(self.config.stop_token_ids)
        ids = torch.tensor([self.prompt_ids], device=device)
        self.finish_reason = "length"
        for step in generate_stream(self.model, ids, self.config, cache=self.cache):
            token = int(step.tokens[0])
            self.token_ids.append(token)
            if token in stop_ids:  # the stop token itself is not text
                self.finish_reason = "stop"
                break
            delta = stream.push(token)
            if delta:
                self.text += delta
                yield delta
            if stream.stopped:
                self.finish_reason = "stop"
                return
        tail = stream.finish()
        if tail:
            self.text += tail
            yield tail


def stream_text(
    model, tokenizer, prompt: str | Sequence[int], config: GenerationConfig | None = None, cache=None
) -> StreamedText:
    """Text deltas of one continuation of `prompt` (text, encoded with the tokenizer's special tokens, or ids)."""
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    return StreamedText(model, tokenizer, ids, config, cache)


def generate_text(model, tokenizer, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> str:
    """The continuation of `prompt` as text, ended before any stop string."""
    return "".join(stream_text(model, tokenizer, prompt, config))
