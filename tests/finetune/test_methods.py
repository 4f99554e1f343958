"""Each method trains on tiny models and beats the majority baseline; frozen bodies stay bit-identical."""

from __future__ import annotations

import pytest
import torch

from damoxing.finetune.methods import body_parameters, layerwise_param_groups, prepare
from damoxing.recipes.finetune import finetune

from .conftest import config


def body_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("head.")}


@pytest.mark.parametrize("family", ["encoder", "decoder"])
@pytest.mark.parametrize("method", ["full", "head", "features", "lora"])
def test_method_beats_majority_baseline(method, family, make_encoder, make_decoder, tokenizer, topic_data, tmp_path):
    model = (make_encoder if family == "encoder" else make_decoder)()
    before = body_state(model)
    result = finetune(
        config(topic_data, method, cache_dir=str(tmp_path / "cache")),
        tmp_path / "run",
        model=model,
        tokenizer=tokenizer,
        verbose=False,
    )
    assert result.metrics["accuracy"] > topic_data["majority"] + 0.15, result.metrics["accuracy"]
    assert result.metrics["f1_macro"] > 0.5
    assert 0 < result.trainable_parameters <= result.total_parameters
    after = body_state(result.model)
    if method in ("head", "features"):
        assert result.trainable_parameters == sum(p.numel() for p in result.model.head.parameters())
        assert before.keys() == after.keys()
        for key in before:
            assert torch.equal(before[key], after[key]), f"{method} changed body weight {key}"
    elif method == "full":
        assert result.trainable_parameters == result.total_parameters
        assert any(not torch.equal(before[k], after[k]) for k in before)
    else:  # lora: base weights frozen (keys unchanged by composition), adapters added
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert any(".lora_a." in k for k in after)
        assert result.adapter_dir is not None and (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert (result.out_dir / "eval" / "report.md").is_file() and (result.out_dir / "config.yaml").is_file()


def test_prepare_sets_requires_grad_per_method(make_encoder):
    model = make_encoder()
    model.reset_head(3, "sequence")
    assert prepare(model, "full") == model.num_parameters()
    head = sum(p.numel() for p in model.head.parameters())
    assert prepare(model, "head") == head
    assert not any(p.requires_grad for p in body_parameters(model).values())
    n = prepare(model, "lora", lora_rank=4, lora_targets=("attn.q", "attn.v"))
    adapters = sum(p.numel() for n_, p in model.named_parameters() if ".lora_" in n_)
    assert n == head + adapters and adapters == 2 * 2 * (32 * 4 + 4 * 32)  # 2 layers x (q, v) x (A + B)
    assert prepare(model, "features") == 0


def test_layerwise_lr_decay_groups(make_encoder):
    model = make_encoder()
    model.reset_head(3, "sequence")
    groups = layerwise_param_groups(model, lr=1.0, decay=0.5)
    lr_of = {name: g["lr"] for g in groups for name in g["names"]}
    assert lr_of["head.classifier.weight"] == 1.0
    assert lr_of["blocks.1.attn.q.weight"] == 0.5
    assert lr_of["blocks.0.attn.q.weight"] == 0.25
    assert lr_of["embed.tokens.weight"] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_full_with_layerwise_decay_trains_and_keeps_ratios(make_encoder, tokenizer, topic_data, tmp_path):
    from damoxing.training.optim import set_lr

    result = finetune(
        config(topic_data, "full", layerwise_lr_decay=0.5),
        tmp_path / "run",
        model=make_encoder(),
        tokenizer=tokenizer,
        verbose=False,
    )
    assert result.metrics["accuracy"] > topic_data["majority"] + 0.15
    group = {"params": [], "lr_scale": 0.25}
    opt = torch.optim.AdamW([group], lr=1.0)
    set_lr(opt, 2.0)
    assert opt.param_groups[0]["lr"] == 0.5


def test_group_by_length_batches_cover_every_example_once(make_encoder, tokenizer, topic_data, tmp_path):
    from damoxing.training.batches import LengthGroupedBatches

    examples = [{"input_ids": list(range(n % 17 + 1)), "label": 0} for n in range(100)]
    source = LengthGroupedBatches(examples, lambda ex, g: ex, batch_size=8, seed=0)
    batches = list(source.batches(epoch=0))
    assert len(batches) == len(source) == 13
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in examples)
    spread = sum(max(len(e["input_ids"]) for e in b) - min(len(e["input_ids"]) for e in b) for b in batches)
    assert spread < 13 * 4  # similar lengths within each batch (random batches spread ~14)
    assert [len(b) for b in source.batches(epoch=0, start=5)] == [len(b) for b in batches[5:]]
    cfg = config(topic_data, "full")
    cfg["data"]["group_by_length"] = True
    result = finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    assert result.metrics["accuracy"] > topic_data["majority"] + 0.15
