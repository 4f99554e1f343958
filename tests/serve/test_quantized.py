"""The server takes a quantized model as it takes a float one: `damoxing quantize` writes a folder, `serve` loads
it (its int8 / int4 layers, on their kernels), and a chat completion equals local generation with that model."""

from __future__ import annotations

import pytest

import damoxing
from damoxing.cli import main
from damoxing.compress.quantize import Int4Linear, Int8Embedding, Int8Linear
from damoxing.inference import GenerationConfig
from damoxing.inference.streaming import generate_text
from damoxing.serve.app import ServeOptions

from .conftest import http, running_server


def kernel_tensors(layer) -> object:
    """What a quantized layer runs on: None where it would multiply by its dequantized weight instead."""
    return layer._packed if isinstance(layer, Int4Linear) else (layer._scale if layer.groups == 1 else layer._planes)


@pytest.mark.parametrize("method, body", [("int8", Int8Linear), ("int4", Int4Linear)])
def test_a_quantized_model_serves_what_local_generation_gives(method, body, tiny_chat_dir, tmp_path, capsys):
    folder = tmp_path / method
    assert main(["quantize", str(tiny_chat_dir), str(folder), "--method", method]) == 0
    capsys.readouterr()
    local, tokenizer = damoxing.load(folder), damoxing.load_tokenizer(folder)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    prompt = tokenizer.encode(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True), add_special_tokens=False
    )
    config = GenerationConfig(max_new_tokens=16, stop_token_ids=(tokenizer.eos_id,))
    expected = generate_text(local, tokenizer, prompt, config)
    assert expected  # a reply to compare (a random model that stopped at once would prove little)

    options = ServeOptions(str(folder), model_name="tiny-q", max_tokens=16, request_timeout=60)
    with running_server(options) as (url, app):
        served = app.state.served.model
        for name in ("blocks.0.attn.q", "blocks.1.mlp.down"):
            layer = served.get_submodule(name)
            assert type(layer) is body and kernel_tensors(layer) is not None, name  # quantized, on its kernel
        assert isinstance(served.head.proj, Int8Linear) and isinstance(served.embed, Int8Embedding)
        request = {"model": "tiny-q", "messages": messages, "max_tokens": 16, "temperature": 0}
        status, _, reply = http(f"{url}/v1/chat/completions", request)
    assert status == 200, reply
    assert reply["choices"][0]["message"]["content"] == expected
    assert reply["usage"]["prompt_tokens"] == len(prompt)
