"""Encoder-decoder models (T5 in both layouts, Marian) against `transformers`, and the decoding cache.

Seeded random `transformers` models are saved to temporary folders, loaded by damoxing and compared in
float64 on both sides on the same padded batch. T5's RMSNorm computes its variance in float32 inside
transformers, so T5 logits agree to about 1e-6, not to float64 rounding; the bound is the issue's 1e-4.
For decoding, tiny models are first taught to reverse short sequences (so their outputs end at different
lengths and beams finish at different steps) and greedy and 4-beam outputs must be the same tokens.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import damoxing
from damoxing.inference.config import GenerationConfig
from damoxing.inference.seq2seq import generate_seq2seq
from damoxing.io.checkpoint import convert
from damoxing.models import create_model, preset

V = 24  # a small vocabulary: taught models then end their outputs at varied lengths


def randomize_norms(model):
    with torch.no_grad():  # norms start at 1: random values show a mixed-up norm
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def hf_t5(transformers, layout: str, vocab: int = V, decoder_layers: int = 3):
    torch.manual_seed(0)
    extra = {"feed_forward_proj": "gated-gelu"} if layout == "v1.1" else {}
    config = transformers.T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=decoder_layers,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        decoder_start_token_id=0,
        **extra,
    )
    return randomize_norms(transformers.T5ForConditionalGeneration(config).eval())


def hf_marian(transformers, vocab: int = V):
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=vocab,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=vocab - 1,
        decoder_start_token_id=vocab - 1,
        eos_token_id=0,
        forced_eos_token_id=0,
        activation_function="swish",
        scale_embedding=True,
        dropout=0.0,
    )
    model = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.uniform_(-0.5, 0.5)
    return randomize_norms(model)


def save_v11_as_published(model, folder):
    """T5 v1.1 as the Hub publishes it: an untied lm_head in the file and tie_word_embeddings: false.

    (transformers 5 always ties T5's lm_head on creation, so the folder is written by hand.)"""
    from safetensors.torch import save_file

    state = {k: v.clone().contiguous() for k, v in model.state_dict().items() if "embed_tokens" not in k}
    state["lm_head.weight"] = torch.randn(state["shared.weight"].shape, generator=torch.Generator().manual_seed(5))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("scale_decoder_outputs", None)
    config.update(tie_word_embeddings=False, architectures=["T5ForConditionalGeneration"])
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def folders(transformers, tmp_path_factory):
    """name -> a Hugging Face folder written by transformers (T5 v1.1: as published)."""
    out = {}
    for name, model in (("t5", hf_t5(transformers, "v1.0")), ("marian", hf_marian(transformers))):
        out[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(out[name])
    out["t5-v1.1"] = save_v11_as_published(hf_t5(transformers, "v1.1"), tmp_path_factory.mktemp("t5v11"))
    return out


def source_batch(pad: int, vocab: int = V):
    """Three sources of 9 tokens, the second padded after 6 (with the pad id and a 0 in the mask)."""
    ids = torch.randint(3, vocab - 1, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:], ids[1, 6:] = 0, pad
    return ids, mask


@pytest.mark.parametrize("name", ["t5", "t5-v1.1", "marian"])
def test_logits_equal_transformers_on_a_padded_batch(name, folders, transformers):
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(folders[name]).eval().double()
    ours = damoxing.load(folders[name]).double()
    assert ours.config.tie_embeddings == (name != "t5-v1.1") and ours.config.scale_output == (name == "t5")
    ids, mask = source_batch(ours.config.pad_id)
    target = torch.randint(3, V - 1, (3, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        got = ours(ids, mask, target)
    assert got.shape == expected.shape == (3, 5, V)
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["t5", "t5-v1.1", "marian"])
def test_round_trips_both_ways(name, folders, transformers, tmp_path):
    """transformers -> damoxing -> save -> transformers gives the same logits; so does damoxing's own file."""
    ours = damoxing.load(folders[name])
    damoxing.save(ours, None, tmp_path / "ours")
    again = damoxing.load(tmp_path / "ours")
    assert again.config == ours.config
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), again.state_dict().values()))
    original = transformers.AutoModelForSeq2SeqLM.from_pretrained(folders[name]).eval().double()
    reloaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval().double()
    ids, mask = source_batch(ours.config.pad_id)
    target = torch.randint(3, V - 1, (3, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = original(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        b = reloaded(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
    assert torch.equal(a, b)
    convert(folders[name], tmp_path / "converted")  # the `damoxing convert` path
    assert damoxing.load(tmp_path / "converted").config == ours.config


@pytest.mark.parametrize("name", ["transformer-small", "t5-small", "t5-v1.1-small", "marian-base"])
def test_fresh_presets_load_in_transformers_with_the_same_logits(name, transformers, tmp_path):
    config = dataclasses.replace(
        preset(name),
        vocab_size=V,
        dim=32,
        layers=2,
        decoder_layers=1,
        heads=4,
        head_dim=None,
        mlp_dim=64,
        max_positions=64,
        pad_id=V - 1,
        eos_id=0,
        decoder_start_id=V - 1,
    )
    torch.manual_seed(0)
    ours = randomize_norms(create_model(config).eval())
    if config.logits_bias:
        torch.nn.init.uniform_(ours.head.proj.bias, -0.5, 0.5)
    damoxing.save(ours, None, tmp_path)
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval().double()
    ours = ours.double()
    ids, mask = source_batch(config.pad_id)
    target = torch.randint(3, V - 1, (3, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = ours(ids, mask, target) - theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
    assert diff.abs().max().item() <= 1e-4


# ---------------------------------------------------------------------- decoding
def teach(model, start: int, eos: int, lr: float, steps: int = 150):
    """Train a transformers model a little to reverse sequences of 2-7 tokens, so that it ends its outputs
    (with eos) at lengths that depend on the source."""
    g = torch.Generator().manual_seed(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is many times faster on a busy machine
    for _ in range(steps):
        lengths = torch.randint(2, 8, (32,), generator=g)
        sources = [torch.randint(3, V - 1, (int(n),), generator=g) for n in lengths]
        src = torch.full((32, 8), start)
        tgt = torch.full((32, 9), -100)
        for i, s in enumerate(sources):
            src[i, : len(s)] = s
            tgt[i, : len(s) + 1] = torch.cat([s.flip(0), torch.tensor([eos])])
        loss = model(input_ids=src, attention_mask=(torch.arange(8) < lengths[:, None]).long(), labels=tgt).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def taught(transformers, tmp_path_factory):
    """name -> (transformers model, damoxing model), both float64, after a little training."""
    out = {}
    for name, model, lr in (
        ("t5", hf_t5(transformers, "v1.0", decoder_layers=2), 3e-3),
        ("marian", hf_marian(transformers), 1e-3),
    ):
        model = teach(model, model.config.pad_token_id, model.config.eos_token_id, lr)  # both start with pad
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        out[name] = model.double(), damoxing.load(folder).double()
    return out


def until_eos(row: torch.Tensor, eos: int) -> list[int]:
    """The tokens up to and including the first eos (what follows is padding, which differs by convention)."""
    row = row.tolist()
    return row[: row.index(eos) + 1] if eos in row else row


@pytest.mark.parametrize("name", ["t5", "marian"])
@pytest.mark.parametrize("beams,early_stopping", [(1, False), (4, False), (4, True), (4, "never")])
def test_greedy_and_beam_search_give_the_tokens_of_transformers(name, beams, early_stopping, taught, transformers):
    theirs, ours = taught[name]
    c = ours.config
    ids = torch.randint(3, V - 1, (6, 7), generator=torch.Generator().manual_seed(4))
    mask = (torch.arange(7) < torch.tensor([7, 2, 5, 3, 6, 4])[:, None]).long()
    ids = ids.masked_fill(mask == 0, c.pad_id)
    settings = {"max_new_tokens": 9, "num_beams": beams, "early_stopping": early_stopping}
    hf = transformers.GenerationConfig(
        do_sample=False,
        decoder_start_token_id=c.decoder_start_id,
        eos_token_id=c.eos_id,
        pad_token_id=c.pad_id,
        forced_eos_token_id=c.eos_id,
        bad_words_ids=[[c.pad_id]] if c.pad_id != c.eos_id else None,
        **settings,
    )
    expected = theirs.generate(input_ids=ids, attention_mask=mask, generation_config=hf)[:, 1:]
    got = generate_seq2seq(
        ours,
        ids,
        mask,
        GenerationConfig(
            **settings, forced_eos_token_id=c.eos_id, bad_token_ids=(c.pad_id,) if c.pad_id != c.eos_id else ()
        ),
    )
    rows = [until_eos(r, c.eos_id) for r in got]
    assert rows == [until_eos(r, c.eos_id) for r in expected]
    assert len({len(r) for r in rows}) >= 3  # outputs end at different lengths: the finishing logic is exercised
    assert all(r[-1] == c.eos_id for r in rows)


@pytest.mark.parametrize("name", ["transformer-small", "t5-small", "t5-v1.1-small", "marian-base"])
def test_cached_decoding_equals_the_full_forward_pass(name):
    config = dataclasses.replace(
        preset(name),
        vocab_size=V,
        dim=32,
        layers=2,
        heads=4,
        head_dim=None,
        mlp_dim=64,
        max_positions=64,
        pad_id=V - 1,
        eos_id=0,
        decoder_start_id=V - 1,
    )
    torch.manual_seed(0)
    model = randomize_norms(create_model(config)).double().eval()
    ids, mask = source_batch(config.pad_id)
    target = torch.randint(3, V - 1, (3, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids, mask, target)  # (B, T, V)
        memory = model.forward_features(ids, mask)
        cache = model.new_cache(memory, mask)
        steps = [model.forward_head(model.decode(target[:, :3], cache=cache))]  # a prefix of 3, then one at a time
        steps += [model.forward_head(model.decode(target[:, t : t + 1], cache=cache)) for t in range(3, 8)]
    assert cache.length == 8
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= 1e-12


@pytest.mark.parametrize("name", ["t5-small", "marian-base"])
def test_padding_the_source_never_changes_the_output(name):
    config = dataclasses.replace(
        preset(name),
        vocab_size=V,
        dim=32,
        layers=2,
        heads=4,
        head_dim=None,
        mlp_dim=64,
        max_positions=64,
        pad_id=V - 1,
        eos_id=0,
        decoder_start_id=V - 1,
    )
    torch.manual_seed(0)
    model = randomize_norms(create_model(config)).double().eval()
    source = torch.randint(3, V - 1, (1, 5), generator=torch.Generator().manual_seed(6))
    target = torch.randint(3, V - 1, (1, 4), generator=torch.Generator().manual_seed(7))
    padded = torch.cat([source, torch.full((1, 6), config.pad_id)], dim=1)
    padded_mask = (torch.arange(11) < 5).long()[None]
    with torch.no_grad():
        alone = model(source, torch.ones_like(source), target)
        with_pads = model(padded, padded_mask, target)
    assert (alone - with_pads).abs().max().item() <= 1e-12
    for beams in (1, 3):
        settings = GenerationConfig(max_new_tokens=6, num_beams=beams)
        assert torch.equal(
            generate_seq2seq(model, source, None, settings), generate_seq2seq(model, padded, padded_mask, settings)
        )


def test_converting_a_marian_folder_keeps_its_sentencepiece_tokenizer_files(folders, tmp_path):
    """Marian ships source.spm / target.spm / vocab.json and no tokenizer.json: convert copies them as they are."""
    import shutil

    src = tmp_path / "marian"
    shutil.copytree(folders["marian"], src)
    for name, data in (("source.spm", b"spm-src"), ("target.spm", b"spm-tgt"), ("vocab.json", b'{"<pad>": 0}')):
        (src / name).write_bytes(data)
    convert(src, tmp_path / "out")
    assert (tmp_path / "out" / "target.spm").read_bytes() == b"spm-tgt"
    assert (tmp_path / "out" / "vocab.json").is_file() and not (tmp_path / "out" / "tokenizer.json").exists()
    assert damoxing.load(tmp_path / "out").config == damoxing.load(src).config


@pytest.mark.parametrize("name", ["t5", "marian"])
@pytest.mark.parametrize("beams", [1, 3])
def test_the_shared_penalties_and_bans_give_the_tokens_of_transformers(name, beams, taught, transformers):
    """Seq2seq decoding takes decoders' GenerationConfig: its repetition penalty, n-gram ban and
    min_new_tokens act as transformers' on an encoder-decoder (over the decoder's tokens, start token included)."""
    theirs, ours = taught[name]
    c = ours.config
    ids = torch.randint(3, V - 1, (5, 6), generator=torch.Generator().manual_seed(7))
    mask = (torch.arange(6) < torch.tensor([6, 2, 5, 3, 4])[:, None]).long()
    ids = ids.masked_fill(mask == 0, c.pad_id)
    settings = {
        "max_new_tokens": 10,
        "num_beams": beams,
        "repetition_penalty": 1.5,
        "no_repeat_ngram_size": 2,
        "min_new_tokens": 3,
        "length_penalty": 0.8,
    }
    hf = transformers.GenerationConfig(
        do_sample=False,
        decoder_start_token_id=c.decoder_start_id,
        eos_token_id=c.eos_id,
        pad_token_id=c.pad_id,
        forced_eos_token_id=c.eos_id,
        **settings,
    )
    expected = theirs.generate(input_ids=ids, attention_mask=mask, generation_config=hf)[:, 1:]
    got = generate_seq2seq(ours, ids, mask, GenerationConfig(**settings, forced_eos_token_id=c.eos_id))
    assert [until_eos(r, c.eos_id) for r in got] == [until_eos(r, c.eos_id) for r in expected]
    assert all(len(until_eos(r, c.eos_id)) > 3 for r in got)  # min_new_tokens held the end token back


def test_a_source_target_or_decoding_past_max_positions_is_one_clear_config_error():
    """Sinusoidal positions end at model.max_positions: each side says its length, the limit and what to do."""
    from damoxing.errors import ConfigError

    config = dataclasses.replace(
        preset("transformer-small"), vocab_size=V, dim=32, layers=1, heads=4, mlp_dim=64, max_positions=16
    )
    config = dataclasses.replace(config, pad_id=V - 1, eos_id=0, decoder_start_id=V - 1)
    torch.manual_seed(0)
    model = create_model(config).eval()
    short = torch.randint(3, V - 1, (1, 16), generator=torch.Generator().manual_seed(1))
    long = torch.randint(3, V - 1, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model(short, None, short)  # 16 positions fit
        with pytest.raises(ConfigError, match=r"a source of 20 tokens .* 16 positions.*data\.max_length"):
            model(long, None, short)
        with pytest.raises(ConfigError, match=r"a target of 20 tokens .* 16 positions.*data\.max_length"):
            model(short, None, long)
    never_ends = GenerationConfig(max_new_tokens=40, bad_token_ids=(config.eos_id,))  # decodes every step
    with pytest.raises(ConfigError, match=r"position 17 of a model with 16 positions.*at most 16 new tokens"):
        generate_seq2seq(model, short, None, never_ends)
    fits = dataclasses.replace(never_ends, max_new_tokens=16)
    assert generate_seq2seq(model, short, None, fits).shape == (1, 16)
