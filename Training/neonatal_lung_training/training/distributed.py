"""Scale-out with torchrun (DDP) through the same code path as a single process.

Started plainly, a run is one process (world size 1) and nothing here does anything. Started by
``torchrun --nproc-per-node N``, each process reads its rank from the environment, joins a process group
(NCCL on GPUs, gloo on CPUs) and trains on its share of every epoch's slices; gradients are averaged by
DistributedDataParallel. Only rank 0 writes logs, checkpoints and the model folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collective tensors live: NCCL only moves CUDA tensors

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def start(device: torch.device) -> Context:
    """Join the torchrun process group if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    collective = f"cuda:{local_rank}" if device.type == "cuda" else "cpu"
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=collective)


def device_for(requested: torch.device, context: Context) -> torch.device:
    """One GPU per local rank; CPUs are shared."""
    if requested.type == "cuda" and context.active:
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    return requested


def broadcast_flag(value: bool, context: Context) -> bool:
    """Rank 0 decides (early stop, time limit); everyone follows, so no rank waits forever in a collective."""
    if not context.active:
        return value
    tensor = torch.tensor([1 if value else 0], dtype=torch.int64, device=context.device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def mean_over_ranks(value: float, context: Context) -> float:
    if not context.active:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def barrier(context: Context) -> None:
    if context.active:
        dist.barrier()


def stop(context: Context) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()
