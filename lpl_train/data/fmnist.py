"""Fashion-MNIST (the embedded real dataset) and its long-tail single- and multi-label versions.

Files (idx format, gzip): ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``. They are looked for in ``root`` when given,
else in ``$LPL_DATA/fashion-mnist``, ``./data/fashion-mnist`` and Debian's ``dataset-fashion-mnist``
location ``/usr/share/datasets/fashion-mnist``. With ``download=True`` they are fetched from the official
mirror into the root, and each file's *decompressed* content is checked against its SHA-256 (so the
recompressed Debian files and the upstream files verify alike).

* ``fmnist``: 60,000 / 10,000 balanced images, 1 x 28 x 28.
* ``fmnist_lt``: long-tail training set, ``n_c = int(6000 * (1/rho) ** (c / 9))`` (profile ``exp``) or the
  ``step`` profile; balanced test set.
* ``fmnist_ml_lt``: multi-label long-tail mosaics. Each ``grid x grid`` mosaic (56 x 56 for grid 2) is
  tiled from items whose classes are drawn i.i.d. from a long-tail distribution ``p_c ∝ rho ** (-c / 9)``
  (train) or uniformly (test); the label is the multi-hot set of classes present. Items come from the
  Fashion-MNIST train (resp. test) images, so no test item is seen in training; validation mosaics
  (``val_fraction``) come from a held-out part of the training images, so none of theirs either.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import (
    DATA_ROOT_ENV,
    BadFile,
    DatasetBundle,
    TensorData,
    check_choice,
    check_float,
    check_int,
    class_counts_of,
    download,
    missing,
    split_validation,
    stratified_split,
    verify_checksum,
)
from .longtail import PROFILES, long_tail_counts, long_tail_indices

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# SHA-256 of the decompressed idx files.
FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read a (gzipped) idx file: magic ``0 0 dtype ndim``, big-endian int32 dims, then the data.

    Only unsigned-byte data (type 0x08) is accepted. Corrupt, truncated or mis-sized files raise
    ValueError naming the file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise BadFile(f"cannot read {path}: not an idx file (bad magic number)")
            if head[2] != 0x08:
                raise BadFile(
                    f"cannot read {path}: idx data type 0x{head[2]:02x} is not unsigned byte (0x08)"
                )
            ndim = head[3]
            dims_raw = f.read(4 * ndim)
            if ndim < 1 or len(dims_raw) < 4 * ndim:
                raise BadFile(f"cannot read {path}: truncated idx header")
            dims = struct.unpack(f">{ndim}i", dims_raw)
            expected = _idx_payload_size(path, dims, 4 + 4 * ndim)
            raw = _read_exactly(f, expected, path)
    except (OSError, EOFError, zlib.error) as err:
        raise BadFile(f"cannot read {path}: corrupt or truncated file ({err})") from None
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims).copy()


#: Largest idx payload read (Fashion-MNIST's training images are 47 MB).
MAX_IDX_BYTES = 1 << 30


def _idx_payload_size(path: Path, dims: tuple[int, ...], header: int) -> int:
    """The byte count the header promises, checked against the file's size before anything is inflated
    (deflate expands at most ~1032:1), and against :data:`MAX_IDX_BYTES`."""
    if any(d < 0 for d in dims):
        raise BadFile(f"cannot read {path}: negative dimension in idx header {dims}")
    expected = int(np.prod(dims, dtype=object))
    size = path.stat().st_size
    if path.suffix != ".gz" and expected != size - header:
        raise BadFile(
            f"cannot read {path}: header says {dims} ({expected} bytes) but the file holds "
            f"{size - header} bytes (truncated or corrupt)"
        )
    if expected > 1032 * size + 1024 or expected > MAX_IDX_BYTES:
        raise BadFile(
            f"cannot read {path}: header says {dims} ({expected} bytes), more than a file of {size} "
            f"bytes can hold (or than {MAX_IDX_BYTES} bytes); truncated or corrupt"
        )
    return expected


def _read_exactly(f: Any, n: int, path: Path) -> bytes:
    """Read exactly ``n`` bytes in chunks, then require the end of the file."""
    chunks, got = [], 0
    while got < n:
        chunk = f.read(min(1 << 20, n - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    extra = f.read(1)
    if got != n or extra:
        holds = f"{got} bytes" if got != n else "more bytes"
        raise BadFile(
            f"cannot read {path}: the header promises {n} bytes but the file holds {holds} "
            "(truncated or corrupt)"
        )
    return b"".join(chunks)


def _candidates(root: str | Path | None) -> list[Path]:
    if root is not None:
        if not isinstance(root, str | Path):
            raise TypeError(f"root must be a str, Path or None, got {type(root).__name__}")
        r = Path(root).expanduser()
        return [r, r / "fashion-mnist"]
    env = os.environ.get(DATA_ROOT_ENV)
    dirs = [Path(env) / "fashion-mnist"] if env else []
    return [*dirs, Path("data") / "fashion-mnist", DEBIAN_DIR]


def fmnist_dir(
    root: str | Path | None = None, download_: bool = False, verify: bool = False
) -> Path:
    """The folder holding the four Fashion-MNIST files (downloading them into the root if asked)."""
    tried = _candidates(root)
    for d in tried:
        if all((d / f).is_file() for f in FILES):
            if verify:
                for f, sha in FILES.items():
                    verify_checksum(d / f, sha, "sha256", decompress_gzip=True)
            return d
    if download_:
        dest = tried[0]
        for f, sha in FILES.items():
            if not (dest / f).is_file():
                download(URL + f, dest / f, sha, "sha256", decompress_gzip=True)
        return dest
    get = f"Install Debian's dataset-fashion-mnist package, put the four files from {URL} in one of these folders"
    raise missing(
        "Fashion-MNIST idx.gz files",
        tried,
        f"{get}, or pass download=True.",
        f"{get}, or set data.params.download = true (on the command line --set data.params.download=true).",
    )


def load_fmnist_arrays(
    root: str | Path | None = None, download: bool = False, verify: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images N x 1 x 28 x 28 uint8, train_labels int64, test_images, test_labels)."""
    d = fmnist_dir(root, download, verify)
    out = []
    for split in ("train", "t10k"):
        x = read_idx(d / f"{split}-images-idx3-ubyte.gz")
        y = read_idx(d / f"{split}-labels-idx1-ubyte.gz")
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise BadFile(
                f"cannot read {d}: {split} images {x.shape} and labels {y.shape} do not match"
            )
        if len(x) == 0 or x.shape[1:] != (28, 28):
            raise BadFile(
                f"cannot read {d / f'{split}-images-idx3-ubyte.gz'}: expected N >= 1 images of "
                f"28 x 28, got {x.shape}"
            )
        if y.max() > 9:
            raise BadFile(f"cannot read {d / f'{split}-labels-idx1-ubyte.gz'}: labels above 9")
        out += [np.ascontiguousarray(x[:, None]), y.astype(np.int64)]
    return out[0], out[1], out[2], out[3]


