"""Image transforms on tensors, written with torch (no torchvision): resize, random crop with padding,
horizontal flip, RandAugment-style operations, normalisation, mixup.

Every random choice comes from the example's own `torch.Generator`, the one `training.batches.Batches`
seeds from (seed, epoch, example index): an example gets the same crop, flip and operations whichever
batch, rank or resumed run it lands in, so resume after a kill is bitwise exact. Each function draws
from each example's generator in a fixed order.

Pixels are float tensors in [0, 255] until `normalize` (the batch functions) or in [0, 1] (the RandAugment
operations, on one image (C, H, W) at a time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError


# ---------------------------------------------------------------------- size
def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) -> (C, size, size) float, bilinear with antialiasing (as Pillow's resize); unchanged if
    already that size."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    out = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(0, 255)


def stack(images: Sequence[torch.Tensor], sources: Sequence[str]) -> torch.Tensor:
    """(C, H, W) images of one size -> (B, C, H, W) float; a different size or channel count names the file."""
    if not images:
        raise DataError("no images in the batch")
    first = tuple(images[0].shape)
    for image, source in zip(images, sources):
        if tuple(image.shape) != first:
            raise DataError(
                f"{source}: image is {_shape(image.shape)} but {sources[0]} is {_shape(first)}; images "
                "of mixed sizes need a resize (set transforms.size)"
            )
    if all(image.dtype == images[0].dtype for image in images):
        return torch.stack(list(images)).float()
    return torch.stack([image.float() for image in images])


def _shape(shape) -> str:
    c, h, w = shape
    return f"{w}x{h} with {c} channel{'s' if c > 1 else ''}"


# ---------------------------------------------------------------------- batch transforms (B, C, H, W)
def random_crop(batch: torch.Tensor, padding: int, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Pad each side by `padding` zeros and cut an H x W window at a random offset per example."""
    B, _C, H, W = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    side = 2 * padding + 1
    offsets = torch.tensor([int(torch.randint(0, side * side, (1,), generator=g)) for g in generators])  # (B,)
    rows = (offsets // side)[:, None] + torch.arange(H)  # (B, H)
    cols = (offsets % side)[:, None] + torch.arange(W)  # (B, W)
    b = torch.arange(B)[:, None, None]
    return padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_flip(batch: torch.Tensor, generators: Sequence[torch.Generator], p: float = 0.5) -> torch.Tensor:
    """Mirror each example left-right with probability p."""
    flip = torch.tensor([float(torch.rand(1, generator=g)) < p for g in generators])  # (B,)
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float], scale: float = 1 / 255) -> torch.Tensor:
    """(x * scale - mean) / std per channel (one mean / std value: every channel)."""
    C = batch.shape[1]
    if max(len(mean), len(std)) not in (1, C):
        raise DataError(
            f"images have {C} channel(s) but the normalisation has {max(len(mean), len(std))} values; "
            "set transforms.channels (1: grey, 3: RGB) or one mean and std per channel"
        )
    m = torch.tensor(list(mean) * (C if len(mean) == 1 else 1), dtype=batch.dtype)[:, None, None]
    s = torch.tensor(list(std) * (C if len(std) == 1 else 1), dtype=batch.dtype)[:, None, None]
    return (batch * scale - m) / s


def mixup(batch: torch.Tensor, labels: torch.Tensor, alpha: float, generators: Sequence[torch.Generator]):
    """Mixup (Zhang et al. 2018), per example: x_i <- w x_i + (1 - w) x_j with w ~ Beta(alpha, alpha) kept >= 0.5
    and a partner j drawn from the batch. Returns (mixed batch, partner labels, weights w (B,))."""
    draws = [
        (int(torch.randint(0, len(generators), (1,), generator=g)), int(torch.randint(0, 2**31, (1,), generator=g)))
        for g in generators
    ]  # (partner, Beta seed)
    partner = torch.tensor([j for j, _ in draws])
    w = torch.tensor(
        [max(b, 1 - b) for b in (np.random.default_rng(s).beta(alpha, alpha) for _, s in draws)], dtype=batch.dtype
    )  # (B,): the example's own label stays the larger part
    mixed = w[:, None, None, None] * batch + (1 - w[:, None, None, None]) * batch[partner]
    return mixed, labels[partner], w


