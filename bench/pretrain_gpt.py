"""Causal-LM training step: damoxing's decoder + `clm` task vs transformers' GPT2LMHeadModel.

Same shape (gpt-mini: dim 256, 4 layers, 4 heads, MLP 1024, GPT-2 vocabulary 50257), same batch, sequence
length, precision (fp32 unless --bf16), dropout (0), optimiser (AdamW) and data. Steps alternate between
the two models so that a busy machine slows both alike. Prints tokens/s of each and the ratio.

    python bench/pretrain_gpt.py [--batch 8] [--seq 256] [--steps 6] [--bf16] [--compile]
    python bench/pretrain_gpt.py --quick        # a few seconds: shows it runs, measures little

What differs, on purpose: our loss projects hidden states to the vocabulary in chunks of 2048 rows with the
gradient computed in the same pass (tasks.linear_cross_entropy), so the (B, T, V) logits and their gradient
are never stored; transformers materialises the logits, copies the shifted slice and runs cross-entropy.
"""

from __future__ import annotations

import argparse

import torch
from side_by_side import compare  # bench/side_by_side.py

from damoxing.models import create_model, preset
from damoxing.tasks import TASKS

QUICK = {"batch": 2, "seq": 64, "steps": 2, "rounds": 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model (transformers stays eager)")
    ap.add_argument("--quick", action="store_true", help=f"a short smoke run (make bench): {QUICK}")
    a = ap.parse_args()
    if a.quick:
        ap.set_defaults(**QUICK)
        a = ap.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = preset("gpt-mini")
    ours = create_model(cfg).train()
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.max_positions,
            n_embd=cfg.dim,
            n_layer=cfg.layers,
            n_head=cfg.heads,
            n_inner=cfg.mlp_dim,
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            attn_implementation="sdpa",
        )
    ).train()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq))
    batch = {"input_ids": ids, "labels": ids}
    task = TASKS.get("clm")
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    amp = lambda: torch.autocast("cpu", dtype=dtype, enabled=a.bf16)
    fwd = torch.compile(lambda m, b: task.loss(m, b)) if a.compile else task.loss

    def step_ours(opt=torch.optim.AdamW(ours.parameters(), lr=1e-4)):  # noqa: B008
        with amp():
            out = fwd(ours, batch)
            loss = out.losses["clm"] / task.targets(batch)["clm"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step_hf(opt=torch.optim.AdamW(hf.parameters(), lr=1e-4)):  # noqa: B008
        with amp():
            loss = hf(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    title = (
        f"GPT causal-LM step, batch {a.batch} x seq {a.seq}, {'bf16' if a.bf16 else 'fp32'}, "
        f"{torch.get_num_threads()} threads, {cfg.layers} layers dim {cfg.dim} vocab {cfg.vocab_size}"
    )
    compare(title, step_ours, step_hf, a.batch * a.seq, a.steps, a.rounds)


if __name__ == "__main__":
    main()
