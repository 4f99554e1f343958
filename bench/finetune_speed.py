"""Full fine-tuning of all-MiniLM-L6-v2: damoxing's defaults against the Hugging Face Trainer's, side by side.

    python bench/finetune_speed.py                      # the full run: 3 seeds, both sets (~1 h on 2 quiet cores)
    python bench/finetune_speed.py --quick              # a smoke run (make bench): 1 seed, 48 examples, 1 epoch
    python bench/finetune_speed.py --sets headlines --seeds 0,1,2 --train-size 800

Two sets from the bundled BBC articles (damoxing/data/bundled/bbc_news), 5 topics:
  headlines  the first line of each article: short, variable-length text (goal: damoxing <= 0.7x HF's time)
  articles   whole articles cut at --max-length tokens (128): rows full, so only compute counts (goal: <= 1.0x)

Each side runs with its own defaults, as its users run it: the HF Trainer in fp32 with random batches
(no group_by_length), DataCollatorWithPadding, its AdamW; damoxing with `precision: auto` (bf16 where the CPU
runs it natively), `data.packing: auto` / `data.group_by_length: auto` and its fused AdamW. Both get the same
subset, max_length, batch size, learning rate, epochs and seed; nothing else is set. The rounds alternate
which side goes first (machine noise hits both). Wall time: HF's `trainer.train()`; damoxing's fit (its
result.wall_time, which also counts tokenising, the end-of-training evaluation and checkpoint writes, so it is
if anything unfavourable to damoxing). Accuracy on a held-out test subset of the same set.

Prints per set: damoxing's batch layout and positions computed (plain random batches = 1.00), wall time per
side, the ratio of the summed wall times, and accuracy mean ± spread (sample standard deviation over seeds)
on each side, with whether the means lie within one spread of each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
from finetune_methods import minilm_folder, stratified_subset, write_csv

import damoxing
from damoxing.data import bundled_path, read_records
from damoxing.recipes.finetune import finetune
from damoxing.training.batches import choose_layout

GOALS = {"headlines": 0.7, "articles": 1.0}
QUICK = {"seeds": "0", "train_size": 48, "test_size": 48, "epochs": 1}


def load_set(name: str, split: str) -> list[dict]:
    records = list(read_records(bundled_path("bbc_news", split), label_column="label"))
    if name == "headlines":
        return [{"text": r["text"].strip().split("\n")[0].strip(), "label": r["label"]} for r in records]
    return records


def hf_side(model_dir: Path, train: list[dict], test: list[dict], labels: list[str], seed: int, args) -> dict:
    """The HF Trainer with its defaults; only the shared settings are given."""
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging

    logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = {name: i for i, name in enumerate(labels)}

    def encode(records):
        enc = tok([r["text"] for r in records], truncation=True, max_length=args.max_length)
        return [{**{k: enc[k][i] for k in enc}, "labels": ids[r["label"]]} for i, r in enumerate(records)]

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))
    targs = TrainingArguments(
        output_dir=str(args.work / "hf"),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        seed=seed,
        use_cpu=True,
        # its default save_strategy ("steps") writes a checkpoint at the end of training, as damoxing does;
        # --hf-no-save turns it off (the setting of the first figures)
        save_strategy="no" if args.hf_no_save else "steps",
        report_to=[],
        logging_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=encode(train), data_collator=DataCollatorWithPadding(tok))
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    pred = trainer.predict(encode(test))
    return {"wall": wall, "accuracy": float(np.mean(np.argmax(pred.predictions, -1) == pred.label_ids))}


def damoxing_side(model_dir: Path, train_csv: Path, test_csv: Path, seed: int, run: Path, args) -> dict:
    """damoxing with its defaults; only the shared settings are given."""
    config = {
        "data": {"train": [str(train_csv)], "valid": [str(test_csv)], "max_length": args.max_length},
        "finetune": {"method": "full"},
        "train": {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size, "seed": seed},
    }
    model, tok = damoxing.load(model_dir), damoxing.load_tokenizer(model_dir)
    result = finetune(config, run, model=model, tokenizer=tok, verbose=False)
    return {"wall": result.wall_time, "accuracy": result.metrics["accuracy"]}


def layout_of(model_dir: Path, train: list[dict], args) -> str:
    """The layout damoxing's auto settings choose here, and the positions it computes relative to plain batches."""
    tok = damoxing.load_tokenizer(model_dir)
    texts = [r["text"] for r in train]
    enc = tok(texts, max_length=args.max_length, truncation=True, padding=False, return_tensors=None)
    lengths = [len(x) for x in enc["input_ids"]]
    layout, cost = choose_layout(lengths, args.batch_size, args.max_length)
    return (
        f"{layout} ({cost[layout] / cost['plain']:.2f} of plain positions; mean length {statistics.mean(lengths):.0f})"
    )


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minilm", default=None, help="all-MiniLM-L6-v2 folder (default: the PyPI package's)")
    p.add_argument("--sets", default="headlines,articles")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train-size", type=int, default=400)
    p.add_argument("--test-size", type=int, default=200)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5, help="both sides (the HF Trainer's default and damoxing's)")
    p.add_argument("--hf-no-save", action="store_true", help="the HF Trainer writes no checkpoint at the end")
    p.add_argument("--json", default=None, help="also write every round to this JSON file")
    p.add_argument("--quick", action="store_true", help=f"a short smoke run (make bench): {QUICK}")
    args = p.parse_args()
    if args.quick:
        p.set_defaults(**QUICK)
        args = p.parse_args()
    model_dir = minilm_folder(args.minilm)
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # import torch._dynamo (~4 s) outside both timings
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        args.work = Path(tmp)
        for name in args.sets.split(","):
            train = stratified_subset(load_set(name, "train"), args.train_size, 0)
            test = stratified_subset(load_set(name, "test"), args.test_size, 0)
            labels = sorted({r["label"] for r in train})
            train_csv = write_csv(args.work / f"{name}-train.csv", train)
            test_csv = write_csv(args.work / f"{name}-test.csv", test)
            layout = layout_of(model_dir, train, args)
            for i, seed in enumerate(seeds):
                sides = ["hf", "damoxing"] if len(rounds) % 2 == 0 else ["damoxing", "hf"]  # alternate
                row = {"set": name, "seed": seed, "first": sides[0], "layout": layout}
                for side in sides:
                    if side == "hf":
                        row["hf"] = hf_side(model_dir, train, test, labels, seed, args)
                    else:
                        run = args.work / f"{name}-{seed}"
                        row["damoxing"] = damoxing_side(model_dir, train_csv, test_csv, seed, run, args)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rounds.append(row)
            report(name, [r for r in rounds if r["set"] == name], len(train), len(test), args)
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=2))


