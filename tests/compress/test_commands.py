"""The commands end to end on a tiny fine-tuned classifier (and a tiny language model for distil): quantize, prune,
export, distil; then evaluate."""

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


def test_distil_a_language_model_every_other_layer(tmp_path):
    """A 4-layer decoder (trained 60 steps) teaches a 2-layer student (its layers 0 and 2) through `damoxing distil`:
    the clm task is picked from the teacher's lm head, the student is saved as a language model that loads, and the
    distillation objective (soft targets at T = 2 plus the next-token labels) falls on held-out text."""
    import random
    import types

    from damoxing.compress.distill import student_from_teacher
    from damoxing.io.checkpoint import save_model
    from damoxing.models import Decoder
    from damoxing.tasks import Distillation, get_task
    from damoxing.tokenizer import Tokenizer

    from .conftest import tiny_decoder

    rng = random.Random(0)
    words = [
        "the",
        "a",
        "cat",
        "dog",
        "bird",
        "sat",
        "ran",
        "flew",
        "on",
        "under",
        "over",
        "mat",
        "tree",
        "roof",
        "and",
        "then",
        "quickly",
        "slowly",
    ]
    for split, n in (("train", 200), ("valid", 40)):
        lines = [" ".join(rng.choices(words, k=rng.randint(6, 12))) for _ in range(n)]
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    tokenizer = Tokenizer.train_bpe([tmp_path / "train.txt"], vocab_size=300, min_frequency=1, model_max_length=64)
    clm, seq = get_task("clm"), types.SimpleNamespace(data=types.SimpleNamespace(seq_len=32))
    blocks, collate = clm.prepare(tokenizer, (tmp_path / "train.txt").read_text().splitlines(), seq)
    teacher = tiny_decoder(vocab_size=tokenizer.vocab_size, layers=4, dropout=0.0).train()
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    for step in range(60):  # a teacher that knows the text a little, so that its soft targets carry something
        batch = collate([blocks[(8 * step + i) % len(blocks)] for i in range(8)], None)
        out = clm.loss(teacher, batch)
        optimizer.zero_grad()
        (out.losses["clm"] / int(clm.targets(batch)["clm"])).backward()
        optimizer.step()
    save_model(teacher.eval(), tokenizer, tmp_path / "teacher")
    config = tmp_path / "distil-lm.yaml"
    config.write_text(f"""
teacher: {{path: {tmp_path / "teacher"}}}
data: {{train: [{tmp_path / "train.txt"}], valid: [{tmp_path / "valid.txt"}], text_mode: line, seq_len: 32}}
distill: {{temperature: 2.0, alpha: 0.5}}
train: {{epochs: 2, batch_size: 8, lr: 3.0e-3, log_every: 10, warmup_steps: 0}}
""")

    task = Distillation(damoxing.load(tmp_path / "teacher"), clm, temperature=2.0, alpha=0.5)
    held_out = collate(clm.prepare(tokenizer, (tmp_path / "valid.txt").read_text().splitlines(), seq)[0], None)

    def objective(model) -> dict[str, float]:  # the Trainer's terms: summed over next tokens, per token
        with torch.no_grad():
            out = task.loss(model.eval(), held_out)
        return {k: float(v) / int(clm.targets(held_out)["clm"]) for k, v in out.losses.items()}

    before = objective(student_from_teacher(damoxing.load(tmp_path / "teacher")))
    assert main(["distil", str(config), "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["student_layers"] == 2 and result["student_parameters"] < result["teacher_parameters"]
    assert result["steps"] > 0 and "test_student" not in result  # language models: validation loss only
    student = damoxing.load(tmp_path / "run" / "model")
    assert isinstance(student, Decoder) and student.config.layers == 2
    assert damoxing.load_tokenizer(tmp_path / "run" / "model").vocab_size == tokenizer.vocab_size
    after = objective(student)
    assert after["soft"] < before["soft"] and sum(after.values()) < sum(before.values())
    assert result["valid"]["loss"] < sum(before.values())  # the run's own validation says so too
