"""Batch loaders whose epoch ``e`` depends only on ``(seed, e)``.

:class:`TensorLoader` keeps a :class:`TensorData` split on the device as uint8 and does the shuffling,
cropping, flipping and normalisation on whole batches there (no workers, no per-sample Python).
:class:`DatasetLoader` is the standard ``torch.utils.data.DataLoader`` path, with per-sample transforms,
for datasets that do not fit in memory (and as the reference in the loader benchmark).

Both have ``set_epoch(epoch)``; iterating yields ``(x float32 normalised on device, target on device)``.
Iterating again without ``set_epoch`` repeats the same epoch (so a resumed run sees the same batches).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .common import TensorData, check_choice, check_int
from .transforms import PAD_MODES, batch_crop_flip, crop_flip, normalize

AUGMENTS = ("none", "flip", "crop_flip", "imagenet", "mlt")


def epoch_generator(seed: int, epoch: int, *more: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch, *more)`` through numpy's SeedSequence."""
    state = np.random.SeedSequence([int(seed), int(epoch), *map(int, more)]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]) >> 1)


def shard_bounds(m: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a batch of ``m`` that process ``rank`` of ``world`` trains: its
    ``torch.tensor_split(batch, world)[rank]``. A batch of fewer than ``world`` samples (some process would
    get none) is trained whole by every process."""
    if world <= 1 or m < world:
        return 0, m
    q, extra = divmod(m, world)
    start = rank * q + min(rank, extra)
    return start, start + q + (rank < extra)


def shard_share(m: int, rank: int, world: int) -> float:
    """``n_r·W/m`` for rank r's ``n_r`` rows of a batch of ``m`` (1 for an even split and for a batch
    every process trains whole): DDP averages the ranks' mean losses with equal weights, so a rank's loss
    times its share gives the gradient of the global batch's mean when a last batch splits unevenly."""
    if world <= 1 or m < world:
        return 1.0
    start, stop = shard_bounds(m, rank, world)
    return (stop - start) * world / m


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """``(rank, world)`` with ``0 <= rank < world``."""
    try:
        rank, world = shard
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a (rank, world) pair, got {shard!r}") from None
    world = check_int("shard world", world, 1)
    rank = check_int("shard rank", rank, 0)
    if rank >= world:
        raise ValueError(f"shard rank {rank} must be below the world size {world}")
    return rank, world


def check_augment(data: TensorData, augment: str) -> None:
    """A flip or crop acts on uint8 images: refused for a split of feature rows when a loader is built,
    rather than at its first batch as a shape error."""
    if augment in ("flip", "crop_flip") and data.images.dtype != torch.uint8:
        raise ValueError(f"augment={augment!r} needs uint8 images; this split holds feature rows")


def check_channels(data: TensorData, mean, std) -> None:
    """The normalisation of a split of uint8 images has one entry per channel: refused when a loader is
    built, under the option's name, rather than at its first batch."""
    if data.images.dtype != torch.uint8:
        return
    c = data.images.shape[1]
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != c:
            raise ValueError(
                f"{name} must have {c} entries (one per channel of these {c}-channel images), got "
                f"{len(values)}"
            )


def default_pad(height: int) -> int:
    """Crop padding of ``crop_flip``: 4 pixels for 32 x 32 and larger, 2 for 28 x 28 (Fashion-MNIST)."""
    return 2 if height <= 28 else 4


