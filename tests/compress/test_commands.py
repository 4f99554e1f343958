"""The commands end to end on a tiny fine-tuned classifier: quantize, prune, export, distil; then evaluate."""

from __future__ import annotations

import json

import pytest
import torch

import damoxing
from damoxing.cli import main
from damoxing.compress.quantize import DynamicInt8Linear, Int8Embedding
from damoxing.recipes.evaluate import evaluate_model


def test_quantize_dynamic_then_evaluate_unchanged(classifier_dir, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["quantize", str(classifier_dir / "model"), str(out), "--method", "dynamic"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bytes_after"] < summary["bytes_before"]
    model = damoxing.load(out)
    assert isinstance(model.blocks[0].attn.q, DynamicInt8Linear) and isinstance(model.embed.tokens, Int8Embedding)
    assert (out / "finetune.json").is_file()
    metrics = evaluate_model(out, classifier_dir / "test.csv")
    reference = evaluate_model(classifier_dir / "model", classifier_dir / "test.csv")
    assert abs(metrics["accuracy"] - reference["accuracy"]) <= 2 / 24  # 24 test rows: at most two flip


def test_prune_heads_with_a_curve_and_sparsity_without(classifier_dir, tmp_path, capsys):
    out = tmp_path / "heads"
    assert (
        main(
            [
                "prune",
                str(classifier_dir / "model"),
                str(out),
                "--heads",
                "0.5",
                "--data",
                str(classifier_dir / "test.csv"),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert sum(summary["layer_heads"]) == 8 and summary["parameters_after"] < summary["parameters_before"]
    assert (out / "prune-curve.png").is_file() and len(summary["curve"]) == 10
    assert damoxing.load(out).config.layer_heads == tuple(summary["layer_heads"])
    assert main(["prune", str(classifier_dir / "model"), str(tmp_path / "sparse"), "--sparsity", "0.5"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["weight_sparsity"] - 0.5) < 0.01


def test_prune_heads_without_data_is_a_user_error(classifier_dir, tmp_path, capsys):
    assert main(["prune", str(classifier_dir / "model"), str(tmp_path / "x"), "--heads", "0.5"]) == 2
    assert "--data" in capsys.readouterr().err


def test_export_reports_the_gap_to_pytorch(classifier_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["export", str(classifier_dir / "model"), str(tmp_path / "m.onnx")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_difference"] < 1e-4 and report["inputs"][:2] == ["input_ids", "attention_mask"]


def test_distil_every_other_layer(classifier_dir, tmp_path):
    config = tmp_path / "distil.yaml"
    config.write_text(f"""
teacher: {{path: {classifier_dir / "model"}}}
data: {{train: [{classifier_dir / "train.csv"}], test: [{classifier_dir / "test.csv"}], max_length: 32}}
distill: {{temperature: 2.0, alpha: 0.5}}
train: {{epochs: 1, batch_size: 16, lr: 1.0e-3, log_every: 1}}
""")
    assert main(["distil", str(config), "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["student_layers"] == 2 and result["student_parameters"] < result["teacher_parameters"]
    assert "accuracy" in result["test_student"]
    student = damoxing.load(tmp_path / "run" / "model")
    assert student.config.layers == 2 and torch.is_tensor(student.blocks[1].attn.q.weight)


def test_quantize_a_gguf_keeps_blocks_of_the_asked_width(q8_gguf, tmp_path, capsys):
    assert main(["quantize", str(q8_gguf), str(tmp_path / "int8"), "--method", "int8"]) == 0
    kept = damoxing.load(tmp_path / "int8")
    assert kept.blocks[0].attn.q.kind == "int8/32"  # the Q8_0 blocks as stored
    capsys.readouterr()
    assert main(["quantize", str(q8_gguf), str(tmp_path / "int4"), "--method", "int4"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("re-quantized to int4" in n for n in notes)
    assert damoxing.load(tmp_path / "int4").blocks[0].attn.q.kind == "int4/32"
