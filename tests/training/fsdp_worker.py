"""Run by test_fsdp.py under torchrun: train the tiny decoder sharded (fsdp) or replicated (ddp), resumably."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from damoxing.training import TrainConfig, Trainer, distributed
from training.tiny import HF, NO_SAVE, clm_source, tiny_decoder  # noqa: F401


def main(out: str, kind: str, resume: bool) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = distributed.setup()
    cfg = TrainConfig(
        task="clm",
        batch_size=8,
        max_steps=8,
        lr=3e-3,
        warmup_steps=2,
        log_every=1,
        plot=False,
        tensorboard=False,
        distributed=kind,
        save_every=4,
        keep_last=5,
        precision="fp32",
    )  # no autocast
    train = clm_source(8, n=96, rank=d.rank, world=d.world)
    evaluate = clm_source(8, n=32, rank=d.rank, world=d.world)
    Trainer(tiny_decoder(), "clm", train, cfg, out, eval_data=evaluate, dist=d, **HF).fit(resume=resume)
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "resume")
