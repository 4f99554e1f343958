"""Fashion-MNIST accuracy within a time budget, for each image family (issue 13's targets, 2-core CPU):

    MLP                          >= 89%   in 10 minutes   damoxing/configs/fashion-mlp.yaml
    CNN, <= 100k parameters      >= 92.5% in 10 minutes   damoxing/configs/fashion-vgg.yaml with the vgg-mini preset
    small VGG                    >= 93%   in 30 minutes   damoxing/configs/fashion-vgg.yaml
    ViT, <= 400k parameters      >= 88%   in 30 minutes   damoxing/configs/fashion-vit.yaml (goal: 90%)

    python bench/fashion_mnist.py --quick                 # 2000 training images, one epoch each: a smoke run
    python bench/fashion_mnist.py                         # the real runs, one after the other (about 80 minutes)
    python bench/fashion_mnist.py --models mlp,cnn --out runs/bench-fashion

Run it on a quiet machine: the budgets are wall-clock. Each run trains on all 60k training images and
evaluates on the 10k test images as it goes (data.valid = the test file), so the accuracy-against-time
curve is test accuracy; the headline figure is the final model's test accuracy (no checkpoint selection).
Writes OUT/<model>/ (the usual run folder), OUT/curves.json and OUT/curves.png.
Needs `apt-get install -y dataset-fashion-mnist`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from damoxing.config import load_yaml
from damoxing.recipes.finetune import finetune

DATA = Path("/usr/share/datasets/fashion-mnist")
RUNS = {  # name: (config, model overrides, budget in minutes, target accuracy, parameter limit)
    "mlp": ("fashion-mlp.yaml", {}, 10, 0.89, None),
    "cnn": ("fashion-vgg.yaml", {"preset": "vgg-mini"}, 10, 0.925, 100_000),
    "vgg": ("fashion-vgg.yaml", {}, 30, 0.93, None),
    "vit": ("fashion-vit.yaml", {}, 30, 0.88, 400_000),
}


def run_config(name: str, quick: bool) -> dict:
    file, model, budget, _, _ = RUNS[name]
    cfg = load_yaml(ROOT / "damoxing" / "configs" / file)
    cfg["model"].update(model)
    cfg["train"].update(max_minutes=budget, plot=True, tensorboard=False)
    if name == "cnn":
        cfg["train"].update(epochs=15)
    if quick:  # a subset, one epoch, validation held out of the subset
        cfg["data"].update(max_train_examples=2000, valid_fraction=0.1)
        cfg["data"].pop("test", None)
        cfg["train"].update(epochs=1, eval_every=5, log_every=5)
    else:
        cfg["data"]["valid"] = [str(DATA / "t10k-images-idx3-ubyte.gz")]
        cfg["data"].pop("test", None)
    return cfg


def follow(metrics: Path, start: float, curve: list, done: threading.Event) -> None:
    """Record (seconds, step, accuracy) as evaluation lines appear in metrics.jsonl."""
    seen = 0
    while not done.wait(0.5) or seen == 0:
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        for line in lines[seen:]:
            record = json.loads(line)
            if record.get("split") == "eval" and "accuracy" in record:
                curve.append((round(time.perf_counter() - start, 1), record["step"], record["accuracy"]))
        seen = len(lines)
        if done.is_set():
            break


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,cnn,vgg,vit", help=f"comma-separated: {', '.join(RUNS)}")
    ap.add_argument("--out", default="runs/bench-fashion")
    ap.add_argument("--quick", action="store_true", help="2000 images, one epoch: checks that every run works")
    a = ap.parse_args()
    if not (DATA / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"no Fashion-MNIST in {DATA}: apt-get install -y dataset-fashion-mnist")
    out = Path(a.out)
    curves, rows = {}, []
    for name in a.models.split(","):
        _, _, budget, target, limit = RUNS[name]
        run = out / name
        if run.exists():
            sys.exit(f"{run} exists: remove it or pass another --out")
        curve, done, start = [], threading.Event(), time.perf_counter()
        watcher = threading.Thread(target=follow, args=(run / "metrics.jsonl", start, curve, done), daemon=True)
        watcher.start()
        try:
            result = finetune(run_config(name, a.quick), run, config_name=f"fashion-{name}", verbose=False)
        finally:
            done.set()
            watcher.join()
        accuracy = result.metrics["accuracy"]
        curves[name] = {
            "seconds_step_accuracy": curve,
            "fit_seconds": result.wall_time,
            "parameters": result.total_parameters,
            "accuracy": accuracy,
        }
        small_enough = limit is None or result.total_parameters <= limit
        ok = accuracy >= target and result.wall_time <= 60 * budget and small_enough
        rows.append((name, result.total_parameters, accuracy, result.wall_time, target, budget, ok))
    out.mkdir(parents=True, exist_ok=True)
    (out / "curves.json").write_text(json.dumps(curves, indent=2) + "\n")
    plot(curves, out / "curves.png")
    print(f"{'model':6} {'parameters':>10} {'accuracy':>9} {'fit s':>7}  target")
    for name, params, acc, wall, target, budget, ok in rows:
        verdict = "(quick run: no verdict)" if a.quick else ("met" if ok else "NOT met")
        print(f"{name:6} {params:>10,} {acc:>9.4f} {wall:>7.0f}  >= {target:.1%} in {budget} min: {verdict}")
    print(f"curves: {out / 'curves.png'}")


def plot(curves: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for name, c in curves.items():
        points = c["seconds_step_accuracy"]
        if points:
            ax.plot([p[0] / 60 for p in points], [p[2] for p in points], marker="o", markersize=3, label=name)
    ax.set_xlabel("minutes (training and evaluation)")
    ax.set_ylabel("accuracy")
    ax.set_title("Fashion-MNIST: accuracy against time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
