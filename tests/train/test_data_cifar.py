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

from lpl_train.data import BadFile, build_datasets, check_data
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


@pytest.mark.parametrize("profile", ["exp", "step"])
def test_a_ratio_equal_to_the_head_size_is_not_advised_when_it_fails(profile) -> None:
    # 49 * (1 / 49) is 0.99999... in floating point, so the LDAM formula gives the tail class int(...) = 0
    # samples; the error must not advise "imbalance_ratio <= 49", the value that was just refused
    assert 49 * (1 / 49) < 1
    with pytest.raises(ValueError, match="no sample") as err:
        long_tail_counts(10, 49, 49, profile)
    assert "<= 49" not in str(err.value) and "smaller imbalance_ratio" in str(err.value)
    assert long_tail_counts(10, 49, 48, profile)[-1] == 1  # int(49 / 48)
    with pytest.raises(ValueError, match="use imbalance_ratio <= 49"):
        long_tail_counts(10, 49, 50, profile)


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
    # LDAM-DRW normalises CIFAR-100-LT with CIFAR-10's statistics (its cifar_train.py, both datasets)
    c10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert (b.mean, b.std) == c10 and (b.train.mean, b.test.std) == c10


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
    allowed = "download, imbalance_ratio, profile, val_fraction, verify"
    for name in ("cifar10", "cifar100_lt"):
        with pytest.raises(
            ValueError, match=rf"{name}' has no parameter 'bogus'; allowed: {allowed}$"
        ):
            build_datasets(name, root=cifar_root, bogus=1)
    with pytest.raises(ValueError, match=r"'inat2017' has no parameter 'bogus'; allowed: size$"):
        build_datasets("inat2017", bogus=1)


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


# ------------------------------------------------------------------ folder form, constants, validation


