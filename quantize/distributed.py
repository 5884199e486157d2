"""Data-parallel training under ``torchrun``: the process group, barriers, and a check that
every process ended with the same weights."""

from __future__ import annotations

import os

import torch
from torch import nn


def distributed() -> tuple[int, int]:
    """``(rank, world size)``: from torchrun's variables, with the process group created here
    (gloo on CPUs, NCCL on GPUs); ``(0, 1)`` for a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def replicas_identical(net: nn.Module) -> bool:
    """Whether every process holds rank 0's parameters, bit for bit.

    Buffers are left out: each process's last step updated its BatchNorm running statistics
    from its own share of the batch, and DDP replaces them with rank 0's at the next forward;
    rank 0's are the ones evaluated and saved.
    """
    dist = torch.distributed
    differs = torch.zeros(1)
    for t in net.parameters():
        ref = t.detach().clone()
        dist.broadcast(ref, 0)
        differs += float(not torch.equal(ref, t.detach()))
    dist.all_reduce(differs)
    return differs.item() == 0
