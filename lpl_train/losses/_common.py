"""Pieces shared by the loss modules (``single_label``, ``feature_losses``, ``label_noise``,
``multi_label``, ``lpl``, ``lpl_multi_label``): the argument checks (reduction, bool flags, class counts,
logits, class-index targets, epochs, the classifier head), the reduction, the working dtype of the LPL
losses (float32 for half-precision logits) and ``_ReprMixin`` (``extra_repr`` from the hyper-parameters).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from torch import Tensor, nn

from ..perturbation_checks import _can_read_back, _work_dtype
from ..validation import check_int


class _ReprMixin:
    """``extra_repr`` from the hyper-parameters named in ``_repr_fields`` (as the LPL losses show theirs)."""

    _repr_fields: tuple[str, ...] = ()
    #: Multi-label losses (elementwise (N, C) on multi-hot targets) set this to True.
    multi_label: bool = False

    def extra_repr(self) -> str:
        parts = []
        for name in (*self._repr_fields, "reduction"):
            if hasattr(self, name):
                value = getattr(self, name)
                parts.append(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}")
        return ", ".join(parts)


REDUCTIONS = ("mean", "sum", "none")

#: frames in these folders are skipped when a warning looks for the user's line (the package itself, and
#: torch's, whose ``Module.__call__`` stands between a loss's forward and the line that called it)
_SKIPPED_DIRS = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
)


def _process_group_up() -> bool:
    """Whether a default ``torch.distributed`` process group is running in this process."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def _caller_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` in the function that calls this: the first frame outside the
    package and torch, i.e. the user's line that built the loss (directly, through a subclass,
    ``build_loss`` or ``fit``) or called it (through ``Module.__call__``). Python files the warning under
    that line, and shows a DeprecationWarning by default only there. While ``torch.compile`` traces, 2."""
    if torch.compiler.is_compiling():
        return 2
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_SKIPPED_DIRS):
        frame, level = frame.f_back, level + 1
    return level


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


class _DRWWeightState:
    """For a loss whose DRW weights live in a ``weight`` buffer that ``set_epoch`` rewrites (``_epoch_seen``
    records that it did): a state dict that carries ``weight`` holds the weights of the epoch it was saved
    at, so loading it counts as that epoch's hook and the "set_epoch was never called" warning stays off."""

    _epoch_seen: bool

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
        if prefix + "weight" in state_dict:
            self._epoch_seen = True