def _cifar10_folder(root: Path, train_labels: np.ndarray, test_labels: np.ndarray) -> Path:
    """The extracted ``cifar-10-batches-py`` folder: ``train_labels`` over 5 batches, one test batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for i, part in enumerate(np.array_split(np.asarray(train_labels), 5)):
        (folder / f"data_batch_{i + 1}").write_bytes(_batch(part, start, b"labels"))
        start += len(part)
    (folder / "test_batch").write_bytes(_batch(np.asarray(test_labels), 0, b"labels"))
    return folder


def _cifar100_archive(root: Path, train_labels: np.ndarray, test_labels: np.ndarray) -> Path:
    path = root / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, lab in (("train", train_labels), ("test", test_labels)):
            raw = pickle.dumps(
                {b"fine_labels": lab.tolist(), b"coarse_labels": (lab // 5).tolist(),
                 b"data": _images_for(lab, 0)},
                protocol=2,
            )  # fmt: skip
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def test_cifar_normalisation_and_bundle_fields(cifar_root: Path, tmp_path: Path) -> None:
    # the per-channel statistics of the LDAM-DRW / standard CIFAR training code; balanced CIFAR-100 its own
    c10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    c100 = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    b = build_datasets("cifar10", root=cifar_root)
    assert (b.mean, b.std) == c10 and (b.train.mean, b.train.std) == c10
    assert (b.test.mean, b.test.std) == c10
    assert b.name == "cifar10" and b.augment == "crop_flip" and b.val is None
    lt = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10)
    assert lt.name == "cifar10_lt" and (lt.mean, lt.std) == c10 and lt.augment == "crop_flip"
    root100 = tmp_path / "c100"
    root100.mkdir()
    _cifar100_archive(root100, np.repeat(np.arange(100), 2), np.arange(100))
    b100 = build_datasets("cifar100", root=root100)
    assert b100.name == "cifar100" and (b100.mean, b100.std) == c100
    assert (b100.train.mean, b100.train.std) == c100 and (b100.test.mean, b100.test.std) == c100
    assert b100.class_counts == [2] * 100 and b100.test.targets.tolist() == list(range(100))


def test_cifar_lt_head_is_the_largest_class_and_step_profile(
    cifar_root: Path, tmp_path: Path
) -> None:
    # unequal classes: class c holds 40 - 2c images, so the head size n_max is 40 (not the smallest, 22)
    rng = np.random.RandomState(1)
    labels = rng.permutation(np.repeat(np.arange(10), [40 - 2 * c for c in range(10)]))
    _cifar10_folder(tmp_path / "u", labels, np.arange(10))
    exp = build_datasets("cifar10_lt", root=tmp_path / "u", imbalance_ratio=4)
    assert exp.class_counts == [int(40 * 0.25 ** (c / 9)) for c in range(10)]
    # step profile: the first 5 classes keep n_max = 50, the others int(50 / 10)
    step = build_datasets("cifar10_lt", root=cifar_root, imbalance_ratio=10, profile="step")
    assert step.class_counts == [50] * 5 + [5] * 5
    x, y = step.train.images, step.train.targets
    assert torch.equal(x[:, 0, 0, 2].long(), y)
    # a misspelt profile is refused for the balanced set too, where it would have been ignored
    with pytest.raises(ValueError, match="profile must be one of"):
        build_datasets("cifar10", root=cifar_root, profile="steps")


def test_cifar_validation_split_uses_the_data_seed(cifar_root: Path) -> None:
    full = build_datasets("cifar10", root=cifar_root)

    def ids(t):
        return (t.images[:, 0, 0, 0].long() + 256 * t.images[:, 0, 0, 1].long()).tolist()

    for seed in (1, 2):
        b = build_datasets("cifar10", root=cifar_root, val_fraction=0.2, seed=seed)
        tr, va = stratified_split(full.train.targets.numpy(), 0.2, seed)
        assert ids(b.val) == [ids(full.train)[i] for i in va]
        assert ids(b.train) == [ids(full.train)[i] for i in tr]
        assert b.class_counts == [40] * 10 and len(b.test) == 30
        assert (b.val.mean, b.val.std) == (full.mean, full.std)


def test_cifar_verify_checks_the_official_md5(cifar_root: Path, tmp_path: Path) -> None:
    # the MD5 sums published on the CIFAR page; the fake archive cannot match them
    with pytest.raises(
        ValueError, match="checksum mismatch.*expected c58f30108f718f92721af3b95e74349a"
    ):
        build_datasets("cifar10", root=cifar_root, verify=True)
    build_datasets("cifar10", root=cifar_root)  # not verified unless asked
    root100 = tmp_path / "c100"
    root100.mkdir()
    _cifar100_archive(root100, np.repeat(np.arange(100), 2), np.arange(100))
    with pytest.raises(
        ValueError, match="checksum mismatch.*expected eb9058c3a382ffc7106e4002c42a8d85"
    ):
        build_datasets("cifar100", root=root100, verify=True)
    # an extracted folder has no archive to verify
    folder = tmp_path / "folder"
    _cifar10_folder(folder, np.repeat(np.arange(10), 5), np.arange(10))
    assert build_datasets("cifar10", root=folder, verify=True).class_counts == [5] * 10


def _bad_batch(**entries: object) -> bytes:
    return pickle.dumps(entries, protocol=2)


@pytest.mark.parametrize(
    "raw",
    [
        pickle.dumps([1, 2, 3], protocol=2),  # not a dict
        _bad_batch(data=np.zeros((3, 3072), np.uint8)),  # no labels
        _bad_batch(labels=[0, 1, 2]),  # no data
        _bad_batch(data=np.zeros((3, 3072), np.float32), labels=[0, 1, 2]),  # not uint8
        _bad_batch(data=np.zeros((3, 3072, 1), np.uint8), labels=[0, 1, 2]),  # not 2-D
        _bad_batch(data=np.zeros((3, 2048), np.uint8), labels=[0, 1, 2]),  # rows of 2048
        _bad_batch(data=np.zeros((3, 3072), np.uint8), labels=[0, 1]),  # 2 labels for 3 rows
    ],
)
def test_malformed_cifar_batch_names_the_file(tmp_path: Path, raw: bytes) -> None:
    folder = _cifar10_folder(tmp_path, np.repeat(np.arange(10), 5), np.arange(10))
    (folder / "data_batch_3").write_bytes(raw)
    with pytest.raises(ValueError, match=r"cannot read .*data_batch_3"):
        load_cifar_arrays(10, tmp_path)


def test_cifar_folder_missing_batch_and_bad_labels(tmp_path: Path) -> None:
    folder = _cifar10_folder(tmp_path, np.repeat(np.arange(10), 5), np.arange(10))
    (folder / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match=r"CIFAR batch data_batch_4 not found.*incomplete"):
        load_cifar_arrays(10, tmp_path)
    for bad in (10, -1):  # one past the last class, and a negative label
        test = np.arange(10)
        test[3] = bad
        _cifar10_folder(tmp_path, np.repeat(np.arange(10), 5), test)
        with pytest.raises(ValueError, match=r"test labels outside \[0, 10\)"):
            load_cifar_arrays(10, tmp_path)


def _npz(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> None:
    if y is None:
        np.savez(path, x)
    else:
        np.savez(path, x, y)


def test_la_npz_validation_and_uint8(tmp_path: Path) -> None:
    rng = np.random.RandomState(2)
    img = rng.randint(0, 256, size=(12, 32, 32, 3)).astype(np.uint8)
    lab = np.arange(12) % 10
    _npz(tmp_path / "cifar10-lt_train.npz", img, lab[:, None])  # uint8 is taken as it is
    _npz(tmp_path / "cifar10_test.npz", img[:4], lab[:4, None])
    b = build_datasets("cifar_lt_npz", root=tmp_path, variant="cifar10")
    assert torch.equal(b.train.images, torch.from_numpy(img.transpose(0, 3, 1, 2)))
    assert b.name == "cifar_lt_npz" and b.augment == "crop_flip" and b.val is None
    # the LA port's inputs, x/255 - 1 (decoded to x/255 - 0.5, then Normalize(0.5, 1.0)), padded mid-grey
    assert (b.mean, b.std) == ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) and b.pad_mode == "mid"
    assert b.test.targets.tolist() == [0, 1, 2, 3]
    bad = tmp_path / "cifar10_test.npz"
    f = (img[:4].astype(np.float32) / 255.0) - 0.5
    cases = [
        ((img[:4],), "arr_0 and arr_1"),  # labels missing
        ((img[:4, :, :, :2], lab[:4]), "arr_0 must be"),  # 2 channels
        ((f + 0.01, lab[:4]), r"\[-0\.5, 0\.5\]"),  # above 0.5
        ((f - 0.01, lab[:4]), r"\[-0\.5, 0\.5\]"),  # below -0.5
        ((img[:4], lab[:3]), "arr_1 must hold 4 labels"),  # too few labels
        ((img[:4], np.array([0, 1, 10, 2])), r"in \[0, 10\)"),  # label = num_classes
        ((img[:4], np.array([0, 1, -1, 2])), r"in \[0, 10\)"),
        ((np.zeros((4, 2, 32, 32, 3), np.uint8), lab[:4]), r"arr_0 must be .* got \(4, 2, 32"),
        ((np.zeros((0, 32, 32, 3), np.uint8), lab[:0]), "arr_0 holds no images"),
    ]
    for arrays, match in cases:
        _npz(bad, *arrays)
        with pytest.raises(ValueError, match=rf"cifar10_test\.npz.*{match}") as info:
            build_datasets("cifar_lt_npz", root=tmp_path)
        assert str(info.value).count("cannot read") == 1  # not re-wrapped
    with pytest.raises(ValueError, match="variant must be one of"):
        build_datasets("cifar_lt_npz", root=tmp_path, variant="cifar20")


def test_la_npz_validation_split_and_cifar100(tmp_path: Path) -> None:
    rng = np.random.RandomState(3)
    img = rng.randint(0, 256, size=(40, 32, 32, 3)).astype(np.uint8)
    lab = np.repeat(np.arange(10), 4)
    _npz(tmp_path / "cifar10-lt_train.npz", img, lab[:, None])
    _npz(tmp_path / "cifar10_test.npz", img[:10], lab[:10, None])
    b = build_datasets("cifar_lt_npz", root=tmp_path, val_fraction=0.25, seed=4)
    tr, va = stratified_split(lab, 0.25, 4)
    assert len(va) == 10 and b.class_counts == [3] * 10
    want = torch.from_numpy(img.transpose(0, 3, 1, 2))
    assert torch.equal(b.val.images, want[va]) and torch.equal(b.train.images, want[tr])
    _npz(tmp_path / "cifar100-lt_train.npz", img, (np.arange(40) * 2)[:, None])
    _npz(tmp_path / "cifar100_test.npz", img[:5], np.arange(5)[:, None])
    b100 = build_datasets("cifar_lt_npz", root=tmp_path, variant="cifar100")
    assert b100.num_classes == 100 and len(b100.class_counts) == 100
    assert (b100.mean, b100.std) == ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) and b100.pad_mode == "mid"
    assert b100.train.targets.tolist() == list(range(0, 80, 2))


# ------------------------------------------------------------------------ common: containers and files


def test_tensor_data_validation() -> None:
    from lpl_train.data.common import TensorData

    img, rows = torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, 3)
    labels, hot = torch.zeros(4, dtype=torch.int64), torch.zeros(4, 5)
    cases = [
        ((img[:, 0], labels), ValueError, r"uint8 images must have shape \(N, C, H, W\)"),
        ((rows[:, :, None], labels), ValueError, r"float feature rows must have shape \(N, D\)"),
        ((img, labels[:, None]), ValueError, r"int64 targets must have shape \(N,\)"),
        ((img, hot[:, 0]), ValueError, r"multi-hot targets must have shape \(N, C\)"),
        ((img, labels.int()), TypeError, "targets must be int64 or floating point"),
        ((img.numpy(), labels), TypeError, "images and targets must be torch.Tensor"),
        ((img, labels.tolist()), TypeError, "images and targets must be torch.Tensor"),
        ((img, labels[:3]), ValueError, "targets has 3 rows but images has 4"),
    ]
    for args, err, match in cases:
        with pytest.raises(err, match=match):
            TensorData(*args)
    for std in ([0.5, 0.0], [0.5, -0.1]):
        with pytest.raises(ValueError, match="std must be positive"):
            TensorData(img, labels, (0.1, 0.2), std)
    d = TensorData(rows, hot, [0, 1], np.array([2, 3]))
    assert d.mean == (0.0, 1.0) and d.std == (2.0, 3.0) and type(d.std[0]) is float
    assert len(d) == 4 and len(TensorData(img, labels)) == 4
    # subset keeps the given order (not sorted) and the statistics
    seq = TensorData(torch.arange(5.0)[:, None], torch.arange(5), (0.5,), (2.0,))
    sub = seq.subset([3, 0, 4])
    assert sub.targets.tolist() == [3, 0, 4] and (sub.mean, sub.std) == ((0.5,), (2.0,))


def test_resolve_root_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lpl_train.data.common import missing, resolve_root

    monkeypatch.delenv("LPL_DATA", raising=False)
    assert resolve_root(None) == Path("data") and resolve_root(None, "x") == Path("data/x")
    monkeypatch.setenv("LPL_DATA", str(tmp_path))
    assert resolve_root(None, "inat2017") == tmp_path / "inat2017"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root("~/d", "sub") == tmp_path / "home" / "d" / "sub"
    with pytest.raises(TypeError, match="root must be a str, Path or None, got int"):
        resolve_root(3)
    err = missing("X", [Path("/a/1"), Path("/b/2")], "Get it.")
    assert (
        isinstance(err, FileNotFoundError)
        and str(err) == "X not found (tried: /a/1, /b/2). Get it."
    )


def test_file_digest_and_download_errors(tmp_path: Path) -> None:
    import gzip

    from lpl_train.data.common import file_digest, verify_checksum

    src = tmp_path / "a.gz"
    src.write_bytes(gzip.compress(b"hello"))
    assert file_digest(src, "sha256", decompress_gzip=True) == hashlib.sha256(b"hello").hexdigest()
    verify_checksum(src, hashlib.md5(src.read_bytes()).hexdigest().upper())  # case-insensitive
    with pytest.raises(ValueError, match="algorithm must be a hashlib algorithm"):
        file_digest(src, "nohash")
    with pytest.raises(ValueError, match=r"cannot read .*absent\.bin"):
        file_digest(tmp_path / "absent.bin")
    with pytest.raises(ValueError, match="url must be an absolute URL string"):
        download("not/a/url", tmp_path / "new" / "f.bin", "0" * 32)
    assert not (tmp_path / "new").exists()  # refused before anything is created
    with pytest.raises(ConnectionError, match=r"cannot download .*nothing\.bin"):
        download((tmp_path / "nothing.bin").as_uri(), tmp_path / "out" / "f.bin", "0" * 32)
    assert list((tmp_path / "out").iterdir()) == []


def test_restricted_unpickle_allocation_guards_and_py2_strings() -> None:
    # bytearray(n) would allocate n bytes the file does not hold; bytearray of given content is fine
    size_only = b"\x80\x02cbuiltins\nbytearray\nK\x0a\x85R."
    with pytest.raises(ValueError, match=r"cannot read src: .*bytearray\(int\) is not allowed"):
        restricted_unpickle(size_only, "src")
    assert restricted_unpickle(pickle.dumps(bytearray(b"abc"), protocol=3), "s") == b"abc"

    class Big:  # _reconstruct with a non-empty shape: numpy itself always pickles shape (0,)
        def __reduce__(self):
            # numpy's own _reconstruct (numpy._core or numpy.core by version), as it pickles arrays
            return (np.ndarray(0).__reduce__()[0], (np.ndarray, (1000,), b"b"))

    with pytest.raises(ValueError, match=r"reconstruction with shape \(1000,\) is not allowed"):
        restricted_unpickle(pickle.dumps(Big(), protocol=2), "big")
    with pytest.raises(ValueError, match="cannot read empty: not a valid data batch"):
        restricted_unpickle(b"", "empty")
    # Python 2 str (the official batches' keys) come back as bytes, as pickle.load(encoding="bytes")
    assert restricted_unpickle(b"\x80\x02}q\x00U\x04dataq\x01K\x01s.", "py2") == {b"data": 1}


def test_class_counts_of() -> None:
    from lpl_train.data.common import class_counts_of

    assert class_counts_of(torch.tensor([0, 2, 2]), 4) == [1, 0, 2, 0]
    hot = torch.tensor([[1.0, 0.0, 0.3], [1.0, 1.0, 0.0]])
    assert class_counts_of(hot, 3) == [2, 1, 0]  # present: above 0.5


def _reference_split(targets: np.ndarray, f: float, seed: int) -> tuple[list[int], list[int]]:
    """The documented recipe: one RandomState(seed); per class (ascending) shuffle, and give
    ``min(round(f * n), n - 1)`` to validation."""
    rng = np.random.RandomState(seed)
    tr, va = [], []
    for c in sorted(set(targets.tolist())):
        idx = np.flatnonzero(targets == c)
        rng.shuffle(idx)
        k = min(int(round(f * len(idx))), len(idx) - 1)
        va += idx[:k].tolist()
        tr += idx[k:].tolist()
    return sorted(tr), sorted(va)


def test_stratified_split_matches_reference_recipe() -> None:
    targets = np.random.RandomState(0).randint(0, 4, size=60)
    targets = np.concatenate([targets, [7, 9, 9]])  # a single-sample class and a 2-sample class
    for f, seed in ((0.3, 0), (0.3, 11), (0.9, 2)):
        tr, va = stratified_split(targets, f, seed)
        assert (tr.tolist(), va.tolist()) == _reference_split(targets, f, seed)
    tr, va = stratified_split(targets, 0.9, 2)
    assert 60 in tr and np.isin([61, 62], va).sum() == 1  # each class keeps one training sample
    # 0.3 * 5 = 1.5 rounds to 2 (not truncated to 1)
    assert len(stratified_split(np.zeros(5, dtype=int), 0.3, 0)[1]) == 2


def test_split_validation_stratifies_multi_label_by_first_label() -> None:
    from lpl_train.data.common import TensorData, split_validation

    # rows whose first label is class 1 (10 rows) or class 2 (10 rows); column 0 is never set
    hot = torch.zeros(20, 3)
    hot[:10, 1] = 1.0
    hot[10:, 2] = 1.0
    hot[::3, 2] = 1.0
    data = TensorData(torch.arange(20.0)[:, None], hot)
    train, val = split_validation(data, 0.3, 5)
    _, va = _reference_split(np.array([1] * 10 + [2] * 10), 0.3, 5)
    assert val.images[:, 0].long().tolist() == va
    assert len(train) == 14 and train.targets.argmax(1).tolist().count(1) == 7


def test_la_port_inputs_are_x_over_255_minus_1_and_the_crop_pads_mid_grey(tmp_path: Path) -> None:
    """Through the engine's loader: a mid-grey image stays about -0.5 everywhere after any crop (the port
    pads its x/255 - 0.5 images with 0, mid-grey; black padding made a -1 border), values in [-1, 0]."""
    import lpl_train.engine.components as C
    from lpl_train.config import validate_config

    img = np.full((40, 32, 32, 3), 128, dtype=np.uint8)
    lab = np.arange(40) % 10
    np.savez(tmp_path / "cifar10-lt_train.npz", img, lab)
    np.savez(tmp_path / "cifar10_test.npz", img[:10], lab[:10])
    cfg = validate_config({
        "name": "la_npz", "data": {"name": "cifar_lt_npz", "root": str(tmp_path),
                                   "params": {"variant": "cifar10"}, "batch_size": 40},
        "model": {"name": "resnet32_la"}, "loss": {"name": "ce"}, "schedule": {"epochs": 1},
        "train": {"device": "cpu", "progress": False},
    })  # fmt: skip
    comps = C.build_components(cfg, torch.device("cpu"))
    x, _ = next(iter(comps.train_loader))
    assert float(x.min()) == float(x.max())  # no black border: one value everywhere
    assert float(x.min()) == pytest.approx(128 / 255 - 1.0, abs=1e-6)


def test_long_tail_counts_truncate_as_ldam_does() -> None:
    # LDAM-DRW: int(img_max * (1 / rho) ** (c / (C - 1))) and int(img_max / rho) for the step tail;
    # 50 / 3 = 16.67 -> 16 (not 17); 50 * (1 / 3) ** (1 / 2) = 28.87 -> 28
    assert long_tail_counts(4, 50, 3, "step") == [50, 50, 16, 16]
    assert long_tail_counts(3, 50, 3) == [50, 28, 16]
    assert long_tail_counts(3, 7, 7, "step") == [7, 1, 1]  # C // 2 = 1 head class


def test_subsample_refuses_more_than_a_class_holds() -> None:
    targets = np.array([0, 1, 0, 1, 1, 0, 2])
    assert sorted(long_tail_indices(targets, [3, 2, 1], seed=0).tolist()[:3]) == [0, 2, 5]
    with pytest.raises(ValueError, match=r"counts\[2\]=2 exceeds the 1 samples of class 2"):
        long_tail_indices(targets, [3, 2, 2], seed=0)


def test_subsample_needs_one_dimensional_targets() -> None:
    with pytest.raises(ValueError, match=r"targets must be 1-D class indices, got shape \(2, 3\)"):
        long_tail_indices(np.array([[0, 1, 0], [1, 0, 1]]), [1, 1], seed=0)


def test_check_data_of_the_la_release_looks_for_the_variant_s_files(tmp_path: Path) -> None:
    for name in ("cifar100-lt_train.npz", "cifar100_test.npz"):
        (tmp_path / name).write_bytes(b"")  # only the CIFAR-100 pair is there
    assert check_data("cifar_lt_npz", root=tmp_path, variant="cifar100") == [
        tmp_path / "cifar100-lt_train.npz",
        tmp_path / "cifar100_test.npz",
    ]
    with pytest.raises(FileNotFoundError, match=r"cifar10-lt_train\.npz"):
        check_data("cifar_lt_npz", root=tmp_path)  # variant cifar10 by default


def test_long_tail_builders_advertise_what_they_take() -> None:
    """The ``*_lt`` builders are long-tailed by default (imbalance_ratio 100) and take no num_classes."""
    import inspect

    from lpl_train.data import DATASETS

    for name in ("cifar10_lt", "cifar100_lt", "fmnist_lt"):
        params = inspect.signature(DATASETS[name]).parameters
        assert params["imbalance_ratio"].default == 100.0 and "num_classes" not in params, name


def test_build_datasets_refuses_a_negative_data_seed_even_where_unused(cifar_root: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        build_datasets("cifar10", root=cifar_root, seed=-1)


def test_a_flipped_bit_in_the_cifar_archive_raises_instead_of_giving_wrong_pixels(
    tmp_path: Path,
) -> None:
    # random pixels deflate to literals, so one flipped bit changes one pixel and the stream still
    # decodes; only gzip's CRC, at the end of the stream, shows the damage
    rng = np.random.RandomState(0)
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            raw = pickle.dumps(
                {
                    b"labels": list(range(10)),
                    b"data": rng.randint(0, 256, (10, 3072)).astype(np.uint8),
                },
                protocol=2,
            )
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    load_cifar_arrays(10, tmp_path)  # intact: loads
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz: corrupt or truncated archive"):
        load_cifar_arrays(10, tmp_path)


@pytest.mark.parametrize("bad", [0.7, b"a"])
def test_cifar_labels_that_are_not_integers_are_refused_naming_the_file(
    tmp_path: Path, bad: object
) -> None:
    folder = _cifar10_folder(tmp_path, np.repeat(np.arange(10), 5), np.arange(10))
    entries = {b"labels": [0] * 9 + [bad], b"data": np.zeros((10, 3072), np.uint8)}
    (folder / "test_batch").write_bytes(pickle.dumps(entries, protocol=2))
    with pytest.raises(ValueError, match=r"cannot read .*test_batch: 'labels' must hold integer"):
        load_cifar_arrays(10, tmp_path)


def test_la_npz_refuses_nan_images_and_fractional_labels(tmp_path: Path) -> None:
    x = np.zeros((4, 1, 32, 32, 3), np.float32)
    _npz(tmp_path / "cifar10_test.npz", x, np.zeros((4, 1), np.int64))
    x_nan = x.copy()
    x_nan[1, 0, 5, 5, 0] = np.nan  # would silently become pixel 0
    _npz(tmp_path / "cifar10-lt_train.npz", x_nan, np.zeros((4, 1), np.int64))
    with pytest.raises(ValueError, match=r"cifar10-lt_train\.npz: float images must lie in"):
        build_datasets("cifar_lt_npz", root=tmp_path)
    _npz(tmp_path / "cifar10-lt_train.npz", x, np.array([[0.0], [1.0], [2.5], [3.0]]))
    with pytest.raises(ValueError, match=r"cifar10-lt_train\.npz: arr_1 must hold integer"):
        build_datasets("cifar_lt_npz", root=tmp_path)
    _npz(tmp_path / "cifar10-lt_train.npz", x, np.array([[0.0], [1.0], [2.0], [3.0]]))
    assert build_datasets("cifar_lt_npz", root=tmp_path).train.targets.tolist() == [0, 1, 2, 3]


def test_cifar_labels_of_the_wrong_shape_are_refused_naming_the_batch(tmp_path: Path) -> None:
    """Labels as one-element lists ([[3], [7], ...]): numpy's 'object too deep' or a shape error downstream
    before; now the batch file is named."""
    folder = _cifar10_folder(tmp_path, np.repeat(np.arange(10), 5), np.arange(10))
    labels = np.arange(10)
    raw = {b"labels": [[int(c)] for c in labels], b"data": _images_for(labels, 0)}
    (folder / "test_batch").write_bytes(pickle.dumps(raw, protocol=2))
    with pytest.raises(
        BadFile, match=r"cannot read .*test_batch: 'labels' must be a flat list .* shape \(10, 1\)"
    ):
        load_cifar_arrays(10, tmp_path)


def test_class_names_come_from_the_release_s_meta_file(tmp_path: Path) -> None:
    """batches.meta's label_names (CIFAR-10) name the classes in label order, from the folder and from the
    archive; a copy without it trains the same, unnamed; a meta file that is not the names is refused."""
    names = [f"class{i}" for i in range(10)]
    meta = pickle.dumps({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, protocol=2)
    (tmp_path / "a").mkdir()
    archive = make_cifar10(tmp_path / "a", per_class=5, test_per_class=1)
    assert build_datasets("cifar10", root=archive.parent).class_names == []
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    members["cifar-10-batches-py/batches.meta"] = meta
    with tarfile.open(archive, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    assert build_datasets("cifar10", root=archive.parent).class_names == names
    folder = _cifar10_folder(tmp_path / "f", np.repeat(np.arange(10), 5), np.arange(10))
    (folder / "batches.meta").write_bytes(meta)
    b = build_datasets("cifar10_lt", root=tmp_path / "f", imbalance_ratio=2.0)
    assert b.class_names == names
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names[:3]}, protocol=2))
    with pytest.raises(
        BadFile, match=r"batches\.meta: expected 'label_names', a list of 10 class names"
    ):
        build_datasets("cifar10", root=tmp_path / "f")
