"""Training in one or many processes with torch.distributed, started by torchrun.

    torchrun --nproc_per_node 2 -m nvg_core.cli train generator ...   # 2 processes (gloo on CPU, NCCL on CUDA)
    nvg train generator ...                                           # the same code in one process

`Processes.start` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); without it the run is one
process and nothing here talks to anyone. Every process draws the same global batch from one seeded CPU
generator and keeps its shard (rows index*B .. (index+1)*B), so the global batch, the data order and the
random numbers do not depend on the number of processes: that is what lets a run resume on another count.
Gradients are averaged by DistributedDataParallel; only the main process (rank 0) logs and writes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """Where this process stands: its rank among `world` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @classmethod
    def start(cls, device: str | None = None) -> Processes:
        """Join torchrun's process group when launched by it (one CUDA device per process: LOCAL_RANK)."""
        from .pipeline import default_device
        world = int(os.environ.get("WORLD_SIZE", "1"))
        chosen = torch.device(device) if device else default_device()
        if world == 1:
            return cls(0, 1, chosen)
        if chosen.type == "cuda":
            chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(chosen)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), chosen)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, global_batch: int) -> int:
        """Each process's share of the global batch, which must split evenly."""
        if global_batch % self.world:
            raise ValueError(f"--batch-size {global_batch} is the global batch and must divide evenly among "
                             f"{self.world} processes")
        return global_batch // self.world

    def shard(self, rows_G: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor drawn for the global batch."""
        size = self.local_batch(len(rows_G))
        return rows_G[self.rank * size:(self.rank + 1) * size]

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around `module` when there are several processes, else the module."""
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag True on every process when it is True on any (stop and save decisions are taken together)."""
        if self.world == 1:
            return flags
        values = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    def mean(self, values: list[float]) -> list[float]:
        """Each value averaged over the processes (logged losses are the global batch's)."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return (tensor / self.world).tolist()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the processes, in place."""
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        """The main process's value of a tensor, on every process, in place."""
        if self.world > 1:
            dist.broadcast(tensor, 0)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def in_process_group(loop: Callable[[Any], None]) -> Callable[[Any], None]:
    """A training loop whose process group (joined by Processes.start) is destroyed after the loop returns.

    Not before: a DistributedDataParallel wrapper freed after its group was destroyed frees the gloo group
    while holding the GIL, which can deadlock (pytorch/pytorch#56297); the loop's locals, the wrapper among
    them, are gone once it returns. After an error the group is left to the process's exit."""
    @functools.wraps(loop)
    def run(args: Any) -> None:
        loop(args)
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return run
