import dataclasses

import pytest

from damoxing.config import apply_overrides, from_dict, load_yaml, save_yaml, to_dict
from damoxing.errors import ConfigError
from damoxing.models import model_config


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    steps: int = 10
    betas: tuple[float, ...] = (0.9, 0.999)
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class Outer:
    train: Inner = Inner()
    flag: bool = False


def test_unknown_key_names_key_and_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.lrr'.*Did you mean 'train\.lr'"):
        from_dict(Outer, {"train": {"lrr": 0.1}})


def test_values_are_coerced_and_bad_values_named():
    cfg = from_dict(Outer, {"train": {"lr": "3e-4", "steps": "20", "betas": [0.8, 0.9]}, "flag": "true"})
    assert cfg.train.lr == 3e-4 and cfg.train.steps == 20 and cfg.train.betas == (0.8, 0.9) and cfg.flag is True
    with pytest.raises(ConfigError, match=r"train\.steps: expected an integer"):
        from_dict(Outer, {"train": {"steps": "many"}})


def test_dotted_overrides_and_yaml_round_trip(tmp_path):
    data = apply_overrides({"train": {"lr": 0.1}}, ["--train.lr=3e-4", "train.name=run1", "flag=true"])
    cfg = from_dict(Outer, data)
    assert cfg.train.lr == 3e-4 and cfg.train.name == "run1" and cfg.flag
    save_yaml(to_dict(cfg), tmp_path / "c.yaml")
    assert from_dict(Outer, load_yaml(tmp_path / "c.yaml")) == cfg
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["--train.lr"])


def test_bad_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+"):
        load_yaml(p)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_model_section_presets_and_validation():
    cfg = model_config({"preset": "bert-mini", "vocab_size": 1000})
    assert cfg.dim == 256 and cfg.vocab_size == 1000
    with pytest.raises(ConfigError, match=r"model\.preset.*bert-huge.*Did you mean"):
        model_config({"preset": "bert-huge"})
    with pytest.raises(ConfigError, match=r"model\.position: 'rotary' is not allowed.*'rope'"):
        model_config({"preset": "gpt-mini", "position": "rotary"})
    with pytest.raises(ConfigError, match=r"model\.dim"):
        model_config({"family": "encoder", "dim": 30, "heads": 4})
