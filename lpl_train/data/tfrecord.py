"""Read TFRecord files of ``tf.train.Example`` protobufs without TensorFlow, and convert the Logit
Adjustment CIFAR-LT release to the ``.npz`` files that :func:`lpl_train.data.cifar.build_cifar_lt_npz` reads.

A TFRecord file is a sequence of records, each::

    uint64 length (little-endian) | uint32 masked CRC32C of those 8 bytes | length bytes | uint32 masked CRC32C of them

where ``masked(c) = (((c >> 15) | (c << 17)) + 0xA282EAD8) mod 2**32`` and CRC32C is the Castagnoli CRC
(reflected polynomial ``0x82F63B78``). Each record here holds a serialized ``tf.train.Example``::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }         // entries: { string key = 1; Feature value = 2; }
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }  Int64List { repeated int64 value = 1; }

decoded here by a minimal protobuf wire-format reader (numeric lists packed or not). Records are streamed:
a length prefix is checked against what is left of the file before anything is allocated.

The Logit Adjustment release (``storage.googleapis.com/gresearch/logit_adjustment/``, files
``cifar10-lt_train.tfrecord``, ``cifar10_test.tfrecord``, ``cifar100-lt_train.tfrecord``,
``cifar100_test.tfrecord``) stores per Example the features ``image/encoded`` (one byte string: the raw
``32 x 32 x 3`` uint8 pixels in height-width-channel order, not PNG or JPEG) and ``image/class/label``
(one int64). :func:`convert_la` writes one ``.npz`` per file with ``arr_0`` images ``N x 1 x 32 x 32 x 3``
and ``arr_1`` labels ``N x 1`` (int64), the layout of the converter the LA PyTorch port and the LPL
authors used; images are uint8 by default (lossless), or float32 ``x / 255 - 0.5`` as that converter
wrote them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from .common import BadFile, missing

__all__ = [
    "LA_FILES",
    "LA_URL",
    "convert_la",
    "crc32c",
    "iter_records",
    "masked_crc32c",
    "parse_example",
    "read_examples",
    "read_la_tfrecord",
]

# ---------------------------------------------------------------------------------------------- CRC32C

_POLY = 0x82F63B78  # Castagnoli, bit-reflected
_MASK_DELTA = 0xA282EAD8
_BLOCK = 256


@lru_cache(maxsize=1)
def _byte_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


@lru_cache(maxsize=1)
def _block_tables() -> tuple[np.ndarray, tuple[tuple[int, ...], ...]]:
    """Tables for CRC32C over whole ``_BLOCK``-byte blocks with numpy.

    The register update ``s <- T[(s ^ b) & 0xFF] ^ (s >> 8)`` is linear over GF(2) in (s, b). Write
    ``A(s) = T[s & 0xFF] ^ (s >> 8)`` (one zero byte). After a block ``b_0 .. b_{B-1}`` the register is
    ``A^B(s) ^ XOR_i A^(B-1-i)(T[b_i])``. ``pos[i, b] = A^(B-1-i)(T[b])`` gives the second term with one
    gather and an XOR-reduction per block; ``shift[k][v] = A^B(v << 8k)`` gives the first byte by byte.
    """
    t = np.array(_byte_table(), dtype=np.uint32)
    rows = [t]
    for _ in range(_BLOCK - 1):
        prev = rows[-1]
        rows.append(t[prev & 0xFF] ^ (prev >> 8))
    pos = np.stack(rows[::-1])  # pos[i] = A^(B-1-i)(T[.])
    shift = (
        np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]
    ).astype(np.uint32)
    for _ in range(_BLOCK):
        shift = t[shift & 0xFF] ^ (shift >> 8)
    return pos, tuple(tuple(int(v) for v in row) for row in shift)


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``crc`` (the CRC of the bytes before it).

    ``crc32c(b"123456789") == 0xE3069283``, the standard check value.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    if not isinstance(crc, int) or not 0 <= crc < 1 << 32:
        raise ValueError(f"crc must be an int in [0, 2**32), got {crc!r}")
    data = memoryview(data).cast("B")
    s = crc ^ 0xFFFFFFFF
    nb = len(data) // _BLOCK
    if nb:
        pos, (z0, z1, z2, z3) = _block_tables()
        blocks = np.frombuffer(data, dtype=np.uint8, count=nb * _BLOCK).reshape(nb, _BLOCK)
        parts = np.bitwise_xor.reduce(pos[np.arange(_BLOCK), blocks], axis=1)
        for p in parts.tolist():
            s = z0[s & 0xFF] ^ z1[(s >> 8) & 0xFF] ^ z2[(s >> 16) & 0xFF] ^ z3[s >> 24] ^ p
    t = _byte_table()
    for b in data[nb * _BLOCK :]:
        s = t[(s ^ b) & 0xFF] ^ (s >> 8)
    return s ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """The TFRecord checksum: ``((c >> 15) | (c << 17)) + 0xA282EAD8`` mod 2**32 with ``c = crc32c(data)``."""
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------ TFRecord framing


def iter_records(path: str | Path, verify: bool = True) -> Iterator[bytes]:
    """Yield the payload of each record of the TFRecord file ``path``, streaming.

    Raises ValueError naming the file, the record index and its byte offset on a bad checksum (when
    ``verify``), a truncated record or a length prefix larger than what is left of the file.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as err:
        raise FileNotFoundError(f"cannot open {path}: {err.strerror or err}") from err
    with f:
        size = os.fstat(f.fileno()).st_size
        offset, index = 0, 0
        while True:
            header = f.read(12)
            if not header:
                return

            def bad(what: str, index: int = index, offset: int = offset) -> ValueError:
                return BadFile(f"cannot read {path}: record {index} (byte {offset}): {what}")

            if len(header) < 12:
                raise bad(f"truncated header ({len(header)} of 12 bytes)")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if verify and masked_crc32c(header[:8]) != length_crc:
                raise bad("length checksum mismatch (corrupt file, or not a TFRecord file)")
            left = size - offset - 12
            if length + 4 > left:
                raise bad(
                    f"record of {length} bytes (+4 checksum) but only {left} bytes left "
                    "(truncated file?)"
                )
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) != length or len(footer) != 4:
                raise bad("truncated record")
            if verify and masked_crc32c(payload) != struct.unpack("<I", footer)[0]:
                raise bad("data checksum mismatch (corrupt file)")
            yield payload
            offset += 12 + length + 4
            index += 1


