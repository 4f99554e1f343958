"""Bad checkpoints give one clear CheckpointError naming the file and the problem; the CLI shows no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import damoxing
from damoxing.errors import CheckpointError

from .conftest import F64_TOL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def good(gpt2_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(gpt2_dir, folder)
    return folder


def error_of(path) -> str:
    with pytest.raises(CheckpointError) as info:
        damoxing.load(path)
    return str(info.value)


def test_missing_folder(tmp_path):
    msg = error_of(tmp_path / "nowhere")
    assert "nowhere" in msg and "does not exist" in msg


def test_folder_without_config(good):
    (good / "config.json").unlink()
    msg = error_of(good)
    assert "config.json" in msg and "not found" in msg


def test_invalid_json(good):
    (good / "config.json").write_text("{ not json")
    msg = error_of(good)
    assert "config.json" in msg and "not valid JSON" in msg


def test_unknown_architecture(good):
    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "architectures": ["MambaForCausalLM"]}))
    msg = error_of(good)
    assert "config.json" in msg and "MambaForCausalLM" in msg and "GPT2LMHeadModel" in msg


def test_shape_mismatch(good):
    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "n_embd": 48}))
    msg = error_of(good)
    assert "model.safetensors" in msg and "shape mismatch" in msg and "transformer.h.0.attn.c_attn.bias" in msg
    assert "needs [48]" in msg and "has [32]" in msg  # q|k|v are fused in GPT-2's c_attn: the q part is named


def test_truncated_safetensors(good):
    data = (good / "model.safetensors").read_bytes()
    (good / "model.safetensors").write_bytes(data[: len(data) // 2])
    msg = error_of(good)
    assert "model.safetensors" in msg and "truncated" in msg


def test_missing_weights(good):
    from safetensors.torch import load_file, save_file

    state = load_file(good / "model.safetensors")
    del state["transformer.h.1.mlp.c_fc.weight"]
    save_file(state, good / "model.safetensors")
    msg = error_of(good)
    assert "model.safetensors" in msg and "missing weights" in msg and "transformer.h.1.mlp.c_fc.weight" in msg


def test_no_weight_file(good):
    (good / "model.safetensors").unlink()
    msg = error_of(good)
    assert "no weights" in msg and "model.safetensors" in msg


def test_pickled_code_is_never_run(good, tmp_path):
    (good / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"transformer.wte.weight": Evil()}, good / "pytorch_model.bin")
    msg = error_of(good)
    assert "pytorch_model.bin" in msg and "never unpickles" in msg
    assert "Unsupported global: GLOBAL " in msg and "print" in msg and "safetensors" in msg and "trust" in msg
    assert "weights_only" not in msg  # PyTorch's advice, weights_only=False, would run the code


@pytest.mark.parametrize(
    "shard", ["../outside.safetensors", "/ABS/outside.safetensors", "sub/../../outside.safetensors"]
)
def test_sharded_index_stays_inside_the_folder(good, tmp_path, shard):
    """An index naming a file outside the model folder is refused before anything is read, even a valid file."""
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((good / "model.safetensors").read_bytes())  # would load, if it were opened
    (good / "model.safetensors").rename(good / "inside.safetensors")
    shard = shard.replace("/ABS", str(tmp_path))
    index = {"weight_map": {"transformer.wte.weight": "inside.safetensors", "transformer.wpe.weight": shard}}
    (good / "model.safetensors.index.json").write_text(json.dumps(index))
    msg = error_of(good)
    assert "model.safetensors.index.json" in msg and repr(shard) in msg and "inside the model folder" in msg


def test_sharded_index_in_a_sub_folder_loads(good, gpt2_dir):
    from safetensors.torch import load_file, save_file

    state = load_file(good / "model.safetensors")
    (good / "model.safetensors").unlink()
    (good / "shards").mkdir()
    names = sorted(state)
    half = len(names) // 2
    save_file({k: state[k] for k in names[:half]}, good / "shards" / "a.safetensors")
    save_file({k: state[k] for k in names[half:]}, good / "b.safetensors")
    weight_map = {k: ("shards/a.safetensors" if i < half else "b.safetensors") for i, k in enumerate(names)}
    (good / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(damoxing.load(good)(ids), damoxing.load(gpt2_dir)(ids))


def test_pytorch_bin_is_read_with_weights_only(good, gpt2_dir):
    from safetensors.torch import load_file

    torch.save(load_file(good / "model.safetensors"), good / "pytorch_model.bin")
    (good / "model.safetensors").unlink()
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(damoxing.load(good)(ids), damoxing.load(gpt2_dir)(ids))


def test_missing_tokenizer(good):
    with pytest.raises(CheckpointError) as info:
        damoxing.load_tokenizer(good)
    assert str(good) in str(info.value) and "tokenizer" in str(info.value)


def test_truncated_gguf(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 10)
    msg = error_of(bad)
    assert "broken.gguf" in msg and "GGUF" in msg


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    (tmp_path / "bad").mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "damoxing", "convert", str(tmp_path / "bad"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.json" in lines[0] and lines[0].startswith("damoxing convert: error:")
    assert not (tmp_path / "out").exists()


def test_cli_converts_a_folder(gpt2_dir, tmp_path, transformers):
    run = subprocess.run(
        [sys.executable, "-m", "damoxing", "convert", str(gpt2_dir), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    ids = torch.tensor([[5, 6, 7, 8]])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval().double()
    with torch.no_grad():  # float64: the same weights, only summation order differs
        assert (theirs(ids).logits - damoxing.load(gpt2_dir).double()(ids)).abs().max() <= F64_TOL
