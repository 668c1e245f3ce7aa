"""The file formats of a run folder: its layout names, atomic writes, verified checkpoint reading, the
metrics records, and the comparison of two configs. :class:`~lpl_train.engine.run_folder.RunFolder` is the
only code that writes a run folder; it does so through these functions."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shutil

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from lpl_train._files import write_atomic
from lpl_train.config import SCHEMA, VOLATILE_KEYS, flatten_keys, schema_defaults

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
BEST = "best.pt"
BEST_PENDING = "best.next.pt"  # a new best epoch's weights until that epoch's checkpoint is written
METRICS = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tensorboard"  # event files, with train.tensorboard = true
SUPERSEDED = "metrics.superseded.jsonl"
FINAL = "final.json"
CONFIG_COPY = "config.toml"
CONFIG_SUPERSEDED = "config.superseded.toml"  # a config.toml that no longer matched its checkpoint
LOCK = "RUNNING"
LOG = "train.log"
DIVERGED = "diverged.json"
CLASSES = "classes.json"  # the classes the run trains on, written when it starts

_CKPT_KEYS = ("epoch", "step", "model", "loss", "optimizer", "rng", "config")


class RunFolderError(RuntimeError):
    """A run folder cannot be used as asked, or cannot be written."""


class RunLocked(RunFolderError):
    """Another process holds the run folder's lock (``lock``: the lock file's path)."""

    def __init__(self, message: str, lock: Path | None = None) -> None:
        super().__init__(message)
        self.lock = lock


class CorruptCheckpoint(RunFolderError, ValueError):
    """A checkpoint file fails verification (damaged, truncated, empty or not written by lpl_train)."""


class ConfigMismatch(RunFolderError, ValueError):
    """``--resume`` asked for a config that differs from the checkpoint's own."""


# ------------------------------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/file system can open a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_failed(path: Path, what: str, exc: BaseException) -> RunFolderError:
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
    else:  # torch's archive writer reports a full disk as a RuntimeError ("unexpected pos ...")
        reason = " ".join(str(exc).split()) or type(exc).__name__
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(path.parent).free
            reason += f" ({free:,} bytes free on that file system: a full disk?)"
    kept = f"; the previous {path.name} is unchanged" if path.exists() else ""
    err = RunFolderError(f"cannot write {what} {str(path)!r}: {reason}{kept}")
    err.errno = getattr(exc, "errno", None)  # type: ignore[attr-defined]
    return err