# -------------------------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= end:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field_number, wire_type, a, b)``: the value in ``a`` for varints, else the span [a, b)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
            continue
        if wire == 2:
            n, pos = _varint(buf, pos, end)
            stop = pos + n
        elif wire == 1:
            stop = pos + 8
        elif wire == 5:
            stop = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number})")
        if stop > end:
            raise ValueError(f"field {number} runs past the end of its message")
        yield number, wire, pos, stop
        pos = stop


_KINDS = {1: "bytes_list", 2: "float_list", 3: "int64_list"}


def _parse_list(buf: bytes, start: int, end: int, kind: str) -> list:
    out: list = []
    for number, wire, a, b in _fields(buf, start, end):
        if number != 1:
            continue  # unknown field: skipped, as protobuf does
        if kind == "bytes_list":
            if wire != 2:
                raise ValueError(f"bytes_list value with wire type {wire}")
            out.append(bytes(buf[a:b]))
        elif kind == "float_list":
            if wire == 5:
                out.append(struct.unpack("<f", buf[a:b])[0])
            elif wire == 2:
                if (b - a) % 4:
                    raise ValueError(f"packed float_list of {b - a} bytes (not a multiple of 4)")
                out.extend(np.frombuffer(buf[a:b], dtype="<f4").tolist())
            else:
                raise ValueError(f"float_list value with wire type {wire}")
        else:
            if wire == 0:
                vals = [a]
            elif wire == 2:
                vals, p = [], a
                while p < b:
                    v, p = _varint(buf, p, b)
                    vals.append(v)
            else:
                raise ValueError(f"int64_list value with wire type {wire}")
            out.extend(v - (1 << 64) if v >= 1 << 63 else v for v in vals)
    return out


