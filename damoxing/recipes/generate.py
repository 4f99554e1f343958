"""The `generate` and `chat` commands: a decoder (HF folder or GGUF file) from the command line.

model, tokenizer, config = load_for_generation("SmolLM2.gguf", {"temperature": 0.7})
for delta in generate_deltas(model, tokenizer, "Once upon a time", config): print(delta, end="")
for row in generate_rows(model, tokenizer, ["a", "b"], config): ...          # one dict per prompt, in order
chat_loop(ChatSession(model, tokenizer, config), sys.stdin, sys.stdout)      # /reset, /exit
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TextIO

import torch

from ..errors import UserError
from ..inference import GenerationConfig, generate, load_generation_config
from ..inference.fast import prepare_for_decoding
from ..inference.session import ChatSession
from ..inference.streaming import TextStream, stream_text


def load_for_generation(path, settings: dict, dtype: str | None = None, quantized: bool = False):
    """Model (prepared for fast decoding), tokenizer, and the checkpoint's GenerationConfig with `settings` applied
    (None values keep the checkpoint's). `dtype` casts the weights ('bfloat16': the fast path on CPUs that run
    it natively); `quantized` runs a GGUF file's Q8_0 / Q4_0 / Q4_1 blocks as they are stored."""
    from ..io.checkpoint import load_model
    from ..models import Decoder
    from ..tokenizer import load_tokenizer

    if quantized and not str(path).endswith(".gguf"):
        raise UserError(
            f"{path}: --quantized runs a .gguf file's blocks as they are stored; for a model folder, make an "
            "int8 or int4 copy with `damoxing quantize MODEL OUT --method int4` and give that folder"
        )
    model = load_model(path, dtype=dtype, quantized=quantized)
    if not isinstance(model, Decoder):
        raise UserError(
            f"{path}: generating text needs a decoder (GPT-2, Llama, SmolLM2...), this is a {type(model).__name__}"
        )
    tokenizer = load_tokenizer(path)
    config = dataclasses.replace(load_generation_config(path), **{k: v for k, v in settings.items() if v is not None})
    if not config.stop_token_ids and tokenizer.eos_id is not None:
        config = dataclasses.replace(config, stop_token_ids=(tokenizer.eos_id,))
    return prepare_for_decoding(model.eval()), tokenizer, config


def generate_deltas(model, tokenizer, prompt: str, config: GenerationConfig) -> Iterator[str]:
    """The continuation of `prompt` as text deltas; beam search (which cannot stream) gives it as one delta."""
    if config.num_beams == 1:
        yield from stream_text(model, tokenizer, prompt, config)
        return
    ids = torch.tensor([tokenizer.encode(prompt)], device=next(model.parameters()).device)
    new = generate(model, ids, config)[0, ids.shape[1] :].tolist()
    stream = TextStream(tokenizer, config.stop_strings)
    text = ""
    for token in new:
        if token in config.stop_token_ids:
            break
        text += stream.push(token)
        if stream.stopped:
            break
    yield text + ("" if stream.stopped else stream.finish())


def generate_rows(model, tokenizer, prompts: Iterable[str], config: GenerationConfig) -> Iterator[dict]:
    """One row per prompt, in order: prompt, text, finish_reason and token counts."""
    for prompt in prompts:
        if not prompt.strip():
            yield {"prompt": prompt, "text": "", "error": "empty prompt"}
            continue
        if config.num_beams > 1:
            text = "".join(generate_deltas(model, tokenizer, prompt, config))
            yield {"prompt": prompt, "text": text}
            continue
        reply = stream_text(model, tokenizer, prompt, config)
        for _ in reply:
            pass
        yield {
            "prompt": prompt,
            "text": reply.text,
            "finish_reason": reply.finish_reason,
            "prompt_tokens": len(reply.prompt_ids),
            "completion_tokens": len(reply.token_ids),
        }


def chat_loop(session: ChatSession, lines: TextIO, out: TextIO, prompt: str = "> ") -> int:
    """Read messages from `lines` and stream the replies to `out` until /exit or the end of input; /reset starts
    a new conversation (the system message stays). Returns the number of turns."""
    system = session.messages[:1] if session.messages and session.messages[0]["role"] == "system" else []
    turns = 0
    while True:
        out.write(prompt)
        out.flush()
        line = lines.readline()
        if not line:
            out.write("\n")
            return turns
        message = line.rstrip("\n")
        if message.strip() == "/exit":
            return turns
        if message.strip() == "/reset":
            session.messages = list(system)
            out.write("(new conversation)\n")
            continue
        if not message.strip():
            continue
        for delta in session.send(message):
            out.write(delta)
            out.flush()
        out.write("\n")
        turns += 1
