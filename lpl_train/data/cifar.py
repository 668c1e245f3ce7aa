"""CIFAR-10/100 from the official "python version" archives, their long-tail versions, and the Logit
Adjustment ``.npz`` release.

Layout under the data root (either form is accepted)::

    cifar-10-python.tar.gz         or  cifar-10-batches-py/{data_batch_1..5,test_batch}
    cifar-100-python.tar.gz        or  cifar-100-python/{train,test}

The batches inside are Python pickles. They are read with a restricted unpickler that can only rebuild
builtin containers, byte strings and numpy arrays (no other global is resolvable), straight from the
archive in memory (nothing is extracted to disk). The LA release (Menon et al.), converted to ``.npz``
(``arr_0`` images ``N x 1 x 32 x 32 x 3``, ``arr_1`` labels ``N x 1``; ``lpl-train data convert-la``,
see :mod:`lpl_train.data.tfrecord`), is read with ``numpy.load(allow_pickle=False)``.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .common import (
    BadFile,
    DatasetBundle,
    TensorData,
    check_choice,
    class_counts_of,
    download,
    missing,
    resolve_root,
    restricted_unpickle,
    split_validation,
    verify_checksum,
)
from .longtail import PROFILES, long_tail_counts, long_tail_indices

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
#: The inputs of the PyTorch port of Logit Adjustment that the authors' long-tail code runs: the release
#: decoded to ``x/255 - 0.5``, then ``Normalize(0.5, 1.0)`` again, so ``x/255 - 1`` in [-1, 0]; its crop pads
#: the ``x/255 - 0.5`` image with 0, i.e. mid-grey (``pad_mode="mid"``).
LA_PORT_MEAN = (1.0, 1.0, 1.0)
LA_PORT_STD = (1.0, 1.0, 1.0)

_SPEC = {
    10: {
        "archive": "cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": b"labels",
        "meta": ("batches.meta", "label_names"),
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
    },
    100: {
        "archive": "cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": b"fine_labels",
        "meta": ("meta", "fine_label_names"),
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "mean": CIFAR100_MEAN,
        "std": CIFAR100_STD,
    },
}


def _integer_labels(values: object, what: str) -> np.ndarray:
    """``values`` as an int64 array, refusing what is not integer-valued (``0.7`` would silently become
    class 0); errors start with ``what``, which names the file."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise BadFile(f"{what} must hold integer class labels ({err})") from None
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer)
        or (
            np.issubdtype(arr.dtype, np.floating)
            and np.all(np.isfinite(arr) & (arr == np.round(arr)))
        )
    ):
        raise BadFile(f"{what} must hold integer class labels, got {arr.dtype} values")
    return arr.astype(np.int64)


