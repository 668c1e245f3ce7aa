"""Writing a file so that a crash or a full disk never leaves it half written (torch-free): the run
folder's checkpoints and records, and the study's and the ablation's results."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path`` (``.<name>.tmp<pid>``), flush it to disk and
    rename it over ``path``: a reader sees the old file or the new one, never a part of either. On any
    failure the temporary file is removed and ``path`` is untouched."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return p


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """:func:`write_atomic` of ``data``."""
    return write_atomic(path, lambda fh: fh.write(data))
