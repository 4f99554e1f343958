"""Output heads and pooling. Every head is called as head(hidden (B, T, C), pooled (B, C)) -> logits."""

from __future__ import annotations

import torch
from torch import nn

from .dropout import Dropout
from .losses import linear_cross_entropy
from .mlp import ACTIVATIONS

POOLINGS = ("pooler", "cls", "mean", "last")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, kind: str) -> torch.Tensor:
    """(B, T, C) -> (B, C). 'cls': first token; 'mean': average of real tokens; 'last': last real token."""
    if kind in ("cls", "pooler"):
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(1) if kind == "mean" else hidden[:, -1]
    m = attention_mask.to(hidden.dtype)  # (B, T)
    if kind == "mean":
        return (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
    # last real token; works for left and right padding
    last = (m * torch.arange(1, m.shape[1] + 1, device=m.device)).argmax(1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class LMHead(nn.Module):
    """Projection to the vocabulary (weight usually tied to the token embedding).

    `scale` multiplies the hidden states first (T5 v1.0 scales by dim ** -0.5 before its tied projection);
    `bias` is a bias per token (Marian's final_logits_bias).
    """

    def __init__(self, dim: int, vocab_size: int, bias: bool = False, scale: float = 1.0):
        super().__init__()
        self.proj = nn.Linear(dim, vocab_size, bias=bias)
        self.scale = scale

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(hidden * self.scale if self.scale != 1.0 else hidden)  # (B, T, V)

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Summed cross-entropy of the logits of `hidden` (N, C) against `labels` (N,), chunk by chunk."""
        h = hidden * self.scale if self.scale != 1.0 else hidden
        return linear_cross_entropy(h, self.proj, labels, label_smoothing=label_smoothing)


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense -> activation -> LayerNorm -> vocabulary projection (+ bias)."""

    def __init__(self, dim: int, vocab_size: int, activation: str = "gelu", eps: float = 1e-12):
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.act = ACTIVATIONS[activation]
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Works on (B, T, C) or on gathered masked positions (N, C)."""
        return self.decoder(self.norm(self.act(self.transform(hidden))))


class PretrainingHead(nn.Module):
    """BERT pretraining: masked-LM logits (B, T, V) and next-sentence logits (B, 2)."""

    def __init__(self, dim: int, vocab_size: int, activation: str = "gelu", eps: float = 1e-12):
        super().__init__()
        self.mlm = MaskedLMHead(dim, vocab_size, activation, eps)
        self.nsp = nn.Linear(dim, 2)

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlm(hidden), self.nsp(pooled)


class SequenceHead(nn.Module):
    """Sequence classification or regression from the pooled state: (B, num_outputs)."""

    def __init__(self, dim: int, num_outputs: int, dropout: float = 0.1, bias: bool = True):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(dim, num_outputs, bias=bias)

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class TokenHead(nn.Module):
    """Per-token classification: (B, T, num_outputs)."""

    def __init__(self, dim: int, num_outputs: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(dim, num_outputs)

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


class NoHead(nn.Module):
    """Feature extractor: returns the hidden states unchanged."""

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        return hidden