# ---------------------------------------------------------------------- RandAugment (Cubuk et al. 2020)
def _uniform_sign(g: torch.Generator) -> float:
    return -1.0 if float(torch.rand(1, generator=g)) < 0.5 else 1.0


def _affine(image: torch.Tensor, theta: list[list[float]]) -> torch.Tensor:
    """Resample (C, H, W) through a 2x3 matrix in normalised coordinates; outside pixels are black."""
    t = torch.tensor(theta, dtype=image.dtype)[None]
    grid = F.affine_grid(t, [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def _grey(image: torch.Tensor) -> torch.Tensor:
    if image.shape[0] == 1:
        return image
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (other + factor * (image - other)).clamp(0, 1)


def _equalize(image: torch.Tensor) -> torch.Tensor:
    """Pillow's histogram equalisation, per channel, on 256 levels."""
    levels = (image * 255).round().long().clamp(0, 255)
    out = []
    for channel in levels:
        hist = torch.bincount(channel.flatten(), minlength=256)
        nonzero = hist[hist > 0]
        step = (int(hist.sum()) - int(nonzero[-1])) // 255
        if step == 0:
            out.append(channel.float() / 255)
            continue
        lut = ((torch.cumsum(hist, 0) - hist + step // 2) // step).clamp(max=255)
        out.append(lut[channel].float() / 255)
    return torch.stack(out)


def _sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=image.dtype) / 13
    C = image.shape[0]
    smooth = F.conv2d(image[None], kernel.expand(C, 1, 3, 3), groups=C)[0]  # (C, H - 2, W - 2)
    blurred = image.clone()
    blurred[:, 1:-1, 1:-1] = smooth  # borders stay as they are (Pillow's SMOOTH filter)
    return _blend(image, blurred, factor)


def _op(name: str, image: torch.Tensor, level: float, g: torch.Generator) -> torch.Tensor:
    """One operation at `level` in [0, 1] (torchvision's RandAugment ranges); signed ones pick a random sign."""
    if name == "identity":
        return image
    if name == "autocontrast":
        low, high = image.amin((1, 2), keepdim=True), image.amax((1, 2), keepdim=True)
        return torch.where(high > low, (image - low) / (high - low).clamp(min=1e-8), image)
    if name == "equalize":
        return _equalize(image)
    if name == "posterize":
        bits = 8 - round(4 * level)
        return ((image * 255).round().long() & (0xFF << (8 - bits)) & 0xFF).float() / 255
    if name == "solarize":
        return torch.where(image >= 1.0 - level, 1.0 - image, image)
    sign = _uniform_sign(g)
    if name == "rotate":
        a = math.radians(30.0 * level * sign)
        return _affine(image, [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    if name == "shear_x":
        return _affine(image, [[1.0, 0.3 * level * sign, 0.0], [0.0, 1.0, 0.0]])
    if name == "shear_y":
        return _affine(image, [[1.0, 0.0, 0.0], [0.3 * level * sign, 1.0, 0.0]])
    if name == "translate_x":  # up to 0.45 of the width; normalised coordinates span 2
        return _affine(image, [[1.0, 0.0, 0.9 * level * sign], [0.0, 1.0, 0.0]])
    if name == "translate_y":
        return _affine(image, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.9 * level * sign]])
    factor = 1.0 + 0.9 * level * sign
    if name == "brightness":
        return (image * factor).clamp(0, 1)
    if name == "contrast":
        return _blend(image, _grey(image).mean().expand_as(image), factor)
    if name == "color":
        return _blend(image, _grey(image).expand_as(image), factor)
    if name == "sharpness":
        return _sharpness(image, factor)
    raise ValueError(f"unknown RandAugment operation {name!r}")


RANDAUGMENT_OPS = (
    "identity",
    "autocontrast",
    "equalize",
    "rotate",
    "solarize",
    "color",
    "posterize",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)


def rand_augment(image: torch.Tensor, ops: int, magnitude: int, g: torch.Generator) -> torch.Tensor:
    """`ops` operations chosen uniformly (with repeats) at `magnitude` (0-30) on one (C, H, W) image in [0, 1]."""
    level = magnitude / 30
    for _ in range(ops):
        name = RANDAUGMENT_OPS[int(torch.randint(0, len(RANDAUGMENT_OPS), (1,), generator=g))]
        image = _op(name, image, level, g)
    return image
