"""`image_classification`: one label per image (records `{"image", "source", "label"}`), cross-entropy,
accuracy/P/R/F1, and a grid of the most confidently misclassified images in the report.

The `tokenizer` argument of the methods is the model's `ImageProcessor` (data/processors.py): the
evaluation transforms saved as preprocessor_config.json, plus the training augmentation. Images are
decoded when their batch is built (`examples` keeps the records as they are read), and every random
augmentation draws from the example's own generator, so resume stays exact.

Data (data/images.py): class folders, image files, IDX files (MNIST), CSVs of pixels; see `read_images`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import check, from_dict
from ..data.images import decode, read_images
from ..data.labels import LabelMap
from ..data.processors import ImageProcessor
from ..data.transforms import mixup
from ..errors import ConfigError
from ..evaluation.metrics import ImageClassificationMetrics
from .base import PROBABILITY_DIGITS, SupervisedTask, TaskOutput, accuracy, as_paths, model_inputs


class ImageClassification(SupervisedTask):
    name = "image_classification"
    head = "sequence"
    metric = ("accuracy", "max")
    linear_probe = "logistic"
    unit = "images"
    finetune = True

    def items(self, batch: dict) -> int:
        return batch["pixel_values"].shape[0]

    # ----- records
    def read(
        self,
        paths,
        columns: dict,
        labels: LabelMap | None = None,
        skip_bad: bool = False,
        with_labels: bool = True,
        summary=None,
    ) -> Iterator[dict]:
        # `summary` stays empty: these readers stop at the first bad file with a DataError naming it
        yield from read_images(
            as_paths(paths),
            label_column=columns.get("label_column") or "label",
            labels=labels,
            label_names=columns.get("label_names") or (),
            with_labels=with_labels,
            skip_bad=skip_bad,
        )

    def label_map(self, records: list[dict]) -> tuple[list[dict], LabelMap]:
        label_map = LabelMap.from_labels(r["label"] for r in records)
        return [{**r, "label": label_map.encode(r["label"])} for r in records], label_map

    def inputs(self, texts: Sequence[str]) -> Iterator[dict]:
        """Command-line arguments are image files (or folders / IDX / pixel CSVs: every image in them)."""
        for text in texts:
            yield from read_images(Path(text), with_labels=False)

    def preprocessor(self, tokenizer, model: nn.Module, options: dict, records: Sequence[dict]) -> ImageProcessor:
        """The loaded processor (a pretrained folder's) or a new one, with the `transforms` section applied;
        size and channels 0 take the model's image_size and channels."""
        if tokenizer is not None and not isinstance(tokenizer, ImageProcessor):
            raise ConfigError(
                "model.path: the folder has a tokenizer, not an image processor "
                "(preprocessor_config.json); image classification needs an image model"
            )
        base = dataclasses.asdict(tokenizer) if tokenizer is not None else {}
        processor = from_dict(ImageProcessor, {**base, **(options or {})}, prefix="transforms")
        c = model.config
        changes = {}
        if not processor.size and hasattr(c, "image_size"):
            changes["size"] = c.image_size
        if not processor.channels and getattr(c, "channels", None) in (1, 3):
            changes["channels"] = c.channels
        processor = dataclasses.replace(processor, **changes)
        if hasattr(c, "input_dim"):  # an MLP takes flat pixels: channels x size x size of them
            side2 = processor.size**2
            if not processor.channels and c.input_dim in (side2, 3 * side2):
                processor = dataclasses.replace(processor, channels=c.input_dim // side2)
            n = (processor.channels or 1) * side2
            check(
                n == c.input_dim,
                "model.input_dim",
                f"{c.input_dim}, but the images give "
                f"{processor.channels or 1} x {processor.size} x {processor.size} = {n} values; set "
                f"model.input_dim: {n}, or transforms.size and transforms.channels to match it",
            )
        return processor

    # ----- batches
    def encode(self, tokenizer: ImageProcessor, records: Sequence[dict], max_length: int | None) -> dict:
        batch = {"pixel_values": tokenizer.pixels(records)}
        if records and "label" in records[0]:
            batch["labels"] = torch.tensor([r["label"] for r in records], dtype=torch.long)
        return batch

    def examples(self, tokenizer, records: Sequence[dict], max_length: int | None) -> list[dict]:
        return list(records)  # decoded batch by batch in `collate`

    def collate(self, tokenizer: ImageProcessor, training: bool = True) -> Callable[[list, list | None], dict]:
        """Training batches get the augmentation (each example from its own generator) and mixup."""

        def collate(examples: list[dict], generators: list[torch.Generator] | None) -> dict:
            if not training or generators is None:
                return self.encode(tokenizer, examples, None)
            x = tokenizer.pixels(examples, generators)  # (B, C, H, W)
            y = torch.tensor([r["label"] for r in examples], dtype=torch.long)
            if not tokenizer.mixup:
                return {"pixel_values": x, "labels": y}
            x, partner, weight = mixup(x, y, tokenizer.mixup, generators)
            return {"pixel_values": x, "labels": y, "mix_labels": partner, "mix_weights": weight}

        return collate

    def record_key(self, record: dict) -> bytes:
        image = record["image"]
        if isinstance(image, np.ndarray):
            pixels = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()
        else:
            stat = Path(image).stat()
            pixels = f"{Path(image).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return repr((pixels, record.get("label"))).encode()

    # ----- training
    def outputs(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """(B, labels) logits through the model's own forward: a ViT whose head reads the class token
        computes its last block for that token alone (models/vit.py, `head_tokens`)."""
        return model(**model_inputs(model, batch))

    def loss(self, model, batch: dict) -> TaskOutput:
        logits = self.outputs(model, batch).float()  # (B, labels)
        y = batch["labels"]
        if "mix_labels" in batch:  # mixup: the two labels' losses, weighted as their images were mixed
            w = batch["mix_weights"].float()
            ce = w * F.cross_entropy(logits, y, reduction="none") + (1 - w) * F.cross_entropy(
                logits, batch["mix_labels"], reduction="none"
            )
            return TaskOutput({"loss": ce.sum()}, {"accuracy": accuracy(logits, y)})
        return TaskOutput({"loss": F.cross_entropy(logits, y, reduction="sum")}, {"accuracy": accuracy(logits, y)})

    # ----- evaluation and prediction
    def metrics(self, names: list[str], worst_k: int = 20, tokenizer=None) -> ImageClassificationMetrics:
        return ImageClassificationMetrics(len(names), names, worst_k=worst_k)

    def score(self, metrics, outputs, labels, records) -> tuple[float, int]:
        metrics.update(
            outputs,
            labels,
            texts=[r["source"] for r in records],
            images=lambda row: decode(records[row]["image"], records[row]["source"]),
        )
        return float(F.cross_entropy(outputs, labels, reduction="sum")), len(labels)

    def rows(self, tokenizer, records, outputs, names, max_length) -> Iterator[dict]:
        probs = outputs.softmax(-1)
        conf, best = probs.max(-1)
        for record, p, c, b in zip(records, probs.tolist(), conf.tolist(), best.tolist()):
            yield {
                "image": record["source"],
                "label": names[b],
                "probability": round(c, PROBABILITY_DIGITS),
                "probabilities": {n: round(v, PROBABILITY_DIGITS) for n, v in zip(names, p)},
            }
