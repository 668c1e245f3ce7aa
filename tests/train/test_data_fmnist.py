"""Fashion-MNIST idx.gz reading (tiny files written here in the idx format), the long-tail single- and
multi-label versions, the checksummed download, and the real files when installed."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lpl_train.data import BadFile, build_datasets, fmnist
from lpl_train.data.fmnist import DEBIAN_DIR, read_idx


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> bytes:
    """idx layout: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian int32 dims, raw bytes."""
    raw = (
        bytes([0, 0, 8, arr.ndim])
        + struct.pack(f">{arr.ndim}i", *arr.shape)
        + arr.astype(np.uint8).tobytes()
    )
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return raw


def make_fmnist(root: Path, per_class: int = 20, test_per_class: int = 4) -> dict[str, bytes]:
    rng = np.random.RandomState(0)
    raws = {}
    for split, k in (("train", per_class), ("t10k", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), k)).astype(np.uint8)
        images = rng.randint(0, 256, size=(len(labels), 28, 28)).astype(np.uint8)
        images[:, 0, 0] = labels  # pixel (0, 0) carries the label
        raws[f"{split}-images-idx3-ubyte.gz"] = write_idx(
            root / f"{split}-images-idx3-ubyte.gz", images
        )
        raws[f"{split}-labels-idx1-ubyte.gz"] = write_idx(
            root / f"{split}-labels-idx1-ubyte.gz", labels
        )
    return raws


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    make_fmnist(tmp_path)
    return tmp_path


def test_read_idx_roundtrip_and_errors(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)
    raw = write_idx(tmp_path / "plain", arr, compress=False)
    assert np.array_equal(read_idx(tmp_path / "plain"), arr)
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(ValueError, match=r"short\.gz.*truncated"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match=r"cut\.gz"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "magic.gz").write_bytes(gzip.compress(b"\x01\x02\x08\x01" + raw[4:]))
    with pytest.raises(ValueError, match=r"magic\.gz.*magic"):
        read_idx(tmp_path / "magic.gz")
    (tmp_path / "int.gz").write_bytes(gzip.compress(b"\x00\x00\x0c\x01" + raw[4:]))
    with pytest.raises(ValueError, match=r"int\.gz.*0x0c"):
        read_idx(tmp_path / "int.gz")


def test_fmnist_and_long_tail(root: Path) -> None:
    b = build_datasets("fmnist", root=root)
    assert b.class_counts == [20] * 10 and len(b.test) == 40 and b.input_shape == (1, 28, 28)
    assert torch.equal(b.train.images[:, 0, 0, 0].long(), b.train.targets)
    lt = build_datasets("fmnist_lt", root=root, imbalance_ratio=10)
    assert lt.class_counts == [int(20 * 0.1 ** (c / 9)) for c in range(10)]
    assert lt.class_counts[0] == 20 and lt.class_counts[-1] == 2
    assert torch.equal(lt.train.images[:, 0, 0, 0].long(), lt.train.targets)
    step = build_datasets("fmnist_lt", root=root, imbalance_ratio=10, profile="step")
    assert step.class_counts == [20] * 5 + [2] * 5
    assert len(lt.test) == 40
    # a misspelt profile is refused even where no long tail is cut (it would be read as balanced)
    for name, ratio in (("fmnist", None), ("fmnist_lt", 10)):
        with pytest.raises(ValueError, match="profile must be one of"):
            build_datasets(name, root=root, imbalance_ratio=ratio, profile="expo")


def test_missing_files_name_every_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_datasets("fmnist", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "download=True" in str(err.value)


def _mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A local folder serving the four files as the download URL, with their checksums."""
    src = tmp_path / "mirror"
    src.mkdir()
    raws = make_fmnist(src)
    monkeypatch.setattr(fmnist, "URL", src.as_uri() + "/")
    monkeypatch.setattr(
        fmnist, "FILES", {k: hashlib.sha256(v).hexdigest() for k, v in raws.items()}
    )
    return raws


