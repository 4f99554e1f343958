"""Task functions: losses as sums over targets, MLM projected only at masked positions, chunked CE exact."""

import torch
import torch.nn.functional as F

from damoxing.data.collators import collate_clm
from damoxing.layers.losses import linear_cross_entropy
from damoxing.tasks import TASKS
from damoxing.training import TrainConfig, Trainer

from .tiny import NO_SAVE, VOCAB, FixedBatches, clm_blocks, mlm_nsp_batch, tiny_decoder, tiny_encoder

# The loss checks run in float64, where only summation order differs (eps 2.2e-16): a sum of n terms reordered moves
# by <= n * eps * sum|terms|. RTOL below bounds that for these sizes (n <= 64 rows x 97 classes) with 100x room.
RTOL = 100 * 64 * 97 * torch.finfo(torch.float64).eps


def _overfit(model, task, batch, tmp_path):
    cfg = TrainConfig(
        task=task,
        max_steps=120,
        lr=1e-2,
        warmup_steps=5,
        schedule="constant",
        weight_decay=0.0,
        log_every=10,
        precision="fp32",
        plot=False,
        tensorboard=False,
    )  # fp32: the same run on any CPU
    return Trainer(model, task, FixedBatches(batch), cfg, tmp_path, eval_data=FixedBatches(batch), **NO_SAVE).fit()


def test_overfit_one_batch_mlm_nsp(tmp_path):
    result = _overfit(tiny_encoder(), "mlm_nsp", mlm_nsp_batch(), tmp_path)
    assert result["eval"]["loss"] < 0.05, result
    assert result["eval"]["mlm_acc"] == 1.0 and result["eval"]["nsp_acc"] == 1.0


def test_overfit_one_batch_clm(tmp_path):
    batch = collate_clm()(clm_blocks(8), None)
    result = _overfit(tiny_decoder(), "clm", batch, tmp_path)
    assert result["eval"]["loss"] < 0.05, result
    assert result["eval"]["perplexity"] < 1.06


def test_linear_cross_entropy_matches_full_logits():
    torch.manual_seed(0)
    proj = torch.nn.Linear(16, 50).double()
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (37,))
    ref = F.cross_entropy(proj(h), y, reduction="sum")
    ref.backward()
    expected = h.grad.clone(), proj.weight.grad.clone(), proj.bias.grad.clone()
    h.grad = proj.weight.grad = proj.bias.grad = None
    ours = linear_cross_entropy(h, proj, y, chunk=8)  # 5 chunks, the last one short
    (ours * 2).backward()  # the upstream gradient is applied
    assert ours.dtype == torch.float64  # float64 in, float64 out: the check is exact up to summation order
    torch.testing.assert_close(ours, ref, rtol=RTOL, atol=0)
    for got, want in zip((h.grad, proj.weight.grad, proj.bias.grad), expected):  # sums of 37 rows of O(1) terms:
        torch.testing.assert_close(got, 2 * want, rtol=RTOL, atol=37 * RTOL)  # near-zero entries need a floor


def test_clm_loss_equals_shifted_full_cross_entropy():
    model = tiny_decoder().double()
    batch = collate_clm()(clm_blocks(4), None)
    batch["labels"][0, 5] = -100  # an ignored target is skipped
    out = TASKS.get("clm").loss(model, batch)
    logits = model(batch["input_ids"])
    ref = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), reduction="sum"
    )
    torch.testing.assert_close(out.losses["clm"], ref, rtol=RTOL, atol=0)
    assert int(TASKS.get("clm").targets(batch)["clm"]) == 4 * 15 - 1


def test_mlm_projects_only_masked_positions():
    model, batch = tiny_encoder().double(), mlm_nsp_batch()
    rows = []
    hook = model.head.mlm.decoder.register_forward_hook(lambda m, i, o: rows.append(o.shape[0]))
    out = TASKS.get("mlm_nsp").loss(model, batch)
    hook.remove()
    n_masked = int((batch["labels"] != -100).sum())
    assert rows == [n_masked]  # (N_masked, V), never (B, T, V)
    logits, _ = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    where = batch["labels"] != -100
    ref = F.cross_entropy(logits[where], batch["labels"][where], reduction="sum")
    torch.testing.assert_close(out.losses["mlm"], ref, rtol=RTOL, atol=0)


def test_linear_cross_entropy_with_label_smoothing_matches_full_logits():
    torch.manual_seed(0)
    proj = torch.nn.Linear(16, 50).double()
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (37,))
    ref = F.cross_entropy(proj(h), y, reduction="sum", label_smoothing=0.1)
    ref.backward()
    expected = h.grad.clone(), proj.weight.grad.clone(), proj.bias.grad.clone()
    h.grad = proj.weight.grad = proj.bias.grad = None
    ours = linear_cross_entropy(h, proj, y, chunk=8, label_smoothing=0.1)
    ours.backward()
    # the chunked path computes softmax in float32: errors of float32 rounding on values of order 1-100
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)
    for got, want in zip((h.grad, proj.weight.grad, proj.bias.grad), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_seq2seq_target_loss_equals_cross_entropy_of_the_full_logits():
    from damoxing.data.collators import Seq2SeqCollator
    from damoxing.models import create_model, preset
    from damoxing.tasks import get_task

    torch.manual_seed(0)
    model = create_model(
        preset("t5-small", vocab_size=VOCAB, dim=32, layers=2, heads=4, mlp_dim=64, dropout=0.0, attention_dropout=0.0)
    )
    g = torch.Generator().manual_seed(1)
    examples = [
        {
            "input_ids": torch.randint(3, VOCAB, (n,), generator=g).tolist(),
            "labels": torch.randint(3, VOCAB, (m,), generator=g).tolist() + [1],
        }
        for n, m in ((7, 4), (3, 9))
    ]
    batch = Seq2SeqCollator(pad_id=0, decoder_start_id=0)(examples)
    task = get_task("translation").configure({"label_smoothing": 0.1})
    out = task.loss(model, batch)
    logits = model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"])
    where = batch["labels"] != -100
    ref = F.cross_entropy(logits[where], batch["labels"][where], reduction="sum", label_smoothing=0.1)
    torch.testing.assert_close(out.losses["loss"], ref, rtol=1e-5, atol=1e-4)
    assert int(task.targets(batch)["loss"]) == 5 + 10 and task.items(batch) == 10 + 15
