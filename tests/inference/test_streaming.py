"""Streaming text: deltas never split a character, concatenate to the whole text, and never leak a stop string.

A scripted model (its logits force a given continuation) drives the real text path with real tokenizers:
GPT-2's byte-level BPE, which splits Chinese characters and emoji over several tokens, and a sentencepiece BPE
with byte fallback.
"""

import pytest
import torch
from torch import nn

import damoxing
from damoxing.inference import GenerationConfig
from damoxing.inference.streaming import INCOMPLETE, IncrementalDecoder, TextStream, generate_text, stream_text
from damoxing.tokenizer import Tokenizer, _sentencepiece_bpe

TEXTS = {
    "english": "The capital of France is Paris. It is a large city.",
    "chinese": "北京是中国的首都。上海很大，人口众多。",
    "emoji": "I love pizza 🍕🎉👍🏽! Café ☕ at 8am 😴💤",
}


@pytest.fixture(scope="module")
def gpt2(gpt2_bpe_dir):
    return damoxing.load_tokenizer(gpt2_bpe_dir)


@pytest.fixture(scope="module")
def sentencepiece():
    """A Llama-style sentencepiece BPE that knows a few words and falls back to bytes for everything else."""
    tokens = [
        "<unk>",
        "<s>",
        "</s>",
        *(f"<0x{b:02X}>" for b in range(256)),
        "▁",
        "t",
        "h",
        "e",
        "i",
        "s",
        "▁t",
        "he",
        "▁the",
        "▁i",
        "▁is",
        "大",
        "。",
    ]
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "i"), ("▁i", "s")]
    return Tokenizer(_sentencepiece_bpe(tokens, merges, 0), unk_token="<unk>", bos_token="<s>", eos_token="</s>")


class ScriptedModel(nn.Module):
    """Its logits make greedy decoding emit `script` after any prompt (then it repeats the last token)."""

    def __init__(self, script: list[int], vocab_size: int):
        super().__init__()
        self.script, self.vocab_size = script, vocab_size
        self.unused = nn.Parameter(torch.zeros(1))  # so that the model has a device

    def new_cache(self):
        return damoxing.layers.KVCache(1)

    def forward_features(self, input_ids, attention_mask=None, position_ids=None, cache=None):
        cache[0].update(
            torch.zeros(input_ids.shape[0], 1, input_ids.shape[1], 1),
            torch.zeros(input_ids.shape[0], 1, input_ids.shape[1], 1),
        )
        return torch.full((*input_ids.shape, 1), float(cache.length))  # (B, T, 1): positions fed so far

    def forward_head(self, hidden):
        prompt_length = self.prompt_length
        n = min(int(hidden[0, -1, 0]) - prompt_length, len(self.script) - 1)
        logits = torch.zeros(*hidden.shape[:2], self.vocab_size)
        logits[..., self.script[n]] = 1.0
        return logits


def scripted(tokenizer, text, prompt):
    model = ScriptedModel(tokenizer.encode(text, add_special_tokens=False), tokenizer.vocab_size)
    model.prompt_length = len(prompt)
    return model


def pieces(tokenizer, ids, stop_strings=()):
    stream = TextStream(tokenizer, stop_strings)
    deltas = [stream.push(i) for i in ids]
    return [d for d in deltas + [stream.finish()] if d]


@pytest.mark.parametrize("kind", list(TEXTS))
@pytest.mark.parametrize("tokenizer_name", ["gpt2", "sentencepiece"])
def test_deltas_concatenate_to_the_text_and_never_split_a_character(request, tokenizer_name, kind):
    tokenizer = request.getfixturevalue(tokenizer_name)
    ids = tokenizer.encode(TEXTS[kind], add_special_tokens=False)
    deltas = pieces(tokenizer, ids)
    assert "".join(deltas) == tokenizer.decode(ids) == TEXTS[kind]
    assert not any(INCOMPLETE in d for d in deltas)
    if kind != "english":
        assert len(deltas) < len(ids)  # some tokens ended inside a character and waited for the next


@pytest.mark.parametrize("seed", range(20))
def test_any_token_sequence_streams_to_its_decoded_text(gpt2, sentencepiece, seed):
    """Random ids (broken UTF-8 included): the concatenation still equals decoding everything at once."""
    g = torch.Generator().manual_seed(seed)
    for tokenizer in (gpt2, sentencepiece):
        ids = torch.randint(0, tokenizer.vocab_size, (40,), generator=g).tolist()
        decoder = IncrementalDecoder(tokenizer)
        text = "".join(decoder.push(i) for i in ids) + decoder.flush()
        assert text == tokenizer.decode(ids)


@pytest.mark.parametrize("kind", list(TEXTS))
def test_stream_text_matches_the_non_streamed_text(gpt2, kind):
    prompt = gpt2.encode("Say something:", add_special_tokens=False)
    script = gpt2.encode(TEXTS[kind], add_special_tokens=False)
    model = scripted(gpt2, TEXTS[kind], prompt)
    config = GenerationConfig(max_new_tokens=len(script))
    streamed = stream_text(model, gpt2, prompt, config)
    deltas = list(streamed)
    assert "".join(deltas) == generate_text(model, gpt2, prompt, config) == TEXTS[kind]
    assert streamed.token_ids == script and streamed.finish_reason == "length"


def test_the_stop_token_ends_the_text(gpt2):
    prompt = gpt2.encode("Q:", add_special_tokens=False)
    model = scripted(gpt2, "Paris.<|endoftext|>More text", prompt)
    config = GenerationConfig(max_new_tokens=20, stop_token_ids=(gpt2.eos_id,))
    streamed = stream_text(model, gpt2, prompt, config)
    assert "".join(streamed) == "Paris." and streamed.finish_reason == "stop"
    assert streamed.token_ids[-1] == gpt2.eos_id


@pytest.mark.parametrize(
    "text, stops, expected",
    [
        ("The capital of France is Paris. It is", ("Paris.",), "The capital of France is "),  # spans " Paris" + "."
        ("Parisians love Paris. Yes", ("Paris.",), "Parisians love "),  # "Paris" held, then released with "ians"
        ("I love pizza 🍕🎉👍🏽! Café", ("🎉👍",), "I love pizza 🍕"),  # a stop string inside multi-token emoji
        ("北京是中国的首都。上海很大", ("首都。", "上海"), "北京是中国的"),  # the first stop string to appear wins
        ("User: hi\nAssistant: hello\nUser: bye", ("\nUser:",), "User: hi\nAssistant: hello"),
        ("no stop here", ("zzz",), "no stop here"),
    ],
)
def test_stop_strings_never_leak(gpt2, text, stops, expected):
    ids = gpt2.encode(text, add_special_tokens=False)
    deltas = pieces(gpt2, ids, stops)
    assert "".join(deltas) == expected
    emitted = ""
    for d in deltas:  # at no point did the output hold the start of a stop string that then completed
        emitted += d
        assert not any(s in emitted for s in stops)
    assert all(expected.startswith("".join(deltas[:i])) for i in range(len(deltas)))


def test_stop_string_ends_generation(gpt2):
    prompt = gpt2.encode("Q:", add_special_tokens=False)
    text = "The capital of France is Paris. It is a large city."
    model = scripted(gpt2, text, prompt)
    streamed = stream_text(model, gpt2, prompt, GenerationConfig(max_new_tokens=30, stop_strings=("Paris.",)))
    assert "".join(streamed) == "The capital of France is " and streamed.finish_reason == "stop"
    assert gpt2.decode(streamed.token_ids).endswith("Paris.")  # it stopped at the token completing the stop string
