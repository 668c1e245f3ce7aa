"""The C++ kernel of the fused inner loop on the CPU (``_cpu_pgd.cpp`` beside this file), built on first use.

torch's extension builder (:func:`torch.utils.cpp_extension.load_inline`) compiles it once per machine and
torch version, in about half a minute, and keeps the library in its cache (``TORCH_EXTENSIONS_DIR``, by
default ``~/.cache/torch_extensions``); later processes load it in well under a second. It needs a C++
compiler and ninja (``pip install ninja``). On an x86-64 CPU that torch runs with AVX2 or AVX-512, the
kernel is compiled for AVX2 (ATen's vector type, 8 float32 or 4 float64 lanes); elsewhere for ATen's
portable vector type. Where it cannot be built, :func:`unavailable` says why and the torch loop runs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["build", "unavailable"]

_log = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("_cpu_pgd.cpp")


def _flags() -> list[str]:
    """Compiler flags: ATen's AVX2 vector code where the CPU runs it, its portable code elsewhere; no
    contraction of a product and a sum into one rounding (the kernel rounds as its source reads)."""
    flags = ["-O3", "-ffp-contract=off"]
    machine = platform.machine().lower()
    capability = torch.backends.cpu.get_cpu_capability()
    if machine in ("x86_64", "amd64") and capability in ("AVX2", "AVX512"):
        return flags + ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    return flags + ["-DCPU_CAPABILITY_DEFAULT", "-DCPU_CAPABILITY=DEFAULT"]


def _name() -> str:
    """The library's name: one per torch version and instruction set (the builder hashes the source and
    flags itself and rebuilds when they change)."""
    version = re.sub(r"\W", "_", torch.__version__)
    vec = "avx2" if "-mavx2" in _flags() else "portable"
    return f"lpl_cpu_pgd_{vec}_torch_{version}"


@contextlib.contextmanager
def _ninja_on_path() -> Iterator[None]:
    """PATH with the ninja of ``pip install ninja`` on it for the build, where it is not already: the
    builder runs ``ninja`` by name, and a virtual environment's scripts are not on PATH unless it is
    activated (``.venv/bin/python -m ...``)."""
    dirs = [str(Path(sys.executable).parent)]
    try:
        import ninja  # optional: only where pip installed it

        dirs.insert(0, str(ninja.BIN_DIR))
    except Exception:  # noqa: BLE001 (no ninja package: PATH as it is)
        pass
    old = os.environ.get("PATH", "")
    extra = [d for d in dirs if d not in old.split(os.pathsep)]
    if extra:
        os.environ["PATH"] = os.pathsep.join([*extra, old]) if old else os.pathsep.join(extra)
    try:
        yield
    finally:
        if extra:
            os.environ["PATH"] = old


@functools.cache
def _built() -> ModuleType | str:
    """The built module, or why it could not be built (cached for the process)."""
    try:
        from torch.utils import cpp_extension
    except Exception as err:  # noqa: BLE001 (any failure to import means no kernel)
        return f"torch's C++ extension builder cannot be imported ({err})"
    try:
        source = _SOURCE.read_text()
    except OSError as err:
        return f"its source {_SOURCE.name} cannot be read ({err})"
    _log.info("building the fused loop's C++ kernel (once per machine and torch version)")
    try:
        with _ninja_on_path():
            return cpp_extension.load_inline(
                name=_name(),
                cpp_sources=[source],
                functions=["pgd_class_loop"],
                extra_cflags=_flags(),
                verbose=False,
            )
    except Exception as err:  # noqa: BLE001 (a compiler error, no compiler, no ninja, ...)
        first = str(err).strip().splitlines()[:1]
        detail = first[0][:200] if first else type(err).__name__
        return (
            f"its C++ kernel could not be built ({detail}); it needs a C++ compiler and ninja "
            "(pip install ninja)"
        )


def unavailable() -> str | None:
    """Why the C++ kernel cannot run (it could not be built), or None; builds it on the first call."""
    got = _built()
    return got if isinstance(got, str) else None


def build() -> ModuleType:
    """The built module (``pgd_class_loop``); raises RuntimeError where it cannot be built."""
    got = _built()
    if isinstance(got, str):
        raise RuntimeError(got)
    return got