def build_fmnist(
    root: str | Path | None = None,
    seed: int = 0,
    imbalance_ratio: float | None = None,
    profile: str = "exp",
    val_fraction: float = 0.0,
    download: bool = False,
    verify: bool = False,
) -> DatasetBundle:
    """Fashion-MNIST, or its long-tail version (``imbalance_ratio``, e.g. 100 or 10) with data seed ``seed``."""
    check_choice("profile", profile, PROFILES)  # refused even for the balanced set, before any read
    xtr, ytr, xte, yte = load_fmnist_arrays(root, download, verify)
    if imbalance_ratio is not None:
        n_max = int(np.bincount(ytr, minlength=10).max())
        keep = long_tail_indices(ytr, long_tail_counts(10, n_max, imbalance_ratio, profile), seed)
        xtr, ytr = xtr[keep], ytr[keep]
    train = TensorData(torch.from_numpy(xtr), torch.from_numpy(ytr), FMNIST_MEAN, FMNIST_STD)
    train, val = split_validation(train, val_fraction, seed)
    test = TensorData(torch.from_numpy(xte), torch.from_numpy(yte), FMNIST_MEAN, FMNIST_STD)
    return DatasetBundle(
        train=train,
        val=val,
        test=test,
        num_classes=10,
        class_counts=class_counts_of(train.targets, 10),
        multi_label=False,
        input_shape=(1, 28, 28),
        mean=FMNIST_MEAN,
        std=FMNIST_STD,
        augment="crop_flip",
        name="fmnist" if imbalance_ratio is None else "fmnist_lt",
        class_names=list(CLASS_NAMES),
    )


