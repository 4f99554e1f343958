"""`convert` (and `damoxing.save`) replace the destination as a whole, so they refuse a destination whose loss
nobody asked for: a file, a folder holding other things, or the folder that holds the source; --force overrides."""

import pytest
import torch
from safetensors.torch import load_file

import damoxing
from damoxing.cli import main
from damoxing.errors import CheckpointError
from damoxing.models import DecoderConfig, create_model


@pytest.fixture
def src(tmp_path):
    torch.manual_seed(0)
    model = create_model(DecoderConfig(vocab_size=64, dim=32, layers=2, heads=2, mlp_dim=64, max_positions=32))
    damoxing.save(model, None, tmp_path / "run" / "step-000002")
    return tmp_path / "run" / "step-000002"


def _convert(capsys, *args) -> tuple[int, str]:
    code = main(["convert", *map(str, args)])
    return code, capsys.readouterr().err.strip()


def test_convert_refuses_a_file(src, tmp_path, capsys):
    dst = tmp_path / "weights.bin"
    dst.write_bytes(b"precious")
    code, err = _convert(capsys, src, dst)
    assert code == 2 and "is a file, not a model folder" in err and "--force" in err and len(err.splitlines()) == 1
    assert dst.read_bytes() == b"precious"
    assert _convert(capsys, src, dst, "--force")[0] == 0
    damoxing.load(dst)


def test_convert_refuses_a_folder_that_is_not_a_model_folder(src, tmp_path, capsys):
    dst = tmp_path / "documents"
    (dst / "photos").mkdir(parents=True)
    (dst / "notes.txt").write_text("precious")
    code, err = _convert(capsys, src, dst)
    assert code == 2 and "is not empty and not a model folder (notes.txt, photos/)" in err
    assert (dst / "notes.txt").read_text() == "precious"
    # a model folder with a sub-folder (a run folder's checkpoint is not enough) is not replaced either
    (dst / "config.json").write_text("{}")
    assert _convert(capsys, src, dst)[0] == 2
    assert _convert(capsys, src, dst, "--force")[0] == 0
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]


def test_convert_refuses_the_folder_that_holds_the_source(src, tmp_path, capsys):
    for dst in (src.parent, src):  # the run folder around the checkpoint, and the checkpoint itself
        code, err = _convert(capsys, src, dst)
        assert code == 2 and f"holds the source {src}" in err
        assert src.is_dir() and (src / "model.safetensors").is_file()
    assert _convert(capsys, src, src, "--force")[0] == 0  # in place: read first, then replaced in one rename
    damoxing.load(src)


def test_convert_replaces_a_model_folder_or_fills_an_empty_one(src, tmp_path, capsys):
    empty, model = tmp_path / "empty", tmp_path / "model"
    empty.mkdir()
    assert _convert(capsys, src, empty)[0] == 0
    assert _convert(capsys, src, model, "--dtype", "float16")[0] == 0
    assert {t.dtype for t in load_file(model / "model.safetensors").values()} == {torch.float16}
    assert _convert(capsys, src, model)[0] == 0  # an earlier conversion is replaced
    assert {t.dtype for t in load_file(model / "model.safetensors").values()} == {torch.float32}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary name left


def test_save_applies_the_same_rule(src, tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="not empty and not a model folder"):
        damoxing.save(damoxing.load(src), None, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"
