"""Where a run computes and in which precision: device selection and autocast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["autocast_for", "flush_denormals", "resolve_precision", "select_device"]


def select_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """Device for ``spec`` in {"auto", "cpu", "cuda", "cuda:N", "mps"}; "auto" prefers CUDA, then MPS, then CPU.

    Under DDP ("auto" or "cuda"), rank ``local_rank`` takes ``cuda:local_rank``.
    """
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string, got {type(spec).__name__}")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {spec!r} requested but CUDA is not available; use 'auto' or 'cpu'"
            )
        return torch.device("cuda", local_rank) if spec == "cuda" else torch.device(spec)
    raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N, mps; got {spec!r}")


def parse_device(spec: str) -> torch.device:
    """A device named on a benchmark's command line (``--device``): ValueError saying why when torch
    does not know the name or it asks for CUDA on a machine without it."""
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"{spec!r} is not a torch device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{spec!r}: no CUDA device here (torch.cuda.is_available() is False)")
    return device


def resolve_precision(device: torch.device, amp: str) -> str:
    """The precision ``train.amp`` means on ``device``: "fp32", "bf16" or "fp16".

    ``auto``: bf16 on a CUDA device that supports it, fp16 (with gradient scaling) on an older CUDA
    device, fp32 elsewhere. ``bf16``/``fp16`` force that autocast dtype; ``off`` is fp32.
    """
    if amp in ("bf16", "fp16"):
        return amp
    if amp == "auto" and device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_for(device: torch.device, precision: str) -> Any:
    """The autocast context of ``precision`` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _flushing_denormals() -> bool:
    """Whether the CPU flushes denormal floats to zero now (torch has a setter but no getter): a denormal
    float32 times one is zero only then."""
    return bool((torch.full((8,), 1e-40, dtype=torch.float32) * 1.0).eq(0).all())


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU inside the block (``torch.set_flush_denormal(True)``; a
    small network's first steps can be many times slower with denormals), then give the caller back its
    own setting: library code leaves no global flag changed. Where the CPU has no such mode it does
    nothing."""
    before = _flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)
