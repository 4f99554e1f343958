"""What a fine-tuning run prints and chooses: the start lines, the progress line, the final table, per-method
defaults, train.threads, one evaluation precision, the feature cache commands and length-sorted embedding."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from damoxing.cli import main
from damoxing.errors import ConfigError
from damoxing.finetune.config import METHOD_LR, load_finetune_config, method_defaults
from damoxing.finetune.features import cache_files, cached_features, clear_cache, embed
from damoxing.recipes.finetune import finetune
from damoxing.tasks import get_task
from damoxing.training.config import available_cores
from damoxing.training.trainer import Trainer

from .conftest import config

REPO = Path(__file__).resolve().parents[2]


def preset_config(data: dict, tokenizer, tmp_path: Path, method: str = "head") -> dict:
    """A run config that builds the tiny encoder itself (so the run says what it loads); lr left to the method."""
    tokenizer.save(tmp_path / "tok")
    cfg = config(data, method)
    del cfg["train"]["lr"], cfg["finetune"]["pooling"]
    cfg["model"] = {"preset": "bert-tiny", "vocab_size": tokenizer.vocab_size, "dim": 32, "layers": 2, "heads": 2}
    cfg["model"].update(mlp_dim=64, max_positions=64)
    cfg["tokenizer"] = {"path": str(tmp_path / "tok")}
    cfg["train"].update(epochs=1, plot=False, tensorboard=False)
    return cfg


def test_start_lines_are_printed_before_the_first_step(tokenizer, topic_data, tmp_path, capsys, monkeypatch):
    seen = {}
    fit = Trainer.fit

    def fit_and_look(self, *args, **kwargs):  # what the user has read when training starts
        seen["out"] = capsys.readouterr().out
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", fit_and_look)
    cfg = preset_config(topic_data, tokenizer, tmp_path)
    cfg["data"]["test"] = [str(topic_data["valid"])]
    finetune(cfg, tmp_path / "run")
    lines = seen["out"].splitlines()
    assert f"reading train: {topic_data['train']}" in lines and f"reading valid: {topic_data['valid']}" in lines
    assert "model: a fresh bert-tiny" in lines and "examples: train 240, valid 90, test 90" in lines
    assert f"threads {torch.get_num_threads()} (the physical cores available; train.threads sets it)" in lines
    assert "method head: lr 2e-3 (default for head); pooling mean (default for head: the body is frozen)" in lines
    assert "training 15 steps (15 per epoch); evaluating every epoch in fp32" in lines


def test_progress_line_with_eta_when_stderr_is_not_a_terminal(tokenizer, topic_data, tmp_path, capsys):
    cfg = preset_config(topic_data, tokenizer, tmp_path)
    cfg["train"]["progress_seconds"] = 1e-9  # every step (pytest's stderr is not a terminal)
    finetune(cfg, tmp_path / "run")
    err = capsys.readouterr().err.splitlines()
    progress = [line for line in err if line.startswith("step ") and "ETA" in line]
    assert progress[0].startswith("step 1/15 (7%), elapsed ") and progress[-1].startswith("step 15/15 (100%)")
    assert progress[-1].endswith("ETA 0s") and len(progress) == 15


def test_run_ends_with_a_table_of_valid_and_test_and_the_report_paths(tokenizer, topic_data, tmp_path, capsys):
    cfg = preset_config(topic_data, tokenizer, tmp_path)
    cfg["data"]["test"] = [str(topic_data["valid"])]  # the same data: both rows must then agree
    out = tmp_path / "run"
    result = finetune(cfg, out)
    lines = capsys.readouterr().out.splitlines()
    header, valid, test = (line.split() for line in lines[-6:-3])
    assert header == ["accuracy", "macro-F1", "loss"] and valid[0] == "valid" and test[0] == "test"
    assert valid[1:] == test[1:] == [f"{result.metrics[k]:.4f}" for k in ("accuracy", "f1_macro", "loss")]
    assert lines[-3].startswith("(both evaluated in fp32; the kept model was chosen on valid")
    assert lines[-2] == f"test report: {out / 'test' / 'report.md'}" and (out / "test" / "report.md").is_file()
    assert lines[-1] == f"result: {out / 'result.json'}" and (out / "result.json").is_file()


def test_in_training_and_final_evaluation_agree_under_bf16(make_encoder, tokenizer, topic_data, tmp_path):
    cfg = config(topic_data, "full")
    cfg["train"].update(precision="bf16", epochs=2, plot=False, tensorboard=False)
    cfg["data"]["max_train_examples"] = 96  # 6 steps an epoch
    with warnings.catch_warnings():  # without AVX-512 BF16 / AMX, bf16 is emulated (slow, said in a warning)
        warnings.simplefilter("ignore")
        result = finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [6, 12]  # once per epoch by default
    kept = max(evals, key=lambda r: (r["accuracy"], -r["step"]))  # the first best is kept
    # the same weights and data in fp32 on both sides: the same predictions, so the same number right
    assert round(result.metrics["accuracy"] * 90) == round(kept["accuracy"] * 90)
    assert result.metrics["loss"] == pytest.approx(kept["loss"], rel=1e-5)  # fp32 sums in other batch shapes


@pytest.mark.parametrize("method", ["full", "head", "lora"])
def test_method_defaults_choose_the_lr_and_say_so(topic_data, method):
    cfg = load_finetune_config(config(topic_data, method), ["train.lr=null"])
    assert cfg.train.lr is None and cfg.finetune.pooling == "mean"  # the test config sets mean pooling
    resolved, lines = method_defaults(cfg)
    assert resolved.train.lr == METHOD_LR[method] == {"full": 5e-5, "head": 2e-3, "lora": 1e-3}[method]
    assert lines == [f"lr { ({'full': '5e-5', 'head': '2e-3', 'lora': '1e-3'}[method]) } (default for {method})"]


def test_example_config_leaves_lr_and_pooling_to_the_method(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the example's data paths are relative to the working folder
    example = REPO / "damoxing" / "configs" / "finetune-minilm-bbc.yaml"
    cfg = load_finetune_config(example, [f"model.path={tmp_path}", "finetune.method=lora"])
    assert cfg.train.lr is None and cfg.finetune.pooling is None and cfg.train.eval_every == 0
    assert method_defaults(cfg)[0].train.lr == 1e-3


def test_an_lr_far_from_the_methods_range_is_warned_about(topic_data):
    cfg = load_finetune_config(config(topic_data, "head"))  # the test config's head lr: 0.3
    _, lines = method_defaults(cfg)
    warning = "warning: train.lr 0.3 is 150x above the usual 2e-3 for head; leave train.lr out to use the usual one"
    assert lines == ["lr 0.3 (train.lr)", warning]
    low = load_finetune_config(config(topic_data, "full"), ["train.lr=1e-7"])
    assert method_defaults(low)[1][1].startswith("warning: train.lr 1e-7 is 500x below the usual 5e-5 for full")
    near = load_finetune_config(config(topic_data, "lora"), ["train.lr=5e-3"])  # 5x: within the range
    assert method_defaults(near)[1] == ["lr 5e-3 (train.lr)"]
    assert method_defaults(cfg, pretrained=False)[1] == ["lr 0.3 (train.lr)"]  # from scratch: no usual range


def test_train_threads_is_set_printed_and_validated(make_encoder, tokenizer, topic_data, tmp_path, capsys):
    before = torch.get_num_threads()
    cfg = config(topic_data, "features", cache_dir=str(tmp_path / "cache"))
    cfg["train"]["threads"] = 1
    try:
        finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "threads 1 (train.threads)" in capsys.readouterr().out.splitlines()
    for bad in ("0", "-2", "1.5"):
        with pytest.raises(ConfigError, match=r"train\.threads"):
            load_finetune_config(config(topic_data, "head"), [f"train.threads={bad}"])
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


def test_cache_clear_deletes_only_the_files_damoxing_wrote(make_encoder, tokenizer, topic_data, tmp_path, capsys):
    folder = tmp_path / "cache"
    task = get_task("classification")
    records = [{"text": "a goal for the team", "label": 0}, {"text": "fresh bread", "label": 1}]
    ours = cached_features(make_encoder(), tokenizer, task, records, 32, folder).path
    leftover = folder / f".{ours.name}.abc123_x.tmp"  # what a killed run leaves (atomic_path's name)
    leftover.write_bytes(b"half")
    theirs = [folder / "notes.txt", folder / ("0" * 32 + ".safetensors"), folder / "model.safetensors"]
    theirs[0].write_text("mine")
    save_file({"x": torch.zeros(2, 2)}, str(theirs[1]))  # a cache key's name, but not damoxing's marker
    save_file({"x": torch.zeros(2, 2)}, str(theirs[2]), metadata={"written_by": "damoxing", "content": "features"})
    (folder / "sub").mkdir()
    assert cache_files(folder) == sorted([ours, leftover])

    assert main(["cache", "list", "--dir", str(folder)]) == 0
    listed = capsys.readouterr().out
    assert ours.name in listed and "2 feature files" in listed and "4 other entries" in listed
    assert main(["cache", "clear", "--dir", str(folder)]) == 0
    assert "deleted 2 feature files" in capsys.readouterr().out
    assert not ours.exists() and not leftover.exists() and all(p.exists() for p in theirs)
    assert (folder / "sub").is_dir() and clear_cache(folder) == (0, 0)
    assert clear_cache(tmp_path / "missing") == (0, 0)


def test_features_run_prints_its_cache_folder(make_encoder, tokenizer, topic_data, tmp_path, capsys):
    cfg = config(topic_data, "features", cache_dir=str(tmp_path / "cache"))
    finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer)
    out = capsys.readouterr().out
    assert f"feature cache: {tmp_path / 'cache'} (finetune.cache_dir; 'damoxing cache clear' empties it)" in out


def test_length_sorted_embedding_restores_the_original_order(make_encoder, tokenizer):
    model = make_encoder().double()
    model.config = dataclasses.replace(model.config, pooling="mean")
    task = get_task("classification")
    rng = random.Random(0)
    words = ["goal", "team", "bread", "soup", "chip", "code", "the", "very", "big"]
    records = [{"text": " ".join(rng.choices(words, k=n)), "label": 0} for n in range(1, 25)]
    rng.shuffle(records)  # lengths in no order: sorting moves nearly every record
    alone = torch.cat([embed(model, tokenizer, task, [r], 32) for r in records])
    assert torch.equal(embed(model, tokenizer, task, records, 32, batch_size=1), alone)  # the same computation
    batched = embed(model, tokenizer, task, records, 32, batch_size=8)  # padded batches: float64 rounding only
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-12)
