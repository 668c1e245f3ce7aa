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

from lpl_train.data import build_datasets, fmnist
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


def test_missing_files_name_every_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_datasets("fmnist", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "download=True" in str(err.value)


def test_download_checks_decompressed_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "mirror"
    src.mkdir()
    raws = make_fmnist(src)
    monkeypatch.setattr(fmnist, "URL", src.as_uri() + "/")
    monkeypatch.setattr(
        fmnist, "FILES", {k: hashlib.sha256(v).hexdigest() for k, v in raws.items()}
    )
    dest = tmp_path / "dest"
    b = build_datasets("fmnist", root=dest, download=True)
    assert b.class_counts == [20] * 10 and (dest / "train-labels-idx1-ubyte.gz").is_file()
    bad = dict(fmnist.FILES)
    bad["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    monkeypatch.setattr(fmnist, "FILES", bad)
    with pytest.raises(ValueError, match="checksum mismatch"):
        build_datasets("fmnist", root=tmp_path / "dest2", download=True)
    assert not (tmp_path / "dest2" / "t10k-labels-idx1-ubyte.gz").exists()
    with pytest.raises(ValueError, match=r"checksum mismatch for .*t10k-labels"):
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
