"""Quantized drop-in layers and `quantize(model, method)`: int8 and int4 weights on PyTorch's CPU kernels.

    section = quantize(model, "int4", group_size=32)     # in place; also kept as model.quantization
    damoxing.save(model, tok, "out/")                    # int codes + scales in safetensors, the section in
    model = damoxing.load("out/")                        # config.json["quantization"]; load rebuilds the layers

Methods (what a user of torchao / optimum / llama.cpp's quantize expects):
    int8      weight-only, one scale per output row (per channel); the vocabulary projection too
    int4      weight-only, asymmetric, one scale and minimum per group of `group_size` inputs (default 32);
              the vocabulary projection int8 per row (as llama.cpp keeps its output layer at 6-8 bits)
    dynamic   int8 weights per channel, activations quantized per call (encoders and classifiers)
Word embeddings become int8 rows (one scale per row) under every method: a lookup reads one row, so they
cost memory, not time, and in MiniLM they are half the parameters. Task heads that are not a vocabulary
projection stay in float: they are small and their output is the answer.

Every layer keeps a portable copy of its codes (what is saved) and builds the kernel's own layout from it
in `pack()`, which also runs after every `.to()`; a layer is a plain nn.Module with nn.Linear's (or
nn.Embedding's) forward signature, swapped in with `models.swap`, so generation and evaluation take it as is.
Stored tensors, named after the weight as compressed-tensors does:
    weight         int8 codes (N, K), or int4 codes two to a byte, low nibble first (N, K / 2)
    weight_scale   (N, G) float: one per row (G = 1) or per group of K / G inputs
    weight_min     int4 only, (N, G): w = code * scale + min, codes 0..15 (GGUF's Q4_1 form; Q4_0 is min = -8 scale)

Kernels, measured before writing any (576x1536 at batch 1, 1-2 threads on the shared 2-core AMD EPYC; the
figures are indicative only): fp32 F.linear 80-120 us; torch._weight_int8pack_mm 50-75 us and
torch._weight_int4pack_mm_for_cpu (groups of 32) 26-31 us, both with bf16 activations only: with fp32 or
fp16 activations they take 1-3 ms (no fast path), so these layers compute in bf16 and return the input's
dtype. Dynamic int8: torch's fbgemm `quantized::linear_dynamic` 40-60 us at batch 1 and 5-7x faster than
fp32 at 128-1024 rows, where torch._int_mm is slower than fp32. torchao 0.18 wraps the same two aten
kernels in tensor subclasses and measured slower (about 290 us for int8 weight-only); its int4 CPU layout
is gone; optimum-quanto builds a C++ extension at import. So the layers call the aten kernels directly.
The int4 kernel needs N divisible by 16 and K by the group size; elsewhere (and off the CPU) a layer
multiplies by its dequantized weight instead: same numbers, no speed-up.

Int8 weights in groups (GGUF Q8_0 blocks) run on the int4 kernel as two planes: a code c in -128..127 is
16 * hi + lo with hi in -8..7 and lo in 0..15, so x @ W^T = int4mm(x, hi, 16 * scale) + int4mm(x, lo, scale):
the codes stay exact and the bytes read are those of int8.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..models.swap import matches, set_module, swap_modules

METHODS = ("int8", "int4", "dynamic")
KERNEL_GROUPS = (32, 64, 128, 256)  # group sizes _weight_int4pack_mm_for_cpu takes
COMPUTE_DTYPE = torch.bfloat16  # the only activation dtype with a fast path in both weight-only kernels
EMBEDDINGS = ("embed.tokens", "embed")  # word embeddings: the encoder's and the decoder's
VOCAB_PROJECTIONS = ("head.proj",)  # the one head layer quantized: a decoder's projection to the vocabulary


def _int4_kernel_fits(out_features: int, in_features: int, group_size: int) -> bool:
    return out_features % 16 == 0 and in_features % group_size == 0 and group_size in KERNEL_GROUPS


def _pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """(N, K) codes 0..15 -> the CPU kernel's own packed layout (N, K / 2) uint8."""
    return torch._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 1)