def test_download_checks_decompressed_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mirror(tmp_path, monkeypatch)
    dest = tmp_path / "dest"
    b = build_datasets("fmnist", root=dest, download=True)
    assert b.class_counts == [20] * 10 and (dest / "train-labels-idx1-ubyte.gz").is_file()
    bad = dict(fmnist.FILES)
    bad["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    monkeypatch.setattr(fmnist, "FILES", bad)
    with pytest.raises(ValueError, match="checksum mismatch"):
        build_datasets("fmnist", root=tmp_path / "dest2", download=True)
    assert not (tmp_path / "dest2" / "t10k-labels-idx1-ubyte.gz").exists()
    with pytest.raises(
        BadFile, match=r"checksum mismatch for .*t10k-labels"
    ):  # a refused data file
        build_datasets("fmnist", root=dest, verify=True)


def test_multilabel_mosaics(root: Path) -> None:
    b = build_datasets(
        "fmnist_ml_lt", root=root, imbalance_ratio=100, num_train=3000, num_test=200, seed=4
    )
    assert b.multi_label and b.input_shape == (1, 56, 56)
    x, t = b.train.images, b.train.targets
    assert x.shape == (3000, 1, 56, 56) and t.shape == (3000, 10) and t.dtype == torch.float32
    # each tile's pixel (0, 0) is its item's label: the targets are exactly the set of tile classes
    tiles = torch.stack([x[:, 0, 0, 0], x[:, 0, 0, 28], x[:, 0, 28, 0], x[:, 0, 28, 28]], 1).long()
    present = torch.zeros(3000, 10).scatter_(1, tiles, 1.0)
    assert torch.equal(present, t)
    assert b.class_counts == t.sum(0).long().tolist()
    # long-tailed training frequencies, near-uniform test frequencies
    p = 100.0 ** (-np.arange(10) / 9)
    p /= p.sum()
    expected_present = 3000 * (1 - (1 - p) ** 4)
    assert np.allclose(b.class_counts, expected_present, rtol=0.25)
    test_counts = b.test.targets.sum(0).numpy()
    assert test_counts.min() > 0.5 * test_counts.max()
    again = build_datasets("fmnist_ml_lt", root=root, num_train=3000, num_test=200, seed=4)
    other = build_datasets("fmnist_ml_lt", root=root, num_train=3000, num_test=200, seed=5)
    assert torch.equal(again.train.images, x) and not torch.equal(other.train.images, x)


@pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST not installed at /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)",
)
def test_real_fashion_mnist() -> None:
    b = build_datasets("fmnist_lt", root=DEBIAN_DIR, imbalance_ratio=100, verify=True)
    assert b.class_counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert len(b.test) == 10000 and torch.bincount(b.test.targets).tolist() == [1000] * 10
    mean = b.train.images.float().mean().item() / 255
    assert 0.2 < mean < 0.4  # grey-level clothing on black


# ------------------------------------------------------------------ constants, idx errors, file lookup


def test_fmnist_bundle_fields_and_constants(root: Path) -> None:
    # the label descriptions of the Fashion-MNIST README, and its mean/std (checked on the real
    # files in test_real_fashion_mnist_statistics)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
    b = build_datasets("fmnist", root=root)
    assert b.class_names == names and b.name == "fmnist" and b.augment == "crop_flip"
    assert (b.mean, b.std) == ((0.2860,), (0.3530,)) and b.val is None
    assert (b.train.mean, b.train.std) == (b.test.mean, b.test.std) == ((0.2860,), (0.3530,))
    lt = build_datasets("fmnist_lt", root=root, imbalance_ratio=10)
    assert lt.name == "fmnist_lt" and lt.augment == "crop_flip" and lt.class_names == names
    ml = build_datasets("fmnist_ml_lt", root=root, num_train=20, num_test=10, grid=3)
    assert ml.name == "fmnist_ml_lt" and ml.augment == "flip" and ml.class_names == names
    assert ml.input_shape == (1, 84, 84) and ml.train.images.shape == (20, 1, 84, 84)
    assert (ml.mean, ml.std) == ((0.2860,), (0.3530,))


@pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST not installed at /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)",
)
def test_real_fashion_mnist_statistics() -> None:
    # mean/std of the real training pixels (read here straight from the idx bytes) match the constants
    raw = gzip.decompress((DEBIAN_DIR / "train-images-idx3-ubyte.gz").read_bytes())
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    n = x.size
    mean = x.sum(0, dtype=np.float64).sum() / n
    std = np.sqrt(np.einsum("ij,ij->j", x, x, dtype=np.float64).sum() / n - mean**2)
    assert abs(mean - fmnist.FMNIST_MEAN[0]) < 5e-5 and abs(std - fmnist.FMNIST_STD[0]) < 5e-5


