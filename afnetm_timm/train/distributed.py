"""Process-group plumbing for ``torchrun``: one training over several processes (DDP).

``torchrun --nproc_per_node N -m afnetm_timm.cli train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
`from_environment` then joins the process group (NCCL on CUDA, Gloo on CPU) and gives each process
its device. Without those variables everything is a single process and every call here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

__all__ = ["DistributedContext", "from_environment", "single_process"]


@dataclass
class DistributedContext:
    """Rank, world size and device of this process."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes, in place."""
        if self.world_size > 1:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def close(self) -> None:
        if self.world_size > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def single_process(device: torch.device | str = "cpu") -> DistributedContext:
    """The context of an ordinary, non-distributed run."""
    return DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))


def from_environment(device: str | None = None) -> DistributedContext:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1, else a single-process context.

    ``device``: 'cpu' forces Gloo on CPU; otherwise each process takes ``cuda:LOCAL_RANK`` when CUDA is
    present (CPU otherwise).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        from .trainer import resolve_device

        return single_process(resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)
