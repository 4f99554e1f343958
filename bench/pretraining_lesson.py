"""The lesson, measured: a pretrained Chinese BERT vs the same BERT from scratch vs char n-grams.

Same bundled zh_sentiment split (4,800 train, 1,200 test; no review is in the pretraining text), same
fine-tuning budget, 3 seeds; prints and writes the table (mean and spread) and the pretraining run's MLM
accuracy curve (a PNG and a table).

    damoxing data zh-corpus runs/zh-corpus
    damoxing pretrain damoxing/configs/bert-zh-wwm.yaml          # ~20 min on 2 cores -> runs/bert-zh-wwm
    python bench/pretraining_lesson.py --pretrained runs/bert-zh-wwm --out runs/lesson-zh
    python bench/pretraining_lesson.py --lang en --pretrained runs/quickstart/pretrain   # + MiniLM
    python bench/pretraining_lesson.py --quick                   # a smoke run: shows it runs, measures little
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from damoxing.data.bundled import bundled_path
from damoxing.recipes.lesson import compare, table
from damoxing.recipes.quickstart import DEFAULTS, minilm_folder, newest_checkpoint


def mlm_curve(run: Path, out: Path) -> str:
    """The eval MLM accuracy of a pretraining run, per step: a Markdown table, and OUT/mlm_accuracy.png."""
    points = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "eval" and "mlm_acc" in record:
            points.append((record["step"], record["mlm_acc"], record["loss"]))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    ax.set(xlabel="step", ylabel="masked-LM accuracy (held-out)", title=f"{run.name}: whole-word MLM")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "mlm_accuracy.png", dpi=120)
    plt.close(fig)
    rows = "\n".join(f"| {s} | {a:.3f} | {loss:.3f} |" for s, a, loss in points)
    return f"| step | MLM accuracy | eval loss |\n|---|---|---|\n{rows}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrained", default="runs/bert-zh-wwm", help="a `damoxing pretrain` run folder")
    ap.add_argument("--lang", default="zh", choices=["zh", "en"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--pooling", default=None, help="cls | mean | pooler (default: the quickstart's, per language)")
    ap.add_argument("--quick", action="store_true", help="1 seed, 100 examples, 1 epoch")
    args = ap.parse_args()
    run = Path(args.pretrained)
    out = Path(args.out or f"runs/lesson-{args.lang}")
    out.mkdir(parents=True, exist_ok=True)
    data = "zh_sentiment" if args.lang == "zh" else "bbc_news"
    pooling = args.pooling or DEFAULTS[args.lang]["pooling"]
    settings = {"max_length": args.max_length, "epochs": args.epochs, "lr": 5e-4, "batch_size": 32, "pooling": pooling}
    seeds = args.seeds
    if args.quick:
        settings.update(max_train_examples=100, epochs=1, max_length=32)
        seeds = 1
    rows = compare(
        newest_checkpoint(run),
        bundled_path(data, "train"),
        bundled_path(data, "test"),
        out / "finetune",
        tuple(range(seeds)),
        settings,
        minilm=minilm_folder() if args.lang == "en" else None,
    )
    text = f"## Fine-tuning on {data} ({seeds} seeds)\n\n{table(rows)}\n\n"
    text += f"## Pretraining ({run})\n\n{mlm_curve(run, out)}\n"
    (out / "lesson.md").write_text(text, encoding="utf-8")
    (out / "lesson.json").write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    print(text)
    print(f"-> {out / 'lesson.md'}, {out / 'mlm_accuracy.png'}")


if __name__ == "__main__":
    main()
