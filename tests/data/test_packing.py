"""Packed classification batches: the layout, and logits, loss and gradients equal to the unpacked batch."""

from types import SimpleNamespace

import pytest
import torch

import damoxing
from damoxing.data import bundled_path, read_records
from damoxing.data.collators import PackingCollator, PaddingCollator, pack_rows
from damoxing.errors import ConfigError
from damoxing.recipes.finetune import batch_layout
from damoxing.tasks import get_task
from damoxing.training.batches import Batches, choose_layout

# float64: packing changes only the order of sums (attention over the masked-out keys adds exact zeros), so the
# differences are a few ulps of the activations (~1e-16 each) through a few layers; 1e-10 leaves ample room and
# is far below float32 rounding (1e-7), so a leak across segments (~1e-2) cannot hide in it
ATOL = 1e-10


def random_examples(n: int, seed: int, pair: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, length in enumerate(torch.randint(2, 20, (n,), generator=g).tolist()):
        types = [0] * (length // 2) + [1] * (length - length // 2) if pair else [0] * length
        ids = torch.randint(1, 100, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "token_type_ids": types, "label": i % 3})
    return out


def tiny_encoder(pooling: str, position: str = "learned") -> torch.nn.Module:
    torch.manual_seed(0)
    config = damoxing.preset(
        "bert-tiny",
        vocab_size=100,
        dim=32,
        layers=2,
        heads=2,
        mlp_dim=64,
        max_positions=64,
        pooling=pooling,
        position=position,
        head="sequence",
        num_labels=3,
        dropout=0.0,
        attention_dropout=0.0,
        classifier_dropout=0.0,
    )
    return damoxing.create_model(config).double()


def test_pack_rows_places_every_example_once_within_capacity():
    lengths = [5, 17, 3, 9, 12, 1, 8, 8, 30]
    rows = pack_rows(lengths, capacity=20)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 20 for r in rows if len(r) > 1)
    assert [8] in rows  # longer than a row: a row of its own
    assert len(rows) == 5  # 30 alone, the other 63 tokens in ceil(63 / 20) = 4 rows
    fills = sorted(sum(lengths[i] for i in r) for r in rows if r != [8])
    assert fills[-1] - fills[0] <= max(lengths[:8])  # balanced: the fullest row is what the others pad to
    assert all(r == sorted(r) for r in rows)  # batch order kept inside a row


def test_packed_batch_layout_restarts_positions_and_unpacks_to_the_padded_batch():
    examples = random_examples(9, seed=1, pair=True)
    packed = PackingCollator(pad_id=0, capacity=40)(examples)
    padded = PaddingCollator(pad_id=0)(examples)
    R, L = packed["input_ids"].shape
    assert R < len(examples) and L <= 40
    assert int(packed["attention_mask"].sum()) == int(padded["attention_mask"].sum())  # same real tokens
    flat = lambda key: packed[key].flatten()[packed["unpack_index"]] * packed["unpack_mask"]
    assert torch.equal(flat("input_ids"), padded["input_ids"])
    assert torch.equal(flat("token_type_ids"), padded["token_type_ids"])
    assert torch.equal(flat("segment_ids"), torch.arange(9)[:, None] * padded["attention_mask"])
    positions = torch.arange(padded["input_ids"].shape[1]).expand_as(padded["input_ids"])
    assert torch.equal(flat("position_ids"), positions * padded["attention_mask"])  # restart at 0 per example
    assert torch.equal(packed["labels"], padded["labels"])
    assert torch.equal(packed["attention_mask"], (packed["segment_ids"] >= 0).long())


@pytest.mark.parametrize(("pooling", "position"), [("pooler", "learned"), ("cls", "rope"), ("mean", "learned")])
def test_packed_logits_loss_and_gradients_equal_unpacked_in_float64(pooling, position):
    task = get_task("classification")
    model = tiny_encoder(pooling, position)
    examples = random_examples(11, seed=2, pair=True)
    packed = PackingCollator(pad_id=0, capacity=48)(examples)
    padded = PaddingCollator(pad_id=0)(examples)
    assert packed["input_ids"].shape[0] < len(examples)  # several examples share a row
    torch.testing.assert_close(task.outputs(model, packed), task.outputs(model, padded), rtol=0, atol=ATOL)

    grads = []
    for batch in (packed, padded):
        model.zero_grad()
        loss = task.loss(model, batch).losses["loss"]
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (loss_p, grad_p), (loss_u, grad_u) = grads
    torch.testing.assert_close(loss_p, loss_u, rtol=0, atol=ATOL)
    assert len(grad_p) == len(grad_u) > 0
    for gp, gu in zip(grad_p, grad_u):
        torch.testing.assert_close(gp, gu, rtol=0, atol=ATOL)
    assert any(g.abs().max() > 1e-3 for g in grad_p)  # the gradients compared are not all zero


