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


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("lr", ".nan", "nan"),
        ("lr", ".inf", "inf"),
        ("lr", "-.inf", "-inf"),
        ("weight_decay", ".nan", "nan"),
        ("clip_grad", ".nan", "nan"),
    ],
)
def test_non_finite_values_are_rejected_before_any_work(tmp_path, capsys, key, value, shown):
    """A NaN or infinite number stops `pretrain` at validation: one line naming the key, nothing written."""
    from damoxing.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {{preset: gpt-mini}}\ntokenizer: {{train: true, kind: bpe, vocab_size: 300}}\n"
        f"data: {{train: [{corpus}]}}\ntrain: {{task: clm, {key}: {value}}}\n"
    )
    assert main(["pretrain", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"damoxing pretrain: error: train.{key}: must be a finite number, got {shown}."
    assert not (tmp_path / "run").exists()
    assert main(["pretrain", str(config), "--out", str(tmp_path / "run"), f"--train.{key}=1e-3", "--train.lr=nan"]) == 2
    assert "train.lr: must be a finite number, got nan." in capsys.readouterr().err  # overrides too


def test_non_finite_values_in_python_configs():
    from damoxing.finetune.config import FinetuneConfig
    from damoxing.training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"train\.eps: must be a finite number, got nan"):
        TrainConfig(eps=float("nan"))
    with pytest.raises(ConfigError, match=r"finetune\.lora_alpha: must be a finite number, got inf"):
        FinetuneConfig(lora_alpha=float("inf"))
    with pytest.raises(ConfigError, match=r"model\.dropout: must be a finite number"):
        model_config({"preset": "bert-tiny", "dropout": float("nan")})


@pytest.mark.parametrize(
    "alias, ours",
    [
        ("learning_rate", "train.lr"),
        ("num_train_epochs", "train.epochs"),
        ("per_device_train_batch_size", "train.batch_size"),
        ("warmup_ratio", "train.warmup_ratio"),
    ],
)
def test_other_tools_names_suggest_ours(alias, ours):
    from damoxing.training.config import RunConfig, TrainConfig

    section = "train" if alias != "warmup_ratio" else "data"  # warmup_ratio is ours: only a misplaced one fails
    with pytest.raises(ConfigError) as info:
        if section == "train":
            from_dict(TrainConfig, {alias: 1}, prefix="train")
        else:
            from_dict(RunConfig, {"data": {"train": [__file__], alias: 0.1}})
    message = str(info.value)
    assert f"unknown key '{section}.{alias}'" in message and f"Did you mean '{ours}'?" in message
    with pytest.raises(ConfigError, match=rf"unknown key '{alias}'\. Did you mean '{ours}'\?"):
        from_dict(RunConfig, {alias: 1})  # at the top level too
