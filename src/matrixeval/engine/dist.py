"""Data parallelism on torch.distributed as launched by torchrun or `accelerate launch`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device: str | None) -> World:
    """Join the process group that the launcher described in the environment (WORLD_SIZE, RANK, ...).

    gloo on CPU, nccl on CUDA. A plain `python -m matrixeval` run is a world of one and starts nothing.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if cuda:
            torch.cuda.set_device(local_rank)
        elif "OMP_NUM_THREADS" not in os.environ:
            # CPU ranks on one machine share its cores; without this each would start one thread per core.
            local = int(os.environ.get("LOCAL_WORLD_SIZE", size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        torch_dist.init_process_group(backend="nccl" if cuda else "gloo")
    return World(rank=rank, size=size, local_rank=local_rank)


def rank_gpus(world: World, n_gpus: int) -> list[int]:
    """The GPUs this rank's `device_map=auto` model may spread over: the node's GPUs split evenly among its
    ranks, so data parallelism and model sharding combine without two ranks sharing a GPU."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    per_rank = n_gpus // local
    if per_rank < 1:
        return [world.local_rank % max(n_gpus, 1)] if n_gpus else []
    return list(range(world.local_rank * per_rank, (world.local_rank + 1) * per_rank))


def gather_to_main(obj: Any, world: World) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (in rank order), None elsewhere."""
    if world.size == 1:
        return [obj]
    out: list[Any] | None = [None] * world.size if world.is_main else None
    torch_dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank."""
    if world.size == 1:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.size > 1:
        torch_dist.barrier()