def _parse_feature(buf: bytes, start: int, end: int) -> tuple[str | None, list]:
    kind: str | None = None
    values: list = []
    for number, wire, a, b in _fields(buf, start, end):
        if number not in _KINDS:
            continue
        if wire != 2:
            raise ValueError(f"Feature field {number} with wire type {wire}")
        new = _KINDS[number]
        parsed = _parse_list(buf, a, b, new)
        # a repeated singular message merges; another member of the oneof replaces it
        values = values + parsed if new == kind else parsed
        kind = new
    return kind, values


def parse_example(data: bytes) -> dict[str, tuple[str | None, list]]:
    """Decode a serialized ``tf.train.Example`` into ``{name: (kind, values)}``.

    ``kind`` is ``"bytes_list"`` (values: bytes), ``"float_list"`` (float), ``"int64_list"`` (int) or
    ``None`` for a Feature with no list set. Raises ValueError on malformed input.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    buf = bytes(data)
    out: dict[str, tuple[str | None, list]] = {}
    for number, wire, a, b in _fields(buf, 0, len(buf)):
        if number != 1:
            continue
        if wire != 2:
            raise ValueError(f"Example.features with wire type {wire}")
        for fnum, fwire, fa, fb in _fields(buf, a, b):
            if fnum != 1:
                continue
            if fwire != 2:
                raise ValueError(f"Features.feature entry with wire type {fwire}")
            key, feature = "", (None, [])
            for enum, ewire, ea, eb in _fields(buf, fa, fb):
                if enum in (1, 2) and ewire != 2:
                    raise ValueError(f"map entry field {enum} with wire type {ewire}")
                if enum == 1:
                    try:
                        key = buf[ea:eb].decode("utf-8")
                    except UnicodeDecodeError as err:
                        raise ValueError(f"feature name is not UTF-8 ({err})") from err
                elif enum == 2:
                    feature = _parse_feature(buf, ea, eb)
            out[key] = feature
    return out


def read_examples(
    path: str | Path, verify: bool = True
) -> Iterator[dict[str, tuple[str | None, list]]]:
    """Yield :func:`parse_example` of each record of ``path``; errors name the file and record index."""
    for i, record in enumerate(iter_records(path, verify)):
        try:
            yield parse_example(record)
        except ValueError as err:
            raise BadFile(f"cannot read {path}: record {i}: malformed Example ({err})") from err


# ------------------------------------------------------------------------- the Logit Adjustment release

LA_URL = "https://storage.googleapis.com/gresearch/logit_adjustment/"
#: file stem -> (number of classes, number of images in the release)
LA_FILES = {
    "cifar10-lt_train": (10, 12406),
    "cifar10_test": (10, 10000),
    "cifar100-lt_train": (100, 10847),
    "cifar100_test": (100, 10000),
}
IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
_IMAGE_BYTES = 32 * 32 * 3
_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG"}


def _one(example: dict, key: str, kind: str) -> object:
    if key not in example:
        raise ValueError(f"no feature {key!r} (features: {sorted(example)})")
    got, values = example[key]
    if got != kind:
        raise ValueError(f"feature {key!r} must be a {kind}, got {got or 'an empty Feature'}")
    if len(values) != 1:
        raise ValueError(f"feature {key!r} must hold one value, got {len(values)}")
    return values[0]


def read_la_tfrecord(
    path: str | Path, num_classes: int, verify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``N x 32 x 32 x 3`` uint8 and labels ``(N,)`` int64 of one LA CIFAR TFRecord file.

    Raises ValueError naming the file and record index for corrupt records, missing or mistyped
    features, images that are not 3072 raw bytes, or labels outside ``[0, num_classes)``.
    """
    if num_classes not in (10, 100):
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes!r}")
    pixels = bytearray()
    labels: list[int] = []
    for i, record in enumerate(iter_records(path, verify)):
        try:
            example = parse_example(record)
            image = _one(example, IMAGE_KEY, "bytes_list")
            label = _one(example, LABEL_KEY, "int64_list")
            if len(image) != _IMAGE_BYTES:
                fmt = next((n for m, n in _MAGIC.items() if image.startswith(m)), None)
                what = f"a {fmt}-encoded image" if fmt else f"{len(image)} bytes"
                raise ValueError(
                    f"{IMAGE_KEY!r} must be {_IMAGE_BYTES} raw uint8 bytes (32 x 32 x 3), got {what}"
                )
            if not 0 <= label < num_classes:
                raise ValueError(f"label {label} outside [0, {num_classes})")
        except ValueError as err:
            raise BadFile(f"cannot read {path}: record {i}: {err}") from err
        pixels += image
        labels.append(label)
    if not labels:
        raise BadFile(f"cannot read {path}: no records")
    images = np.frombuffer(bytes(pixels), dtype=np.uint8).reshape(-1, 32, 32, 3)
    return images, np.asarray(labels, dtype=np.int64)


