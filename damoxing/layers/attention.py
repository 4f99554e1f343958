"""Multi-head attention on scaled_dot_product_attention, with grouped-query heads and a key/value cache.

Masks are boolean and broadcastable to (B, H, Tq, Tk); True means "may attend".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.torch_version import TorchVersion

from .dropout import dropout
from .positions import apply_rotary

SDPA_GQA = TorchVersion(torch.__version__) >= "2.5"  # scaled_dot_product_attention(enable_gqa=True)
# Training on a CPU over at most this many keys, the scores computed as plain matrix products and a softmax
# are faster than SDPA's CPU kernel, forward and backward (2 cores, AVX2; bench/attention_kernels.py): ViT-tiny
# (50 keys, 16-wide heads) 0.70x its time, 65 keys x 64 wide 0.90x, 64 keys with a padding mask 0.94x; at 128
# keys with a padding mask SDPA wins (1.27x), at 256 by 1.9x. Not for causal attention (not measured).
SHORT_KEYS = 64


def cache_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """What a key/value cache stores for keys and values of `dtype`: bf16 and fp16 ones as fp32 on a CPU, where
    one query's attention over bf16 keys is several times slower than over fp32 ones (SDPA, 9 heads over 3 key
    heads at 144 positions: 94 against 20 us here); elsewhere the keys' own dtype."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) and device.type == "cpu" else dtype


class LayerKV:
    """Keys and values seen so far by one attention layer, in buffers allocated ahead of time.

    `update` writes the new positions in place (no torch.cat per step) and returns views of the filled part.
    The buffers grow by doubling when full; `reserve` sizes them once for a whole generation. They hold
    `cache_dtype` of the keys' dtype (fp32 for half-precision keys on a CPU), or `dtype` when given.
    """

    def __init__(self, dtype: torch.dtype | None = None):
        self.k: torch.Tensor | None = None  # (B, Hkv, capacity, d)
        self.v: torch.Tensor | None = None
        self.length = 0  # positions filled
        self.capacity_hint = 0
        self.dtype = dtype

    @property
    def capacity(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` positions (allocated at the next update if the shapes are not known yet)."""
        self.capacity_hint = max(self.capacity_hint, capacity)
        if self.k is not None and capacity > self.capacity:
            self._resize(capacity)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, Hkv, T, d); return all keys and values so far, (B, Hkv, length, d) views."""
        start, end = self.length, self.length + k.shape[2]
        if self.k is None:
            shape = (*k.shape[:2], max(end, self.capacity_hint), k.shape[3])
            dtype = self.dtype or cache_dtype(k.dtype, k.device)
            self.k, self.v = k.new_empty(shape, dtype=dtype), v.new_empty(shape, dtype=dtype)
        elif end > self.capacity:
            self._resize(max(end, 2 * self.capacity))
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def _resize(self, capacity: int) -> None:
        k = self.k.new_empty((*self.k.shape[:2], capacity, self.k.shape[3]))
        v = self.v.new_empty(k.shape)
        k[:, :, : self.length], v[:, :, : self.length] = self.k[:, :, : self.length], self.v[:, :, : self.length]
        self.k, self.v = k, v

    def select(self, index: torch.Tensor) -> None:
        """Keep batch rows `index` (beam search reorders and prunes hypotheses); copies only the filled part."""
        if self.k is None:
            return
        n = self.length
        k = self.k.new_empty((len(index), *self.k.shape[1:]))
        v = self.v.new_empty(k.shape)
        k[:, :, :n], v[:, :, :n] = self.k[index, :, :n], self.v[index, :, :n]
        self.k, self.v = k, v

    def crop(self, length: int) -> None:
        """Forget every position from `length` on (a conversation that continues from an earlier point)."""
        self.length = min(self.length, length)


class KVCache(list):
    """One LayerKV per block; `length` is the number of positions already cached (the same in every row)."""

    def __init__(self, layers: int, dtype: torch.dtype | None = None):
        super().__init__(LayerKV(dtype) for _ in range(layers))

    @property
    def length(self) -> int:
        return self[0].length

    def reserve(self, capacity: int) -> None:
        for layer in self:
            layer.reserve(capacity)

    def select(self, index: torch.Tensor) -> None:
        for layer in self:
            layer.select(index)

    def crop(self, length: int) -> None:
        for layer in self:
            layer.crop(length)


def causal_mask(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """(Tq, Tk) lower-triangular mask; queries are the last q_len of k_len positions."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention. `kv_heads < heads` gives grouped-query attention.

    Set `record_probs = True` to keep the attention probabilities of the last call in `.probs`
    (for visualisation); the default path stays on the fused SDPA kernel.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int | None = None,
        causal: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        kv_dim: int | None = None,
        head_dim: int | None = None,
        scale: float | None = None,  # scores * scale; None: 1 / sqrt(head_dim) (T5 folds it into its init: 1.0)
    ):
        super().__init__()
        kv_heads = kv_heads or heads
        if heads % kv_heads:
            raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.causal, self.dropout = heads, kv_heads, causal, dropout
        self.head_dim = head_dim or dim // heads
        self.scale = scale
        kv_dim = kv_dim or dim
        self.q = nn.Linear(dim, heads * self.head_dim, bias=bias)
        self.k = nn.Linear(kv_dim, kv_heads * self.head_dim, bias=bias)
        self.v = nn.Linear(kv_dim, kv_heads * self.head_dim, bias=bias)
        self.o = nn.Linear(heads * self.head_dim, dim, bias=bias)
        self.record_probs = False
        self.probs: torch.Tensor | None = None
        # Inference: x -> [q; k; v](x) in one matmul, a callable over the three Linears' weights side by side
        # (set by inference.prepare_for_decoding; a plain object, so state dicts never see it)
        self.qkv = None

    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        context: torch.Tensor | None = None,  # (B, S, C') for cross-attention
        mask: torch.Tensor | None = None,  # bool, broadcastable to (B, H, T, S)
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,  # cos, sin: (B, 1, T, d)
        cache: LayerKV | None = None,
        position_bias: torch.Tensor | None = None,  # (1 | B, H, T, S) added to the scores (T5's relative positions)
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,  # keys, values from `project_kv`, computed once
    ) -> torch.Tensor:
        B, T, _ = x.shape
        if context is None and kv is None and self._fused():
            q, k, v = self._project_fused(x, rope)
        else:
            q = self.q(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)
            k, v = kv if kv is not None else self.project_kv(x if context is None else context)  # (B, Hkv, S, d)
            if rope is not None:
                q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, Hkv, S_total, d), in the cache's dtype
            q = q.to(k.dtype)
        grouped = self.kv_heads != self.heads
        if grouped and (self.record_probs or not SDPA_GQA):
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)  # (B, H, S, d)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
            grouped = False

        S = k.shape[2]
        is_causal = False
        if self.causal and T > 1:
            if mask is None and position_bias is None and T == S:
                is_causal = True  # fast path: the kernel applies the triangle itself
            else:
                tri = causal_mask(T, S, x.device)
                mask = tri if mask is None else mask & tri
        if mask is not None:
            mask = mask | ~mask.any(-1, keepdim=True)  # a row with nothing to attend (padding) attends everywhere
        if position_bias is not None:  # additive scores; masked places get -inf
            bias = position_bias.to(q.dtype)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        p = self.dropout if self.training else 0.0

        on_cpu, training = q.device.type == "cpu", torch.is_grad_enabled()
        if self.record_probs or (on_cpu and p > 0.0) or (on_cpu and training and S <= SHORT_KEYS and not self.causal):
            # recording the probabilities; or training on a CPU with dropout, where SDPA's CPU kernel would drop
            # scores one Bernoulli draw at a time (the same math with layers.dropout's mask costs a quarter of
            # it), or over few keys, where its kernel is slower than the plain products (SHORT_KEYS)
            out = self._attend_math(q, k, v, mask, is_causal, p)
        elif grouped:  # each group of query heads reads its key/value head in place: no copies
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal, scale=self.scale, enable_gqa=True
            )
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal, scale=self.scale
            )
        return self.o(out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim).to(x.dtype))  # (B, T, C)

    def project_kv(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, C') -> keys, values (B, Hkv, S, d). Cross-attention computes them once per source."""
        B, S, _ = src.shape
        k = self.k(src).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(src).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        return k, v

    def _fused(self) -> bool:
        """Use the fused matrix: it is set and autograd is off (it bypasses the q/k/v Parameters)."""
        return self.qkv is not None and not torch.is_grad_enabled()

    def _apply(self, fn, recurse=True):
        self.qkv = None  # .to() and the like give q/k/v new storage: the fused matrix is stale
        return super()._apply(fn, recurse)

    def _project_fused(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None):
        B, T, _ = x.shape
        qkv = self.qkv(x)  # (B, T, (H + 2 Hkv) d)
        heads = qkv.view(B, T, self.heads + 2 * self.kv_heads, self.head_dim).transpose(1, 2)  # (B, H + 2Hkv, T, d)
        qk, v = heads[:, : self.heads + self.kv_heads], heads[:, self.heads + self.kv_heads :]
        if rope is not None:
            qk = apply_rotary(qk, *rope)  # queries and keys rotated in one go
        return qk[:, : self.heads], qk[:, self.heads :], v  # (B, H, T, d), (B, Hkv, T, d), (B, Hkv, T, d)

    def _attend_math(self, q, k, v, mask, is_causal, p):
        if k.shape[1] != q.shape[1]:  # grouped query heads: each key/value head serves heads / kv_heads of them
            k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
        scale = self.head_dim**-0.5 if self.scale is None else self.scale
        scores = (q * scale) @ k.transpose(-2, -1)  # (B, H, T, S); scaling the queries is the smaller product
        if is_causal:
            mask = causal_mask(q.shape[2], k.shape[2], q.device)
        if mask is not None and mask.dtype != torch.bool:
            scores = scores + mask  # a position bias, with -inf where masked
        elif mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(-1).to(q.dtype)  # fp32+
        if self.record_probs:
            self.probs = probs.detach()
        return dropout(probs, p) @ v
