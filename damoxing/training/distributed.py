"""Several processes, one model: set up from torchrun's environment, wrap in DDP or FSDP, reduce sums.

    torchrun --nproc-per-node 2 -m damoxing pretrain configs/gpt-mini-clm.yaml

Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op and world = 1.
gloo on CPU, NCCL on GPU. Each rank reads its own shard of the data (see batches.Batches(rank, world));
only rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: str | None = None) -> Dist:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun) and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, local, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, kind: str = "ddp") -> nn.Module:
    """DistributedDataParallel (a full copy per rank) or FSDP (parameters sharded across ranks)."""
    if not d.enabled:
        return model
    if kind == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(model, device_id=d.device if d.device.type == "cuda" else None,
                                        use_orig_params=True)
    return nn.parallel.DistributedDataParallel(model, device_ids=[d.device] if d.device.type == "cuda" else None)


def no_sync(model: nn.Module, skip: bool):
    """Skip the gradient all-reduce on micro-steps before the last of an accumulated step."""
    return model.no_sync() if skip and hasattr(model, "no_sync") else contextlib.nullcontext()


def all_sum(values: dict[str, torch.Tensor], d: Dist) -> dict[str, torch.Tensor]:
    """Sum each value over ranks (one all-reduce for the whole dict)."""
    if not values or not d.enabled:
        return values
    keys = sorted(values)
    flat = torch.stack([values[k].detach().double().to(d.device) for k in keys])
    dist.all_reduce(flat)
    return {k: flat[i] for i, k in enumerate(keys)}


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, d: Dist) -> bool:
    """Rank 0's decision (e.g. early stop) for everyone."""
    if not d.enabled:
        return flag
    t = torch.tensor([int(flag)], device=d.device)
    dist.broadcast(t, 0)
    return bool(t.item())
