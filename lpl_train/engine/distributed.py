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

__all__ = ["DistInfo", "check_checkpoint_world", "process_group", "rank_seed", "seed_rank_draws"]


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
        """Raises ``ValueError`` naming the variable for a value that is not an int in range (a rank at or
        past the world size would wait for its process group forever) and for a ``WORLD_SIZE`` > 1
        without ``RANK``."""
        world = _env_int("WORLD_SIZE", "1", 1)
        if world == 1:
            return cls()
        if "RANK" not in os.environ:
            raise ValueError(
                f"WORLD_SIZE={world} but RANK is not set: start the processes with torchrun, "
                "or unset WORLD_SIZE for one process"
            )
        rank = _env_int("RANK", "0", 0, world)
        return cls(rank, _env_int("LOCAL_RANK", "0", 0, world), world)


def _env_int(name: str, default: str, low: int, above: int | None = None) -> int:
    """The environment variable ``name`` (``default`` where unset) as an int >= ``low`` and < ``above``."""
    text = os.environ.get(name, default)
    allowed = f"an int >= {low}" + (f" and < WORLD_SIZE={above}" if above is not None else "")
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (above is not None and value >= above):
        raise ValueError(f"environment variable {name}={text!r} must be {allowed}")
    return value


def check_checkpoint_world(ck: dict[str, Any], world: int) -> None:
    """Refuse to resume the checkpoint ``ck`` on ``world`` processes unless it was written on as many
    (``ConfigMismatch``); the run and its dry run refuse it alike. A checkpoint from before the world
    size was stored carries none and is not checked."""
    written = ck.get("world_size")
    if written is not None and int(written) != world:
        from .files import ConfigMismatch

        raise ConfigMismatch(
            f"--resume: the checkpoint was written by a run on {written} process(es), this one has "
            f"{world}; resume with the same number (per-process batch statistics, of LPL's q̄_c and "
            "BatchNorm, depend on it, and the run's record names one world size)"
        )


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of rank ``rank``'s random draws in epoch ``epoch`` of a run seeded with ``seed``: a 64-bit
    integer from NumPy's ``SeedSequence`` of the three, so every (seed, rank, epoch) starts its own stream."""
    from lpl_train._seeds import derived_seed

    return derived_seed(seed, rank, epoch)


def seed_rank_draws(seed: int, dist: DistInfo, epoch: int) -> None:
    """Under DDP (``dist.world`` > 1), seed this process's torch generators (CPU and CUDA) for the training
    steps of ``epoch`` with :func:`rank_seed`: each rank draws its own dropout masks for its rows (one
    shared state would give every rank the same masks), and a run resumed at an epoch draws what the
    uninterrupted run drew there without any rank's state in the checkpoint. One process: nothing (its
    generator runs on from the model's initialisation and the checkpoint carries its state)."""
    if dist.world > 1:
        torch.manual_seed(rank_seed(seed, dist.rank, epoch))


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
    """Rank r of W takes its slice of every global batch of ``loader`` (a loader of the config's global
    batch size): ``torch.tensor_split(batch, W)[r]`` (:func:`~lpl_train.data.loader.shard_bounds`). The
    ranks together train exactly the single-process run's batches, augmentation included, and every rank
    takes the same number of steps. A last batch of fewer than W samples (some rank would get none) is
    trained whole by every rank: the same gradient.

    ``share`` is n_r·W/m for the batch just yielded (rank r's n_r of the batch's m samples): DDP averages
    the ranks' mean losses with equal weights, so a rank's loss times its share gives the gradient of the
    global batch's mean when a last batch splits unevenly (1 for every other batch).

    This wrapper is for loaders of one's own (``fit(..., components=...)``): every rank reads and augments
    the whole batch and drops the rest. The loader's batches must depend only on its own seed and
    ``set_epoch`` (as :func:`~lpl_train.data.make_loader`'s do), not on torch's global generator, which
    each rank seeds for itself (:func:`seed_rank_draws`): under a process group the ranks compare the
    targets of each epoch's first batch and raise ``ValueError`` where they differ. That is one
    collective, in the first iteration after ``set_epoch``, which ``fit`` calls on every rank; an
    iteration without it (one rank's look at a batch) compares nothing, since it would wait for ranks
    that never compare. The loaders :func:`~lpl_train.engine.build_components` builds take
    ``shard=(rank, world)`` instead and read and augment only the rank's slice."""

    def __init__(self, loader: Any, dist: DistInfo) -> None:
        self.loader, self.dist = loader, dist
        self.share = 1.0
        self.epoch = 0
        self._compare = False  # the next iteration compares its first batch across the ranks

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        self.epoch = epoch
        self._compare = True

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        from lpl_train.data.loader import shard_bounds, shard_share

        w, r = self.dist.world, self.dist.rank
        check = self._compare and w > 1 and torch.distributed.is_available()
        check = check and torch.distributed.is_initialized()
        self._compare = False
        for batch in self.loader:
            x, y = batch[0], batch[1]
            if check:  # the epoch's first global batch: the same on every rank?
                _check_same_batch(y, self.epoch)
                check = False
            m = int(x.shape[0])
            start, stop = shard_bounds(m, r, w)  # the whole batch when m < w (the mean's gradient)
            self.share = shard_share(m, r, w)
            yield (x[start:stop], y[start:stop], *batch[2:])


def _check_same_batch(y: torch.Tensor, epoch: int) -> None:
    """Raise ``ValueError`` on every rank unless the targets ``y`` of a global batch are the same on every
    rank: their number and a checksum, Σ w_i·y_i with weights w_i in [1, 2) drawn from a fixed seed (the
    same on every rank), compared with one all-reduce. Equal targets give equal sums; different ones
    (reordered, or other samples) give equal sums only by an exact coincidence of float64 sums."""
    t = torch.nan_to_num(y.detach().reshape(-1).to(torch.float64))
    g = torch.Generator().manual_seed(20161)
    weights = torch.rand(t.numel(), generator=g, dtype=torch.float64).add_(1.0).to(t.device)
    own = torch.stack((weights.new_tensor(float(t.numel())), (t * weights).sum()))
    spread = torch.cat((own, -own))  # one MAX gives the largest and (negated) the smallest of each
    torch.distributed.all_reduce(spread, op=torch.distributed.ReduceOp.MAX)
    if not torch.equal(spread[:2], -spread[2:]):
        raise ValueError(
            f"the training loader's first batch of epoch {epoch} differs between the ranks: each rank "
            "takes its slice of one sequence of global batches, so the loader's order must depend only on "
            "its own seed and set_epoch (draw it from a torch.Generator of its own, not from torch's "
            "global generator, which each rank seeds for itself)"
        )
