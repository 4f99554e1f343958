"""Time damoxing and its competitor step for step in one process, and print tokens/s and the ratio."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(step: Callable[[], None], n: int) -> float:
    """Seconds per call of `step`, averaged over n calls."""
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def compare(
    title: str,
    ours: Callable[[], None],
    theirs: Callable[[], None],
    tokens: int,
    steps: int,
    rounds: int,
    warmup: int = 2,
    unit: str = "tokens",
    competitor: str = "transformers",
) -> float:
    """Warm both up, then alternate rounds of `steps` timed steps; the best round of each counts.
    `tokens` is the number of `unit`s one step processes (images, for image models)."""
    for step in (ours, theirs):
        timed(step, warmup)
    t_ours, t_theirs = [], []
    for _ in range(rounds):  # alternating: both see the same machine state
        t_ours.append(timed(ours, steps))
        t_theirs.append(timed(theirs, steps))
    ours_tps, theirs_tps = tokens / min(t_ours), tokens / min(t_theirs)
    print(title)
    print(f"  {'damoxing':12} {ours_tps:9.0f} {unit}/s  ({min(t_ours) * 1e3:.0f} ms/step)")
    print(f"  {competitor:12} {theirs_tps:9.0f} {unit}/s  ({min(t_theirs) * 1e3:.0f} ms/step)")
    print(f"  ratio        {ours_tps / theirs_tps:.2f}x")
    return ours_tps / theirs_tps