def _idx_header(ndim_byte: int, dims: tuple[int, ...], magic: bytes = b"\x00\x00\x08") -> bytes:
    return magic + bytes([ndim_byte]) + struct.pack(f">{len(dims)}i", *dims)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (_idx_header(1, (3,), b"\x00\x01\x08") + b"abc", "bad magic"),
        (_idx_header(1, (3,), b"\x01\x00\x08") + b"abc", "bad magic"),
        (b"\x00\x00", "bad magic"),  # shorter than the magic number
        (_idx_header(0, ()) + b"a", "truncated idx header"),  # no dimension
        (_idx_header(3, (2, 2)), "truncated idx header"),  # 3 dims promised, 2 given
        (_idx_header(2, (-1, 4)) + b"abcd", "negative dimension"),
        (_idx_header(1, (3,)) + b"abcd", "more bytes"),  # trailing data
        (_idx_header(3, (1000, 1000, 1000)) + b"abc", "more than a file of"),
    ],
)
def test_read_idx_rejects_bad_headers(tmp_path: Path, raw: bytes, match: str) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match=rf"bad\.gz.*{match}"):
        read_idx(path)


def test_read_idx_plain_size_and_bad_gzip(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = write_idx(tmp_path / "plain", arr, compress=False)
    (tmp_path / "plain").write_bytes(raw[:-5])  # checked against the file size before reading
    with pytest.raises(ValueError, match=r"plain: header says \(2, 3, 4\) \(24 bytes\).*19 bytes"):
        read_idx(tmp_path / "plain")
    (tmp_path / "notgz.gz").write_bytes(raw)  # an uncompressed file named .gz
    with pytest.raises(ValueError, match=r"notgz\.gz: corrupt or truncated file"):
        read_idx(tmp_path / "notgz.gz")


def test_read_idx_size_cap(tmp_path: Path) -> None:
    # a 1.1 MB gzip may inflate to 1.1 GB, which the deflate bound allows, but the cap (1 GiB) does not
    body = np.random.RandomState(0).bytes(1_100_000)
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(_idx_header(3, (1025, 1024, 1024)) + body, compresslevel=1))
    assert 1032 * path.stat().st_size > 1025 * 1024 * 1024 > 1 << 30
    with pytest.raises(ValueError, match=r"big\.gz: header says .* than 1073741824 bytes"):
        read_idx(path)


def test_fmnist_file_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # root/fashion-mnist is searched after root; a root holding only some of the files is skipped
    (tmp_path / "fashion-mnist").mkdir()
    make_fmnist(tmp_path / "fashion-mnist")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
    assert fmnist.fmnist_dir(tmp_path) == tmp_path / "fashion-mnist"
    assert build_datasets("fmnist", root=tmp_path).class_counts == [20] * 10
    # without root: $LPL_DATA/fashion-mnist, then ./data/fashion-mnist, then the Debian folder
    cwd = tmp_path / "cwd"
    (cwd / "data" / "fashion-mnist").mkdir(parents=True)
    make_fmnist(cwd / "data" / "fashion-mnist")
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("LPL_DATA", raising=False)
    assert fmnist.fmnist_dir() == Path("data") / "fashion-mnist"
    env = tmp_path / "env"
    (env / "fashion-mnist").mkdir(parents=True)
    make_fmnist(env / "fashion-mnist")
    monkeypatch.setenv("LPL_DATA", str(env))
    assert fmnist.fmnist_dir() == env / "fashion-mnist"
    assert fmnist._candidates(None)[-1] == DEBIAN_DIR