def _source(src: Path, stem: str) -> Path | None:
    for name in (f"{stem}.tfrecord", stem):
        if (src / name).is_file():
            return src / name
    return None


def convert_la(
    src_dir: str | Path,
    dest_dir: str | Path,
    dtype: str = "uint8",
    overwrite: bool = False,
    verify: bool = True,
) -> list[tuple[Path, Path, np.ndarray]]:
    """Convert the LA CIFAR-LT TFRecord files found in ``src_dir`` to ``.npz`` files in ``dest_dir``.

    Looks for ``<stem>.tfrecord`` (or ``<stem>`` without extension) for each stem of :data:`LA_FILES`
    and writes ``<stem>.npz`` with ``arr_0`` images ``N x 1 x 32 x 32 x 3`` (``dtype="uint8"``, or
    ``"float32"`` holding ``x / 255 - 0.5``) and ``arr_1`` labels ``N x 1`` int64, records in file order.
    Each file is written to a temporary name and renamed when complete. Returns ``(source, written,
    per-class counts)`` per converted file. Raises FileNotFoundError when no file is found,
    FileExistsError when a destination exists and not ``overwrite``, ValueError on corrupt input (no
    ``.npz`` is written for a file that fails).
    """
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"dtype must be 'uint8' or 'float32', got {dtype!r}")
    src, dest = Path(src_dir), Path(dest_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} not found")
    found = {stem: p for stem in LA_FILES if (p := _source(src, stem)) is not None}
    if not found:
        raise missing(
            "Logit Adjustment CIFAR-LT TFRecords",
            [src / f"{stem}.tfrecord" for stem in LA_FILES],
            f"Download them from {LA_URL} into {src}.",
        )
    if not overwrite:
        exists = [dest / f"{s}.npz" for s in found if (dest / f"{s}.npz").exists()]
        if exists:
            raise FileExistsError(
                f"will not replace {', '.join(map(str, exists))}; pass overwrite=True (--force)"
            )
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for stem, path in found.items():
        num_classes = LA_FILES[stem][0]
        images, labels = read_la_tfrecord(path, num_classes, verify)
        x = images[:, None]
        if dtype == "float32":
            x = x.astype(np.float32) * np.float32(1.0 / 255) - np.float32(0.5)
        out = dest / f"{stem}.npz"
        tmp = dest / f".{stem}.npz.{os.getpid()}.part"
        try:
            with open(tmp, "wb") as f:  # a plain open: the file mode follows the umask
                np.savez_compressed(f, x, labels[:, None])
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        done.append((path, out, np.bincount(labels, minlength=num_classes)))
    return done
