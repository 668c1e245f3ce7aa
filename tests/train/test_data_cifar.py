"""CIFAR archives (fake ones in the real format), long-tail counts and subsampling, the LA npz release,
validation splits and the checksummed download."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lpl_train.data import build_datasets, check_data
from lpl_train.data.cifar import load_cifar_arrays
from lpl_train.data.common import download, restricted_unpickle, stratified_split
from lpl_train.data.longtail import long_tail_counts, long_tail_indices


def _images_for(labels: np.ndarray, offset: int) -> np.ndarray:
    """uint8 (N, 3072) rows whose first two bytes encode the sample number (to trace subsampling)."""
    n = len(labels)
    data = np.zeros((n, 3072), dtype=np.uint8)
    ids = np.arange(n) + offset
    data[:, 0], data[:, 1] = ids % 256, ids // 256
    data[:, 2] = labels
    return data


def _batch(labels: np.ndarray, offset: int, key: bytes) -> bytes:
    d = {b"batch_label": b"fake", key: labels.tolist(), b"data": _images_for(labels, offset)}
    return pickle.dumps(d, protocol=2)


def make_cifar10(root: Path, per_class: int = 50, test_per_class: int = 3, seed: int = 0) -> Path:
    """A cifar-10-python.tar.gz with 5 train batches and a test batch, labels shuffled."""
    rng = np.random.RandomState(seed)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    test = rng.permutation(np.repeat(np.arange(10), test_per_class))
    members = {}
    for i, part in enumerate(np.array_split(labels, 5)):
        start = sum(len(p) for p in np.array_split(labels, 5)[:i])
        members[f"cifar-10-batches-py/data_batch_{i + 1}"] = _batch(part, start, b"labels")
    members["cifar-10-batches-py/test_batch"] = _batch(test, 0, b"labels")
    path = root / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture()
def cifar_root(tmp_path: Path) -> Path:
    make_cifar10(tmp_path)
    return tmp_path


def test_long_tail_counts_match_ldam_totals() -> None:
    # The four training-set sizes of the LDAM-DRW construction used by the paper (Sec. V).
    assert sum(long_tail_counts(10, 5000, 100)) == 12406
    assert sum(long_tail_counts(10, 5000, 10)) == 20431
    assert sum(long_tail_counts(100, 500, 100)) == 10847
    assert sum(long_tail_counts(100, 500, 10)) == 19573
    assert long_tail_counts(10, 5000, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    c100 = long_tail_counts(100, 500, 100)
    assert (c100[0], c100[-1]) == (500, 5)


def test_step_profile_and_bad_ratio() -> None:
    assert long_tail_counts(10, 5000, 100, "step") == [5000] * 5 + [50] * 5
    assert long_tail_counts(5, 100, 10, "step") == [100, 100, 10, 10, 10]
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tail_counts(10, 50, 0.5)
    with pytest.raises(ValueError, match="profile"):
        long_tail_counts(10, 50, 10, "linear")
    with pytest.raises(ValueError, match="no sample"):
        long_tail_counts(10, 50, 100)


def test_subsample_matches_reference_recipe() -> None:
    # Reference: global numpy seed, then per class (in index order) shuffle and keep the first n_c.
    targets = np.random.RandomState(3).randint(0, 4, size=200)
    counts = [30, 20, 10, 5]
    np.random.seed(7)  # noqa: NPY002 - the reference recipe uses the global legacy generator
    ref = []
    for c, n in enumerate(counts):
        idx = np.where(targets == c)[0]
        np.random.shuffle(idx)  # noqa: NPY002
        ref.extend(idx[:n].tolist())
    got = long_tail_indices(targets, counts, seed=7)
    assert got.tolist() == ref
    assert np.bincount(targets[got]).tolist() == counts


def test_cifar10_archive_roundtrip(cifar_root: Path) -> None:
    b = build_datasets("cifar10", root=cifar_root)
    assert b.num_classes == 10 and not b.multi_label and b.input_shape == (3, 32, 32)
    assert b.class_counts == [50] * 10 and len(b.test) == 30
    x, y = b.train.images, b.train.targets
    assert x.dtype == torch.uint8 and x.shape == (500, 3, 32, 32)
    # byte 2 of each row carries its label, bytes 0-1 the running sample number
    assert torch.equal(x[:, 0, 0, 2].long(), y)
    ids = x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()
    assert torch.equal(ids, torch.arange(500))


def test_cifar_lt_counts_and_images(cifar_root: Path) -> None:
    b = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10, seed=0)
    expected = [int(50 * 0.1 ** (c / 9)) for c in range(10)]
    assert b.class_counts == expected
    assert len(b.train) == sum(expected) and len(b.test) == 30  # test stays balanced
    # every kept image carries the label it is given, and no image is repeated
    x, y = b.train.images, b.train.targets
    assert torch.equal(x[:, 0, 0, 2].long(), y)
    ids = (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()
    assert len(set(ids)) == len(ids)
    # the same selection as the reference recipe on the archive's labels
    _, ytr, _, _ = load_cifar_arrays(10, cifar_root)
    assert sorted(ids) == sorted(long_tail_indices(ytr, expected, 0).tolist())


def test_data_seed_changes_images_not_counts(cifar_root: Path) -> None:
    a = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10, seed=0)
    b = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10, seed=1)
    c = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10, seed=0)
    assert a.class_counts == b.class_counts
    assert not torch.equal(a.train.images, b.train.images)
    assert torch.equal(a.train.images, c.train.images)


def test_extracted_folder_equals_archive(cifar_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    out.mkdir()
    with tarfile.open(cifar_root / "cifar-10-python.tar.gz") as tar:
        # the archive is the test's own; the "data" filter exists from Python 3.10.12 / 3.11.4 on
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(out, **safe)
    a = build_datasets("cifar10", root=cifar_root)
    b = build_datasets("cifar10", root=out)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(
        a.test.targets, b.test.targets
    )


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(100), 5)
    test = np.arange(100)
    path = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, lab in (("train", labels), ("test", test)):
            raw = pickle.dumps(
                {
                    b"fine_labels": lab.tolist(),
                    b"coarse_labels": (lab // 5).tolist(),
                    b"data": _images_for(lab, 0),
                },
                protocol=2,
            )
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    b = build_datasets("cifar100_lt", root=tmp_path, imbalance_ratio=5)
    assert b.num_classes == 100
    assert b.class_counts == [int(5 * 0.2 ** (c / 99)) for c in range(100)]
    assert b.class_counts[0] == 5 and b.class_counts[-1] == 1


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with pytest.raises(ValueError, match="not allowed|cannot read evil"):
        restricted_unpickle(pickle.dumps({b"data": Evil()}), "evil")
    assert not marker.exists()


def test_truncated_and_corrupt_archives_name_the_file(cifar_root: Path, tmp_path: Path) -> None:
    raw = (cifar_root / "cifar-10-python.tar.gz").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cifar-10-python.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz"):
        build_datasets("cifar10", root=bad)
    (bad / "cifar-10-python.tar.gz").write_bytes(b"not a gzip at all")
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz"):
        build_datasets("cifar10", root=bad)


def test_missing_root_names_path_and_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_datasets("cifar10_lt", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere" in msg and "cifar-10-python.tar.gz" in msg and "toronto" in msg


def test_download_verifies_checksum(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 100)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "file.bin"
    download(src.as_uri(), dest, md5)
    assert dest.read_bytes() == src.read_bytes()
    dest2 = tmp_path / "out" / "file2.bin"
    with pytest.raises(ValueError, match="checksum mismatch"):
        download(src.as_uri(), dest2, "0" * 32)
    assert not dest2.exists()
    assert list((tmp_path / "out").iterdir()) == [dest]  # no partial file left behind


def test_validation_split_is_stratified_and_seeded(cifar_root: Path) -> None:
    b = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10, val_fraction=0.2, seed=3)
    full = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10, seed=3)
    n_full = full.class_counts
    n_val = torch.bincount(b.val.targets, minlength=10).tolist()
    assert n_val == [min(round(0.2 * n), n - 1) for n in n_full]
    assert b.class_counts == [n - v for n, v in zip(n_full, n_val, strict=True)]

    def ids(t):
        return set((t.images[:, 0, 0, 0].long() + 256 * t.images[:, 0, 0, 1].long()).tolist())

    assert ids(b.train).isdisjoint(ids(b.val)) and ids(b.train) | ids(b.val) == ids(full.train)
    tr1, va1 = stratified_split(np.repeat(np.arange(3), 10), 0.3, 5)
    tr2, va2 = stratified_split(np.repeat(np.arange(3), 10), 0.3, 5)
    assert tr1.tolist() == tr2.tolist() and len(va1) == 9
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(np.zeros(4), 1.0, 0)


def _write_npz(
    path: Path, n: int, num_classes: int, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    img = rng.randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
    lab = rng.randint(0, num_classes, size=n)
    np.savez(path, (img.astype(np.float32) / 255.0 - 0.5)[:, None], lab[:, None])
    return img, lab


def test_la_npz_release(tmp_path: Path) -> None:
    rng = np.random.RandomState(0)
    img, lab = _write_npz(tmp_path / "cifar10-lt_train.npz", 40, 10, rng)
    _write_npz(tmp_path / "cifar10_test.npz", 20, 10, rng)
    b = build_datasets("cifar_lt_npz", root=tmp_path, variant="cifar10")
    assert torch.equal(
        b.train.images, torch.from_numpy(img.transpose(0, 3, 1, 2))
    )  # x/255-0.5 undone exactly
    assert b.train.targets.tolist() == lab.tolist()
    assert b.class_counts == np.bincount(lab, minlength=10).tolist()
    (tmp_path / "cifar10_test.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match=r"cifar10_test\.npz"):
        build_datasets("cifar_lt_npz", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar100-lt_train\.npz"):
        build_datasets("cifar_lt_npz", root=tmp_path, variant="cifar100")


def test_unknown_dataset_and_param(cifar_root: Path) -> None:
    with pytest.raises(
        ValueError, match=r"dataset name must be one of \[.*'fmnist_lt'.*got 'imagenet'"
    ):
        build_datasets("imagenet")
    with pytest.raises(ValueError, match="bogus"):
        build_datasets("cifar10", root=cifar_root, bogus=1)


def test_check_data_reports_without_loading(cifar_root: Path, tmp_path: Path) -> None:
    assert check_data("cifar10_lt", root=cifar_root) == [cifar_root / "cifar-10-python.tar.gz"]
    assert check_data("gaussian") == []
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python\.tar\.gz"):
        check_data("cifar100", root=cifar_root)
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.json.*cocodataset"):
        check_data("coco_mlt", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"test\.txt"):
        check_data("voc_mlt", root=tmp_path)


def test_numpy1_pickles_as_in_the_official_batches() -> None:
    # The official batches name numpy.core.multiarray (numpy 1.x); numpy 2 writes numpy._core.
    raw = pickle.dumps(
        {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [1, 2]}, protocol=2
    )
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    out = restricted_unpickle(raw, "batch")
    assert out[b"labels"] == [1, 2] and out[b"data"].tolist() == [[0, 1, 2], [3, 4, 5]]