def _atomic_write(path: Path, write: Any, what: str) -> None:
    """:func:`lpl_train._files.write_atomic`, then the folder's entry fsynced; a failure to write is a
    RunFolderError naming ``what`` (the temporary file removed, ``path`` untouched)."""
    try:
        write_atomic(path, write)
    except BaseException as exc:
        if isinstance(exc, OSError | RuntimeError) and not isinstance(exc, RunFolderError):
            raise _write_failed(path, what, exc) from None
        raise
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    Raises:
        RunFolderError: when the file cannot be written (disk full, read-only); ``path`` keeps its old content.
    """
    _atomic_write(Path(path), lambda fh: torch.save(obj, fh), "checkpoint")


def _write_text_atomic(text: str, path: Path, what: str = "file") -> None:
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), what)


def _write_json_atomic(obj: Any, path: Path) -> None:
    _write_text_atomic(json.dumps(obj, indent=1) + "\n", path, "file")


# ------------------------------------------------------------------------------------------- reading
def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and verify a checkpoint written by :func:`fit`.

    The archive's CRCs are checked first (torch does not check them: a flipped bit in a weight would load),
    then it is loaded with ``weights_only=True`` (tensors and plain data only; nothing in it is run).

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptCheckpoint: (a ``ValueError``) the file is empty, truncated, damaged, holds other objects, or
            was not written by ``lpl_train.engine``; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    where = f"checkpoint {str(path)!r}"
    if path.stat().st_size == 0:
        raise CorruptCheckpoint(f"{where} is empty (0 bytes): it was never completely written")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            # torch writes no folders; a part marked as one (the DOS folder bit of its directory
            # entry, which no CRC covers) is read by torch's reader as other bytes than its own
            folder = next((i.filename for i in zf.infolist() if i.external_attr & 0x10), None)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError) as exc:
        raise CorruptCheckpoint(
            f"{where} is truncated or not a checkpoint archive ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())})"
        ) from None
    if bad is not None:
        raise CorruptCheckpoint(f"{where} is damaged: the CRC of its part {bad!r} does not match")
    if folder is not None:
        raise CorruptCheckpoint(f"{where} is damaged: its part {folder!r} is marked as a folder")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CorruptCheckpoint(
            f"{where} holds objects other than tensors and plain data, so it was not written by "
            "lpl_train.engine; it is not loaded"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other failure of a damaged archive, reported in one line
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        if "weights_only" in first:  # torch's advice to unpickle anything is never ours
            first = "refused by the safe loader"
        raise CorruptCheckpoint(
            f"{where} cannot be read as a torch checkpoint ({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise CorruptCheckpoint(f"{where} is not a checkpoint written by lpl_train.engine")
    return ckpt


def _parse_lines(path: Path) -> list[tuple[int, str, dict[str, Any] | None]]:
    """(line number, text, record or None if damaged) of every non-empty line of ``path``."""
    raw = path.read_bytes()
    out = []
    for i, line in enumerate(raw.split(b"\n"), 1):
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            rec = None
        out.append((i, text, rec if isinstance(rec, dict) and "epoch" in rec else None))
    return out


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl``, in order ([] when there is none).

    Raises:
        ValueError: a line is damaged (e.g. truncated by a crash): the message names the file and the line,
            and ``lpl-train run --resume`` repairs it from the checkpoint. No record is dropped silently.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for lineno, _text, rec in _parse_lines(path):
        if rec is None:
            raise ValueError(
                f"metrics file {str(path)!r} line {lineno} is not a complete JSON record; "
                "resume the run (--resume) to repair it from its checkpoint"
            )
        records.append(rec)
    return records


def config_differences(stored: str, requested: str) -> list[str]:
    """The dotted keys in which two config TOML texts differ (``stored → requested``), volatile keys and
    the ``[run]`` provenance table left out. A key of the config schema that the stored config lacks (it was
    written before the key existed) stands for the key's default, which is how that run was trained: it is a
    difference only where the requested value is not that default. Keys of the free-form tables (``params``)
    have no default: one that only one side has is a difference. Their values differ also in type alone:
    ``tau = 1`` (one head class) and ``tau = 1.0`` (all of them) are not the same loss."""
    a, b = (flatten_keys(tomllib.loads(t)) for t in (stored, requested))
    # a key the stored config lacks is named as absent where the requested value is not its default
    for k, v in schema_defaults().items():
        if k not in a and k in b and b[k] == v:
            a[k] = v
    keys = sorted(
        k
        for k in a.keys() | b.keys()
        if k not in VOLATILE_KEYS
        and not k.startswith("run.")
        and not _same(k, a.get(k, ...), b.get(k, ...))
    )
    return [f"{k} ({a.get(k, '<absent>')!r} → {b.get(k, '<absent>')!r})" for k in keys]


#: the dotted keys of the schema: their types are checked, so 1 and 1.0 mean the same there (optim.lr)
_SCHEMA_KEYS = {f"{sec}.{key}" if sec else key for sec, keys in SCHEMA.items() for key in keys}


def _same(key: str, x: Any, y: Any) -> bool:
    """Equal values; in the free-form tables (``params``) also of equal types (1, 1.0 and true differ)."""
    if key in _SCHEMA_KEYS:
        return x == y
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same(key, u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(key, x[k], y[k]) for k in x)
    return type(x) is type(y) and x == y


def finite_or_none(obj: Any) -> Any:
    """NaN/inf → None, so that records are strict JSON (an empty group has no mean)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj
