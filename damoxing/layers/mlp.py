"""Feed-forward layers: a two-layer MLP with a chosen activation, and gated MLPs (Shazeer 2020): SwiGLU
(Llama) and GELU-gated (T5 v1.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout

ACTIVATIONS = {
    "gelu": F.gelu,  # exact erf GELU (BERT)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new", one fused kernel
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    """fc1 -> activation -> fc2."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class GatedMLP(nn.Module):
    """down(activation(gate(x)) * up(x)): SwiGLU with silu (Llama), GEGLU with gelu_tanh (T5 v1.1)."""

    def __init__(self, dim: int, hidden: int, activation: str = "silu", bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.dropout = Dropout(dropout)
        self.gate_up = None  # inference: x -> [gate; up](x) in one matmul (set by inference.prepare_for_decoding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        if self.gate_up is not None and not torch.is_grad_enabled():  # one matmul for both (inference)
            gate, up = self.gate_up(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate(x), self.up(x)
        return self.dropout(self.down(self.act(gate) * up))

    def _apply(self, fn, recurse=True):
        self.gate_up = None  # .to() and the like give gate/up new storage: gate_up is stale
        return super()._apply(fn, recurse)


class SwiGLU(GatedMLP):
    """down(silu(gate(x)) * up(x)) (Llama)."""

    def __init__(self, dim: int, hidden: int, bias: bool = False, dropout: float = 0.0):
        super().__init__(dim, hidden, "silu", bias, dropout)
