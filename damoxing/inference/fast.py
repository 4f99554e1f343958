"""Weights laid out for fast decoding on a CPU, without copying them.

At batch 1 a decoding step is a chain of matrix-vector products, limited by how fast the weights stream from
memory. PyTorch's x @ W.T over an nn.Linear weight W (out, in) reaches ~15 GB/s here; the same product over the
transposed layout, x @ Wt with Wt (in, out) contiguous, ~25 GB/s. `prepare_for_decoding` therefore stores every
Linear weight as Wt (the Parameter stays (out, in), now a transposed view, so names, shapes, state dicts and
checkpoints are unchanged) and puts q/k/v, and SwiGLU's gate/up, side by side in one Wt so each needs a
single matmul. Values are not changed: outputs equal those before up to the order of float additions.

That holds for fp32 (and fp64). bf16 matrix-vector products run fastest on the (out, in) layout (oneDNN: about 2.5x
the (in, out) one here), so bf16 weights keep it; they are still fused, along the output rows, and the fused
matrix handed to the layers is the transposed view Wt, which matmul runs as x @ W.T with no copy.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import MultiHeadAttention, SwiGLU

HALF = (torch.bfloat16, torch.float16)  # weights that keep the (out, in) layout


def fuse_linears(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One (in, sum of out) matrix holding the Linears' weights side by side (and their biases); each weight
    becomes an (out, in) view of its block, so the fused matrix adds no memory. fp32 (and fp64) weights are
    stored (in, out) in memory, bf16 and fp16 ones (out, in) (see the module docstring); the returned matrix is (in, N) either way."""
    rows_major = linears[0].weight.dtype in HALF  # keep (out, in) in memory
    if rows_major:
        stored = torch.cat([linear.weight.detach() for linear in linears], dim=0).contiguous()  # (N, in)
        fused = stored.t()  # (in, N) view
    else:
        fused = torch.cat([linear.weight.detach().t() for linear in linears], dim=1).contiguous()  # (in, N)
    biases = [linear.bias for linear in linears]
    bias = torch.cat([b.detach() for b in biases]) if all(b is not None for b in biases) else None
    start = 0
    for linear in linears:
        end = start + linear.out_features
        linear.weight.data = fused[:, start:end].t()  # (out, in) view
        if bias is not None:
            linear.bias.data = bias[start:end]
        start = end
    return fused, bias


@torch.no_grad()
def prepare_for_decoding(model: nn.Module) -> nn.Module:
    """Fuse q/k/v and gate/up and transpose every Linear weight's layout (see above); returns the model.

    The fused matrices are used only without autograd (training reaches the Parameters as before). Moving or
    casting the model (`.to`, `.double`) drops them and the layers use their separate weights again: call this
    again afterwards.
    """
    for module in model.modules():  # (LoRA-wrapped projections stay separate: merge the adapters first)
        if (
            isinstance(module, MultiHeadAttention)
            and _plain(module.q, module.k, module.v)
            and module.q.in_features == module.k.in_features
        ):
            module.qkv, module.qkv_bias = fuse_linears([module.q, module.k, module.v])
        elif isinstance(module, SwiGLU) and _plain(module.gate, module.up):
            module.gate_up, module.gate_up_bias = fuse_linears([module.gate, module.up])
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.is_contiguous() and module.weight.dtype not in HALF:
            module.weight.data = module.weight.data.t().contiguous().t()  # Wt (in, out) in memory
    return model


def _plain(*modules: nn.Module) -> bool:
    return all(type(m) is nn.Linear for m in modules)