def make_mosaics(
    images: np.ndarray,
    labels: np.ndarray,
    num: int,
    class_probs: np.ndarray,
    grid: int,
    rng: np.random.RandomState,
) -> tuple[np.ndarray, np.ndarray]:
    """``num`` mosaics of ``grid x grid`` items; item classes ~ ``class_probs``, items drawn uniformly
    within their class. Returns (uint8 ``num x C x grid*H x grid*W``, float32 multi-hot ``num x K``)."""
    k = len(class_probs)
    n, ch, h, w = images.shape
    by_class = [np.flatnonzero(labels == c) for c in range(k)]
    if any(len(b) == 0 for b in by_class):
        raise ValueError("every class needs at least one source item to build mosaics")
    cls = rng.choice(k, size=(num, grid * grid), p=class_probs)
    pick = np.empty_like(cls)
    for c in range(k):
        mask = cls == c
        pick[mask] = by_class[c][rng.randint(0, len(by_class[c]), size=int(mask.sum()))]
    tiles = images[pick.reshape(-1)].reshape(num, grid, grid, ch, h, w)
    mosaics = tiles.transpose(0, 3, 1, 4, 2, 5).reshape(num, ch, grid * h, grid * w)
    target = np.zeros((num, k), dtype=np.float32)
    np.put_along_axis(target, cls, 1.0, axis=1)
    return np.ascontiguousarray(mosaics), target


def build_fmnist_ml_lt(
    root: str | Path | None = None,
    seed: int = 0,
    imbalance_ratio: float = 100.0,
    num_train: int = 6000,
    num_test: int = 2000,
    grid: int = 2,
    val_fraction: float = 0.0,
    download: bool = False,
) -> DatasetBundle:
    """Multi-label long-tail Fashion-MNIST mosaics (see the module docstring), seeded by ``seed``.

    Training item classes follow ``p_c ∝ imbalance_ratio ** (-c / 9)`` (class 0 is the head); test item
    classes are uniform. ``class_counts`` are the per-class numbers of training mosaics containing the class.
    ``val_fraction = f > 0``: ``round(f * num_train)`` of the ``num_train`` mosaics form the validation
    split; they are tiled (with the training distribution) from a stratified fraction ``f`` of each class's
    Fashion-MNIST training images that the training mosaics never use.
    """
    rho = check_float("imbalance_ratio", imbalance_ratio, 1.0)
    num_train = check_int("num_train", num_train, 1)
    num_test = check_int("num_test", num_test, 1)
    grid = check_int("grid", grid, 1)
    seed = check_int("seed", seed, 0)
    xtr, ytr, xte, yte = load_fmnist_arrays(root, download)
    p = rho ** (-np.arange(10) / 9.0)
    p /= p.sum()
    val_fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
    num_val = min(int(round(val_fraction * num_train)), num_train - 1)
    if val_fraction > 0.0 and num_val == 0:
        raise ValueError(
            f"val_fraction={val_fraction} leaves no validation mosaic: round(val_fraction * "
            f"num_train) is 0 for num_train={num_train}; use a larger val_fraction, or 0 for none"
        )
    rng = np.random.RandomState(seed)
    val = None
    if val_fraction > 0.0:
        # validation mosaics are tiled from a held-out part of each class's source images, so that no
        # Fashion-MNIST image is shown in both a training and a validation mosaic
        src_train, src_val = stratified_split(ytr, val_fraction, seed)
        mtr, ttr = make_mosaics(xtr[src_train], ytr[src_train], num_train - num_val, p, grid, rng)
        mva, tva = make_mosaics(xtr[src_val], ytr[src_val], num_val, p, grid, rng)
        val = TensorData(torch.from_numpy(mva), torch.from_numpy(tva), FMNIST_MEAN, FMNIST_STD)
    else:
        mtr, ttr = make_mosaics(xtr, ytr, num_train, p, grid, rng)
    mte, tte = make_mosaics(xte, yte, num_test, np.full(10, 0.1), grid, rng)
    train = TensorData(torch.from_numpy(mtr), torch.from_numpy(ttr), FMNIST_MEAN, FMNIST_STD)
    test = TensorData(torch.from_numpy(mte), torch.from_numpy(tte), FMNIST_MEAN, FMNIST_STD)
    return DatasetBundle(
        train=train,
        val=val,
        test=test,
        num_classes=10,
        class_counts=class_counts_of(train.targets, 10),
        multi_label=True,
        input_shape=(1, 28 * grid, 28 * grid),
        mean=FMNIST_MEAN,
        std=FMNIST_STD,
        augment="flip",
        name="fmnist_ml_lt",
        class_names=list(CLASS_NAMES),
    )