def _check_reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _is_bool_dtype(value: Any) -> bool:
    """A NumPy boolean array or scalar (counts must be numbers, not flags)."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and getattr(dtype, "kind", None) == "b"


def _as_counts(
    class_counts: Any,
    num_classes: int | None = None,
    *,
    name: str = "class_counts",
    allow_zero: bool = False,
) -> torch.Tensor:
    """Validate per-class counts and return them as a float64 tensor of shape (C,)."""
    if class_counts is None:
        raise ValueError(f"{name} is required (one positive count per class), got None")
    if isinstance(class_counts, torch.Tensor):
        if class_counts.dtype == torch.bool or class_counts.dtype.is_complex:
            raise TypeError(f"{name} must hold numbers, got dtype {class_counts.dtype}")
        counts = class_counts.detach().to("cpu", torch.float64)
    else:
        if _is_bool_dtype(class_counts) or isinstance(class_counts, str | bytes):
            raise TypeError(f"{name} must be a sequence of numbers, got {class_counts!r}")
        try:
            values = list(class_counts)
        except TypeError as exc:
            raise TypeError(
                f"{name} must be a sequence of numbers, got {type(class_counts).__name__}"
            ) from exc
        if any(isinstance(v, bool) or _is_bool_dtype(v) for v in values):
            raise TypeError(f"{name} must hold numbers, not bools, got {values!r}")
        try:
            counts = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be a sequence of numbers, got {type(class_counts).__name__}"
            ) from exc
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            f"{name} must be 1-D with at least 2 classes, got shape {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all():
        raise ValueError(f"{name} must be finite, got {counts.tolist()}")
    bad = torch.nonzero(counts < 0 if allow_zero else counts <= 0).flatten()[:5].tolist()
    if bad:
        shown = ", ".join(f"{name}[{i}]={counts[i].item():g}" for i in bad)
        rule = ">= 0" if allow_zero else "> 0 for every class (they are divided by or logged)"
        raise ValueError(f"{name} must be {rule}, got {shown}")
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=2)
        if counts.numel() != num_classes:
            raise ValueError(
                f"{name} has {counts.numel()} entries but num_classes is {num_classes}; "
                "give one count per class"
            )
    return counts


def _check_logits(logits: Any, name: str = "logits") -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, C) with C >= 2, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    return logits


def _check_target(
    target: Any, n: int, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(
            f"target must be a torch.Tensor of class indices, got {type(target).__name__}"
        )
    if target.dim() != 1 or target.shape[0] != n:
        raise ValueError(
            f"target must have shape ({n},) (one class index per row), got {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.dtype == torch.bool or target.dtype.is_complex:
        raise TypeError(
            f"target must be an integer tensor of class indices, got dtype {target.dtype}"
        )
    # the values: not while compiling, recording a CUDA graph or inside no_host_reads()
    if n > 0 and _can_read_back(target):
        t = target
        if ignore_index is not None:
            t = torch.where(t == ignore_index, torch.zeros_like(t), t)
        lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one device read
        if lo < 0 or hi >= num_classes:
            extra = f" (or ignore_index={ignore_index})" if ignore_index is not None else ""
            raise ValueError(
                f"target must hold class indices in [0, {num_classes - 1}]{extra}, got values in [{lo}, {hi}]"
            )
    return target.long()


def _check_pair(
    logits: Any, target: Any, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = _check_logits(logits)
    c = logits.shape[1]
    if num_classes is not None and c != num_classes:
        raise ValueError(
            f"logits have {c} columns but the loss was built for {num_classes} classes"
        )
    # half-precision logits (autocast) are scored in float32, as torch's cross-entropy and LPL do
    return _work_dtype(logits), _check_target(target, logits.shape[0], c)


def _focal_power(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``x ** gamma`` for ``x >= 0`` (a focal factor ``(1 - p)^gamma``) with a gradient that stays finite at
    ``x = 0``: for ``0 < gamma < 1`` the power's derivative is infinite there, and a confidently right
    sample (``p`` rounding to 1) got a NaN gradient (inf · 0). Values are those of ``x ** gamma``."""
    if gamma == 0:
        return torch.ones_like(x)
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)) ** gamma, torch.zeros_like(x))


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def _check_epoch(epoch: Any, total_epochs: Any) -> tuple[int, int]:
    check_int("total_epochs", total_epochs, minimum=1)
    check_int("epoch", epoch, minimum=0)
    if epoch > total_epochs:
        raise ValueError(f"epoch must be in [0, total_epochs={total_epochs}], got {epoch}")
    return epoch, total_epochs


def _check_classifier(
    classifier: Any, feature_dim: int, num_classes: int | None = None
) -> nn.Linear:
    if not isinstance(classifier, nn.Linear):
        raise TypeError(
            f"classifier must be the model's nn.Linear head (weight of shape (C, F)), "
            f"got {type(classifier).__name__}"
        )
    if classifier.in_features != feature_dim:
        raise ValueError(
            f"classifier takes {classifier.in_features} features but features have {feature_dim}"
        )
    if num_classes is not None and classifier.out_features != num_classes:
        raise ValueError(
            f"classifier has {classifier.out_features} outputs, expected num_classes={num_classes}"
        )
    return classifier


def _empty_batch(logits: object, target: object) -> bool:
    """A batch of no rows (N = 0 in both), which ``nn.CrossEntropyLoss`` takes (nan for the mean)."""
    return (
        isinstance(logits, Tensor)
        and isinstance(target, Tensor)
        and logits.dim() == 2
        and logits.is_floating_point()
        and logits.shape[0] == 0
        and target.dim() >= 1
        and target.shape[0] == 0
    )
