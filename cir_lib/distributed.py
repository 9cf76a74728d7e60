"""Multi-process training under `torchrun` (WORLD_SIZE > 1): process-group facts and the gather of
in-batch negatives. With one process everything here is a no-op."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Process-group facts; world_size 1 when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def init_distributed(device_setting: str) -> DistInfo:
    """Join torchrun's process group (NCCL on CUDA, gloo on the CPU); DistInfo() without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_setting != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def gather(x: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
    """All processes' rows, in rank order; the local rows keep their gradient."""
    if not dist_info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(dist_info.world_size)]
    torch.distributed.all_gather(parts, x.detach().contiguous())
    parts[dist_info.rank] = x
    return torch.cat(parts)
