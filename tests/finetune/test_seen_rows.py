"""finetune/rows.py: full fine-tuning trains the token rows the training data holds, and that is the same AdamW
as over the whole table; checkpoints and the returned model see a plain embedding."""

import json

import pytest
import torch
from torch import nn

import damoxing
from damoxing.finetune import rows as seen
from damoxing.finetune.rows import SeenRows, merge_seen_rows, train_seen_rows
from damoxing.recipes.finetune import finetune
from damoxing.training.optim import decay_flags, parameter_groups

from .conftest import config

EPS64 = torch.finfo(torch.float64).eps


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(64, 8, padding_idx=0)
        self.out = nn.Linear(8, 3)

    def forward(self, ids):
        return self.out(self.tokens(ids).mean(1))


def _batches(n=12):
    g = torch.Generator().manual_seed(5)
    vocab = torch.tensor([0, 3, 4, 9, 10, 11, 20, 21, 33, 40, 41, 50])  # 12 of the 64 rows, the padding row among them
    return [
        (vocab[torch.randint(0, 12, (4, 6), generator=g)], torch.randint(0, 3, (4,), generator=g)) for _ in range(n)
    ]


def _fit(model, batches):
    opt = torch.optim.AdamW(parameter_groups(model, 0.01), lr=0.05)
    losses = []
    for ids, y in batches:
        loss = nn.functional.cross_entropy(model(ids), y)
        loss.backward()
        nn.utils.clip_grad_norm_([p for p in model.parameters()], 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_training_the_seen_rows_is_adamw_over_the_whole_table():
    torch.manual_seed(0)
    plain = Toy().double()
    start = plain.tokens.weight.detach().clone()
    compact = Toy().double()
    compact.load_state_dict(plain.state_dict())
    batches = _batches()
    ids = torch.cat([b[0].flatten() for b in batches])
    assert train_seen_rows(compact, ids, names=("tokens",)) == ["tokens"]
    assert isinstance(compact.tokens, SeenRows) and len(compact.tokens.rows) == 12
    assert decay_flags(compact)[id(compact.tokens.trained)] is False  # an embedding table: no weight decay
    a, b = _fit(plain, batches), _fit(compact, batches)
    assert a[-1] < a[0]  # it trained
    table = compact.tokens.merged()
    unseen = torch.ones(64, dtype=torch.bool)
    unseen[compact.tokens.rows] = False
    assert torch.equal(plain.tokens.weight[unseen], start[unseen])  # AdamW never moved them
    assert torch.equal(table[unseen], start[unseen])
    assert not torch.allclose(table[~unseen], start[~unseen])
    # the same arithmetic but for the order of the gradient norm's sum: a relative n*eps on the clip factor
    # over 12 steps of size lr = 0.05 (n = 64*8 + 27 terms)
    tol = 12 * 0.05 * (64 * 8 + 27) * EPS64 * 10
    torch.testing.assert_close(table, plain.tokens.weight.detach(), rtol=0, atol=tol)
    torch.testing.assert_close(compact.out.weight, plain.out.weight, rtol=0, atol=tol)
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=0, atol=tol)


def test_the_swap_is_invisible_to_state_dicts_and_merges_back():
    torch.manual_seed(1)
    model = Toy()
    train_seen_rows(model, torch.tensor([1, 2, 3]), names=("tokens",))
    with torch.no_grad():
        model.tokens.trained.add_(1.0)
    state = model.state_dict()
    assert set(state) == {"tokens.weight", "out.weight", "out.bias"}  # the embedding's own key, whole table
    other = Toy()
    train_seen_rows(other, torch.tensor([1, 2, 3]), names=("tokens",))
    other.load_state_dict(state)
    assert torch.equal(other.tokens.merged(), state["tokens.weight"])
    assert torch.equal(other.tokens.trained, state["tokens.weight"][[1, 2, 3]])
    ids = torch.tensor([[1, 7, 3]])  # 7 was never seen: its frozen row
    assert torch.equal(model.tokens(ids)[0], state["tokens.weight"][[1, 7, 3]])
    assert merge_seen_rows(model) == ["tokens"]
    assert type(model.tokens) is nn.Embedding and model.tokens.padding_idx == 0
    assert torch.equal(model.tokens.weight, state["tokens.weight"]) and model.tokens.weight.requires_grad


def test_tied_tables_and_mostly_seen_tables_are_left_alone():
    torch.manual_seed(0)
    decoder = damoxing.create_model(
        damoxing.DecoderConfig(vocab_size=97, dim=32, layers=1, heads=2, mlp_dim=64, tie_embeddings=True)
    )
    names = [n for n, m in decoder.named_modules() if isinstance(m, nn.Embedding)]
    assert (
        names and train_seen_rows(decoder, torch.tensor([1, 2]), names=tuple(n.rpartition(".")[2] for n in names)) == []
    )
    assert train_seen_rows(Toy(), torch.arange(40), names=("tokens",)) == []  # 40 of 64 rows: not worth it


def test_full_finetuning_swaps_during_training_and_returns_a_plain_model(
    make_encoder, tokenizer, topic_data, tmp_path, monkeypatch
):
    monkeypatch.setattr(seen, "WORTH_IT", 1.0)  # the tiny vocabulary is mostly seen: swap anyway
    swapped = []
    real = seen.train_seen_rows

    def spy(model, ids, *a, **k):
        names = real(model, ids, *a, **k)
        swapped.append((names, model.embed.tokens))
        return names

    monkeypatch.setattr("damoxing.recipes.finetune.train_seen_rows", spy)
    cfg = config(topic_data, "full")
    cfg["train"].update(epochs=2, plot=False, tensorboard=False)
    result = finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    ((names, module),) = swapped
    assert names == ["embed.tokens"] and isinstance(module, SeenRows)
    assert type(result.model.embed.tokens) is nn.Embedding  # merged back
    assert result.metrics["accuracy"] > topic_data["majority"] + 0.1  # it learned
    reloaded = damoxing.load(tmp_path / "run" / "model")
    assert torch.equal(reloaded.embed.tokens.weight, result.model.embed.tokens.weight)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    weights = damoxing.load(tmp_path / "run" / best["checkpoint"]).embed.tokens.weight
    assert torch.equal(weights, result.model.embed.tokens.weight)  # the kept model is the best checkpoint's


@pytest.mark.parametrize("method", ["head", "lora"])
def test_other_methods_do_not_swap(make_encoder, tokenizer, topic_data, tmp_path, monkeypatch, method):
    calls = []
    monkeypatch.setattr("damoxing.recipes.finetune.train_seen_rows", lambda *a, **k: calls.append(1) or [])
    cfg = config(topic_data, method)
    cfg["train"].update(epochs=1, plot=False, tensorboard=False)
    finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    assert calls == []
