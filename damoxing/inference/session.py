"""Conversations that reuse their key/value cache: each turn runs only the tokens that are new.

    chat = ChatSession(model, tokenizer, load_generation_config(path))
    for delta in chat.send("What is the capital of France?"):
        print(delta, end="")
    chat.chat("And of Germany?")  # the whole reply as one string

Every turn renders the whole conversation with the checkpoint's chat template and tokenizes it; the cache keeps
the longest prefix it shares with what it already holds (llama.cpp's server does the same), so the latency of
a turn depends on the new message and the reply, not on the length of the history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from ..errors import UserError
from .config import GenerationConfig
from .streaming import StreamedText


class PrefixCache:
    """A key/value cache and the token ids whose keys and values it holds.

    `reuse(prompt_ids)` keeps the longest common prefix and drops the rest; generating from `prompt_ids` with
    this cache then runs only the tokens after that prefix. `record(ids)` notes what a generation left in it.
    """

    def __init__(self, model):
        self.cache = model.new_cache()
        self.ids: list[int] = []

    def reuse(self, prompt_ids: Sequence[int]) -> int:
        """Crop the cache to the prefix it shares with prompt_ids (at most all but the last token); its length."""
        limit = min(len(self.ids), len(prompt_ids) - 1)
        n = 0
        while n < limit and self.ids[n] == prompt_ids[n]:
            n += 1
        self.cache.crop(n)
        self.ids = self.ids[:n]
        return n

    def record(self, ids: Sequence[int]) -> None:
        """After generating: `ids` is prompt + output; the cache holds keys and values for the first cache.length."""
        self.ids = list(ids[: self.cache.length])


class ChatSession:
    """A conversation with a chat model; `send` streams the reply, `chat` returns it whole."""

    def __init__(self, model, tokenizer, config: GenerationConfig | None = None, system: str | None = None):
        if not tokenizer.chat_template:
            raise UserError("this tokenizer has no chat template: load the tokenizer of a chat (instruct) model")
        config = config or GenerationConfig()
        if not config.stop_token_ids and tokenizer.eos_id is not None:
            config = dataclasses.replace(config, stop_token_ids=(tokenizer.eos_id,))
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        self.prefix = PrefixCache(model)
        self.reused_tokens = 0  # last turn: prompt tokens whose keys and values came from the cache
        self.new_tokens = 0  # last turn: prompt tokens that ran through the model

    def send(self, message: str) -> Iterator[str]:
        """Add the user's message and stream the reply; the reply joins the conversation as it ends."""
        self.messages.append({"role": "user", "content": message})
        prompt = self.tokenizer.encode(
            self.tokenizer.apply_chat_template(self.messages, add_generation_prompt=True), add_special_tokens=False
        )
        self.reused_tokens = self.prefix.reuse(prompt)
        self.new_tokens = len(prompt) - self.reused_tokens
        reply = StreamedText(self.model, self.tokenizer, prompt, self.config, self.prefix.cache)
        try:
            yield from reply
        finally:
            self.prefix.record(prompt + reply.token_ids)
            self.messages.append({"role": "assistant", "content": reply.text})

    def chat(self, message: str) -> str:
        return "".join(self.send(message))
