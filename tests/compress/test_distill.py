"""Distillation: the loss is zero for a student equal to its teacher, and soft labels alone teach a student."""

from __future__ import annotations

import copy

import pytest
import torch

from damoxing.compress.distill import soft_target_loss, student_from_preset, student_from_teacher
from damoxing.errors import ConfigError
from damoxing.tasks import Distillation, get_task
from damoxing.training.batches import Batches
from damoxing.training.config import TrainConfig
from damoxing.training.trainer import Trainer

from .conftest import tiny_decoder, tiny_encoder


def classification_batch(seed: int = 0, rows: int = 8):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 96, (rows, 12), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.randint(0, 3, (rows,), generator=g),
    }


def test_loss_is_zero_when_the_student_is_the_teacher():
    teacher = tiny_encoder().double()
    task = Distillation(teacher, get_task("classification"), temperature=3.0, alpha=1.0)
    out = task.loss(copy.deepcopy(teacher), classification_batch())
    assert set(out.losses) == {"soft"} and out.losses["soft"].item() == 0.0
    assert out.metrics["agreement"][0] == 8  # every prediction agrees

    lm = tiny_decoder().double()
    ids = classification_batch()["input_ids"]
    out = Distillation(lm, get_task("clm"), alpha=1.0).loss(copy.deepcopy(lm), {"input_ids": ids, "labels": ids})
    assert out.losses["soft"].item() == 0.0


def test_the_loss_is_kl_at_temperature_plus_weighted_cross_entropy():
    teacher, student = tiny_encoder(seed=0).double(), tiny_encoder(seed=1).double()
    batch = classification_batch()
    out = Distillation(teacher, get_task("classification"), temperature=2.0, alpha=0.25).loss(student, batch)
    with torch.no_grad():
        s, t = student(batch["input_ids"]), teacher(batch["input_ids"])
    p = (t / 2).softmax(-1)
    kl = (p * ((t / 2).log_softmax(-1) - (s / 2).log_softmax(-1))).sum() * 4
    ce = torch.nn.functional.cross_entropy(s, batch["labels"], reduction="sum")
    assert torch.allclose(out.losses["soft"], 0.25 * kl, rtol=1e-10)
    assert torch.allclose(out.losses["hard"], 0.75 * ce, rtol=1e-10)
    assert soft_target_loss(s, s, 2.0).item() == 0.0


def test_a_student_learns_from_soft_labels_alone(tmp_path):
    """The batches' labels are noise (alpha = 1 never reads them); only the teacher's soft targets teach."""
    teacher = tiny_encoder(seed=0)
    student = tiny_encoder(seed=7, dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0)
    g = torch.Generator().manual_seed(3)
    examples = [{"input_ids": torch.randint(1, 96, (12,), generator=g), "labels": torch.tensor(0)} for _ in range(64)]

    def collate(rows, generators):
        ids = torch.stack([r["input_ids"] for r in rows])
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": torch.stack([r["labels"] for r in rows]),
        }

    held_out = collate(
        [{"input_ids": torch.randint(1, 96, (12,), generator=g), "labels": torch.tensor(0)} for _ in range(64)], None
    )
    task = Distillation(teacher, get_task("classification"), temperature=2.0, alpha=1.0)

    def soft_loss_and_agreement():
        with torch.no_grad():
            out = task.loss(student.eval(), held_out)
        return out.losses["soft"].item(), out.metrics["agreement"][0].item()

    loss_before, agree_before = soft_loss_and_agreement()
    config = TrainConfig(
        task="classification",
        lr=3e-3,
        max_steps=80,
        batch_size=16,
        log_every=80,
        plot=False,
        tensorboard=False,
        warmup_steps=0,
        schedule="constant",
        precision="fp32",
    )
    Trainer(
        student, task, Batches(examples, collate, 16), config, tmp_path, save=lambda m, f: None, load=lambda m, f: None
    ).fit()
    loss_after, agree_after = soft_loss_and_agreement()
    assert loss_after < 0.5 * loss_before
    assert agree_after > agree_before


def test_student_from_every_other_layer_copies_those_layers():
    teacher = tiny_encoder(layers=4)
    student = student_from_teacher(teacher)
    assert student.config.layers == 2
    for j, i in enumerate((0, 2)):
        for (name, a), (_, b) in zip(student.blocks[j].state_dict().items(), teacher.blocks[i].state_dict().items()):
            assert torch.equal(a, b), name
    assert torch.equal(student.embed.tokens.weight, teacher.embed.tokens.weight)
    whole = student_from_teacher(teacher, range(4))
    ids = classification_batch()["input_ids"]
    with torch.no_grad():
        assert torch.equal(whole(ids), teacher(ids))
    with pytest.raises(ConfigError, match="student.layers"):
        student_from_teacher(teacher, [0, 9])


def test_student_from_a_preset_keeps_the_teachers_vocabulary_and_head():
    teacher = tiny_encoder()
    student = student_from_preset("bert-tiny", teacher)
    assert (student.config.vocab_size, student.config.head, student.config.num_labels) == (96, "sequence", 3)
    with pytest.raises(ConfigError, match="student.preset"):
        student_from_preset("gpt-mini", teacher)
