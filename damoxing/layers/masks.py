"""Attention masks from batch fields. Boolean, True = may attend, shaped to broadcast over heads."""

from __future__ import annotations

import torch


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) 1 for real tokens, 0 for padding -> (B, 1, 1, S)."""
    return attention_mask.bool()[:, None, None, :]


def document_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) document index of each packed token -> (B, 1, T, T) block-diagonal mask."""
    return (document_ids[:, :, None] == document_ids[:, None, :])[:, None]


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """AND of the given masks; None when there is nothing to mask."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out