def _scale_and_zero(scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """(N, G) scales and zeros -> the kernel's (G, N, 2) bf16 table; the kernel computes (code - 8) * s + z."""
    return torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(COMPUTE_DTYPE)


def _on_cpu(t: torch.Tensor) -> bool:
    return t.device.type == "cpu"


class QuantizedLayer(nn.Module):
    """What every quantized layer shares: a kernel layout rebuilt after loading and after every `.to()`."""

    kind = ""

    def pack(self) -> None:
        """Build the kernel's tensors from the stored codes and scales (after they were filled)."""

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        self.pack()  # a new device or dtype: the kernel layout follows the stored tensors
        return module

    @classmethod
    def fused(cls, layers: list[QuantizedLayer]) -> QuantizedLayer | None:
        """One layer giving the outputs of `layers` side by side (q/k/v, gate/up for decoding: one kernel call
        instead of several): every stored tensor concatenated along the output rows, which is exact. None
        where they differ in kind, inputs or having a bias. (A copy: the layers keep their own tensors.)"""
        first = layers[0]
        if any(
            type(layer) is not type(first)
            or layer.kind != first.kind
            or layer.in_features != first.in_features
            or (layer.bias is None) != (first.bias is None)
            for layer in layers
        ) or not hasattr(first, "out_features"):
            return None
        out = sum(layer.out_features for layer in layers)
        fused = empty_layer(first.kind, nn.Linear(first.in_features, out, first.bias is not None, device="meta"))
        fused = fused if first.weight.is_cpu else fused.to(first.weight.device)
        with torch.no_grad():
            for name, tensor in fused.state_dict().items():
                tensor.copy_(torch.cat([layer.state_dict()[name] for layer in layers]))
        fused.pack()
        return fused


# ---------------------------------------------------------------------- int8 weights
class Int8Linear(QuantizedLayer):
    """y = x W^T + b with W = weight * weight_scale: int8 codes (N, K), one scale per row or per group."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, groups: int = 1):
        super().__init__()
        if in_features % groups:
            raise ConfigError(f"int8 groups: {groups} groups do not divide {in_features} inputs")
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, groups))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._scale = self._planes = None  # the kernel's tensors, built by pack()

    @property
    def kind(self) -> str:
        return "int8" if self.groups == 1 else f"int8/{self.in_features // self.groups}"

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int | None = None) -> Int8Linear:
        """Symmetric round-to-nearest: scale = max |w| / 127 per row (or per group of `group_size` inputs)."""
        w = linear.weight.detach().float()  # (N, K)
        groups = 1 if group_size is None else w.shape[1] // group_size
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, groups)
        codes, scale = quantize_int8(w, groups)
        with torch.no_grad():
            layer.weight.copy_(codes)
            layer.weight_scale.copy_(scale)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach().float())
        return layer.to(linear.weight.device)  # .to() packs

    def dequantize(self) -> torch.Tensor:
        """(N, K) float32 weight."""
        w = self.weight.float().view(self.out_features, self.groups, -1)  # (N, G, K / G)
        return (w * self.weight_scale.float()[..., None]).view(self.out_features, self.in_features)

    def to_float(self) -> nn.Linear:
        return _float_linear(self)

    def pack(self) -> None:
        self._scale = self._planes = None
        if not _on_cpu(self.weight):
            return
        if self.groups == 1:
            self._scale = self.weight_scale[:, 0].to(COMPUTE_DTYPE)  # (N,) for _weight_int8pack_mm
        elif _int4_kernel_fits(self.out_features, self.in_features, self.in_features // self.groups):
            hi, lo = (self.weight >> 4) + 8, self.weight & 15  # code = 16 * (hi - 8) + lo
            s = self.weight_scale.float()
            self._planes = (
                (_pack_int4(hi), _scale_and_zero(16 * s, torch.zeros_like(s))),
                (_pack_int4(lo), _scale_and_zero(s, 8 * s)),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., K) -> (..., N)
        if self._scale is None and self._planes is None:  # no kernel here: the dequantized weight
            return F.linear(x, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        flat = x.reshape(-1, self.in_features).to(COMPUTE_DTYPE)  # (M, K)
        if self._scale is not None:
            y = torch._weight_int8pack_mm(flat, self.weight, self._scale)  # (M, N)
        else:
            group = self.in_features // self.groups
            y = sum(torch._weight_int4pack_mm_for_cpu(flat, packed, group, sz) for packed, sz in self._planes)
        y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self.kind}"


def _float_linear(layer) -> nn.Linear:
    """The float nn.Linear a quantized layer stands for (its dequantized weight)."""
    linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device=layer.weight.device)
    with torch.no_grad():
        linear.weight.copy_(layer.dequantize())
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
    return linear


def quantize_int8(w: torch.Tensor, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float -> int8 codes (N, K) and scales (N, G), symmetric: |w - code * scale| <= scale / 2."""
    g = w.view(w.shape[0], groups, -1)  # (N, G, K / G)
    scale = g.abs().amax(-1) / 127  # (N, G)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row: any scale is exact
    codes = (g / scale[..., None]).round().clamp(-127, 127).to(torch.int8)
    return codes.view_as(w), scale


# ---------------------------------------------------------------------- int4 weights
class Int4Linear(QuantizedLayer):
    """y = x W^T + b with W = code * weight_scale + weight_min per group; codes 0..15, two to a byte."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 32):
        super().__init__()
        if in_features % group_size or group_size % 2:
            raise ConfigError(f"quantize.group_size: {group_size} must be even and divide {in_features} inputs")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = in_features // group_size
        self.register_buffer("weight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(out_features, groups))
        self.register_buffer("weight_min", torch.zeros(out_features, groups))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._packed = None  # the kernel's tensors, built by pack()

    @property
    def kind(self) -> str:
        return f"int4/{self.group_size}"

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int = 32) -> Int4Linear:
        """Asymmetric round-to-nearest per group: scale = (max - min) / 15, so |w - w_hat| <= scale / 2."""
        w = linear.weight.detach().float()
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size)
        g = w.view(w.shape[0], -1, group_size)  # (N, G, group)
        low, high = g.amin(-1), g.amax(-1)  # (N, G)
        scale = (high - low) / 15
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant group: code 0 is exact
        codes = ((g - low[..., None]) / scale[..., None]).round().clamp(0, 15).view_as(w)
        with torch.no_grad():
            layer.set_codes(codes, scale, low)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach().float())
        return layer.to(linear.weight.device)  # .to() packs

    def set_codes(self, codes: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor) -> None:
        """Store (N, K) codes 0..15 and (N, G) scales and minima (call pack() after)."""
        c = codes.to(torch.uint8)
        self.weight.copy_(c[:, 0::2] | (c[:, 1::2] << 4))
        self.weight_scale.copy_(scale)
        self.weight_min.copy_(minimum)

    def codes(self) -> torch.Tensor:
        """(N, K) uint8 codes 0..15."""
        return torch.stack([self.weight & 15, self.weight >> 4], dim=-1).view(self.out_features, self.in_features)

    def dequantize(self) -> torch.Tensor:
        w = self.codes().float().view(self.out_features, -1, self.group_size)  # (N, G, group)
        w = w * self.weight_scale.float()[..., None] + self.weight_min.float()[..., None]
        return w.view(self.out_features, self.in_features)

    def to_float(self) -> nn.Linear:
        return _float_linear(self)

    def pack(self) -> None:
        self._packed = None
        if _on_cpu(self.weight) and _int4_kernel_fits(self.out_features, self.in_features, self.group_size):
            s, m = self.weight_scale.float(), self.weight_min.float()
            self._packed = (_pack_int4(self.codes()), _scale_and_zero(s, m + 8 * s))  # code * s + m

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., K) -> (..., N)
        if self._packed is None:
            return F.linear(x, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        flat = x.reshape(-1, self.in_features).to(COMPUTE_DTYPE)  # (M, K)
        y = torch._weight_int4pack_mm_for_cpu(flat, self._packed[0], self.group_size, self._packed[1])  # (M, N)
        y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self.kind}"


# ---------------------------------------------------------------------- dynamic int8 (weights and activations)
class DynamicInt8Linear(QuantizedLayer):
    """int8 weights per channel; each call quantizes its input to 8 bits (fbgemm `quantized::linear_dynamic`).

    The input's scale is computed per call over the whole input (asymmetric, 7 bits: fbgemm's reduce_range,
    which keeps its int16 accumulation from saturating); the output is float32.
    """

    kind = "dynamic"

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, 1))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._packed = None  # fbgemm's packed weight, built by pack()

    @classmethod
    def from_float(cls, linear: nn.Linear) -> DynamicInt8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        codes, scale = quantize_int8(linear.weight.detach().float())
        with torch.no_grad():
            layer.weight.copy_(codes)
            layer.weight_scale.copy_(scale)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach().float())
        return layer.to(linear.weight.device)  # .to() packs

    def dequantize(self) -> torch.Tensor:
        return self.weight.float() * self.weight_scale.float()

    def to_float(self) -> nn.Linear:
        return _float_linear(self)

    def pack(self) -> None:
        self._packed = None
        if not _on_cpu(self.weight) or "fbgemm" not in torch.backends.quantized.supported_engines:
            return
        with warnings.catch_warnings():  # torch marks its quantized-tensor constructors deprecated (for torchao)
            warnings.simplefilter("ignore")
            q = torch._make_per_channel_quantized_tensor(
                self.weight, self.weight_scale[:, 0].double(), torch.zeros(self.out_features, dtype=torch.long), 0
            )
            bias = None if self.bias is None else self.bias.detach().float()
            self._packed = torch.ops.quantized.linear_prepack(q, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., K) -> (..., N)
        if self._packed is None:  # no fbgemm here: weight-only int8 through the dequantized weight
            return F.linear(x, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        flat = x.reshape(-1, self.in_features).float().contiguous()  # (M, K)
        y = torch.ops.quantized.linear_dynamic(flat, self._packed, True)  # (M, N), bias included
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, dynamic int8"


# ---------------------------------------------------------------------- int8 embeddings
class Int8Embedding(QuantizedLayer):
    """A lookup table of int8 rows with one scale per row (or per group): nn.Embedding's forward(ids)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, groups: int = 1):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.groups = num_embeddings, embedding_dim, groups
        self.register_buffer("weight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, groups))

    @property
    def kind(self) -> str:
        return "embedding-int8" if self.groups == 1 else f"embedding-int8/{self.embedding_dim // self.groups}"

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> Int8Embedding:
        layer = cls(embedding.num_embeddings, embedding.embedding_dim)
        codes, scale = quantize_int8(embedding.weight.detach().float())
        with torch.no_grad():
            layer.weight.copy_(codes)
            layer.weight_scale.copy_(scale)
        return layer.to(embedding.weight.device)

    def to_float(self) -> nn.Embedding:
        return nn.Embedding.from_pretrained(
            self.forward(torch.arange(self.num_embeddings, device=self.weight.device)), freeze=False
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (...) -> (..., C)
        rows = self.weight[ids].float().view(*ids.shape, self.groups, -1)  # (..., G, C / G)
        return (rows * self.weight_scale[ids].float()[..., None]).view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.kind}"


# ---------------------------------------------------------------------- whole models
def _kind_and_group(kind: str) -> tuple[str, int | None]:
    name, _, group = kind.partition("/")
    return name, int(group) if group else None


def empty_layer(kind: str, like: nn.Module) -> QuantizedLayer:
    """An unfilled quantized layer of `kind` ('int8', 'int8/32', 'int4/32', 'dynamic', 'embedding-int8[/32]')
    with the shape of the float module it replaces."""
    name, group = _kind_and_group(kind)
    if isinstance(like, nn.Embedding) and name == "embedding-int8":
        dim = like.embedding_dim
        return Int8Embedding(like.num_embeddings, dim, 1 if group is None else dim // group)
    if isinstance(like, nn.Linear):
        k, n, bias = like.in_features, like.out_features, like.bias is not None
        if name == "int8":
            return Int8Linear(k, n, bias, 1 if group is None else k // group)
        if name == "int4" and group is not None:
            return Int4Linear(k, n, bias, group)
        if name == "dynamic":
            return DynamicInt8Linear(k, n, bias)
    raise CheckpointError(
        f"quantization: unknown layer kind {kind!r} for a {type(like).__name__}; the file was "
        "written by a newer damoxing, or config.json was edited"
    )


def _body_linear(name: str, module: nn.Module) -> bool:
    in_head = name == "head" or name.startswith("head.")
    return isinstance(module, nn.Linear) and (not in_head or any(matches(name, p) for p in VOCAB_PROJECTIONS))


def _word_embedding(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.Embedding) and name in EMBEDDINGS


def quantize(
    model: nn.Module, method: str, group_size: int | None = None, embeddings: bool = True, skip: Iterable[str] = ()
) -> dict:
    """Swap every body nn.Linear (and the vocabulary projection) for its quantized layer, in place.

    `method`: int8 | int4 | dynamic. `group_size`: int4 groups (default 32); for int8, groups instead of one
    scale per row. `skip`: module names or globs left in float. Layers already quantized (GGUF blocks) stay.
    Returns the config.json section, also kept as `model.quantization`.
    """
    if method not in METHODS:
        raise ConfigError(f"quantize.method: {method!r} is not one of {', '.join(METHODS)}")
    if method == "dynamic" and group_size is not None:
        raise ConfigError("quantize.group_size: dynamic int8 has one scale per row; drop --group-size")
    group = group_size if group_size is not None else (32 if method == "int4" else None)
    skip = list(skip)
    section = dict(getattr(model, "quantization", None) or {"modules": {}, "notes": []})
    modules, notes = dict(section["modules"]), list(section["notes"])
    kept = lambda n: not any(matches(n, p) for p in skip)
    tied = _tied_projection(model)

    def to_quantized(name: str, linear: nn.Linear) -> nn.Module:
        if method == "dynamic":
            return DynamicInt8Linear.from_float(linear)
        if method == "int4" and name in VOCAB_PROJECTIONS:  # as llama.cpp keeps output.weight at 6-8 bits
            notes.append(
                f"{name}: the vocabulary projection stays int8 per row (int4 there raised SmolLM2-135M perplexity by 12%)"
            )
        elif method == "int4" and linear.in_features % group == 0:
            return Int4Linear.from_float(linear, group)
        elif method == "int4":
            notes.append(f"{name}: {linear.in_features} inputs do not split into groups of {group}; int8 per row")
        usable = group if method == "int8" and group is not None and linear.in_features % group == 0 else None
        return Int8Linear.from_float(linear, usable)

    names = swap_modules(model, lambda n, m: _body_linear(n, m) and kept(n), to_quantized)
    if embeddings:
        names += swap_modules(
            model, lambda n, m: _word_embedding(n, m) and kept(n), lambda n, m: Int8Embedding.from_float(m)
        )
    if tied and tied[0] in names and tied[1] in names:
        share_tied(model, *tied)
    modules.update({n: model.get_submodule(n).kind for n in names})
    still_tied = {p: e for p, e in (section.get("tied") or {}).items() if p in modules and _shared(model, p, e)}
    if tied and _shared(model, *tied):
        still_tied[tied[0]] = tied[1]
    section = {"method": method, "group_size": group, "modules": modules, "tied": still_tied, "notes": notes}
    model.quantization = section
    return section


def dequantize_layers(model: nn.Module, select) -> list[str]:
    """Swap quantized layers with select(name, layer) true back to float nn.Linear / nn.Embedding."""
    names = swap_modules(model, lambda n, m: isinstance(m, QuantizedLayer) and select(n, m), lambda n, m: m.to_float())
    section = getattr(model, "quantization", None)
    if section:
        section["modules"] = {n: k for n, k in section["modules"].items() if n not in names}
        section["tied"] = {p: e for p, e in section.get("tied", {}).items() if p not in names and e not in names}
    return names


def _tied_projection(model: nn.Module) -> tuple[str, str] | None:
    """(vocabulary projection, word embedding) names when the two share one weight."""
    for proj in VOCAB_PROJECTIONS:
        for emb in EMBEDDINGS:
            try:
                p, e = model.get_submodule(proj), model.get_submodule(emb)
            except AttributeError:
                continue
            if isinstance(p, nn.Linear) and isinstance(e, nn.Embedding) and p.weight is e.weight:
                return proj, emb
    return None


def share_tied(model: nn.Module, projection: str, embedding: str) -> None:
    """Where the projection and the embedding quantized alike (int8 rows), let them hold one copy."""
    p, e = model.get_submodule(projection), model.get_submodule(embedding)
    if isinstance(p, Int8Linear) and isinstance(e, Int8Embedding) and p.groups == e.groups and p.bias is None:
        e.weight, e.weight_scale = p.weight, p.weight_scale  # buffers: re-registered under the same names


def _shared(model: nn.Module, projection: str, embedding: str) -> bool:
    return model.get_submodule(projection).weight is model.get_submodule(embedding).weight


def quantized_layout(model: nn.Module, section: dict, source) -> None:
    """Swap in unfilled quantized layers as config.json's `quantization` section lists them (before loading)."""
    modules = section.get("modules")
    if not isinstance(modules, dict):
        raise CheckpointError(f"{source}: quantization.modules should map module names to layer kinds")
    for name, kind in modules.items():
        try:
            like = model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"{source}: quantization.modules names {name!r}, which this model has not") from None
        set_module(model, name, empty_layer(kind, like))
    for projection, embedding in (section.get("tied") or {}).items():
        share_tied(model, projection, embedding)
    model.quantization = section


def pack_quantized(model: nn.Module) -> None:
    """Rebuild every quantized layer's kernel tensors (after its stored tensors were loaded)."""
    for m in model.modules():
        if isinstance(m, QuantizedLayer):
            m.pack()
