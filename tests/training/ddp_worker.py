"""Run by test_ddp.py under torchrun: train the tiny decoder with the rank's shard of the data."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from damoxing.training import TrainConfig, Trainer, distributed
from training.tiny import HF, NO_SAVE, clm_source, tiny_decoder  # noqa: F401


def main(out: str, batch_size: int) -> None:
    torch.set_num_threads(1)
    d = distributed.setup()
    # float64 and no autocast (precision fp32): the runs differ only in summation order, so the test can be exact
    cfg = TrainConfig(
        task="clm",
        batch_size=batch_size,
        max_steps=20,
        lr=3e-3,
        warmup_steps=2,
        log_every=1,
        precision="fp32",
        plot=False,
        tensorboard=False,
    )
    train = clm_source(batch_size, n=96, rank=d.rank, world=d.world)
    Trainer(tiny_decoder().double(), "clm", train, cfg, out, **NO_SAVE, dist=d).fit()
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