class TensorLoader:
    """Shuffled (or ordered) batches of a device-resident :class:`TensorData`.

    Args:
        data: the split.
        batch_size: samples per batch.
        train: shuffle and augment when True; ordered, unaugmented batches when False.
        augment: ``"none"``, ``"flip"`` or ``"crop_flip"`` (pad :func:`default_pad` unless ``pad`` given).
        device: where the uint8 data and the batches live.
        seed: the loader seed; epoch ``e`` uses :func:`epoch_generator` ``(seed, e)``.
        drop_last: drop the last incomplete batch.
        mean, std: normalisation (default: the split's own).
        pad_mode: ``"zero"``, ``"mid"`` (mid-grey) or ``"reflect"`` padding before the crop.
        shard: ``(rank, world)``: yield only process ``rank``'s :func:`shard_bounds` slice of every batch
            (the batches, and the augmentation's random numbers, are those of the whole batch), and set
            ``share`` (:func:`shard_share`) for the batch just yielded. ``(0, 1)``: whole batches.
    """

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        train: bool,
        augment: str = "none",
        device: torch.device | str = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad: int | None = None,
        pad_mode: str = "zero",
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if not isinstance(data, TensorData):
            raise TypeError(f"data must be a TensorData, got {type(data).__name__}")
        self.batch_size = check_int("batch_size", batch_size, 1)
        check_choice("augment", augment, ("none", "flip", "crop_flip"))
        check_augment(data, augment)
        self.seed = check_int("seed", seed, 0)
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.targets = data.targets.to(self.device)
        self.train = bool(train)
        self.augment = augment if self.train else "none"
        self.drop_last = bool(drop_last)
        self.mean = data.mean if mean is None else tuple(mean)
        self.std = data.std if std is None else tuple(std)
        check_channels(data, self.mean, self.std)
        # on the device once: numbers would be copied there (and the stream synchronised) every batch
        self._norm = tuple(
            None if v is None else torch.tensor(v, dtype=torch.float32, device=self.device)
            for v in (self.mean, self.std)
        )
        h = self.images.shape[2] if self.images.dim() == 4 else 0
        self.pad = default_pad(h) if pad is None else check_int("pad", pad, 0)
        self.pad_mode = check_choice("pad_mode", pad_mode, PAD_MODES)
        self.shard = check_shard(shard)
        self.share = 1.0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.images.shape[0]
        gen = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        order = order.to(self.device)
        rank, world = self.shard
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            m = int(idx.shape[0])
            start, stop = shard_bounds(m, rank, world)
            idx = idx[start:stop]  # only this process's rows are read and augmented
            x = self.images[idx]
            if self.augment != "none":
                crop = self.augment == "crop_flip"
                x = batch_crop_flip(
                    x, gen, self.pad, crop=crop, pad_mode=self.pad_mode, part=(start, m)
                )
            self.share = shard_share(m, rank, world)
            yield normalize(x, *self._norm), self.targets[idx]


class _EpochView(torch.utils.data.Dataset):
    """Item ``i`` of ``dataset`` transformed with a generator seeded by ``(seed, epoch, i)``."""

    def __init__(
        self,
        dataset,
        train: bool,
        augment: str,
        seed: int,
        epoch: int,
        mean,
        std,
        pad: int,
        pad_mode: str = "zero",
    ):
        self.dataset, self.train, self.augment = dataset, train, augment
        self.seed, self.epoch, self.mean, self.std, self.pad = seed, epoch, mean, std, pad
        self.pad_mode = pad_mode

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        gen = epoch_generator(self.seed, self.epoch, i)
        if isinstance(self.dataset, TensorData):
            x, y = self.dataset.images[i], self.dataset.targets[i]
            if self.train and self.augment in ("flip", "crop_flip"):
                pad = self.pad if self.augment == "crop_flip" else 0
                x = crop_flip(x, gen, pad, pad_mode=self.pad_mode)
            return normalize(x, self.mean, self.std), y
        if hasattr(self.dataset, "get"):
            # the dataset normalises itself: a loader's own mean/std is passed on
            own = (getattr(self.dataset, "mean", None), getattr(self.dataset, "std", None))
            norm = {} if (self.mean, self.std) == own else {"mean": self.mean, "std": self.std}
            return self.dataset.get(i, gen, train=self.train and self.augment != "none", **norm)
        return self.dataset[i]


