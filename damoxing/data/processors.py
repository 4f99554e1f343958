"""What turns records into model inputs for image and tabular models, saved beside the weights.

    processor = load_processor("runs/x/model")      # preprocessor_config.json if the folder has one, else the tokenizer
    pixels = processor.pixels(records)             # ImageProcessor: (B, C, H, W) evaluation inputs
    features = processor.features(records)         # TabularProcessor: (B, F) standardised columns

Both play the tokenizer's part for their tasks (the `tokenizer` argument of the task methods) and are
written as `preprocessor_config.json` by `save(folder)`: the image one in the layout of transformers'
ViTImageProcessor (size, rescale factor, mean and std), so `AutoImageProcessor` reads it too. Training
augmentation settings are saved with it (under "damoxing_training"), for the record only: evaluation
and prediction never apply them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_open
from ..config import check, check_choice, check_positive, check_range, from_dict
from ..errors import CheckpointError, DataError
from ..tokenizer import Tokenizer
from .images import decode
from .transforms import normalize, rand_augment, random_crop, random_flip, resize, stack

CONFIG_FILE = "preprocessor_config.json"
TRAINING_FIELDS = ("crop_padding", "flip", "randaugment", "randaugment_magnitude", "mixup")


@dataclass(frozen=True)
class ImageProcessor:
    """Evaluation transforms (decode -> channels -> resize -> scale -> normalise) and training augmentation.

    Also the `transforms:` section of an image fine-tuning config; there `size` and `channels` 0 mean
    "the model's" (its image_size and channels).
    """

    size: int = 0  # resize to size x size (bilinear, antialiased); 0: keep, and every image must match
    channels: int = 0  # 1 (grey) or 3 (RGB); 0: as decoded
    mean: tuple[float, ...] = (0.5,)  # per channel after scaling to [0, 1]; one value: every channel
    std: tuple[float, ...] = (0.5,)
    # training only
    crop_padding: int = 0  # random crop of the image's size from the image padded by this many pixels
    flip: bool = False  # horizontal flip with probability 0.5
    randaugment: int = 0  # RandAugment operations per image (0: off)
    randaugment_magnitude: int = 9  # 0-30
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup (0: off)

    def __post_init__(self):
        check_positive("transforms.size", self.size, allow_zero=True)
        check_choice("transforms.channels", self.channels, (0, 1, 3))
        for key in ("mean", "std"):
            values = getattr(self, key)
            check(
                len(values) in ({1, self.channels} if self.channels else {1, 3}),
                f"transforms.{key}",
                f"give one value per channel ({self.channels or '1 or 3'}), or one for all, not {list(values)}.",
            )
        check(all(s > 0 for s in self.std), "transforms.std", f"every value must be > 0, got {list(self.std)}.")
        check_positive("transforms.crop_padding", self.crop_padding, allow_zero=True)
        check_positive("transforms.randaugment", self.randaugment, allow_zero=True)
        check_range("transforms.randaugment_magnitude", self.randaugment_magnitude, 0, 30)
        check_positive("transforms.mixup", self.mixup, allow_zero=True)

    # ----- images -> tensors
    def view(self, record: dict) -> torch.Tensor:
        """One record's image after decoding, channel conversion and resizing: (C, H, W) in [0, 255]
        (uint8 when no resize was needed)."""
        image = decode(record["image"], record["source"], self.channels or None)
        return resize(image, self.size) if self.size else image

    def pixels(self, records: Sequence[dict], generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """(B, C, H, W) normalised model inputs; with `generators` (one per record) the training augmentation."""
        batch = stack([self.view(r) for r in records], [r["source"] for r in records])  # (B, C, H, W) in [0, 255]
        if generators is not None:
            if self.crop_padding:
                batch = random_crop(batch, self.crop_padding, generators)
            if self.flip:
                batch = random_flip(batch, generators)
            if self.randaugment:
                batch = torch.stack(
                    [
                        rand_augment(x / 255, self.randaugment, self.randaugment_magnitude, g) * 255
                        for x, g in zip(batch, generators)
                    ]
                )
        return normalize(batch, self.mean, self.std)

    # ----- files
    def to_hf(self) -> dict:
        """preprocessor_config.json in transformers' ViTImageProcessor layout (+ channels, + training settings)."""
        side = self.size or None
        return {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": bool(self.size),
            "size": {"height": side, "width": side} if side else {},
            "resample": 2,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "num_channels": self.channels or None,
            "damoxing_training": {k: getattr(self, k) for k in TRAINING_FIELDS},
        }

    @classmethod
    def from_hf(cls, cfg: dict, source: Path, channels: int = 0) -> ImageProcessor:
        """From a preprocessor_config.json dict (transformers' ViT and similar processors)."""
        size = 0
        if cfg.get("do_resize", True) and cfg.get("size"):
            s = cfg["size"]
            s = {"height": s, "width": s} if isinstance(s, int) else s
            if set(s) != {"height", "width"} or s["height"] != s["width"]:
                raise CheckpointError(f"{source}: size {s} is not supported (only a square height x width)")
            size = int(s["height"])
        if cfg.get("do_center_crop"):
            raise CheckpointError(f"{source}: do_center_crop is not supported; resize to the model's size instead")
        if not cfg.get("do_rescale", True) or not math.isclose(cfg.get("rescale_factor", 1 / 255), 1 / 255):
            raise CheckpointError(f"{source}: only do_rescale with rescale_factor 1/255 is supported")
        normalise = cfg.get("do_normalize", True)
        mean = tuple(cfg.get("image_mean", (0.5,))) if normalise else (0.0,)
        std = tuple(cfg.get("image_std", (0.5,))) if normalise else (1.0,)
        training = {k: v for k, v in (cfg.get("damoxing_training") or {}).items() if k in TRAINING_FIELDS}
        values = dict(size=size, channels=cfg.get("num_channels") or channels, mean=mean, std=std, **training)
        try:
            return from_dict(cls, values, prefix=str(source))
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}") from None

    def save(self, folder: str | os.PathLike) -> None:
        _write(Path(folder) / CONFIG_FILE, self.to_hf())

    def fingerprint(self) -> str:
        """What the evaluation inputs depend on (the features cache key)."""
        return json.dumps({k: v for k, v in self.to_hf().items() if k != "damoxing_training"}, sort_keys=True)


