"""Round trips: damoxing.save -> transformers loads it; transformers saves -> damoxing loads it. Same outputs."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

import damoxing
from damoxing import DecoderConfig, EncoderConfig, create_model

from .conftest import F64_TOL, hf_bert, hf_gpt2, hf_llama, hf_roformer, llama_float32_tolerance, rope_float32_tolerance

IDS = torch.randint(1, 96, (2, 12), generator=torch.Generator().manual_seed(0))
MASK = torch.ones_like(IDS)
TYPES = torch.zeros_like(IDS)
TYPES[:, 6:] = 1
SMALL = {"vocab_size": 96, "dim": 32, "layers": 2, "heads": 4, "mlp_dim": 64, "dropout": 0.0, "attention_dropout": 0.0}
LLAMA = dict(
    SMALL,
    position="rope",
    norm="rmsnorm",
    mlp="swiglu",
    activation="silu",
    kv_heads=2,
    attention_bias=False,
    mlp_bias=False,
    max_positions=64,
)
ROFORMER = dict(SMALL, position="rope", pooler_activation="gelu", classifier_dropout=0.0)


def randomised(model):
    """Norm weights away from 1 so swapped norms would show."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


def hf_outputs(model, encoder: bool):
    with torch.no_grad():
        out = model(IDS, attention_mask=MASK, token_type_ids=TYPES) if encoder else model(IDS, attention_mask=MASK)
    if hasattr(out, "prediction_logits"):
        return out.prediction_logits, out.seq_relationship_logits
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def our_outputs(model, encoder: bool):
    with torch.no_grad():
        return model(IDS, MASK, TYPES) if encoder else model(IDS, MASK)


def f64(model):
    """A float64 copy: outputs of two implementations then differ only in summation order (see conftest)."""
    return copy.deepcopy(model).double()


def assert_same(a, b, atol=F64_TOL):
    for x, y in zip(a, b) if isinstance(a, tuple) else [(a, b)]:
        assert x.shape == y.shape
        assert (x - y).abs().max() <= atol


def tolerance(config, outputs) -> float:
    """F64_TOL, or for Llama the bound on transformers' float32 RMSNorm and rope, for RoFormer on its float32
    rope table (conftest)."""
    first = outputs[0] if isinstance(outputs, tuple) else outputs
    if isinstance(config, EncoderConfig) and config.position == "rope":
        return F64_TOL + rope_float32_tolerance(config.layers, IDS.shape[1], first)
    if getattr(config, "norm", None) != "rmsnorm":
        return F64_TOL
    return llama_float32_tolerance(config.layers, config.dim, IDS.shape[1], first)


OURS = {
    "BertForPreTraining": EncoderConfig(**SMALL, head="pretraining"),
    "BertForSequenceClassification": EncoderConfig(**SMALL, head="sequence", num_labels=3),
    "BertForTokenClassification": EncoderConfig(**SMALL, head="token", num_labels=5, pooler=False, pooling="cls"),
    "RoFormerForMaskedLM": EncoderConfig(**ROFORMER, head="mlm", pooler=False, pooling="cls"),
    "RoFormerForSequenceClassification": EncoderConfig(**ROFORMER, head="sequence", num_labels=3),
    "RoFormerForTokenClassification": EncoderConfig(
        **ROFORMER, head="token", num_labels=5, pooler=False, pooling="cls"
    ),
    "GPT2LMHeadModel": DecoderConfig(**SMALL, max_positions=64),
    "GPT2ForSequenceClassification": DecoderConfig(**SMALL, max_positions=64, head="sequence", pad_id=0),
    "LlamaForCausalLM": DecoderConfig(**LLAMA),
    "LlamaForSequenceClassification": DecoderConfig(**LLAMA, head="sequence", num_labels=3, pad_id=0),
}


