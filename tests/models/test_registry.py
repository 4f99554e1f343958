"""Every family x preset builds, runs a forward pass, and round-trips through save and load.

A new family or preset registered in damoxing.models is checked here automatically. Full-size presets
are built on the meta device (no memory, no time); the forward pass and the round trip run on the same
architecture shrunk to hidden 32 and 2 layers (images: 16x16 pixels), with every head kind the Hugging
Face layout (or damoxing's own model types in it) can hold.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import damoxing
from damoxing.errors import CheckpointError
from damoxing.io.hf import architecture_for
from damoxing.models import FAMILIES, PRESETS, create_model, family_of, preset
from damoxing.models.base import ModelBase

HEADS = {
    "encoder": ("none", "mlm", "pretraining", "sequence", "token"),
    "decoder": ("lm", "none", "sequence", "token"),
    "vit": ("none", "sequence"),
    "cnn": ("none", "sequence"),
    "mlp": ("none", "sequence"),
    "seq2seq": ("lm", "none"),
}
IMAGE_FAMILIES = ("vit", "cnn", "mlp")  # they read pixel_values (B, C, H, W), not token ids


def test_every_family_has_heads_listed_here():
    assert set(FAMILIES.names()) <= set(HEADS), "a new family: list its head kinds in HEADS"


def shrink(config):
    """The preset's architecture at hidden 32, 2 layers (the grouped-query ratio kept where it divides);
    image families at 16x16 pixels."""
    family = family_of(config)
    if family == "vit":
        return dataclasses.replace(config, image_size=16, patch_size=4, dim=32, layers=2, heads=4, mlp_dim=64)
    if family == "cnn":
        return dataclasses.replace(
            config, image_size=16, widths=(8, 16), depths=(1, 1), pool_size=2, fc_dims=(32,) if config.fc_dims else ()
        )
    if family == "mlp":
        return dataclasses.replace(config, input_dim=16 * 16, hidden=(32, 32), image_size=16)
    group = config.heads // (getattr(config, "kv_heads", None) or config.heads)
    changes = {"dim": 32, "layers": 2, "heads": 4, "mlp_dim": 64, "vocab_size": 101, "max_positions": 64}
    if hasattr(config, "kv_heads"):
        changes.update(kv_heads=max(1, 4 // group) if group > 1 else None, head_dim=None)
    if hasattr(config, "decoder_start_id"):  # encoder-decoder: 2 decoder blocks too, special ids inside the vocabulary
        changes.update(decoder_layers=None, pad_id=0, eos_id=1, decoder_start_id=0, head_dim=None)
    return dataclasses.replace(config, **changes)


def blocks(config) -> int:
    """Blocks FSDP shards: the encoder's and the decoder's in an encoder-decoder model."""
    return config.layers + (getattr(config, "num_decoder_layers", 0))


def run(model, inputs, mask, decoder_ids):
    """(features, head output): an encoder-decoder model's head reads the decoder's states."""
    hidden = model.forward_features(*inputs, *([mask] if mask is not None else []))
    if family_of(model.config) == "seq2seq":
        return hidden, model.forward_head(model.decode(decoder_ids, hidden, mask))
    return hidden, model.forward_head(hidden, mask)


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_builds_at_full_size(name):
    config = preset(name)
    with torch.device("meta"):
        model = create_model(config)
    assert isinstance(model, ModelBase) and model.num_parameters() > 50_000
    assert family_of(config) in HEADS and len(model.fsdp_units()) == blocks(config)


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_runs_and_round_trips_with_every_savable_head(name, tmp_path):
    base = shrink(preset(name))
    family = family_of(base)
    g = torch.Generator().manual_seed(0)
    if family in IMAGE_FAMILIES:
        inputs, mask = (torch.randn(2, getattr(base, "channels", 1), 16, 16, generator=g),), None
    else:
        inputs, mask = (torch.randint(3, 101, (2, 7), generator=g),), torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    decoder_ids = inputs[0][:, :4] if family == "seq2seq" else None
    saved = 0
    for head in HEADS[family]:
        config = dataclasses.replace(
            base, head=head, num_labels=3 if head in ("sequence", "token") else base.num_labels
        )
        if family == "encoder" and head in ("pretraining", "sequence"):
            config = dataclasses.replace(config, pooler=True, pooling="pooler")
        torch.manual_seed(0)
        model = create_model(config).eval()
        with torch.no_grad():
            hidden, out = run(model, inputs, mask, decoder_ids)
        outs = out if isinstance(out, tuple) else (out,)  # the pretraining head gives (MLM, NSP) logits
        assert all(torch.isfinite(o).all() for o in outs)
        assert hidden.shape == {"vit": (2, 17, 32), "cnn": (2, 16, 4, 4), "mlp": (2, 32)}.get(family, (2, 7, 32))
        assert model.pool(hidden, mask).shape == (2, model.config.dim)
        try:
            architecture_for(config)
        except CheckpointError:
            continue  # no Hugging Face architecture holds this head on this family (e.g. Llama token heads)
        folder = tmp_path / head
        damoxing.save(model, None, folder)
        loaded = damoxing.load(folder)
        expected = model.config
        if family == "encoder" and head not in ("pretraining", "sequence"):
            # BertModel / BertForMaskedLM / BertForTokenClassification do not record the pooling, and the
            # last two hold no pooler: the loaded model reads [CLS] and keeps a pooler only if the file has one
            expected = dataclasses.replace(expected, pooler=loaded.config.pooler, pooling=loaded.config.pooling)
        if family == "seq2seq" and head == "none":  # T5Model / MarianModel hold no output layer to describe
            expected = dataclasses.replace(
                expected, **{k: getattr(loaded.config, k) for k in ("tie_embeddings", "scale_output", "logits_bias")}
            )
        assert loaded.config == expected
        ours, theirs = model.state_dict(), loaded.state_dict()
        assert theirs.keys() <= ours.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
        with torch.no_grad():
            _, again = run(loaded, inputs, mask, decoder_ids)
        again = again if isinstance(again, tuple) else (again,)
        assert all(torch.equal(a, o) for a, o in zip(again, outs))  # same weights, same ops: bitwise
        saved += 1
    assert saved >= 2, f"{name}: fewer than two head kinds could be saved"
