"""Several processes, one model: set up from torchrun's environment, wrap in DDP or FSDP, reduce sums.

    torchrun --nproc-per-node 2 -m damoxing pretrain damoxing/configs/gpt-mini-clm.yaml

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
    device: torch.device = torch.device("cpu")  # noqa: RUF009

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


def wrap(model: nn.Module, d: Dist, kind: str = "ddp", units: list[nn.Module] = ()) -> nn.Module:
    """DistributedDataParallel (a full copy per rank) or FSDP2 (parameters sharded across ranks).

    FSDP shards each of `units` (the model's blocks) separately, so a block's full weights exist only
    while it runs; the rest is sharded as one unit.
    """
    if not d.enabled:
        return model
    if kind == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(d.device.type, (d.world,))
        for module in units:
            fully_shard(module, mesh=mesh)
        return fully_shard(model, mesh=mesh)
    return nn.parallel.DistributedDataParallel(model, device_ids=[d.device] if d.device.type == "cuda" else None)


def is_sharded(model: nn.Module) -> bool:
    return hasattr(model, "set_requires_gradient_sync")  # an FSDP2 module


def no_sync(model: nn.Module, skip: bool):
    """Skip the gradient all-reduce on micro-steps before the last of an accumulated step."""
    if is_sharded(model):
        model.set_requires_gradient_sync(not skip)
        return contextlib.nullcontext()
    return model.no_sync() if skip and hasattr(model, "no_sync") else contextlib.nullcontext()


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """FSDP: the unsharded model and optimiser state dicts, gathered on rank 0 (collective: every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict) -> None:
    """FSDP: shard full state dicts onto every rank (collective). The model state comes from rank 0 (others
    pass {}); the optimiser state is the full one on every rank (each reads the training-state file)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    set_optimizer_state_dict(model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))


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
