"""DistributedDataParallel under ``torchrun``: rank/world from the environment, the process group, and the
sharding of a loader's batches over the ranks."""

from __future__ import annotations

import contextlib
import gc
import os
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DistInfo", "process_group"]


@dataclass(frozen=True)
class DistInfo:
    """Rank and world size read from the torchrun environment (world 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


@contextlib.contextmanager
def process_group(dist: DistInfo, device_spec: str) -> Iterator[None]:
    """Initialise the default process group for a multi-process run unless the caller already did
    (NCCL on CUDA, gloo on CPU), and destroy it on the way out."""
    own = dist.world > 1 and not torch.distributed.is_initialized()
    if own:
        backend = "nccl" if torch.cuda.is_available() and device_spec != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    try:
        yield
    except BaseException as exc:
        if own:  # free the DDP wrapper held by the failed frames before its process group goes
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
        raise
    finally:
        if own:
            torch.distributed.destroy_process_group()


class _ShardLoader:
    """Rank r of W takes batches r, r+W, r+2W, ... (the same count on every rank, so DDP never waits)."""

    def __init__(self, loader: Any, dist: DistInfo) -> None:
        self.loader, self.dist = loader, dist

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader) // self.dist.world

    def __iter__(self) -> Iterator[Any]:
        n = len(self) * self.dist.world
        for i, batch in enumerate(self.loader):
            if i >= n:
                break
            if i % self.dist.world == self.dist.rank:
                yield batch