def _decode_batch(raw: bytes, source: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_unpickle(raw, source)
    if not isinstance(batch, dict):
        raise BadFile(f"cannot read {source}: expected a dict batch, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    key = label_key.decode()
    if "data" not in batch or key not in batch:
        raise BadFile(
            f"cannot read {source}: batch lacks 'data' or '{key}' (keys: {sorted(batch)})"
        )
    data = np.asarray(batch["data"])
    labels = _integer_labels(batch[key], f"cannot read {source}: '{key}'")
    if labels.ndim != 1:
        raise BadFile(
            f"cannot read {source}: '{key}' must be a flat list of class labels, got shape {labels.shape}"
        )
    if (
        data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or len(labels) != len(data)
    ):
        raise BadFile(
            f"cannot read {source}: data must be uint8 (N, 3072) with N labels, got {data.dtype} "
            f"{data.shape} and {len(labels)} labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _read_members(
    path: Path, spec: dict, names: list[str], optional: tuple[str, ...] = ()
) -> dict[str, tuple[bytes, str]]:
    """The bytes of the members ``names`` of the release (and of ``optional`` ones, where present), with
    where each came from, from the extracted folder or in one pass over the archive."""
    raws: dict[str, tuple[bytes, str]] = {}
    if path.is_dir():
        for name in [*names, *optional]:
            f = path / name
            if f.is_file():
                raws[name] = (f.read_bytes(), str(f))
            elif name not in optional:
                raise missing(f"CIFAR batch {name}", [f], "The extracted folder is incomplete.")
        return raws
    absent = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in [*names, *optional]:
                member = f"{spec['folder']}/{name}"
                try:
                    handle = tar.extractfile(member)
                except KeyError:
                    handle = None
                if handle is not None:
                    raws[name] = (handle.read(), f"{path}:{member}")
                elif name not in optional:
                    absent.append(member)
            # gzip checks its CRC only at the end of the stream, which reading the members stops
            # short of: read on to it, so a corrupt archive raises instead of giving wrong pixels
            while tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise BadFile(f"cannot read {path}: corrupt or truncated archive ({err})") from err
    if absent:
        raise BadFile(f"cannot read {path}: archive has no member {absent[0]}")
    return raws


def _decode_split(
    raws: dict[str, tuple[bytes, str]], spec: dict, split: str
) -> tuple[np.ndarray, np.ndarray]:
    parts = [_decode_batch(*raws[name], spec["label_key"]) for name in spec[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _class_names(raw: tuple[bytes, str] | None, key: str, num_classes: int) -> list[str]:
    """The class names of the release's meta file (``batches.meta`` / ``meta``), in label order; [] where
    the folder or archive has none (a copy without it trains the same). A meta file that is present but
    not a list of ``num_classes`` names raises BadFile naming it."""
    if raw is None:
        return []
    data, source = raw
    meta = restricted_unpickle(data, source)
    names = meta.get(key.encode(), meta.get(key)) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != num_classes:
        raise BadFile(
            f"cannot read {source}: expected '{key}', a list of {num_classes} class names"
        )
    out = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]
    if not all(isinstance(n, str) for n in out):
        raise BadFile(f"cannot read {source}: '{key}' holds non-string names")
    return out


def cifar_path(num_classes: int, root: str | Path | None = None, download_: bool = False) -> Path:
    """Where the CIFAR-``num_classes`` data lives under ``root`` (downloading it when asked)."""
    check_choice("num_classes", num_classes, (10, 100))
    spec = _SPEC[num_classes]
    base = resolve_root(root)
    folder, archive = base / spec["folder"], base / spec["archive"]
    if folder.is_dir():
        return folder
    if archive.is_file():
        return archive
    if download_:
        return download(spec["url"], archive, spec["md5"])
    get = f"Download {spec['url']} into {base}"
    raise missing(
        f"CIFAR-{num_classes}",
        [archive, folder],
        f"{get}, or pass download=True (choose the folder with root=... or $LPL_DATA).",
        f"{get}, or set data.params.download = true (the folder: data.root or $LPL_DATA; on the "
        "command line --set data.params.download=true).",
    )


def load_cifar_arrays(
    num_classes: int, root: str | Path | None = None, download: bool = False, verify: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels) as uint8 ``N x 3 x 32 x 32`` and int64."""
    return _load_cifar(num_classes, root, download, verify)[:4]


def _load_cifar(
    num_classes: int, root: str | Path | None, download: bool, verify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """:func:`load_cifar_arrays` and the class names (:func:`_class_names`), from one read of the data."""
    path = cifar_path(num_classes, root, download)
    spec = _SPEC[num_classes]
    if verify and path.is_file():
        verify_checksum(path, spec["md5"])
    meta, key = spec["meta"]
    raws = _read_members(path, spec, [*spec["train"], *spec["test"]], optional=(meta,))
    xtr, ytr = _decode_split(raws, spec, "train")
    xte, yte = _decode_split(raws, spec, "test")
    for name, y in (("train", ytr), ("test", yte)):
        if y.min() < 0 or y.max() >= num_classes:
            raise BadFile(f"cannot read {path}: {name} labels outside [0, {num_classes})")
    return xtr, ytr, xte, yte, _class_names(raws.get(meta), key, num_classes)


def build_cifar(
    num_classes: int,
    root: str | Path | None = None,
    seed: int = 0,
    imbalance_ratio: float | None = None,
    profile: str = "exp",
    val_fraction: float = 0.0,
    download: bool = False,
    verify: bool = False,
) -> DatasetBundle:
    """CIFAR-10/100, or its long-tail version when ``imbalance_ratio`` is given.

    The long-tail training set uses :func:`long_tail_counts` with ``n_max = 5000`` (CIFAR-10) or ``500``
    (CIFAR-100) and :func:`long_tail_indices` with the *data* seed ``seed``; the test set stays the full
    balanced one. ``val_fraction`` carves a stratified validation split out of the (long-tail) training set
    with the same seed.
    """
    check_choice("profile", profile, PROFILES)  # refused even for the balanced set, before any read
    xtr, ytr, xte, yte, class_names = _load_cifar(num_classes, root, download, verify)
    if imbalance_ratio is not None:
        n_max = int(np.bincount(ytr, minlength=num_classes).max())
        counts = long_tail_counts(num_classes, n_max, imbalance_ratio, profile)
        keep = long_tail_indices(ytr, counts, seed)
        xtr, ytr = xtr[keep], ytr[keep]
    spec = _SPEC[num_classes]
    mean, std = spec["mean"], spec["std"]
    if imbalance_ratio is not None:
        # LDAM-DRW's cifar_train.py normalises both LT sets with CIFAR-10's statistics
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    train = TensorData(torch.from_numpy(xtr), torch.from_numpy(ytr), mean, std)
    train, val = split_validation(train, val_fraction, seed)
    test = TensorData(torch.from_numpy(np.ascontiguousarray(xte)), torch.from_numpy(yte), mean, std)
    name = f"cifar{num_classes}" + ("" if imbalance_ratio is None else "_lt")
    return DatasetBundle(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        class_counts=class_counts_of(train.targets, num_classes),
        multi_label=False,
        input_shape=(3, 32, 32),
        mean=mean,
        std=std,
        augment="crop_flip",
        name=name,
        class_names=class_names,
    )


_NPZ_FILES = {
    10: ("cifar10-lt_train.npz", "cifar10_test.npz"),
    100: ("cifar100-lt_train.npz", "cifar100_test.npz"),
}


def _read_npz(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "arr_0" not in z or "arr_1" not in z:
                raise BadFile(f"cannot read {path}: expected arrays arr_0 and arr_1, got {z.files}")
            x, y = z["arr_0"], z["arr_1"]
    except (OSError, EOFError) as err:
        raise BadFile(f"cannot read {path}: corrupt or truncated .npz ({err})") from err
    except BadFile:
        raise
    except Exception as err:  # zipfile.BadZipFile and friends
        raise BadFile(f"cannot read {path}: corrupt or truncated .npz ({err})") from err
    x = x.reshape(x.shape[0], 32, 32, 3) if x.ndim == 5 and x.shape[1:] == (1, 32, 32, 3) else x
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise BadFile(f"cannot read {path}: arr_0 must be N x (1 x) 32 x 32 x 3, got {x.shape}")
    if len(x) == 0:
        raise BadFile(f"cannot read {path}: arr_0 holds no images")
    if x.dtype == np.uint8:
        img = x
    elif np.issubdtype(x.dtype, np.floating):
        # LA's converter stores x / 255 - 0.5; undo it exactly (values are multiples of 1/255).
        lo, hi = float(x.min()), float(x.max())
        if not (-0.5 - 1e-6 <= lo and hi <= 0.5 + 1e-6):  # NaN fails both comparisons
            raise BadFile(
                f"cannot read {path}: float images must lie in [-0.5, 0.5], got [{lo}, {hi}]"
            )
        img = np.rint((x.astype(np.float64) + 0.5) * 255.0).astype(np.uint8)
    else:
        raise BadFile(f"cannot read {path}: arr_0 must be uint8 or float, got {x.dtype}")
    y = _integer_labels(y, f"cannot read {path}: arr_1").reshape(-1)
    if len(y) != len(img) or y.min() < 0 or y.max() >= num_classes:
        raise BadFile(
            f"cannot read {path}: arr_1 must hold {len(img)} labels in [0, {num_classes})"
        )
    return np.ascontiguousarray(img.transpose(0, 3, 1, 2)), y


def build_cifar_lt_npz(
    root: str | Path | None = None,
    seed: int = 0,
    variant: str = "cifar10",
    val_fraction: float = 0.0,
) -> DatasetBundle:
    """The Logit Adjustment CIFAR-LT release (rho = 100) converted to ``.npz``.

    ``root`` holds ``cifar10-lt_train.npz`` and ``cifar10_test.npz`` (``variant="cifar10"``) or the
    ``cifar100`` pair. ``seed`` only affects the optional validation split. The inputs are those of the
    LA port the authors ran: ``x/255 - 1`` (:data:`LA_PORT_MEAN`, :data:`LA_PORT_STD`), the crop padded
    mid-grey (the bundle's ``pad_mode="mid"``).
    """
    check_choice("variant", variant, ("cifar10", "cifar100"))
    num_classes = 10 if variant == "cifar10" else 100
    base = resolve_root(root)
    paths = [base / f for f in _NPZ_FILES[num_classes]]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise missing(
            f"LA {variant}-LT .npz release",
            absent,
            "Download the Logit Adjustment tfrecords (storage.googleapis.com/gresearch/logit_adjustment/) "
            f"and convert them with `lpl-train data convert-la TFRECORD_DIR {base}`.",
        )
    xtr, ytr = _read_npz(paths[0], num_classes)
    xte, yte = _read_npz(paths[1], num_classes)
    mean, std = LA_PORT_MEAN, LA_PORT_STD
    train = TensorData(torch.from_numpy(xtr), torch.from_numpy(ytr), mean, std)
    train, val = split_validation(train, val_fraction, seed)
    test = TensorData(torch.from_numpy(xte), torch.from_numpy(yte), mean, std)
    return DatasetBundle(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        class_counts=class_counts_of(train.targets, num_classes),
        multi_label=False,
        input_shape=(3, 32, 32),
        mean=mean,
        std=std,
        augment="crop_flip",
        name="cifar_lt_npz",
        pad_mode="mid",
    )