def test_download_fetches_only_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = _mirror(tmp_path, monkeypatch)
    src = tmp_path / "mirror"
    dest = tmp_path / "dest"
    dest.mkdir()
    (src / "t10k-labels-idx1-ubyte.gz").rename(dest / "t10k-labels-idx1-ubyte.gz")
    b = build_datasets("fmnist", root=dest, download=True)  # the mirror lacks the file dest has
    assert b.class_counts == [20] * 10 and len(b.test) == 40
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(raws["t10k-labels-idx1-ubyte.gz"])
    )
    ml = build_datasets("fmnist_ml_lt", root=tmp_path / "d2", download=True, num_train=8,
                        num_test=4)  # fmt: skip
    assert ml.train.images.shape == (8, 1, 56, 56) and (tmp_path / "d2").is_dir()


def _write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
    write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)


def test_fmnist_mismatched_or_bad_files(root: Path) -> None:
    images = np.zeros((40, 28, 28), np.uint8)
    labels = np.repeat(np.arange(10), 4).astype(np.uint8)
    _write_split(root, "t10k", images.reshape(40, 784), labels)  # 2-D images
    with pytest.raises(
        ValueError, match=r"t10k images \(40, 784\) and labels \(40,\) do not match"
    ):
        build_datasets("fmnist", root=root)
    _write_split(root, "t10k", images, labels[:39])
    with pytest.raises(ValueError, match="do not match"):
        build_datasets("fmnist", root=root)
    bad = labels.copy()
    bad[5] = 10
    _write_split(root, "t10k", images, bad)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: labels above 9"):
        build_datasets("fmnist", root=root)


def test_fmnist_lt_head_size_seed_and_validation(tmp_path: Path) -> None:
    # class c holds 20 - c training items, so n_max is 20
    rng = np.random.RandomState(5)
    labels = rng.permutation(np.repeat(np.arange(10), 20 - np.arange(10))).astype(np.uint8)
    images = rng.randint(0, 256, size=(len(labels), 28, 28)).astype(np.uint8)
    _write_split(tmp_path, "train", images, labels)
    _write_split(tmp_path, "t10k", images[:10], np.arange(10, dtype=np.uint8))
    counts = [int(20 * 0.1 ** (c / 9)) for c in range(10)]
    for seed in (0, 3):
        lt = build_datasets("fmnist_lt", root=tmp_path, imbalance_ratio=10, seed=seed)
        assert lt.class_counts == counts
        # reference recipe: one RandomState(seed), per class in order shuffle and keep the first n_c
        ref_rng = np.random.RandomState(seed)
        ref = []
        for c, n in enumerate(counts):
            idx = np.flatnonzero(labels == c)
            ref_rng.shuffle(idx)
            ref.extend(idx[:n].tolist())
        assert torch.equal(lt.train.images[:, 0], torch.from_numpy(images[ref]))
    b = build_datasets("fmnist", root=tmp_path, val_fraction=0.25, seed=2)
    n_val = [round(0.25 * (20 - c)) for c in range(10)]
    assert torch.bincount(b.val.targets, minlength=10).tolist() == n_val
    assert b.class_counts == [20 - c - v for c, v in enumerate(n_val)]
    assert (b.val.mean, b.val.std) == ((0.2860,), (0.3530,))


def test_mosaic_items_and_arguments(root: Path) -> None:
    from lpl_train.data.fmnist import build_fmnist_ml_lt, make_mosaics

    # every item of a class is drawn (uniformly within the class), test tiles come from test items
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    labels = np.arange(20) % 10
    m, t = make_mosaics(images, labels, 300, np.full(10, 0.1), 2, np.random.RandomState(0))
    assert set(m.reshape(-1).tolist()) == set(range(20))
    assert np.array_equal(t, np.eye(10)[m.reshape(300, 4) % 10].max(1))
    with pytest.raises(ValueError, match="every class needs"):
        make_mosaics(images, labels % 9, 3, np.full(10, 0.1), 2, np.random.RandomState(0))
    b = build_datasets("fmnist_ml_lt", root=root, num_train=50, num_test=30, seed=1)
    plain = build_datasets("fmnist", root=root)
    test_items = {x.numpy().tobytes() for x in plain.test.images[:, 0]}
    train_items = {x.numpy().tobytes() for x in plain.train.images[:, 0]}
    tiles = b.test.images[:, 0].unfold(1, 28, 28).unfold(2, 28, 28).reshape(-1, 28, 28)
    assert {x.numpy().tobytes() for x in tiles} <= test_items
    tiles = b.train.images[:, 0].unfold(1, 28, 28).unfold(2, 28, 28).reshape(-1, 28, 28)
    assert {x.numpy().tobytes() for x in tiles} <= train_items
    for kwargs, match in (
        ({"imbalance_ratio": 0.5}, "imbalance_ratio"),
        ({"num_train": 0}, "num_train"),
        ({"num_test": 0}, "num_test"),
        ({"grid": 0}, "grid"),
        ({"seed": -1}, "seed must be"),
    ):
        with pytest.raises(ValueError, match=match):
            build_fmnist_ml_lt(root=root, **kwargs)
    v = build_datasets("fmnist_ml_lt", root=root, num_train=100, num_test=10, val_fraction=0.2)
    assert v.val is not None and len(v.train) + len(v.val) == 100 and 10 <= len(v.val) <= 30
    assert v.class_counts == v.train.targets.sum(0).long().tolist()