def test_a_leak_across_segments_would_show():
    """The comparison above can fail: without the block-diagonal mask the packed logits differ."""
    task = get_task("classification")
    model = tiny_encoder("cls")
    examples = random_examples(11, seed=2)
    packed = PackingCollator(pad_id=0, capacity=48)(examples)
    leaky = {**packed, "segment_ids": packed["segment_ids"].clamp(min=0) * 0}  # one segment per row
    assert (task.outputs(model, leaky) - task.outputs(model, PaddingCollator(0)(examples))).abs().max() > 1e-3


def test_packed_minilm_logits_equal_unpacked_on_bbc_headlines(minilm_dir):
    model = damoxing.load(minilm_dir)
    model.head = model.make_head("sequence", 5)
    model = model.double().eval()  # no dropout: the same function of the input both ways
    tokenizer = damoxing.load_tokenizer(minilm_dir)
    task = get_task("classification")
    records = [r for _, r in zip(range(12), read_records(bundled_path("bbc_news", "test"), label_column="label"))]
    headlines = [{"text": r["text"].split("\n")[0], "label": i % 5} for i, r in enumerate(records)]
    examples = task.examples(tokenizer, headlines, max_length=128)
    packed = PackingCollator(tokenizer.pad_id, capacity=128)(examples)
    padded = PaddingCollator(tokenizer.pad_id)(examples)
    assert packed["input_ids"].shape[0] < len(examples)
    with torch.no_grad():
        torch.testing.assert_close(task.outputs(model, packed), task.outputs(model, padded), rtol=0, atol=ATOL)


def test_packed_batches_resume_at_any_batch():
    examples = random_examples(40, seed=3)
    source = Batches(examples, lambda ex, g: PackingCollator(0, 32)(ex), batch_size=8, seed=5, drop_last=False)
    full = list(source.batches(epoch=1))
    resumed = list(source.batches(epoch=1, start=2))
    assert len(resumed) == len(full) - 2
    for a, b in zip(full[2:], resumed):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_choose_layout_packs_short_text_and_leaves_full_rows_alone():
    short = [int(n) for n in torch.randint(8, 40, (200,), generator=torch.Generator().manual_seed(0))]
    layout, cost = choose_layout(short, batch_size=16, capacity=128)
    assert layout == "packed" and cost["packed"] < 0.8 * cost["plain"]
    assert choose_layout(short, 16, 128, can_pack=False)[0] == "grouped"  # e.g. a decoder, or token tags
    assert choose_layout(short, 16, 128, group_by_length=True)[0] == "grouped"  # asked for: kept
    assert choose_layout(short, 16, 128, packing=False, group_by_length=False)[0] == "plain"
    full = [128] * 190 + [100] * 10  # articles truncated to max_length: nothing to save
    assert choose_layout(full, 16, 128)[0] == "plain"
    assert choose_layout(full, 16, 128, packing=True)[0] == "packed"


def test_packing_on_a_task_that_cannot_pack_is_a_config_error():
    examples = random_examples(20, seed=4)
    data = SimpleNamespace(packing=True, group_by_length="auto", max_length=64)
    train = SimpleNamespace(batch_size=8, seed=0)
    with pytest.raises(ConfigError, match="data.packing"):
        batch_layout(get_task("token_classification"), tiny_encoder("cls"), examples, data, train)
    assert batch_layout(get_task("classification"), tiny_encoder("cls"), examples, data, train) == "packed"


def test_data_packing_takes_auto_true_or_false(tmp_path):
    from damoxing.finetune.config import load_finetune_config

    csv = tmp_path / "train.csv"
    csv.write_text("text,label\na b,x\nc,y\n", encoding="utf-8")
    base = {"model": {"preset": "bert-tiny"}, "data": {"train": [str(csv)]}}
    assert load_finetune_config(base).data.packing == "auto"
    assert load_finetune_config(base, ["data.packing=false"]).data.packing is False
    with pytest.raises(ConfigError, match="data.packing"):
        load_finetune_config(base, ["data.packing=sometimes"])
