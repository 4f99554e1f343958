"""Attention forward + backward on a CPU: SDPA's kernel against the plain products (scores, softmax, values)
that `MultiHeadAttention` uses for few keys (layers/attention.py, SHORT_KEYS), over a range of shapes.

    python bench/attention_kernels.py              # 2 threads; prints ms per call and the ratio per shape

The shapes: ViT-tiny on 28x28 images (50 keys, 16 wide), ViT-S/16-like and ViT-B/16 (197 keys), BERT-style
batches with and without a padding mask. Rounds alternate between the two; the best of 3 is kept.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

SHAPES = [  # (batch, heads, keys, head width, padding mask)
    (128, 4, 50, 16, False),
    (128, 3, 65, 64, False),
    (32, 12, 64, 32, True),
    (32, 12, 128, 32, False),
    (32, 12, 128, 32, True),
    (32, 4, 128, 48, True),
    (64, 6, 197, 64, False),
    (16, 12, 256, 32, True),
    (8, 12, 512, 64, True),
]


def sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def products(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def timed(f, q, k, v, mask, grad, n) -> float:
    for _ in range(2):
        f(q, k, v, mask).backward(grad)
    t = time.perf_counter()
    for _ in range(n):
        f(q, k, v, mask).backward(grad)
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, fp32, forward + backward")
    for B, H, T, d, masked in SHAPES:
        q, k, v = (torch.randn(B, T, H, d).transpose(1, 2).requires_grad_() for _ in range(3))  # as projections give
        mask = None
        if masked:  # every other row padded from the middle on
            keep = torch.ones(B, T, dtype=torch.bool)
            keep[::2, T // 2 :] = False
            mask = keep[:, None, None, :]
        grad = torch.randn(B, H, T, d)
        n = max(3, int(2e8 / (B * H * T * T * d)))
        best = {"sdpa": float("inf"), "products": float("inf")}
        for _ in range(3):
            for name, f in (("sdpa", sdpa), ("products", products)):
                best[name] = min(best[name], timed(f, q, k, v, mask, grad, n))
        print(
            f"batch {B:3} heads {H:2} keys {T:3} width {d:2} mask {'yes' if masked else 'no ':3}: "
            f"SDPA {best['sdpa']:7.2f} ms, products {best['products']:7.2f} ms, products/SDPA "
            f"{best['products'] / best['sdpa']:.2f}"
        )


if __name__ == "__main__":
    main()