@dataclass(frozen=True)
class TabularProcessor:
    """Numeric feature columns -> (B, F) float tensor, standardised with the training data's mean and std."""

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, records: Sequence[dict], columns: Sequence[str] = (), standardize: bool = True) -> TabularProcessor:
        """Feature columns (default: every column but the label, in file order) and their statistics."""
        if not records:
            raise DataError("no training rows to fit the feature statistics on")
        names = tuple(columns) or tuple(records[0]["fields"])
        x = cls(names, (0.0,) * len(names), (1.0,) * len(names)).features(records).double()
        mean = x.mean(0) if standardize else torch.zeros(len(names), dtype=torch.float64)
        std = x.std(0, unbiased=False) if standardize else torch.ones(len(names), dtype=torch.float64)
        std = torch.where(std > 0, std, torch.ones_like(std))  # a constant column stays as it is, minus its mean
        return cls(names, tuple(mean.tolist()), tuple(std.tolist()))

    def features(self, records: Sequence[dict]) -> torch.Tensor:
        rows = np.empty((len(records), len(self.columns)), dtype=np.float64)
        for i, record in enumerate(records):
            fields = record["fields"]
            for j, name in enumerate(self.columns):
                if name not in fields:
                    raise DataError(f"{record['source']}: no column {name!r}; the model reads {list(self.columns)}")
                try:
                    rows[i, j] = float(fields[name])
                except (TypeError, ValueError):
                    rows[i, j] = math.nan
                if not math.isfinite(rows[i, j]):
                    raise DataError(
                        f"{record['source']}: column {name!r} holds {fields[name]!r}, not a number; "
                        "the MLP reads numeric columns only (encode categories as numbers first)"
                    )
        mean, std = torch.tensor(self.mean, dtype=torch.float64), torch.tensor(self.std, dtype=torch.float64)
        return ((torch.from_numpy(rows) - mean) / std).float()  # (B, F)

    def save(self, folder: str | os.PathLike) -> None:
        _write(
            Path(folder) / CONFIG_FILE,
            {
                "processor_type": "TabularProcessor",
                "feature_columns": list(self.columns),
                "mean": list(self.mean),
                "std": list(self.std),
            },
        )

    @classmethod
    def from_dict(cls, cfg: dict, source: Path) -> TabularProcessor:
        try:
            columns, mean, std = (tuple(cfg[k]) for k in ("feature_columns", "mean", "std"))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{source}: a tabular processor needs feature_columns, mean and std ({e})") from None
        if not len(columns) == len(mean) == len(std):
            raise CheckpointError(f"{source}: feature_columns, mean and std differ in length")
        return cls(columns, mean, std)

    def fingerprint(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _write(path: Path, data: dict) -> None:
    with atomic_open(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def has_processor(folder: str | os.PathLike) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


def load_processor(path: str | os.PathLike):
    """The folder's preprocessor_config.json (an image or tabular processor), else its tokenizer."""
    path = Path(path)
    if not has_processor(path):
        if path.is_dir() and _model_config(path).get("image_size") is not None:
            raise CheckpointError(
                f"no {CONFIG_FILE} in {path}: an image model needs its image processor (size, "
                "mean, std); copy the file from the model's source, or write one with "
                "damoxing.data.processors.ImageProcessor(size=..., mean=..., std=...).save(folder)"
            )
        return Tokenizer.load(path)
    file = path / CONFIG_FILE
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e}); fix it or save the model again") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file} should hold a JSON object")
    if cfg.get("processor_type") == "TabularProcessor":
        return TabularProcessor.from_dict(cfg, file)
    return ImageProcessor.from_hf(cfg, file, _model_channels(path))


def _model_config(folder: Path) -> dict:
    """The model's config.json beside the processor ({} if unreadable: loading the model reports that)."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _model_channels(folder: Path) -> int:
    """num_channels (or channels) of the model's config.json: 0 if unknown."""
    cfg = _model_config(folder)
    value = cfg.get("num_channels", cfg.get("channels", 0))
    return value if value in (1, 3) else 0
