"""TFRecord reading without TensorFlow and the Logit Adjustment CIFAR-LT converter (``data convert-la``).

The files are written here by a small writer of the tests' own: a bit-by-bit CRC32C (no table), the
TFRecord framing and a protobuf encoder for ``tf.train.Example``, independent of the reader under test.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lpl_train.__main__ import main
from lpl_train.data import build_datasets, check_data
from lpl_train.data.tfrecord import (
    convert_la,
    crc32c,
    iter_records,
    parse_example,
    read_la_tfrecord,
)

# ------------------------------------------------------------------------------ the tests' own writer


def ref_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def ref_mask(data: bytes) -> int:
    c = ref_crc32c(data)
    rotated = ((c >> 15) | (c << 17)) % 2**32
    return (rotated + 0xA282EAD8) % 2**32


def varint(n: int) -> bytes:
    n %= 2**64  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
    head = varint(number << 3 | wire)
    if wire == 2:
        return head + varint(len(payload)) + payload
    return head + payload


def feature(kind: str, values: list, packed: bool = True) -> bytes:
    if kind == "bytes":
        return field(1, 2, b"".join(field(1, 2, v) for v in values))
    if kind == "float":
        if packed:
            body = field(1, 2, struct.pack(f"<{len(values)}f", *values))
        else:
            body = b"".join(field(1, 5, struct.pack("<f", v)) for v in values)
        return field(2, 2, body)
    if packed:
        body = field(1, 2, b"".join(varint(v) for v in values))
    else:
        body = b"".join(field(1, 0, varint(v)) for v in values)
    return field(3, 2, body)


def example(features: dict[str, bytes]) -> bytes:
    entries = b"".join(
        field(1, 2, field(1, 2, k.encode()) + field(2, 2, v)) for k, v in features.items()
    )
    return field(1, 2, entries)


def frame(payload: bytes) -> bytes:
    head = struct.pack("<Q", len(payload))
    return head + struct.pack("<I", ref_mask(head)) + payload + struct.pack("<I", ref_mask(payload))


def la_example(image: bytes, label: int) -> bytes:
    return example(
        {"image/encoded": feature("bytes", [image]), "image/class/label": feature("int", [label])}
    )


def write_la(path: Path, n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
    labels = rng.randint(0, num_classes, size=n)
    labels[0] = num_classes - 1
    path.write_bytes(
        b"".join(
            frame(la_example(img.tobytes(), int(y))) for img, y in zip(images, labels, strict=True)
        )
    )
    return images, labels


@pytest.fixture
def la_src(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    src = tmp_path / "tfr"
    src.mkdir()
    data = {
        "cifar10-lt_train": write_la(src / "cifar10-lt_train.tfrecord", 23, 10, 1),
        "cifar10_test": write_la(src / "cifar10_test.tfrecord", 11, 10, 2),
        "cifar100-lt_train": write_la(src / "cifar100-lt_train.tfrecord", 17, 100, 3),
        "cifar100_test": write_la(src / "cifar100_test", 5, 100, 4),  # no extension
    }
    return src, data


# ------------------------------------------------------------------------------------------ CRC32C


def test_crc32c_check_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    # RFC 3720 (iSCSI) B.4 test vectors
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"") == 0


def test_crc32c_matches_bitwise_reference_across_block_sizes() -> None:
    rng = np.random.RandomState(0)
    for n in (1, 7, 255, 256, 257, 511, 512, 513, 1000, 3100):
        data = rng.randint(0, 256, size=n).astype(np.uint8).tobytes()
        assert crc32c(data) == ref_crc32c(data), n
        cut = n // 3
        assert crc32c(data[cut:], crc32c(data[:cut])) == ref_crc32c(data), n
    with pytest.raises(TypeError, match="bytes-like"):
        crc32c("text")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- protobuf decoding


def test_parse_example_all_list_kinds_packed_and_unpacked() -> None:
    raw = example(
        {
            "b": feature("bytes", [b"", b"\x00\xffabc"]),
            "f_packed": feature("float", [1.5, -2.25, 0.0]),
            "f_plain": feature("float", [3.0, 0.125], packed=False),
            "i_packed": feature("int", [0, 1, 300, -1, 2**63 - 1, -(2**63)]),
            "i_plain": feature("int", [7, -5], packed=False),
            "empty": b"",
            "ünï": feature("int", [1]),
        }
    )
    # an unknown field in Example and one in a Feature are skipped, as protobuf does
    raw = field(9, 0, varint(5)) + raw
    got = parse_example(raw)
    assert got["b"] == ("bytes_list", [b"", b"\x00\xffabc"])
    assert got["f_packed"] == ("float_list", [1.5, -2.25, 0.0])
    assert got["f_plain"] == ("float_list", [3.0, 0.125])
    assert got["i_packed"] == ("int64_list", [0, 1, 300, -1, 2**63 - 1, -(2**63)])
    assert got["i_plain"] == ("int64_list", [7, -5])
    assert got["empty"] == (None, [])
    assert got["ünï"] == ("int64_list", [1])
    assert parse_example(b"") == {}


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x0a\x05abc", "runs past the end"),  # length 5, 3 bytes given
        (b"\x08\x80", "truncated varint"),
        (b"\x0b", "wire type 3"),
        (b"\x0a\x02\x08\x01", "wire type 0"),  # Features entry as a varint
        (field(1, 2, field(1, 2, field(2, 2, field(2, 2, field(1, 2, b"abc"))))), "multiple of 4"),
    ],
)
def test_parse_example_rejects_malformed(raw: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_example(raw)


# ------------------------------------------------------------------------------- TFRecord framing


def test_iter_records_round_trip(tmp_path: Path) -> None:
    payloads = [b"", b"x", os.urandom(300), os.urandom(3000)]
    path = tmp_path / "r.tfrecord"
    path.write_bytes(b"".join(frame(p) for p in payloads))
    assert list(iter_records(path)) == payloads
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    assert list(iter_records(tmp_path / "empty.tfrecord")) == []


def _corrupt(tmp_path: Path, blob: bytes) -> Path:
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(blob)
    return path


def test_iter_records_corruption_names_file_and_record(tmp_path: Path) -> None:
    recs = [frame(b"a" * 50), frame(b"b" * 60), frame(b"c" * 70)]
    good = b"".join(recs)
    off2 = len(recs[0]) + len(recs[1])

    flipped = bytearray(good)
    flipped[off2 + 12 + 5] ^= 1  # a data byte of record 2
    with pytest.raises(ValueError, match=r"bad\.tfrecord: record 2 .*data checksum"):
        list(iter_records(_corrupt(tmp_path, bytes(flipped))))
    assert len(list(iter_records(tmp_path / "bad.tfrecord", verify=False))) == 3

    flipped = bytearray(good)
    flipped[len(recs[0])] ^= 1  # the length of record 1
    with pytest.raises(ValueError, match=r"record 1 .*length checksum"):
        list(iter_records(_corrupt(tmp_path, bytes(flipped))))

    with pytest.raises(ValueError, match=r"bad\.tfrecord: record 1 .*only \d+ bytes left"):
        list(iter_records(_corrupt(tmp_path, good[: off2 - 3])))
    with pytest.raises(ValueError, match=r"record 3 .*truncated header"):
        list(iter_records(_corrupt(tmp_path, good + b"\x00" * 5)))

    # a huge length with a valid checksum is refused before anything is allocated
    head = struct.pack("<Q", 2**62)
    blob = recs[0] + head + struct.pack("<I", ref_mask(head)) + b"zz"
    with pytest.raises(
        ValueError, match=r"record 1 .*4611686018427387904 bytes .*only 2 bytes left"
    ):
        list(iter_records(_corrupt(tmp_path, blob)))


# --------------------------------------------------------------------------- the LA release to .npz


def test_convert_la_round_trip_and_loads_through_build_cifar_lt_npz(
    tmp_path: Path, la_src: tuple[Path, dict]
) -> None:
    src, data = la_src
    dest = tmp_path / "npz"
    done = convert_la(src, dest)
    assert sorted(out.name for _, out, _ in done) == sorted(f"{s}.npz" for s in data)
    for stem, (images, labels) in data.items():
        with np.load(dest / f"{stem}.npz", allow_pickle=False) as z:
            assert z.files == ["arr_0", "arr_1"]
            x, y = z["arr_0"], z["arr_1"]
        assert x.shape == (len(images), 1, 32, 32, 3) and x.dtype == np.uint8
        assert y.shape == (len(images), 1) and y.dtype == np.int64
        np.testing.assert_array_equal(x[:, 0], images)
        np.testing.assert_array_equal(y[:, 0], labels)
    assert [c.tolist() for _, _, c in done][0] == np.bincount(
        data["cifar10-lt_train"][1], minlength=10
    ).tolist()
    for variant, n in (("cifar10", 10), ("cifar100", 100)):
        b = build_datasets("cifar_lt_npz", root=dest, variant=variant)
        images, labels = data[f"{variant}-lt_train"]
        assert torch.equal(b.train.images, torch.from_numpy(images.transpose(0, 3, 1, 2)))
        assert b.train.targets.tolist() == labels.tolist()
        test_images, test_labels = data[f"{variant}_test"]
        assert torch.equal(b.test.images, torch.from_numpy(test_images.transpose(0, 3, 1, 2)))
        assert b.test.targets.tolist() == test_labels.tolist()
        assert b.num_classes == n


def test_convert_la_float32_is_the_authors_layout(
    tmp_path: Path, la_src: tuple[Path, dict]
) -> None:
    src, data = la_src
    dest = tmp_path / "npz"
    convert_la(src, dest, dtype="float32")
    images, labels = data["cifar10_test"]
    with np.load(dest / "cifar10_test.npz") as z:
        x = z["arr_0"]
    assert x.dtype == np.float32 and x.shape == (len(images), 1, 32, 32, 3)
    np.testing.assert_allclose(x[:, 0], images / 255.0 - 0.5, atol=1e-6)
    b = build_datasets("cifar_lt_npz", root=dest, variant="cifar10")
    assert torch.equal(b.test.images, torch.from_numpy(images.transpose(0, 3, 1, 2)))


def test_convert_la_refuses_to_overwrite_and_converts_what_is_there(
    tmp_path: Path, la_src: tuple[Path, dict]
) -> None:
    src, _ = la_src
    (src / "cifar100-lt_train.tfrecord").unlink()
    (src / "cifar100_test").unlink()
    dest = tmp_path / "npz"
    assert len(convert_la(src, dest)) == 2
    with pytest.raises(FileExistsError, match=r"cifar10-lt_train\.npz"):
        convert_la(src, dest)
    assert len(convert_la(src, dest, overwrite=True)) == 2
    with pytest.raises(
        FileNotFoundError, match=r"cifar10-lt_train\.tfrecord.*gresearch/logit_adjustment"
    ):
        convert_la(tmp_path / "npz", tmp_path / "out")
    with pytest.raises(ValueError, match="dtype must be"):
        convert_la(src, dest, dtype="float16")


@pytest.mark.parametrize(
    "features, match",
    [
        ({"image/encoded": feature("bytes", [bytes(3072)])}, "no feature 'image/class/label'"),
        (
            {"image/encoded": feature("bytes", [bytes(3072)]), "image/class/label": feature("bytes", [b"3"])},
            "'image/class/label' must be a int64_list, got bytes_list",
        ),
        (
            {"image/encoded": feature("float", [0.5]), "image/class/label": feature("int", [3])},
            "'image/encoded' must be a bytes_list, got float_list",
        ),
        (
            {"image/encoded": feature("bytes", [bytes(100)]), "image/class/label": feature("int", [3])},
            "must be 3072 raw uint8 bytes .* got 100 bytes",
        ),
        (
            {"image/encoded": feature("bytes", [b"\x89PNG\r\n\x1a\n" + bytes(50)]), "image/class/label": feature("int", [3])},
            "got a PNG-encoded image",
        ),
        (
            {"image/encoded": feature("bytes", [bytes(3072)]), "image/class/label": feature("int", [3, 4])},
            "must hold one value, got 2",
        ),
        (
            {"image/encoded": feature("bytes", [bytes(3072)]), "image/class/label": feature("int", [10])},
            r"label 10 outside \[0, 10\)",
        ),
    ],
)  # fmt: skip
def test_read_la_rejects_bad_records_naming_file_and_index(
    tmp_path: Path, features: dict, match: str
) -> None:
    good = frame(la_example(bytes(3072), 1))
    path = tmp_path / "cifar10_test.tfrecord"
    path.write_bytes(good + good + frame(example(features)))
    with pytest.raises(ValueError, match=rf"cifar10_test\.tfrecord: record 2: .*{match}"):
        read_la_tfrecord(path, 10)
    path.write_bytes(good + frame(b"\x0a\x05abc"))
    with pytest.raises(ValueError, match=r"record 1: .*runs past the end"):
        read_la_tfrecord(path, 10)


def test_failed_conversion_leaves_no_npz(tmp_path: Path, la_src: tuple[Path, dict]) -> None:
    src, _ = la_src
    blob = (src / "cifar10_test.tfrecord").read_bytes()
    (src / "cifar10_test.tfrecord").write_bytes(blob[:-1])
    dest = tmp_path / "npz"
    with pytest.raises(ValueError, match=r"cifar10_test\.tfrecord: record 10 "):
        convert_la(src, dest)
    assert not list(dest.glob("*cifar10_test*"))


# -------------------------------------------------------------------------------------------- CLI


def test_cli_convert_la(tmp_path: Path, la_src: tuple[Path, dict], capsys) -> None:
    src, data = la_src
    dest = tmp_path / "npz"
    assert main(["data", "convert-la", str(src), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "cifar10-lt_train.npz" in out and "23 images" in out
    assert check_data("cifar_lt_npz", root=dest, variant="cifar100")
    assert main(["data", "convert-la", str(src), str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lpl-train: error:") and "--force" in err and "\n" not in err
    assert main(["data", "convert-la", str(src), str(dest), "--force", "--dtype", "float32"]) == 0
    capsys.readouterr()
    with np.load(dest / "cifar100_test.npz") as z:
        assert z["arr_0"].dtype == np.float32

    blob = bytearray((src / "cifar100_test").read_bytes())
    blob[40] ^= 0xFF
    (src / "cifar100_test").write_bytes(bytes(blob))
    assert main(["data", "convert-la", str(src), str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cifar100_test: record 0 " in err and "checksum" in err

    assert main(["data", "convert-la", str(tmp_path / "nowhere"), str(dest)]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_missing_npz_errors_name_the_converter(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lpl-train data convert-la"):
        build_datasets("cifar_lt_npz", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="lpl-train data convert-la"):
        check_data("cifar_lt_npz", root=tmp_path)


def test_parse_example_merges_a_repeated_list_and_replaces_another_oneof_member() -> None:
    # protobuf semantics: a singular message field seen twice is merged (its repeated values append);
    # a second member of the oneof replaces the first
    raw = example(
        {
            "merged": feature("int", [1, 2]) + feature("int", [3], packed=False),
            "replaced": feature("int", [7]) + feature("float", [0.5]),
        }
    )
    got = parse_example(raw)
    assert got["merged"] == ("int64_list", [1, 2, 3])
    assert got["replaced"] == ("float_list", [0.5])


def test_unknown_fields_of_every_wire_type_are_skipped_and_lengths_are_checked_exactly() -> None:
    raw = example({"i": feature("int", [5]), "f": feature("float", [0.5], packed=False)})
    # unknown Example fields: fixed64 (wire 1, 8 bytes), fixed32 (wire 5, 4 bytes), varint, bytes
    junk = (
        field(9, 1, struct.pack("<Q", 2**64 - 1))
        + field(10, 5, b"\x01\x02\x03\x04")
        + field(11, 0, varint(300))
        + field(12, 2, b"\x0a\x02zz")
    )
    assert parse_example(junk + raw + junk) == {
        "i": ("int64_list", [5]),
        "f": ("float_list", [0.5]),
    }
    # a length one byte past the end of the message is refused as well
    with pytest.raises(ValueError, match="runs past the end"):
        parse_example(b"\x0a\x04abc")
    with pytest.raises(ValueError, match="runs past the end"):
        parse_example(b"\x09" + bytes(7))  # a fixed64 with 7 bytes


def test_read_la_refuses_a_negative_label_and_counts_every_class(tmp_path: Path) -> None:
    path = tmp_path / "cifar10_test.tfrecord"
    path.write_bytes(frame(la_example(bytes(3072), 1)) + frame(la_example(bytes(3072), -1)))
    with pytest.raises(ValueError, match=r"record 1: label -1 outside \[0, 10\)"):
        read_la_tfrecord(path, 10)
    # a file whose labels stop short of the last class still reports one count per class
    src, dest = tmp_path / "src", tmp_path / "npz"
    src.mkdir()
    labels = [0, 2, 2, 1, 2]
    (src / "cifar10_test.tfrecord").write_bytes(
        b"".join(frame(la_example(bytes([y]) * 3072, y)) for y in labels)
    )
    ((_, _, counts),) = convert_la(src, dest)
    assert counts.tolist() == [1, 1, 3, 0, 0, 0, 0, 0, 0, 0]


def test_read_la_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "cifar10_test.tfrecord"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"cifar10_test\.tfrecord: no records"):
        read_la_tfrecord(path, 10)
