"""Containers, validation and file utilities shared by every dataset.

A dataset is returned as a :class:`DatasetBundle`. Splits that fit in memory are :class:`TensorData`
(uint8 images ``N x C x H x W`` or float feature rows ``N x D``, and targets: int64 class indices or a
float multi-hot matrix), so that the tensor-resident loader can keep them on the device; the large sets
(iNaturalist, VOC/COCO) are ``torch.utils.data.Dataset`` objects that decode images on demand.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..validation import check_choice, check_float, check_int  # noqa: F401  (used by the loaders)

DATA_ROOT_ENV = "LPL_DATA"


@dataclass
class TensorData:
    """A split held entirely in memory.

    Args:
        images: uint8 tensor ``(N, C, H, W)`` (images) or float tensor ``(N, D)`` (feature rows).
        targets: int64 ``(N,)`` class indices, or float ``(N, C)`` multi-hot labels.
        mean, std: per-channel normalisation used by the loader for uint8 images (values in [0, 1] units);
            ``None`` for feature rows, which are used as they are.
    """

    images: torch.Tensor
    targets: torch.Tensor
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or not isinstance(self.targets, torch.Tensor):
            raise TypeError(
                f"images and targets must be torch.Tensor, got {type(self.images).__name__} "
                f"and {type(self.targets).__name__}"
            )
        if self.images.dtype == torch.uint8:
            if self.images.dim() != 4:
                raise ValueError(
                    f"uint8 images must have shape (N, C, H, W), got {tuple(self.images.shape)}"
                )
        elif self.images.is_floating_point():
            if self.images.dim() != 2:
                raise ValueError(
                    f"float feature rows must have shape (N, D), got {tuple(self.images.shape)}"
                )
        else:
            raise TypeError(f"images must be uint8 or floating point, got {self.images.dtype}")
        n = self.images.shape[0]
        if self.targets.shape[0] != n:
            raise ValueError(
                f"targets has {self.targets.shape[0]} rows but images has {n}; they must match"
            )
        if self.targets.dtype == torch.int64:
            if self.targets.dim() != 1:
                raise ValueError(
                    f"int64 targets must have shape (N,), got {tuple(self.targets.shape)}"
                )
        elif self.targets.is_floating_point():
            if self.targets.dim() != 2:
                raise ValueError(
                    f"multi-hot targets must have shape (N, C), got {tuple(self.targets.shape)}"
                )
        else:
            raise TypeError(f"targets must be int64 or floating point, got {self.targets.dtype}")
        for arg in ("mean", "std"):
            value = getattr(self, arg)
            if value is not None:
                value = tuple(float(v) for v in value)
                setattr(self, arg, value)
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> TensorData:
        """The rows ``index`` (integers, in that order) or the rows where a boolean mask of length N is
        true, sharing mean/std."""
        arr = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        if arr.dtype == np.bool_:
            if arr.shape != (len(self),):
                raise ValueError(
                    f"a boolean mask for subset must have shape ({len(self)},), got {arr.shape}"
                )
            arr = np.flatnonzero(arr)
        elif arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(
                f"subset takes integer indices or a boolean mask, got dtype {arr.dtype}"
            )
        idx = torch.as_tensor(arr, dtype=torch.int64)
        return TensorData(self.images[idx], self.targets[idx], self.mean, self.std)


@dataclass
class DatasetBundle:
    """Everything a training run needs to know about a dataset.

    ``class_counts`` are counted on the *training* split (per class; for multi-label data, the number of
    training samples in which the class is present). ``mean``/``std`` are the per-channel normalisation the
    loader applies; ``augment`` is the recommended training augmentation for :func:`make_loader` and
    ``pad_mode`` the padding of its crop in the dataset's reference pipeline (the engine uses it unless
    ``[data.loader] pad_mode`` is set).
    """

    train: Any
    val: Any
    test: Any
    num_classes: int
    class_counts: list[int]
    multi_label: bool
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: str = "none"
    name: str = ""
    class_names: list[str] = field(default_factory=list)
    pad_mode: str = "zero"


# ----------------------------------------------------------------------------------------------- checks


def resolve_root(root: str | Path | None, subdir: str = "") -> Path:
    """The data root: ``root`` if given, else ``$LPL_DATA``, else ``./data``; joined with ``subdir``."""
    if root is None:
        root = os.environ.get(DATA_ROOT_ENV, "data")
    if not isinstance(root, str | Path):
        raise TypeError(f"root must be a str, Path or None, got {type(root).__name__}")
    path = Path(root).expanduser()
    return path / subdir if subdir else path


class BadFile(ValueError):
    """A data file that was read but cannot be used; the message names the file. A subclass of
    ValueError, so that a reader's broad ``except`` can let its own refusals through unchanged."""


class MissingData(FileNotFoundError):
    """Data not found, with how to get it; ``in_config``: the same message with the advice in a config's
    terms (``data.params.download``) where it differs from the Python call's (``download=True``)."""

    def __init__(self, message: str, in_config: str | None = None) -> None:
        super().__init__(message)
        self.in_config = in_config or message


def missing(
    what: str, tried: Sequence[Path], how: str, how_in_config: str | None = None
) -> MissingData:
    """A FileNotFoundError naming every path tried and how to get the data (``how``; ``how_in_config``
    where a config says it otherwise)."""
    head = f"{what} not found (tried: {', '.join(str(p) for p in tried)}). "
    return MissingData(head + how, head + how_in_config if how_in_config else None)


