"""Model FLOPs per token and model FLOPs utilisation (MFU) against the device's peak.

Training FLOPs per token = 3 x forward (backward costs twice the forward); the forward counts the
matrix multiplies: 2 x (weights used per token) + attention scores 2 x 2 x layers x T x dim.
GPU peaks come from a table (dense bf16 / fp32 tensor throughput); a CPU's peak is measured once by
timing a large matmul, and cached in ~/.cache/damoxing/cpu_peak.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

# dense TFLOP/s: (bf16/fp16 tensor core, fp32 (tf32 where that is the default))
GPU_PEAKS = {
    "H200": (989e12, 67e12),
    "H100 SXM": (989e12, 67e12),
    "H100 PCIe": (756e12, 51e12),
    "H100": (989e12, 67e12),
    "A100": (312e12, 19.5e12),
    "A10G": (125e12, 31e12),
    "A10": (125e12, 31e12),
    "L40S": (362e12, 91.6e12),
    "L40": (181e12, 90.5e12),
    "L4": (121e12, 30e12),
    "V100": (125e12, 15.7e12),
    "T4": (65e12, 8.1e12),
    "RTX 4090": (165e12, 82.6e12),
    "RTX 3090": (71e12, 35.6e12),
    "B200": (2250e12, 80e12),
}


def matmul_params(model: torch.nn.Module, vocab_rows: float = 1.0) -> int:
    """Weights used in matrix multiplies per token (Linear layers; embeddings are lookups, not counted).

    `vocab_rows` scales the vocabulary projection: MLM projects only the masked ~15% of tokens.
    """
    total, seen = 0, set()
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            is_vocab = m.out_features == getattr(model.config, "vocab_size", -1)
            total += m.weight.numel() * (vocab_rows if is_vocab else 1.0)
    return int(total)


def flops_per_token(model: torch.nn.Module, seq_len: int, vocab_rows: float = 1.0, training: bool = True) -> float:
    c = model.config
    forward = 2 * matmul_params(model, vocab_rows) + 2 * 2 * c.layers * seq_len * c.dim
    return 3 * forward if training else forward


def _cpu_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "damoxing" / "cpu_peak.json"


def measure_cpu_peak(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of the best of `repeats` n x n matmuls on this CPU with the current thread count."""
    key = f"{dtype}-{torch.get_num_threads()}"
    cache = _cpu_cache()
    try:
        cached = json.loads(cache.read_text())
        if key in cached:
            return cached[key]
    except (OSError, ValueError):
        cached = {}
    g = torch.Generator().manual_seed(0)  # its own generator: measuring must not move the training RNG
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    peak = 2 * n**3 / best
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({**cached, key: peak}))
    except OSError:
        pass
    return peak


def device_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device for `dtype`, or None when unknown."""
    if device.type == "cpu":
        return measure_cpu_peak(torch.float32 if dtype == torch.float32 else dtype)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key in sorted(GPU_PEAKS, key=len, reverse=True):  # most specific name first
            if key in name:
                low_precision, fp32 = GPU_PEAKS[key]
                return fp32 if dtype == torch.float32 else low_precision
    return None


def mfu(tokens_per_second: float, flops_token: float, peak: float | None, world: int = 1) -> float | None:
    """Fraction of the devices' peak achieved by the model's FLOPs."""
    if not peak:
        return None
    return tokens_per_second * flops_token / (peak * world)
