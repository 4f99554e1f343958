"""LoRA: composition over any Linear, merge equals unmerged, adapters (with the head) save and load."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from damoxing.errors import ConfigError
from damoxing.finetune.lora import LoRALinear, apply_lora, load_adapters, lora_state_dict, merge_lora, save_adapters
from damoxing.io.finetuned import load_finetuned
from damoxing.recipes.finetune import finetune

from .conftest import config

# Equal outputs are checked in float64 (eps 2.2e-16), where merged and unmerged differ only in summation order:
# <= n * eps * sum|terms| with n <= 64 through 2 layers of outputs |y| <= ~10; 1e-10 is > 1000x that, and far below
# float32 rounding (1.2e-7) or a wrong merge.
F64_TOL = 1e-10


def batch(tokenizer, texts=("the team saw a goal", "new laptop code", "we saw soup and bread today")):
    return tokenizer(list(texts), max_length=32)


def outputs(model, enc):
    model.eval()
    with torch.no_grad():
        kwargs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        return model(**kwargs)


def randomize_adapters(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_b." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_lora_linear_starts_at_base_and_merges_exactly():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 8).double()
    x = torch.randn(4, 16, dtype=torch.float64)
    expected = base(x)
    lora = LoRALinear(base, rank=4, alpha=8)
    assert lora.weight is base.weight  # composition: the same frozen parameter, same state-dict key
    assert lora.lora_a.weight.dtype == torch.float64
    assert torch.equal(lora(x), expected)  # B starts at zero: base(x) + 0, exactly
    torch.nn.init.normal_(lora.lora_b.weight)
    merged = lora.merged()
    assert isinstance(merged, torch.nn.Linear) and merged.weight.dtype == torch.float64
    torch.testing.assert_close(merged(x), lora(x), rtol=0, atol=F64_TOL)


@pytest.mark.parametrize("family", ["encoder", "decoder"])
def test_merged_equals_unmerged(family, make_encoder, make_decoder, tokenizer):
    model = (make_encoder if family == "encoder" else make_decoder)()
    model.reset_head(3, "sequence")
    names = apply_lora(model, rank=4, alpha=8, targets=("q", "v", "mlp.*"))
    assert names and all(n.endswith((".q", ".v")) or ".mlp." in n for n in names)
    model.double()  # adapters included: the merge below runs in float64
    randomize_adapters(model)
    enc = batch(tokenizer)
    unmerged = outputs(model, enc)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(outputs(model, enc), unmerged, rtol=0, atol=F64_TOL)


def test_unknown_target_is_a_clear_error(make_encoder):
    with pytest.raises(ConfigError, match="match no Linear layer.*attn.q"):
        apply_lora(make_encoder(), targets=("query",))


def test_saved_adapters_hold_the_head_and_reload_onto_a_fresh_base(make_encoder, tokenizer, tmp_path):
    model = make_encoder(seed=0)
    model.reset_head(3, "sequence")
    apply_lora(model, rank=4, alpha=8, targets=("q", "v"))
    randomize_adapters(model)
    with torch.no_grad():
        model.head.classifier.weight.normal_()
    save_adapters(model, tmp_path / "adapter")
    tensors = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert "head.classifier.weight" in tensors and "head.classifier.bias" in tensors
    assert set(tensors) == set(lora_state_dict(model))
    assert not any(k.endswith(".q.weight") for k in tensors)  # base weights are not in the adapter file
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["rank"] == 4 and config["head"] == "sequence" and config["num_labels"] == 3

    fresh = make_encoder(seed=0)  # the same base weights, a default head
    load_adapters(fresh, tmp_path / "adapter")
    enc = batch(tokenizer)  # the same float32 weights, compared in float64: only summation order may differ
    torch.testing.assert_close(outputs(fresh.double(), enc), outputs(model.double(), enc), rtol=0, atol=F64_TOL)


def test_lora_run_saves_adapters_and_a_merged_model_with_the_same_outputs(
    make_encoder, tokenizer, topic_data, tmp_path
):
    result = finetune(
        config(topic_data, "lora", lora_rank=4, lora_targets=["q", "v"]),
        tmp_path / "run",
        model=make_encoder(),
        tokenizer=tokenizer,
        verbose=False,
    )
    assert "head.classifier.weight" in load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    merged, _, meta = load_finetuned(result.model_dir)
    assert meta["method"] == "lora" and merged.config.pooling == "mean"
    # the saved model is the trained one merged, bit for bit (merging itself: test_merged_equals_unmerged)
    expected = merge_lora(copy.deepcopy(result.model))
    assert merged.state_dict().keys() == expected.state_dict().keys()
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in merged.state_dict().items())
    enc = batch(tokenizer)  # and it runs the same way (pooling, head): the same weights compared in float64
    torch.testing.assert_close(outputs(merged.double(), enc), outputs(expected.double(), enc), rtol=0, atol=F64_TOL)
    base = make_encoder()  # adapters onto a fresh copy of the base reproduce the trained model
    load_adapters(base, result.adapter_dir)
    assert base.config.pooling == "mean"
    trained = copy.deepcopy(result.model).double()
    torch.testing.assert_close(outputs(base.double(), enc), outputs(trained, enc), rtol=0, atol=F64_TOL)
