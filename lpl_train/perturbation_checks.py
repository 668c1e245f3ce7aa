"""Input checks of the LPL perturbation and its losses, and the guards they share with the inner loop.

The ``check_*`` functions validate user-facing arguments (numbers, logits, targets, class counts) with
one-line errors naming the argument; the tensor checks read values in at most one host synchronisation
and skip data-dependent reads while torch.compile traces (:func:`_compiling`) or where values cannot be
read back (:func:`_can_read_back`). ``_TINY`` is the floor applied to norms and divisors.

Everything here is re-exported by :mod:`lpl_train.perturbation`, which is where callers import it from.
This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_class_counts",
    "check_finite",
    "check_index_target",
    "check_logits",
    "check_multi_label_target",
    "check_non_negative",
    "check_num_classes",
    "check_positive",
    "check_probability_target",
    "check_single_label_target",
    "no_host_reads",
]

_TINY = 1e-30


def _tiny(dtype: torch.dtype) -> float:
    """The floor for norms and divisors in ``dtype``: :data:`_TINY`, or float16's smallest normal number
    where 1e-30 would round to 0 (a 0 floor turns a zero norm into 0/0 = NaN)."""
    return max(_TINY, float(torch.finfo(dtype).tiny)) if dtype.is_floating_point else _TINY


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def _work_dtype(t: Tensor) -> Tensor:
    """Half precision (autocast's bf16/fp16 logits) is perturbed and scored in float32; float32 and float64
    stay as they are, so a float64 run is float64 throughout."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t


def _is_number(x: object) -> bool:
    """A real number (Python or NumPy scalar), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def check_positive(value: object, name: str) -> float:
    """Return ``value`` as a float; raise unless it is a finite number > 0."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_non_negative(value: object, name: str) -> float:
    """Return ``value`` as a float; raise unless it is a finite number >= 0."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_logits(logits: object, name: str = "logits", min_classes: int = 2) -> Tensor:
    """Raise unless ``logits`` is a 2-D floating tensor (N, C) with N >= 1 and C >= ``min_classes``."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {logits.dtype}")
    if logits.shape[0] < 1 or logits.shape[1] < min_classes:
        raise ValueError(
            f"{name} must have N >= 1 rows and C >= {min_classes} columns, got shape "
            f"{tuple(logits.shape)}"
        )
    return logits


def _sum_is_finite(t: Tensor) -> Tensor:
    """A 0-d bool tensor, True when the sum of ``t`` is finite; then every element of ``t`` is.

    NaN and ±inf propagate through a sum, so a finite sum proves that ``t`` is finite with one plain
    reduction (cheaper than ``torch.isfinite(t).all()``). A non-finite sum may also come from finite
    values that overflow, so False must be confirmed with ``torch.isfinite(t).all()``. Half-precision
    tensors are summed in float32 to keep such overflows rare."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return torch.isfinite(t.sum(dtype=torch.float32))
    return torch.isfinite(t.sum())


def check_finite(t: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or ±inf (one host synchronisation, two when the fast
    check, a finite sum, is inconclusive; skipped where values cannot be read: :func:`_can_read_back`)."""
    if not _can_read_back(t) or bool(_sum_is_finite(t)):
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); the loss would be NaN")


def _compiling() -> bool:
    """True while torch.compile traces: data-dependent checks (host reads) are skipped there."""
    return bool(torch.compiler.is_compiling())


def _confirm_finite_logits(logits: Tensor) -> None:
    """After a non-finite sum of ``logits`` (see :func:`_sum_is_finite`): raise if an element is NaN or
    ±inf, return if the sum only overflowed (a second host synchronisation, on this path only)."""
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits contains non-finite values (NaN or inf); the loss would be NaN")


