"""The package's own warnings (a build's, e.g. a ``tau`` that puts every class in one group) printed as
``lpl-train: warning: ...`` lines, as the command line's other warnings are; others (torch's) as Python
prints them. Used by the command line and, while it is on, by the worker processes a sweep starts."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent
_on = 0  # how many one_line_warnings() are open in this process


def _in_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


def _raised_by_package() -> bool:
    """Whether the warning being shown was raised by the package's code: the first frame above the
    warnings machinery and this module is the package's. A loss's warning names the line outside the
    package that built or called it (``losses._common._caller_stacklevel``), under the command line a
    frame of ``runpy`` or of the console script, so its file alone does not say whose it is."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") in (
        "warnings",
        "_py_warnings",
        __name__,
    ):
        frame = frame.f_back
    return frame is not None and _in_package(frame.f_code.co_filename)


def _one_line(shown: Callable[..., Any]) -> Callable[..., Any]:
    def show(message, category, filename, lineno, file=None, line=None):
        if not (_in_package(filename) or _raised_by_package()):
            return shown(message, category, filename, lineno, file, line)
        print(f"lpl-train: warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    return show


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """The package's warnings as one line each while it is open."""
    global _on
    shown = warnings.showwarning
    warnings.showwarning = _one_line(shown)
    _on += 1
    try:
        yield
    finally:
        _on -= 1
        warnings.showwarning = shown


def one_line_warnings_on() -> bool:
    """Whether :func:`one_line_warnings` is open here (a worker process started now should do the same)."""
    return _on > 0


def keep_one_line_warnings() -> None:
    """The package's warnings as one line each for the rest of this process (a sweep's worker)."""
    global _on
    warnings.showwarning = _one_line(warnings.showwarning)
    _on += 1
