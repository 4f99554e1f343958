"""BERT pretraining step (masked-LM + next-sentence): damoxing's encoder + `mlm_nsp` task vs transformers'
BertForPreTraining.

Same shape (bert-mini: dim 256, 4 layers, 4 heads, MLP 1024, BERT vocabulary 30522), batch, sequence length,
15% masked tokens, precision (fp32 unless --bf16), dropout (0.1), optimiser (AdamW) and data. Steps alternate
between the two models so that a busy machine slows both alike. Prints tokens/s of each and the ratio.

    python bench/pretrain_bert.py [--batch 16] [--seq 128] [--steps 6] [--bf16]
    python bench/pretrain_bert.py --quick       # a few seconds: shows it runs, measures little

What differs, on purpose: our MLM loss gathers the hidden states of the masked positions before the head
(transform, LayerNorm, vocabulary projection), so the head runs on ~15% of the tokens; transformers runs it
on every position and then ignores 85% of the logits. Both use PyTorch's SDPA attention.
"""

from __future__ import annotations

import argparse

import torch
from side_by_side import compare  # bench/side_by_side.py

from damoxing.models import create_model, preset
from damoxing.tasks import TASKS

QUICK = {"batch": 4, "seq": 64, "steps": 2, "rounds": 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--quick", action="store_true", help=f"a short smoke run (make bench): {QUICK}")
    a = ap.parse_args()
    if a.quick:
        ap.set_defaults(**QUICK)
        a = ap.parse_args()
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    cfg = preset("bert-mini", head="pretraining")
    ours = create_model(cfg).train()
    hf = BertForPreTraining(
        BertConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.dim,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.mlp_dim,
            max_position_embeddings=cfg.max_positions,
            hidden_act="gelu",
            attn_implementation="sdpa",
        )
    ).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, cfg.vocab_size, (a.batch, a.seq), generator=g)
    masked = torch.rand(a.batch, a.seq, generator=g) < 0.15
    labels = torch.where(masked, ids, -100)
    inputs = ids.masked_fill(masked, 103)
    types = (torch.arange(a.seq) >= a.seq // 2).long().expand(a.batch, a.seq)
    attn = torch.ones_like(ids)
    nsp = torch.randint(0, 2, (a.batch,), generator=g)
    batch = {
        "input_ids": inputs,
        "attention_mask": attn,
        "token_type_ids": types,
        "labels": labels,
        "next_sentence_label": nsp,
    }
    task = TASKS.get("mlm_nsp")
    amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)

    def step_ours(opt=torch.optim.AdamW(ours.parameters(), lr=1e-4)):  # noqa: B008
        with amp():
            out = task.loss(ours, batch)
            counts = task.targets(batch)
            loss = sum(out.losses[k] / counts[k] for k in out.losses)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step_hf(opt=torch.optim.AdamW(hf.parameters(), lr=1e-4)):  # noqa: B008
        with amp():
            loss = hf(
                input_ids=inputs, attention_mask=attn, token_type_ids=types, labels=labels, next_sentence_label=nsp
            ).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    title = (
        f"BERT MLM+NSP step, batch {a.batch} x seq {a.seq}, {'bf16' if a.bf16 else 'fp32'}, "
        f"{torch.get_num_threads()} threads, {cfg.layers} layers dim {cfg.dim} vocab {cfg.vocab_size}"
    )
    compare(title, step_ours, step_hf, a.batch * a.seq, a.steps, a.rounds)


if __name__ == "__main__":
    main()
