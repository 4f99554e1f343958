"""Freed memory kept for reuse on Linux (glibc), as jemalloc or tcmalloc would keep it (PyTorch's CPU tuning guide
suggests preloading one of them).

A training step allocates the same large tensors every time: the word embedding's dense gradient (47 MB for
MiniLM's 30,522 x 384), the weights cast under autocast, the activations. glibc serves blocks above its mmap
threshold with a fresh mapping and unmaps them on free, so each step faults in and zeroes new pages again. On a
2-core VM this was a fifth of a short-text fine-tuning step (`bench/finetune_speed.py`): zeroing the
embedding's gradient took 55 ms against 2 ms in reused memory. `reuse_freed_memory()` turns the mmap path off
and raises the trim threshold, so freed blocks stay in the heap for the next step. The process then keeps its
peak memory until it exits, as a caching allocator does: the Trainer calls it (`train.reuse_memory`, on by
default) because a training process reaches its peak in the first step and stays there.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
_applied = False


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process's heap (glibc only; elsewhere nothing changes). Returns whether it
    applies. Process-wide and not undone."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):
        return False
    _applied = ok
    return ok