# ------------------------------------------------------------------------------------ files and checks


def file_digest(path: str | Path, algorithm: str = "md5", decompress_gzip: bool = False) -> str:
    """Hex digest of a file (of its gzip-decompressed content when ``decompress_gzip``)."""
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"algorithm must be a hashlib algorithm, got {algorithm!r}")
    h = hashlib.new(algorithm)
    opener = gzip.open if decompress_gzip else open
    try:
        with opener(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, EOFError) as err:
        raise BadFile(f"cannot read {path}: {err}") from err
    return h.hexdigest()


def verify_checksum(
    path: str | Path, expected: str, algorithm: str = "md5", decompress_gzip: bool = False
) -> None:
    """Raise :class:`BadFile` (a ValueError) naming the file when its digest differs from ``expected``."""
    got = file_digest(path, algorithm, decompress_gzip)
    if got != expected.lower():
        raise BadFile(
            f"checksum mismatch for {path}: {algorithm} {got}, expected {expected}; "
            "the file is corrupt or not the official release (delete it and download again)"
        )


def download(
    url: str,
    dest: str | Path,
    expected: str,
    algorithm: str = "md5",
    decompress_gzip: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` and verify its checksum; the file appears only if it matches.

    The data is written to a temporary file beside ``dest`` and renamed once verified, so an interrupted or
    corrupt download never leaves a file that looks valid. ``file://`` URLs work (used by the tests).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"url must be an absolute URL string, got {url!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConnectionError(
                f"cannot download {url} ({' '.join(str(reason).split())}); download it by hand into "
                f"{str(dest.parent)!r} or check the network"
            ) from None
        verify_checksum(tmp, expected, algorithm, decompress_gzip)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


# --------------------------------------------------------------------------------- restricted unpickle

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
}


def _checked_bytearray(*args: Any) -> bytearray:
    """``bytearray`` of given content only: ``bytearray(10**11)`` would allocate what the pickle asks."""
    if args and not isinstance(args[0], bytes | bytearray | str):
        raise pickle.UnpicklingError(
            f"bytearray({type(args[0]).__name__}) is not allowed in a data batch (it allocates memory "
            "the file does not hold)"
        )
    return bytearray(*args)


def _checked_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's ``_reconstruct`` with the empty shape numpy itself pickles; the data then comes from the
    pickle's own bytes (``__setstate__`` checks their length), so a tiny file cannot allocate gigabytes."""
    import numpy as np

    if (
        subtype is not np.ndarray
        or not isinstance(shape, tuple)
        or np.prod(shape, dtype=np.float64) > 1
    ):
        raise pickle.UnpicklingError(
            f"numpy array reconstruction with shape {shape!r} is not allowed in a data batch"
        )
    return np.ndarray.__new__(subtype, shape, dtype)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "bytearray"):
            return _checked_bytearray
        if name == "_reconstruct" and (module, name) in _ALLOWED_GLOBALS:
            return _checked_reconstruct
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data batch")


def restricted_unpickle(data: bytes, source: str) -> Any:
    """Unpickle a CIFAR-style python batch, allowing only builtin containers, bytes and numpy arrays.

    The CIFAR "python version" batches are pickles; a pickle can run arbitrary code, so only the globals
    needed to rebuild numpy arrays (and py2 byte strings) are resolvable. Anything else raises ValueError
    naming ``source``.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, RecursionError) as err:  # fmt: skip
        msg = " ".join(str(err).split())[:200]
        raise BadFile(
            f"cannot read {source}: not a valid data batch ({type(err).__name__}: {msg})"
        ) from None


# ------------------------------------------------------------------------------------------- splits


def class_counts_of(targets: torch.Tensor, num_classes: int) -> list[int]:
    """Per-class counts of int64 targets, or positive counts of a multi-hot matrix."""
    if targets.dim() == 1:
        return torch.bincount(targets, minlength=num_classes).tolist()
    return [int(v) for v in (targets > 0.5).sum(dim=0).tolist()]


def stratified_split(
    targets: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/validation split of single-label ``targets``.

    Each class with ``n`` samples gives ``round(val_fraction * n)`` to validation, but always keeps at
    least one sample in train. Returns (train_index, val_index), each sorted. A ``val_fraction > 0`` that
    gives no class a validation sample raises ValueError (a run would silently have no validation).
    """
    val_fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
    seed = check_int("seed", seed, 0)
    targets = np.asarray(targets)
    rng = np.random.RandomState(seed)
    train_idx, val_idx = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        rng.shuffle(idx)
        n_val = min(int(round(val_fraction * len(idx))), len(idx) - 1)
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    if val_fraction > 0.0 and not any(len(v) for v in val_idx):
        largest = max((len(v) + len(t) for v, t in zip(val_idx, train_idx, strict=True)), default=0)
        raise ValueError(
            f"val_fraction={val_fraction} leaves no validation sample: round(val_fraction * n_c) is 0 "
            f"for every class (the largest has {largest}); use a larger val_fraction, or 0 for none"
        )
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def split_validation(
    train: TensorData, val_fraction: float, seed: int
) -> tuple[TensorData, TensorData | None]:
    """Carve a stratified validation split out of ``train`` (single-label or multi-label by first label)."""
    val_fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
    if val_fraction == 0.0:
        return train, None
    t = train.targets
    strat = t.numpy() if t.dim() == 1 else t.argmax(dim=1).numpy()
    tr, va = stratified_split(strat, val_fraction, seed)
    return train.subset(tr), train.subset(va)
