"""Where a run reports: a tqdm progress bar, RUN/metrics.jsonl, TensorBoard events, a loss-curve PNG.

Only rank 0 creates a RunLog with `enabled=True`; the others get a silent one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path


class RunLog:
    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
        progress_seconds: float = 30.0,
    ):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.bar = self.tb = None
        # without a terminal (logs, CI) the bar is off: a progress line every progress_seconds instead
        self.total, self.start_step, self.step, self.progress_seconds = (
            total_steps,
            start_step,
            start_step,
            progress_seconds,
        )
        self.started = self.last_progress = time.monotonic()
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr, disable=None
        )  # None: off when stderr is not a terminal
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        """One record: metrics.jsonl line, TensorBoard scalars, and (for train) the progress bar."""
        if not self.enabled:
            return
        self.metrics_file.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self.metrics_file.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{split}/{k}", v, step)
        text = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items())
        if split == "train" and self.bar is not None and not self.bar.disable:
            self.bar.set_postfix_str(text, refresh=False)
        else:
            self.write(f"step {step} {split}: {text}")

    def advance(self, steps: int = 1) -> None:
        self.step += steps
        if self.bar is not None and not self.bar.disable:
            self.bar.update(steps)
        elif self.enabled and time.monotonic() - self.last_progress >= self.progress_seconds:
            self.last_progress = time.monotonic()
            self.write(self.progress())

    def progress(self) -> str:
        """`step 40/300 (13%), elapsed 1m20s, ETA 8m40s`: the ETA from this run's pace so far."""
        elapsed, done = time.monotonic() - self.started, self.step - self.start_step
        eta = _duration(elapsed / done * (self.total - self.step)) if done else "?"
        percent = 100 * self.step / max(self.total, 1)
        return f"step {self.step}/{self.total} ({percent:.0f}%), elapsed {_duration(elapsed)}, ETA {eta}"

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self, plot: bool = True) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        self.metrics_file.close()
        if plot:
            plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")


def _duration(seconds: float) -> str:
    """1h02m, 3m05s or 12s."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e5 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by a killed run
            continue
    return out


def plot_losses(metrics: Path, png: Path) -> None:
    """Train and eval loss against step, one PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics)
    last = {}  # a resumed run appends; keep the newest record per (split, step)
    for r in records:
        if "loss" in r:
            last[(r["split"], r["step"])] = r["loss"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for split in ("train", "eval"):
        points = sorted((s, v) for (sp, s), v in last.items() if sp == split)
        if points:
            ax.plot(*zip(*points), marker="o" if split == "eval" else None, label=split)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
