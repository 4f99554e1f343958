"""GenerationConfig defaults read from checkpoints: generation_config.json, config.json, GGUF metadata."""

import json

import pytest

from damoxing.errors import CheckpointError
from damoxing.inference import GenerationConfig, checkpoint_generation_defaults, load_generation_config


def folder(tmp_path, generation=None, config=None):
    if generation is not None:
        (tmp_path / "generation_config.json").write_text(json.dumps(generation))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_hf_generation_config(tmp_path):
    path = folder(
        tmp_path,
        {
            "do_sample": True,
            "temperature": 0.6,
            "top_p": 0.9,
            "top_k": 20,
            "repetition_penalty": 1.1,
            "eos_token_id": [2, 7],
            "pad_token_id": 0,
            "max_new_tokens": 64,
            "transformers_version": "4.45.0",
            "min_p": None,
        },
        {"eos_token_id": 99},
    )
    config = load_generation_config(path)
    assert config == GenerationConfig(
        temperature=0.6,
        top_p=0.9,
        top_k=20,
        repetition_penalty=1.1,
        stop_token_ids=(2, 7),
        pad_token_id=0,
        max_new_tokens=64,
    )


def test_greedy_unless_do_sample_and_eos_from_config_json(tmp_path):
    path = folder(tmp_path, {"temperature": 0.6, "num_beams": 3}, {"eos_token_id": 5})
    config = load_generation_config(path)
    assert config.temperature == 0.0 and config.num_beams == 3 and config.stop_token_ids == (5,)
    bare = tmp_path / "bare"
    bare.mkdir()
    assert load_generation_config(folder(bare, config={"eos_token_id": None})) == GenerationConfig()


def test_gguf_metadata(smollm2_gguf):
    defaults = checkpoint_generation_defaults(smollm2_gguf)
    assert defaults == {"stop_token_ids": (2,), "pad_token_id": 2}  # <|im_end|>; the file has no sampling keys


def test_bad_values_name_the_file_and_key(tmp_path):
    path = folder(tmp_path, {"do_sample": True, "top_p": 1.5})
    with pytest.raises(CheckpointError, match=r"generation\.top_p"):
        load_generation_config(path)
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="generation_config.json"):
        load_generation_config(path)
    with pytest.raises(CheckpointError, match="neither"):
        load_generation_config(tmp_path / "missing")