@pytest.mark.parametrize("arch", list(OURS))
def test_transformers_loads_what_damoxing_saves(arch, tmp_path, transformers):
    torch.manual_seed(0)
    ours = randomised(create_model(OURS[arch]))
    if arch == "BertForSequenceClassification":
        ours.labels = ["neg", "neutral", "pos"]
    damoxing.save(ours, None, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == [arch]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "weights newly initialized" or similar
        theirs, info = getattr(transformers, arch).from_pretrained(str(tmp_path / "out"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    encoder = isinstance(ours.config, EncoderConfig)
    expected = our_outputs(f64(ours), encoder)
    assert_same(expected, hf_outputs(f64(theirs.eval()), encoder), tolerance(ours.config, expected))
    if arch == "BertForSequenceClassification":
        assert theirs.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    # and damoxing reads its own output back
    again = damoxing.load(tmp_path / "out")
    assert again.config == ours.config
    assert_same(our_outputs(again, encoder), our_outputs(ours, encoder), atol=0)  # same weights, same code: exact


HF = {
    "BertForPreTraining": lambda t: hf_bert(t),
    "BertModel": lambda t: hf_bert(t, "BertModel"),
    "BertForSequenceClassification": lambda t: hf_bert(t, "BertForSequenceClassification", num_labels=3),
    "RoFormerForMaskedLM": lambda t: hf_roformer(t),
    "RoFormerModel": lambda t: hf_roformer(t, "RoFormerModel"),
    "RoFormerForSequenceClassification": lambda t: hf_roformer(t, "RoFormerForSequenceClassification", num_labels=3),
    "GPT2LMHeadModel": lambda t: hf_gpt2(t),
    "GPT2ForSequenceClassification": lambda t: hf_gpt2(t, "GPT2ForSequenceClassification", pad_token_id=0),
    "LlamaForCausalLM": lambda t: hf_llama(t),
    "LlamaForSequenceClassification": lambda t: hf_llama(
        t, "LlamaForSequenceClassification", pad_token_id=0, num_labels=3
    ),
}


@pytest.mark.parametrize("arch", list(HF))
def test_damoxing_loads_what_transformers_saves(arch, tmp_path, transformers):
    theirs = HF[arch](transformers)
    theirs.save_pretrained(tmp_path / "hf")
    ours = damoxing.load(tmp_path / "hf")
    assert not ours.training
    encoder = isinstance(ours.config, EncoderConfig)
    expected = hf_outputs(f64(theirs), encoder)
    assert_same(our_outputs(f64(ours), encoder), expected, tolerance(ours.config, expected))
    # and back again: damoxing saves, transformers reloads, same outputs (the same code on the same weights)
    damoxing.save(ours, None, tmp_path / "again", dtype="float32")
    reloaded = getattr(transformers, arch).from_pretrained(str(tmp_path / "again")).eval()
    assert_same(hf_outputs(f64(reloaded), encoder), expected)


def test_bert_weights_load_with_or_without_the_bert_prefix(tmp_path, transformers):
    base = hf_bert(transformers, "BertModel")
    base.save_pretrained(tmp_path / "bare")  # keys without "bert."
    config = json.loads((tmp_path / "bare" / "config.json").read_text())
    config["architectures"] = ["BertForMaskedLM"]  # read bare weights as a base model for an MLM head...
    from safetensors.torch import load_file, save_file

    state = {f"bert.{k}": v for k, v in load_file(tmp_path / "bare" / "model.safetensors").items()}
    (tmp_path / "prefixed").mkdir()
    save_file(state, tmp_path / "prefixed" / "model.safetensors")  # ...and prefixed weights as a BertModel
    (tmp_path / "prefixed" / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    a, b = damoxing.load(tmp_path / "bare"), damoxing.load(tmp_path / "prefixed")
    assert_same(our_outputs(a, True), our_outputs(b, True), atol=0)  # same weights, same code: exact
    assert_same(our_outputs(f64(a), True), hf_outputs(f64(base), True))


def test_save_with_tokenizer_and_dtype(tmp_path, gpt2_dir, gpt2_bpe_dir, transformers):
    model = damoxing.load(gpt2_dir)
    tok = damoxing.load_tokenizer(gpt2_bpe_dir)
    damoxing.save(model, tok, tmp_path / "bf16", dtype="bfloat16")
    assert (tmp_path / "bf16" / "tokenizer.json").is_file()
    reloaded = damoxing.load(tmp_path / "bf16")
    assert next(reloaded.parameters()).dtype == torch.float32  # loads as float32 unless asked
    assert damoxing.load(tmp_path / "bf16", dtype="bfloat16").embed.weight.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(IDS)
        # bfloat16 keeps 8 significant bits: each weight moves by <= 2^-8 of itself; the logits sit behind 15 weighted
        # steps (embeddings, 6 per layer, final norm, tied head), so they move by <= 15 * 2^-8 of their size
        assert (reloaded(IDS) - logits).abs().max() <= 15 * 2**-8 * logits.abs().max()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "bf16"))
    assert hf_tok("Hello world")["input_ids"] == damoxing.load_tokenizer(tmp_path / "bf16").encode("Hello world")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the atomic temp folder is gone