def report(name: str, rows: list[dict], n_train: int, n_test: int, args) -> None:
    wall = {side: [r[side]["wall"] for r in rows] for side in ("damoxing", "hf")}
    acc = {side: mean_spread([r[side]["accuracy"] for r in rows]) for side in ("damoxing", "hf")}
    ratio = sum(wall["damoxing"]) / sum(wall["hf"])
    within = abs(acc["damoxing"][0] - acc["hf"][0]) <= max(acc["damoxing"][1], acc["hf"][1])
    print(
        f"\n### {name}: {n_train} train / {n_test} test, max_length {args.max_length}, {args.epochs} epochs, "
        f"batch {args.batch_size}, lr {args.lr:g}, seeds {args.seeds}\n"
    )
    print(f"damoxing's batch layout: {rows[0]['layout']}\n")
    print("| side | wall time per run (s) | accuracy mean ± spread |")
    print("|---|---:|---:|")
    for side, label in (("hf", "HF Trainer (defaults)"), ("damoxing", "damoxing (defaults)")):
        m, s = acc[side]
        print(f"| {label} | {statistics.mean(wall[side]):.1f} | {100 * m:.2f} ± {100 * s:.2f} |")
    goal = GOALS.get(name)
    verdict = f" (goal <= {goal}: {'met' if ratio <= goal else 'NOT met'})" if goal else ""
    print(f"\nwall time ratio damoxing / HF: {ratio:.2f}{verdict}; accuracy means within one spread: {within}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
