"""Weights laid out for fast decoding on a CPU.

At batch 1 a decoding step is a chain of matrix-vector products, limited by how fast the weights stream from
memory. `prepare_for_decoding` makes each one as fast as PyTorch's own kernels allow, and puts q/k/v, and
SwiGLU's gate/up, side by side so that each needs a single product:

- fp32 and bf16 on a CPU with oneDNN: every Linear weight (and each fused group) is prepacked once for oneDNN's
  inner-product kernel (`torch.ops.mkldnn._reorder_linear_weight` / `_linear_pointwise`, what PyTorch's inductor
  runs after freezing). Measured here over SmolLM2's 30 layers at batch 1, weights streamed from memory:
  fp32 20.7 ms a token against 26.3 for x @ Wt (MKL) and 34.0 for F.linear; bf16 10.8 ms against 15.2.
  The packed copy is extra memory (about the weights' size again): `pack=False` keeps one copy.
- otherwise (fp64, another device, no oneDNN, `pack=False`): fp32 weights are stored transposed, Wt (in, out),
  on which MKL's x @ Wt streams faster than x @ W.T, and the fused matrices are views of the Linears' weights,
  so they add no memory. bf16 keeps the (out, in) rows, oneDNN's fast layout.

Nothing observable changes: Parameters, names, shapes, state dicts and checkpoints stay as they were, and
training (autograd on) uses the Parameters as before. A packed weight remembers the version of every weight it
was built from and is rebuilt when one changed in place (an optimizer step, a no_grad edit), so it never goes
stale. Outputs equal those before up to the order of float additions.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import GatedMLP, MultiHeadAttention
from ..models.swap import swap_modules

HALF = (torch.bfloat16, torch.float16)  # weights that keep the (out, in) layout
# The batch size oneDNN lays packed weights out for. Any batch runs on any layout; measured over SmolLM2's 30
# layers in fp32 (ms for rows M=1/4/8/16): packed for 1: 19.6/27.6/29.5/37.5; for 8: 18.2/17.1/20.8/24.5; for
# 16: 20.6/16.3/21.1/26.6 (bf16: about equal for all three). So 8: batch-1 decoding and a server's batches alike.
PACK_BATCH = 8


def can_pack(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN's prepacked inner product runs this dtype here (bf16 only where the CPU has it natively)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.float32:
        return True
    return dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class Projection:
    """x -> x @ [W_1; W_2; ...]^T + [b_1; b_2; ...]: one product for one or several Linears of one input.

    A plain object, not a Module: it holds no Parameter of its own, so state dicts never see it.
    """

    def __init__(self, linears: list[nn.Module], pack: bool, layer: nn.Module | None = None):
        self.linears = linears
        self.out_features = sum(linear.out_features for linear in linears)
        self.layer = layer  # quantized Linears (compress/quantize.py) bring their own fused layer
        if layer is not None:
            self.packed, self.matrix, self.bias, self._tensors = False, layer, None, []
            return
        self.packed = pack and can_pack(linears[0].weight.dtype, linears[0].weight.device)
        self.matrix: torch.Tensor | None = None  # unpacked: the (in, N) fused matrix
        self.bias: torch.Tensor | None = None
        self._tensors = [t for linear in linears for t in (linear.weight, linear.bias) if t is not None]
        self._built_from: list = []
        self._build()

    def _stamp(self) -> list[tuple[int, int]]:
        """What the packed matrix was built from: each weight's and bias's storage and in-place version."""
        return [(t.data_ptr(), t._version) for t in self._tensors]

    @torch.no_grad()
    def _build(self) -> None:
        biases = [linear.bias for linear in self.linears]
        bias = torch.cat([b.detach() for b in biases]) if all(b is not None for b in biases) else None
        if self.packed:
            weight = torch.cat([linear.weight.detach() for linear in self.linears]).contiguous()  # (N, in)
            self.matrix = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_BATCH)  # any batch size runs
            self.bias = bias
        else:
            self.matrix, self.bias = fuse_linears(self.linears)
        self._built_from = self._stamp()

    def __deepcopy__(self, memo: dict) -> Projection:
        """oneDNN's packed tensors have no storage to copy: the copy packs its own Linears at its first call
        (they may still be half-copied now, when a PackedLinear copies its own Projection)."""
        new = copy.copy(self)
        new.linears = [copy.deepcopy(linear, memo) for linear in self.linears]
        if self.layer is not None:
            new.layer = new.matrix = copy.deepcopy(self.layer, memo)
            return new
        new._tensors = [copy.deepcopy(t, memo) for t in self._tensors]
        new.matrix = new.bias = None
        new._built_from = []
        return new

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., N)
        if self.layer is not None:
            return self.layer(x)
        if self.matrix is None or (self.packed and self._stamp() != self._built_from):  # new, or a weight changed
            self._build()
        if self.packed:
            if x.dtype == self.matrix.dtype:
                return torch.ops.mkldnn._linear_pointwise(x, self.matrix, self.bias, "none", [], "")
            weight = torch.cat([linear.weight for linear in self.linears])  # another dtype (autocast): plain
            return F.linear(x, weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        return x @ self.matrix if self.bias is None else x @ self.matrix + self.bias


class PackedLinear(nn.Linear):
    """An nn.Linear (the same Parameters, so names, ties and checkpoints are unchanged) that runs its packed
    Projection when autograd is off."""

    projection: Projection | None = None

    @classmethod
    def wrap(cls, linear: nn.Linear) -> PackedLinear:
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight, new.bias = linear.weight, linear.bias  # the same Parameter objects (a tied head stays tied)
        new.projection = Projection([new], pack=True)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None and not torch.is_grad_enabled():
            return self.projection(x)
        return super().forward(x)

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        self.projection = None  # .to() and the like give new storage and maybe a new dtype: unpacked from now on
        return module


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
def prepare_for_decoding(model: nn.Module, pack: bool = True) -> nn.Module:
    """Fuse q/k/v and gate/up, and prepack (or re-lay) every Linear weight (see above); returns the model.

    The fused and packed weights are used only without autograd (training reaches the Parameters as before).
    Moving or casting the model (`.to`, `.double`) drops them and the layers use their separate weights again:
    call this again afterwards.
    """
    fused = set()  # Linears that run inside a fused Projection (under no_grad they are never called alone)
    cross = {id(m.cross_attn) for m in model.modules() if getattr(m, "cross_attn", None) is not None}
    for module in model.modules():  # (LoRA-wrapped projections stay separate: merge the adapters first)
        if (
            isinstance(module, MultiHeadAttention)
            and id(module) not in cross
            and _inputs(module.q) == _inputs(module.k)
        ):
            module.qkv = _projection([module.q, module.k, module.v], pack)
            if module.qkv is not None:
                fused.update(map(id, (module.q, module.k, module.v)))
        elif isinstance(module, GatedMLP):
            module.gate_up = _projection([module.gate, module.up], pack)
            if module.gate_up is not None:
                fused.update(map(id, (module.gate, module.up)))

    def packable(name: str, m: nn.Module) -> bool:
        return _plain(m) and id(m) not in fused and pack and can_pack(m.weight.dtype, m.weight.device)

    swap_modules(model, packable, lambda name, m: PackedLinear.wrap(m))
    for module in model.modules():  # what stays unpacked: fp32 (and fp64) weights in the (in, out) layout
        w = module.weight if type(module) is nn.Linear else None
        if w is not None and w.is_contiguous() and w.dtype not in HALF and not (pack and can_pack(w.dtype, w.device)):
            module.weight.data = w.data.t().contiguous().t()  # Wt (in, out) in memory
    return model


def _inputs(module: nn.Module) -> int | None:
    return getattr(module, "in_features", None)


def _plain(*modules: nn.Module) -> bool:
    return all(type(m) in (nn.Linear, PackedLinear) for m in modules)


def _projection(linears: list[nn.Module], pack: bool) -> Projection | None:
    """One product for float Linears, or for quantized layers that make one fused layer (same kind, inputs
    and bias); None for anything else (LoRA-wrapped projections, mixed kinds)."""
    if _plain(*linears):
        return Projection(linears, pack)
    fused = getattr(type(linears[0]), "fused", None)
    layer = fused(linears) if fused is not None else None
    return Projection(linears, pack, layer) if layer is not None else None