def check_index_target(
    target: object,
    logits: Tensor,
    name: str = "target",
    check_finite_logits: bool = False,
    ignore_index: int | None = None,
) -> tuple[Tensor, bool]:
    """Check class-index targets (N,) in [0, C) (or equal to ``ignore_index``); return them as int64 and
    whether any row is ignored.

    Type and shape are checked always; the values (and, with ``check_finite_logits``, the finiteness of
    ``logits``) in one host synchronisation, skipped while torch.compile traces (then the ignored-row flag
    is True whenever ``ignore_index`` is set, the safe answer)."""
    if not isinstance(target, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if target.dtype == torch.bool or target.is_floating_point() or target.dtype.is_complex:
        raise TypeError(f"{name} must hold integer class labels, got dtype {target.dtype}")
    n, c = logits.shape
    if target.shape != (n,):
        hint = (
            "; class probabilities must be a float tensor (e.g. F.one_hot(y, C).float())"
            if target.shape == logits.shape
            else ""
        )
        raise ValueError(
            f"{name} must have shape ({n},) to match logits {tuple(logits.shape)}, got "
            f"{tuple(target.shape)}{hint}"
        )
    if not (_can_read_back(target) and _can_read_back(logits)):
        return target.long(), ignore_index is not None
    check = (
        _check_index_target_host
        if target.device.type == "cpu" and logits.device.type == "cpu"
        else _check_index_target_device
    )
    return check(target, logits, name, check_finite_logits, ignore_index)


def _check_index_target_device(
    target: Tensor, logits: Tensor, name: str, check_finite_logits: bool, ignore_index: int | None
) -> tuple[Tensor, bool]:
    """:func:`check_index_target`'s value checks as tensor operations on the tensors' device, read back
    in one host synchronisation."""
    c = logits.shape[1]
    t = target
    ignored = None
    if ignore_index is not None:
        ignored = t == ignore_index
        t = torch.where(ignored, torch.zeros_like(t), t)
    stats = [t.min().double(), t.max().double()]
    if check_finite_logits:
        stats.append(_sum_is_finite(logits).double())
    if ignored is not None:
        stats.append(ignored.any().double())
    values = torch.stack(stats).tolist()
    if check_finite_logits and values[2] != 1.0:
        _confirm_finite_logits(logits)
    _check_label_range(int(values[0]), int(values[1]), c, name, ignore_index)
    return target.long(), bool(ignored is not None and values[-1] == 1.0)


def _check_index_target_host(
    target: Tensor, logits: Tensor, name: str, check_finite_logits: bool, ignore_index: int | None
) -> tuple[Tensor, bool]:
    """:func:`check_index_target`'s value checks on CPU tensors, read directly on the host (the same
    checks and messages, fewer operations)."""
    c = logits.shape[1]
    y = target.detach().numpy()
    any_ignored = False
    if ignore_index is not None:
        ignored = y == ignore_index
        any_ignored = bool(ignored.any())
        if any_ignored:
            y = np.where(ignored, 0, y)
    if check_finite_logits and not bool(_sum_is_finite(logits.detach())):
        _confirm_finite_logits(logits)
    if len(y):
        _check_label_range(int(y.min()), int(y.max()), c, name, ignore_index)
    return target.long(), any_ignored


def _check_label_range(lo: int, hi: int, c: int, name: str, ignore_index: int | None) -> None:
    """Raise unless the smallest and largest label (ignored rows read as 0) lie in [0, ``c``)."""
    if lo < 0 or hi >= c:
        extra = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(f"{name} labels must lie in [0, {c}){extra}, got values in [{lo}, {hi}]")


def check_single_label_target(
    target: object,
    logits: Tensor,
    name: str = "target",
    check_finite_logits: bool = False,
    ignore_index: int | None = None,
) -> Tensor:
    """Raise unless ``target`` is an integer tensor (N,) of labels in [0, C) (or ``ignore_index``);
    return it as int64.

    With ``check_finite_logits`` it also raises if ``logits`` holds NaN/inf, in the same single host
    synchronisation."""
    return check_index_target(target, logits, name, check_finite_logits, ignore_index)[0]


def check_probability_target(
    target: object, logits: Tensor, name: str = "target", check_finite_logits: bool = False
) -> Tensor:
    """Raise unless ``target`` is a floating (N, C) tensor of class probabilities (finite, >= 0, each row
    summing to 1, as mixup, cutmix and label smoothing produce); return it in the dtype of ``logits``.

    The values are read in one host synchronisation, skipped while torch.compile traces."""
    if not isinstance(target, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if not target.is_floating_point():
        raise TypeError(
            f"{name} of shape (N, C) must hold class probabilities as floats, got dtype {target.dtype}"
        )
    if target.shape != logits.shape:
        raise ValueError(
            f"{name} as class probabilities must have the shape of logits {tuple(logits.shape)}, got "
            f"{tuple(target.shape)}"
        )
    t = target.to(logits.dtype)
    if not _can_read_back(t):
        return t
    row = t.sum(dim=1)
    # the rounding of the target's own dtype (each entry within eps/2 of its value: the row sum within
    # eps/2 of 1) or of the sum's dtype, whichever is coarser; a C-scaled tolerance let rows summing to
    # 0.91 pass at C = 100, and all-zero rows at C = 1000: C scales only the half-precision subnormals'
    # absolute rounding (float16: 3e-8 an entry, 1.5e-3 over C = 50,000 smoothed entries)
    c = target.shape[1]
    tol = max(_sum_tolerance(target.dtype, c), _sum_tolerance(t.dtype, c))
    stats = [
        torch.isfinite(t).all(),
        (t >= 0).all(),
        ((row - 1).abs() <= tol).all(),
    ]
    if check_finite_logits:
        stats.append(_sum_is_finite(logits))
    ok = torch.stack(stats).tolist()
    if check_finite_logits and not ok[3]:
        _confirm_finite_logits(logits)
    if not (ok[0] and ok[1]):
        raise ValueError(f"{name} probabilities must be finite and >= 0")
    if not ok[2]:
        raise ValueError(
            f"{name} probabilities must sum to 1 in every row (class indices (N,) or a distribution "
            "per row (N, C) are supported)"
        )
    return t


def check_multi_label_target(
    target: object,
    logits: Tensor,
    soft: bool = False,
    name: str = "target",
    check_finite_logits: bool = False,
) -> Tensor:
    """Raise unless ``target`` is an (N, C) multi-hot tensor with values in {0, 1} ([0, 1] if ``soft``).

    Returns it in the dtype of ``logits``. With ``check_finite_logits`` it also raises if ``logits`` holds
    NaN/inf, in the same single host synchronisation.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if target.dtype.is_complex:
        raise TypeError(f"{name} must be real, got dtype {target.dtype}")
    if target.shape != logits.shape:
        raise ValueError(
            f"{name} must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    t = target.to(logits.dtype)
    if not _can_read_back(t):
        return t
    ok = ((t >= 0) & (t <= 1)).all() if soft else ((t == 0) | (t == 1)).all()
    if check_finite_logits:
        finite, ok = torch.stack([_sum_is_finite(logits), ok]).tolist()
        if not finite:
            _confirm_finite_logits(logits)
    if not bool(ok):
        if soft:
            raise ValueError(f"{name} (soft) values must lie in [0, 1]")
        raise ValueError(f"{name} must be multi-hot with values in {{0, 1}}")
    return t


def check_class_counts(
    class_counts: object, num_classes: int, name: str = "class_counts", positive: bool = False
) -> Tensor:
    """Return ``class_counts`` as a float64 CPU tensor of length ``num_classes``.

    Raises unless it is a 1-D sequence/tensor of ``num_classes`` finite numbers >= 0 (> 0 if
    ``positive``) with a positive total.
    """
    if isinstance(class_counts, np.ndarray):
        if class_counts.dtype == np.bool_ or not (
            np.issubdtype(class_counts.dtype, np.integer)
            or np.issubdtype(class_counts.dtype, np.floating)
        ):
            raise TypeError(f"{name} must hold numbers, got dtype {class_counts.dtype}")
        class_counts = torch.from_numpy(class_counts.astype(np.float64))
    if isinstance(class_counts, Tensor):
        if class_counts.dtype == torch.bool or class_counts.dtype.is_complex:
            raise TypeError(f"{name} must hold numbers, got dtype {class_counts.dtype}")
        counts = class_counts.detach().to("cpu", torch.float64)
    elif isinstance(class_counts, Sequence) and not isinstance(class_counts, str):
        if not all(_is_number(v) for v in class_counts):
            raise TypeError(f"{name} must hold numbers, got {list(class_counts)!r}")
        counts = torch.tensor([float(v) for v in class_counts], dtype=torch.float64)
    else:
        raise TypeError(f"{name} must be a sequence of numbers or a tensor, got {class_counts!r}")
    if counts.dim() != 1 or counts.numel() != num_classes:
        raise ValueError(
            f"{name} must have length num_classes={num_classes}, got shape {tuple(counts.shape)}"
        )
    if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0, got {counts.tolist()}")
    if positive and bool((counts <= 0).any()):
        raise ValueError(f"{name} must be > 0 for every class here, got {counts.tolist()}")
    if float(counts.sum()) <= 0:
        raise ValueError(f"{name} must have a positive total, got {counts.tolist()}")
    return counts


def check_num_classes(num_classes: object, name: str = "num_classes", minimum: int = 2) -> int:
    """Return ``num_classes`` as an int; raise unless it is an int >= ``minimum``."""
    if isinstance(num_classes, bool | np.bool_) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(num_classes).__name__} {num_classes!r}")
    if num_classes < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {num_classes}")
    return int(num_classes)


def _sum_tolerance(dtype: torch.dtype, num_classes: int = 1) -> float:
    """How far from 1 a row of class probabilities held in ``dtype`` may sum: the dtype's epsilon for
    half precision (its rounding alone), plus half the subnormal spacing for each of ``num_classes``
    entries (entries below the smallest normal round absolutely, not relatively: float16's 2**-24, so
    label-smoothed targets at C = 50,000 sum 1.2e-3 off); 1e-5 for float32 (a few roundings of a
    normalisation over any number of classes), 1e-9 for float64."""
    if dtype in (torch.float16, torch.bfloat16):
        fi = torch.finfo(dtype)
        return float(fi.eps) + num_classes * float(fi.tiny) * float(fi.eps) / 2
    return 1e-5 if dtype == torch.float32 else 1e-9


def _can_read_back(t: Tensor) -> bool:
    """Whether a value of ``t`` may be read on the host: not on the data-less meta device, not while
    ``torch.compile`` traces, not while a CUDA graph is being captured, not inside
    :func:`no_host_reads`."""
    if t.device.type == "meta" or _compiling():
        return False
    if _NO_HOST_READS[0]:
        return False
    return not (t.device.type == "cuda" and torch.cuda.is_current_stream_capturing())


_NO_HOST_READS = [0]  # depth of no_host_reads() contexts


@contextlib.contextmanager
def no_host_reads() -> Iterator[None]:
    """Run the losses as a CUDA graph records them: their value checks are skipped and the LPL inner loop
    runs its static form (the same values, without reading the step counts), so no call waits for the
    device. The engine measures the loss variation on an accelerator this way, between training steps
    that never synchronise."""
    _NO_HOST_READS[0] += 1
    try:
        yield
    finally:
        _NO_HOST_READS[0] -= 1
