"""Translation training: damoxing (damoxing/configs/translate-en-fr.yaml) vs transformers' MarianMTModel, same everything.

Both models start from the same weights (ours saved, then loaded by transformers as a MarianMTModel), read
the same tokenizer and the same length-grouped batches in the same order, with the same optimiser (AdamW),
schedule, label smoothing, dropout and precision, each for the same wall-clock budget. Reported:
- training tokens/s (non-padding source + target tokens) of each, and the ratio;
- sacreBLEU and chrF on the test books, decoded by each model with 4 beams (damoxing's beam search for
  ours, `generate` for theirs), at the end and at checkpoints along the way: the BLEU-against-time curve
  (CSV and PNG in --out);
- a profile of where our step spends its time (torch.profiler, top operators by self CPU time).

    python bench/translate_train.py --minutes 15              # the real comparison (an idle machine, 2 cores)
    python bench/translate_train.py --quick                   # a smoke test: 20 s each, 16 verses, 32 tokens

The tokenizer and the tokenised data are cached in --out, so a second run starts at once.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from damoxing.evaluation.metrics import TranslationMetrics
from damoxing.finetune.config import load_finetune_config
from damoxing.inference.seq2seq import decode_outputs, generate_seq2seq
from damoxing.io.checkpoint import save_model
from damoxing.models import create_model, model_config
from damoxing.tasks import get_task
from damoxing.tokenizer import Tokenizer
from damoxing.training.batches import LengthGroupedBatches

CONFIG = Path(__file__).resolve().parents[1] / "damoxing" / "configs" / "translate-en-fr.yaml"


def prepare(a):
    """(config, task, tokenizer, training examples, test records), the tokenizer cached in --out."""
    from damoxing.recipes.pretrain import fit_to_tokenizer, train_tokenizer
    from damoxing.training.config import TokenizerConfig

    cfg = load_finetune_config(CONFIG)
    task = get_task("translation").configure(dataclasses.asdict(cfg.finetune))
    columns = {"source_column": cfg.data.source_column, "target_column": cfg.data.target_column}
    train = list(task.read(list(cfg.data.train), columns))
    test = list(task.read(list(cfg.data.test), columns))[: a.test_sentences]
    folder = a.out / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        corpus = a.out / "corpus.txt"
        corpus.write_text("\n".join(task.corpus(train)), encoding="utf-8")
        train_tokenizer(TokenizerConfig(**cfg.tokenizer), [corpus]).save(folder)
    tok = Tokenizer.load(folder)
    examples = task.examples(tok, train, cfg.data.max_length)
    model_cfg = fit_to_tokenizer(model_config(cfg.model), tok, tok.vocab_size)
    return cfg, task, tok, examples, test, model_cfg


def bleu(generate, tok, test, batch_size: int = 32) -> dict:
    """sacreBLEU and chrF of `generate(input_ids, attention_mask) -> ids` on the test records."""
    metrics = TranslationMetrics()
    for i in range(0, len(test), batch_size):
        part = test[i : i + batch_size]
        batch = tok([r["source"] for r in part], max_length=128, truncation=True)
        with torch.no_grad():
            ids = generate(batch["input_ids"], batch["attention_mask"])
        metrics.update(decode_outputs(tok, ids), [r["target"] for r in part], [r["source"] for r in part])
    m = metrics.compute()
    return {"bleu": round(m["bleu"], 2), "chrf": round(m["chrf"], 2), "signature": m["bleu_signature"]}


def train(name, step, generate, batches, a, tok, test, plan_steps) -> dict:
    """Run `step(batch, lr)` for a.minutes of training time; BLEU at checkpoints (not counted as training)."""
    budget, marks = a.minutes * 60, [a.minutes * 60 * f for f in (0.25, 0.5, 0.75)]
    spent, items, steps, curve = 0.0, 0, 0, []
    epoch, it = 0, batches.batches(0)
    while spent < budget:
        batch = next(it, None)
        if batch is None:
            epoch += 1
            it = batches.batches(epoch)
            continue
        lr = a.lr * min(1.0, (steps + 1) / a.warmup) * max(0.0, 1 - steps / plan_steps)
        t = time.perf_counter()
        step(batch, lr)
        spent += time.perf_counter() - t
        items += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
        steps += 1
        if marks and spent >= marks[0]:
            marks.pop(0)
            curve.append({"model": name, "train_s": round(spent, 1), "steps": steps, **bleu(generate, tok, test)})
            print(f"  {name}: {spent:.0f}s, step {steps}: BLEU {curve[-1]['bleu']}", flush=True)
    curve.append({"model": name, "train_s": round(spent, 1), "steps": steps, **bleu(generate, tok, test)})
    return {"tokens_per_s": items / spent, "steps": steps, "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15.0, help="training time of each model")
    ap.add_argument("--quick", action="store_true", help="smoke test: 20 s of training each, 16 test verses")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the config's finetune.max_new_tokens")
    ap.add_argument("--test-sentences", type=int, default=100_000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both (fast only with AVX-512 BF16 / AMX)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-translate"))
    a = ap.parse_args()
    if a.quick:
        a.minutes, a.test_sentences, a.warmup, a.max_new_tokens = 1 / 3, min(a.test_sentences, 16), 20, 32
    a.out.mkdir(parents=True, exist_ok=True)
    from transformers import GenerationConfig, MarianMTModel

    cfg, task, tok, examples, test, model_cfg = prepare(a)
    batches = LengthGroupedBatches(examples, task.collate(tok), cfg.train.batch_size, seed=cfg.train.seed)
    plan_steps = cfg.train.max_steps
    torch.manual_seed(0)
    ours = create_model(model_cfg)
    save_model(ours, tok, a.out / "init")
    theirs = MarianMTModel.from_pretrained(a.out / "init", attn_implementation="sdpa")
    amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)
    smoothing = cfg.finetune.label_smoothing

    def stepper(model, loss_of):
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, fused=True)

        def step(batch, lr):
            model.train()
            for g in opt.param_groups:
                g["lr"] = lr
            with amp():
                loss = loss_of(batch) / (batch["labels"] != -100).sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    def theirs_loss(batch):  # what Seq2SeqTrainer's label smoother computes: summed over the target tokens
        logits = theirs(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
        ).logits
        return F.cross_entropy(
            logits.flatten(0, 1).float(), batch["labels"].flatten(), label_smoothing=smoothing, reduction="sum"
        )

    decoding = task.decoding(ours)
    if a.max_new_tokens:
        decoding = dataclasses.replace(decoding, max_new_tokens=a.max_new_tokens)
    hf_decoding = GenerationConfig(
        num_beams=decoding.num_beams,
        max_new_tokens=decoding.max_new_tokens,
        length_penalty=decoding.length_penalty,
        early_stopping=False,
        do_sample=False,
        decoder_start_token_id=model_cfg.decoder_start_id,
        eos_token_id=model_cfg.eos_id,
        pad_token_id=model_cfg.pad_id,
        forced_eos_token_id=model_cfg.eos_id,
        bad_words_ids=[[model_cfg.pad_id]],
    )

    def ours_generate(ids, mask):
        with amp():
            return generate_seq2seq(ours.eval(), ids, mask, decoding)

    def theirs_generate(ids, mask):
        with amp():
            return theirs.eval().generate(input_ids=ids, attention_mask=mask, generation_config=hf_decoding)[:, 1:]

    print(
        f"{len(examples)} training pairs, {len(test)} test verses, vocabulary {tok.vocab_size}, "
        f"{ours.num_parameters() / 1e6:.1f}M parameters, {torch.get_num_threads()} threads, "
        f"{'bf16' if a.bf16 else 'fp32'}, {a.minutes:.1f} min each",
        flush=True,
    )
    results = {}
    for name, model, loss_of, generate in (
        ("damoxing", ours, lambda b: task.loss(ours, b).losses["loss"], ours_generate),
        ("transformers", theirs, theirs_loss, theirs_generate),
    ):
        torch.manual_seed(1)  # the same dropout stream for both
        results[name] = train(name, stepper(model, loss_of), generate, batches, a, tok, test, plan_steps)
    ours_r, theirs_r = results["damoxing"], results["transformers"]
    print(
        f"training tokens/s: damoxing {ours_r['tokens_per_s']:.0f}, transformers {theirs_r['tokens_per_s']:.0f}, "
        f"ratio {ours_r['tokens_per_s'] / theirs_r['tokens_per_s']:.2f}x"
    )
    print(
        f"test BLEU: damoxing {ours_r['curve'][-1]['bleu']}, transformers {theirs_r['curve'][-1]['bleu']} "
        f"({ours_r['curve'][-1]['signature']})"
    )
    profile(ours, lambda b: task.loss(ours, b).losses["loss"], batches, amp)
    write_curve(a.out, ours_r["curve"] + theirs_r["curve"])
    (a.out / "result.json").write_text(json.dumps(results, indent=2))


def profile(model, loss_of, batches, amp, steps: int = 3) -> None:
    """Where our training step spends its time: the top operators by self CPU time over a few steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    it = batches.batches(1)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            batch = next(it)
            with amp():
                loss = loss_of(batch) / (batch["labels"] != -100).sum()
            loss.backward()
            model.zero_grad(set_to_none=True)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def write_curve(out: Path, rows: list[dict]) -> None:
    with open(out / "bleu_curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "train_s", "steps", "bleu", "chrf", "signature"])
        writer.writeheader()
        writer.writerows(rows)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name in dict.fromkeys(r["model"] for r in rows):
        points = [(r["train_s"] / 60, r["bleu"]) for r in rows if r["model"] == name]
        ax.plot(*zip(*points), marker="o", label=name)
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("sacreBLEU, test books")
    ax.legend()
    fig.savefig(out / "bleu_curve.png", dpi=100, bbox_inches="tight")
    print(f"curve: {out / 'bleu_curve.csv'}, {out / 'bleu_curve.png'}")


if __name__ == "__main__":
    main()