def test_fmnist_refuses_an_empty_split_or_images_that_are_not_28_by_28(root: Path) -> None:
    _write_split(root, "t10k", np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: expected N >= 1 images"):
        build_datasets("fmnist", root=root)
    labels = np.repeat(np.arange(10), 4).astype(np.uint8)
    _write_split(root, "t10k", np.zeros((40, 32, 32), np.uint8), labels)
    with pytest.raises(
        ValueError, match=r"t10k-images-idx3-ubyte\.gz: .*28 x 28, got \(40, 32, 32\)"
    ):
        build_datasets("fmnist", root=root)


def test_mosaic_validation_split_shares_no_source_image_with_training(root: Path) -> None:
    # a validation mosaic must not reuse a Fashion-MNIST image that a training mosaic shows: the
    # validation mosaics are tiled from a held-out part of each class's source images
    def items(split: torch.Tensor) -> set[bytes]:
        tiles = split[:, 0].unfold(1, 28, 28).unfold(2, 28, 28).reshape(-1, 28, 28)
        return {x.numpy().tobytes() for x in tiles}

    b = build_datasets(
        "fmnist_ml_lt", root=root, num_train=300, num_test=20, val_fraction=0.2, seed=3
    )
    assert b.val is not None and len(b.train) == 240 and len(b.val) == 60
    train, val, test = items(b.train.images), items(b.val.images), items(b.test.images)
    assert val and not val & train and not test & (train | val)
    # the validation mosaics follow the training (long-tail) class distribution
    assert b.val.targets.sum(0)[0] > 3 * b.val.targets.sum(0)[9]
    assert b.class_counts == b.train.targets.sum(0).long().tolist()
    # without a validation split the mosaics are those of the plain construction
    plain = build_datasets("fmnist_ml_lt", root=root, num_train=300, num_test=20, seed=3)
    xtr, ytr, xte, yte = fmnist.load_fmnist_arrays(root)
    p = 100.0 ** (-np.arange(10) / 9)
    rng = np.random.RandomState(3)
    mtr, _ = fmnist.make_mosaics(xtr, ytr, 300, p / p.sum(), 2, rng)
    mte, _ = fmnist.make_mosaics(xte, yte, 20, np.full(10, 0.1), 2, rng)
    assert np.array_equal(plain.train.images.numpy(), mtr)
    assert np.array_equal(plain.test.images.numpy(), mte)


def test_mosaic_validation_size_is_the_rounded_fraction(tmp_path):
    """``round(f * num_train)`` mosaics form the validation split, as documented (not the floor)."""
    make_fmnist(tmp_path)
    b = build_datasets("fmnist_ml_lt", root=tmp_path, num_train=10, num_test=4, val_fraction=0.28)
    assert (len(b.val), len(b.train)) == (3, 7)  # round(2.8) = 3
    b = build_datasets("fmnist_ml_lt", root=tmp_path, num_train=100, num_test=4, val_fraction=0.156)
    assert (len(b.val), len(b.train)) == (16, 84)  # round(15.6) = 16


def test_a_mosaic_val_fraction_that_rounds_to_no_mosaic_is_refused(root: Path) -> None:
    with pytest.raises(
        ValueError, match=r"^val_fraction=0\.1 leaves no validation mosaic: .*num_train=4"
    ):
        build_datasets("fmnist_ml_lt", root=root, num_train=4, num_test=4, val_fraction=0.1)
