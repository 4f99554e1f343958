"""Losses shared by the tasks: the ignore label, and a linear layer + cross-entropy that never holds (N, V) logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # the label of positions without a target (padding, special tokens, unmasked tokens)


def wide(x: torch.Tensor) -> torch.Tensor:
    """Logits for a loss in float32, or float64 when the model runs in float64 (the exact checks of the tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


# ---------------------------------------------------------------- chunked linear + cross-entropy
class _LinearCE(torch.autograd.Function):
    """sum(CE(h @ W.T + b, y)) over rows, `chunk` rows at a time, with gradients computed in the forward.

    Only (chunk, V) logits ever exist; nothing of size (N, V) is stored for the backward. With label
    smoothing e (as F.cross_entropy): (1 - e) * CE + e * mean over the vocabulary of -log p.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, y, chunk, smoothing=0.0):
        w, acc = weight.to(h.dtype), torch.promote_types(h.dtype, torch.float32)  # acc: float32, or float64
        loss = h.new_zeros((), dtype=acc)
        gh, gw = torch.empty_like(h), torch.zeros_like(weight, dtype=acc)
        gb = torch.zeros_like(bias, dtype=acc) if bias is not None else None
        buffer = h.new_empty(min(chunk, h.shape[0]), w.shape[0])  # reused: no fresh pages for every chunk
        for i in range(0, h.shape[0], chunk):
            hi, yi = h[i : i + chunk], y[i : i + chunk]
            logits = torch.mm(hi, w.t(), out=buffer[: len(hi)])  # (n, V)
            if bias is not None:
                logits += bias.to(h.dtype)
            logits = logits.to(acc)
            target = logits.gather(1, yi[:, None])
            if smoothing:
                target = (1 - smoothing) * target + smoothing * logits.mean(-1, keepdim=True)
            top = logits.amax(-1, keepdim=True)
            p = logits.sub_(top).exp_()  # one exp pass serves the loss and the gradient
            total = p.sum(-1, keepdim=True)
            loss += (top + total.log() - target).sum()
            grad = p.div_(total)  # softmax
            grad[torch.arange(len(yi), device=y.device), yi] -= 1 - smoothing
            if smoothing:
                grad -= smoothing / grad.shape[1]
            grad = grad.to(h.dtype)
            gh[i : i + chunk] = grad @ w
            if grad.dtype == gw.dtype:
                gw.addmm_(grad.t(), hi)
            else:
                gw += (grad.t() @ hi).to(acc)
            if gb is not None:
                gb += grad.to(acc).sum(0)
        ctx.save_for_backward(gh, gw, gb)
        ctx.dtypes = weight.dtype, None if bias is None else bias.dtype
        return loss

    @staticmethod
    def backward(ctx, g):
        gh, gw, gb = ctx.saved_tensors
        wd, bd = ctx.dtypes
        return gh * g.to(gh.dtype), (gw * g).to(wd), None if gb is None else (gb * g).to(bd), None, None, None


def linear_cross_entropy(
    h: torch.Tensor, proj: torch.nn.Linear, y: torch.Tensor, chunk: int = 512, label_smoothing: float = 0.0
):
    """Summed cross-entropy of `proj(h)` (N, V) against `y` (N,), never holding all N x V logits."""
    if torch.is_grad_enabled() and (
        h.requires_grad or proj.weight.requires_grad or (proj.bias is not None and proj.bias.requires_grad)
    ):
        if torch.is_autocast_enabled(h.device.type):
            h = h.to(torch.get_autocast_dtype(h.device.type))
        return _LinearCE.apply(h, proj.weight, proj.bias, y, chunk, label_smoothing)
    total = h.new_zeros((), dtype=torch.promote_types(h.dtype, torch.float32))
    for i in range(0, h.shape[0], chunk):
        total += F.cross_entropy(
            wide(proj(h[i : i + chunk])), y[i : i + chunk], reduction="sum", label_smoothing=label_smoothing
        )
    return total