class DatasetLoader:
    """The ``DataLoader`` path: per-sample transforms, optional worker processes.

    The sample order of epoch ``e`` is a permutation drawn from ``(seed, e)``; sample ``i``'s augmentation
    from ``(seed, e, i)``. Works on a :class:`TensorData` (per-sample crop/flip, for comparison with
    :class:`TensorLoader`), an :class:`~lpl_train.data.images.ImageFileDataset` (its recipe) or any
    map-style dataset returning ``(x, y)``.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        train: bool,
        augment: str = "none",
        device: torch.device | str = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_workers: int = 0,
        pad: int | None = None,
        pad_mode: str = "zero",
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.dataset = dataset
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.augment = check_choice("augment", augment, AUGMENTS)
        if isinstance(dataset, TensorData):  # refused here as TensorLoader refuses it
            check_augment(dataset, augment)
        self.train = bool(train)
        self.device = torch.device(device)
        self.seed = check_int("seed", seed, 0)
        self.drop_last = bool(drop_last)
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.mean = getattr(dataset, "mean", None) if mean is None else tuple(mean)
        self.std = getattr(dataset, "std", None) if std is None else tuple(std)
        if isinstance(dataset, TensorData):
            check_channels(dataset, self.mean, self.std)
        if isinstance(dataset, TensorData) and dataset.images.dim() == 4:
            h = dataset.images.shape[2]
        else:
            h = 32
        self.pad = default_pad(h) if pad is None else check_int("pad", pad, 0)
        self.pad_mode = check_choice("pad_mode", pad_mode, PAD_MODES)
        self.shard = check_shard(shard)
        self.share = 1.0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        if self.train:
            order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch)).tolist()
        else:
            order = list(range(n))
        view = _EpochView(
            self.dataset,
            self.train,
            self.augment,
            self.seed,
            self.epoch,
            self.mean,
            self.std,
            self.pad,
            self.pad_mode,
        )
        # the batches of the whole order; under a shard only this process's rows are read and transformed
        # (sample i's augmentation depends on (seed, epoch, i) alone, so a slice sees the same crops)
        rank, world = self.shard
        bs = self.batch_size
        batches, shares = [], []
        for b in range(len(self)):
            rows = order[b * bs : (b + 1) * bs]
            start, stop = shard_bounds(len(rows), rank, world)
            batches.append(rows[start:stop])
            shares.append(shard_share(len(rows), rank, world))
        loader = torch.utils.data.DataLoader(
            view,
            batch_sampler=batches,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for (x, y), share in zip(loader, shares, strict=True):
            self.share = share
            yield (
                x.to(self.device, non_blocking=True).float(),
                y.to(self.device, non_blocking=True),
            )


def _check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """A loader's own ``mean``/``std``: finite numbers, ``std`` > 0 (0 would make every batch inf)."""
    for name, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        try:
            nums = [float(v) for v in values]
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
        if not nums or not all(math.isfinite(v) for v in nums):
            raise ValueError(f"{name} must be finite numbers, got {values!r}")
        if name == "std" and any(v <= 0 for v in nums):
            raise ValueError(f"std must be positive, got {values!r}")


def check_loader_values(
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pad: int | None = None,
    pad_mode: str = "zero",
) -> None:
    """The options of :func:`make_loader` that do not depend on the split, checked as its loaders check
    them; each error message starts with the option's name. The engine calls this on a config's
    ``[data.loader]`` before any data is read, so every loader of a run (training, evaluation, resampled)
    refuses a bad value under its config key."""
    _check_normalisation(mean, std)
    if pad is not None:
        check_int("pad", pad, 0)
    check_choice("pad_mode", pad_mode, PAD_MODES)


def make_loader(
    split,
    batch_size: int,
    train: bool,
    augment: str = "none",
    device: torch.device | str = "cpu",
    seed: int = 0,
    drop_last: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    backend: str = "auto",
    num_workers: int = 0,
    pad: int | None = None,
    pad_mode: str = "zero",
    shard: tuple[int, int] = (0, 1),
) -> TensorLoader | DatasetLoader:
    """A loader for ``split``: :class:`TensorLoader` for a :class:`TensorData` (``backend="auto"`` or
    ``"tensor"``), else :class:`DatasetLoader` (``backend="dataloader"`` forces it).

    ``augment``: ``"none"``, ``"flip"``, ``"crop_flip"`` (tensor data), or ``"imagenet"`` / ``"mlt"``
    (image-file datasets: any value but ``"none"`` selects the dataset's training recipe). Augmentation is
    applied only when ``train`` is True. ``mean``/``std`` default to the split's own normalisation.
    ``pad_mode`` (``"zero"`` or ``"reflect"``) is the padding of ``crop_flip``. ``shard=(rank, world)``:
    the loader yields process ``rank``'s slice of every batch (:func:`shard_bounds`) and reads and
    augments only that slice; see :class:`TensorLoader`.
    """
    check_choice("backend", backend, ("auto", "tensor", "dataloader"))
    check_choice("augment", augment, AUGMENTS)
    check_loader_values(mean, std, pad, pad_mode)
    if split is None:
        raise ValueError("split must be a dataset split, got None (is there a validation split?)")
    if backend == "tensor" and not isinstance(split, TensorData):
        raise ValueError(f"backend='tensor' needs a TensorData split, got {type(split).__name__}")
    if isinstance(split, TensorData) and augment in ("imagenet", "mlt"):  # on either path
        raise ValueError(
            f"augment={augment!r} is for image-file datasets; use 'crop_flip' or 'flip'"
        )
    if isinstance(split, TensorData) and backend != "dataloader":
        return TensorLoader(
            split, batch_size, train, augment, device, seed, drop_last, mean, std, pad, pad_mode,
            shard,
        )  # fmt: skip
    return DatasetLoader(
        split,
        batch_size,
        train,
        augment,
        device,
        seed,
        drop_last,
        mean,
        std,
        num_workers,
        pad,
        pad_mode,
        shard,
    )
