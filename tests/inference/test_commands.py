"""The `generate` and `chat` commands on a tiny random Llama with SmolLM2's tokenizer (HF folder, GGUF file)."""

import dataclasses
import io
import json

import torch

import damoxing.inference.streaming
from damoxing.cli import main
from damoxing.inference import GenerationConfig
from damoxing.inference.session import ChatSession
from damoxing.inference.streaming import generate_text
from damoxing.recipes.generate import chat_loop, generate_deltas, load_for_generation


def test_generate_streams_the_greedy_continuation(tiny_chat_dir, capsys):
    assert main(["generate", str(tiny_chat_dir), "Hello there", "--max-new-tokens", "8", "--temperature", "0"]) == 0
    printed = capsys.readouterr().out
    # the same prepared float32 model in this process (same summation order: no near-tie can flip)
    model, tokenizer, config = load_for_generation(tiny_chat_dir, {"max_new_tokens": 8, "temperature": 0.0})
    assert config.stop_token_ids == (tokenizer.eos_id,)
    expected = generate_text(
        model, tokenizer, "Hello there", GenerationConfig(max_new_tokens=8, stop_token_ids=(tokenizer.eos_id,))
    )
    assert printed == expected + "\n"


def test_generate_seeded_sampling_repeats_and_beams_run(tiny_chat_dir, capsys):
    runs = []
    for _ in range(2):
        assert (
            main(
                [
                    "generate",
                    str(tiny_chat_dir),
                    "Hi",
                    "--max-new-tokens",
                    "6",
                    "--temperature",
                    "1.0",
                    "--top-k",
                    "50",
                    "--seed",
                    "3",
                ]
            )
            == 0
        )
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] and runs[0].strip()
    assert main(["generate", str(tiny_chat_dir), "Hi", "--max-new-tokens", "4", "--num-beams", "3"]) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_generate_data_writes_one_row_per_prompt_in_order(tiny_chat_dir, tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    prompts = ["one", "two two", "", "three"]
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    out = tmp_path / "out.jsonl"
    assert main(["generate", str(tiny_chat_dir), "--data", str(data), "-o", str(out), "--max-new-tokens", "5"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts
    assert rows[2]["error"] == "empty prompt"
    generated = [r for r in rows if "error" not in r]
    assert len(generated) == 3
    assert all(r["completion_tokens"] <= 5 and r["finish_reason"] in ("stop", "length") for r in generated)


def test_generate_refuses_prompt_and_data_together(tiny_chat_dir, capsys):
    assert main(["generate", str(tiny_chat_dir)]) == 2
    assert "--data" in capsys.readouterr().err


class RecordingSession(ChatSession):
    """Notes each turn's reply and how many prompt tokens came from the cache."""

    def send(self, message):
        yield from super().send(message)
        self.turns.append((self.messages[-1]["content"], self.reused_tokens, self.new_tokens))


def test_chat_keeps_history_resets_and_exits(tiny_chat_dir):
    model, tokenizer, config = load_for_generation(tiny_chat_dir, {"max_new_tokens": 5, "temperature": 0.0})
    session = RecordingSession(model, tokenizer, config)
    session.turns = []
    out = io.StringIO()
    turns = chat_loop(session, io.StringIO("Hello!\nHow are you?\n/reset\nHello!\n/exit\nnever read\n"), out)
    assert turns == 3 and len(session.turns) == 3
    text = out.getvalue()
    assert "(new conversation)" in text and "never read" not in text
    assert all(reply in text for reply, _, _ in session.turns)
    # the second turn ran only its new tokens: the first turn's prompt came from the cache
    first_prompt = session.turns[0][1] + session.turns[0][2]
    assert session.turns[1][1] >= first_prompt - 1
    # after /reset the history is gone: the same first message gets the same reply as at the start
    assert session.messages == [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": session.turns[0][0]},
    ]
    assert session.turns[2][0] == session.turns[0][0]


def test_chat_command_reads_stdin(tiny_chat_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n/exit\n"))
    assert main(["chat", str(tiny_chat_dir), "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("> ")


class Steps:
    """Counts the tokens generated so far (wraps streaming's generate_stream)."""

    def __init__(self, generate_stream):
        self.generate_stream, self.count = generate_stream, 0

    def __call__(self, *args, **kwargs):
        for step in self.generate_stream(*args, **kwargs):
            self.count += 1
            yield step


class Stdout(io.StringIO):
    """Notes every non-empty write, and how many tokens had been generated when it came."""

    def __init__(self, steps: Steps):
        super().__init__()
        self.steps, self.writes = steps, []

    def write(self, text: str) -> int:
        if text:
            self.writes.append((text, self.steps.count))
        return super().write(text)


def test_generate_and_chat_on_a_gguf_file(tiny_chat_dir, tiny_chat_gguf, monkeypatch):
    """The commands read the model, tokenizer, chat template and stop token from a GGUF file, and `generate`
    streams: each delta is written as soon as its token is generated. (Opening the file's 49152-token
    vocabulary takes seconds, so the GGUF file is read by the two commands only; the same model saved as a
    folder, tiny_chat_dir, gives the expected output.)"""
    model, tokenizer, config = load_for_generation(tiny_chat_dir, {"max_new_tokens": 8, "temperature": 0.0})
    deltas = list(generate_deltas(model, tokenizer, "Hello there", config))
    assert len(deltas) > 1
    steps = Steps(damoxing.inference.streaming.generate_stream)
    monkeypatch.setattr(damoxing.inference.streaming, "generate_stream", steps)

    stdout = Stdout(steps)
    monkeypatch.setattr("sys.stdout", stdout)
    assert main(["generate", str(tiny_chat_gguf), "Hello there", "--max-new-tokens", "8", "--temperature", "0"]) == 0
    assert [text for text, _ in stdout.writes] == deltas + ["\n"]  # one write per delta, the same as the folder's
    # ... each as soon as its token came: the first after 1 token, the second after 2, ...
    assert [count for _, count in stdout.writes[:-1]] == list(range(1, len(deltas) + 1))

    session = ChatSession(model, tokenizer, dataclasses.replace(config, max_new_tokens=4))
    expected = io.StringIO()
    chat_loop(session, io.StringIO("Hi\nHow are you?\n/exit\n"), expected)
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\nHow are you?\n/exit\n"))
    stdout = Stdout(steps)
    monkeypatch.setattr("sys.stdout", stdout)
    assert main(["chat", str(tiny_chat_gguf), "--max-new-tokens", "4", "--temperature", "0"]) == 0
    assert stdout.getvalue() == expected.getvalue()  # the chat template and the stop token came from the file
    assert stdout.getvalue().count("> ") == 3 and len(session.messages) == 4


def test_generate_casts_the_weights_with_dtype(tiny_chat_dir, capsys):
    """--dtype bfloat16 decodes with bf16 weights (the fast float path on CPUs with native bf16): the text is that
    of the same bf16 model in this process."""
    argv = ["generate", str(tiny_chat_dir), "Hello there", "--max-new-tokens", "6", "--temperature", "0"]
    assert main([*argv, "--dtype", "bfloat16"]) == 0
    printed = capsys.readouterr().out
    model, tokenizer, config = load_for_generation(tiny_chat_dir, {"max_new_tokens": 6, "temperature": 0.0}, "bfloat16")
    assert model.embed.weight.dtype == torch.bfloat16
    assert printed == "".join(generate_deltas(model, tokenizer, "Hello there", config)) + "\n"


def test_quantized_needs_a_gguf_file(tiny_chat_dir, capsys):
    assert main(["generate", str(tiny_chat_dir), "Hi", "--quantized"]) == 2
    assert "damoxing quantize" in capsys.readouterr().err
