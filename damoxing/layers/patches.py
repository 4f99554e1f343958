"""Images into token sequences (ViT, Dosovitskiy et al. 2021): non-overlapping patches, one vector each."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .positions import sinusoidal_table


class PatchEmbedding(nn.Module):
    """(B, C, H, W) pixels -> (B, N, dim) patch vectors, N = (H / patch) * (W / patch).

    A convolution with kernel = stride = patch size is a linear map of each flattened patch: the weight is the
    convolution's (dim, C, p, p), as checkpoints store it, and `forward` applies it as that linear map to the
    patches cut out by a reshape (the same sums; on a CPU its backward is a fraction of the convolution's).
    """

    def __init__(self, channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B, C, H, W = pixel_values.shape
        p = self.patch_size
        patches = pixel_values.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
        patches = patches.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C p p), patches in row-major order
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)  # (B, N, dim)


def sinusoidal_2d_table(rows: int, cols: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D positions (MAE, He et al. 2022): half the channels encode the row, half the column.

    (rows * cols, dim) in row-major patch order; `dim` must be divisible by 4.
    """
    if dim % 4:
        raise ValueError(f"2-D sinusoidal positions need dim divisible by 4, got {dim}")
    row = sinusoidal_table(rows, dim // 2, base)  # (rows, dim/2)
    col = sinusoidal_table(cols, dim // 2, base)  # (cols, dim/2)
    grid = torch.cat([row[:, None].expand(rows, cols, dim // 2), col[None].expand(rows, cols, dim // 2)], dim=-1)
    return grid.reshape(rows * cols, dim)
