"""Class-level logit perturbation (LPL) as pure tensor functions.

Single-label learning (paper Sec. III-C, Eqs. 26-33, Algorithm 1):

* per-class mini-batch statistics: the count N_c and the mean true-class probability
  q̄_c = (1/N_c) Σ_{i∈S_c} softmax(u_i)_c (Eq. 28), over the classes present in the batch only;
* the category split: ``"mean"`` (τ = mean of q̄_c over the present classes, Eq. 27; a class with
  q̄_c < τ is positively augmented = loss maximisation), ``"value"`` (a fixed τ in [0, 1], same rule), or
  ``"index"`` (Eq. 29, long tail: classes ordered by training frequency, the τ most frequent ones are
  negatively augmented = loss minimisation, the rest positively);
* the bounds ε_c (Eq. 33): fixed ε, the first form ε + Δε·|τ − q̄_c|, the second form (index split) read
  as ε + Δε·q̄_c / max_head q̄ for head classes and ε + Δε·min_tail q̄ / q̄_c for tail classes, or the
  count-based schedule ε + Δε·n_c/n_max (head), ε + Δε·n_min/n_c (tail);
* the PGD-like inner loop of Algorithm 1: K_c = ⌊ε_c/α⌋ steps
  δ_c ← δ_c ± α·mean_{i∈S_c}(softmax(u_i + δ_c) − y_i) (Eqs. 30-32; + for maximisation, − for
  minimisation), each followed by the projection onto ‖δ_c‖₂ ≤ ε_c.

All classes advance together, with no Python loop over classes or samples. In eager mode the loop stops
at the largest K_c of the batch (one host synchronisation reads the step counts); without gradients it
keeps one row per class present, ordered by K_c so that the classes still moving are a leading slice that
shrinks as classes finish, and updates preallocated buffers in place. The static form (``early_stop=False``
of :func:`pgd_like_perturbation`, taken automatically under torch.compile, during CUDA-graph capture and
on the meta device) runs the largest possible K_c (known from the hyper-parameters alone) with a
per-sample mask and no synchronisation, with shapes fixed for CUDA graphs. Both give the same values.
Class means are an ``index_add`` over the batch on CPU (O(N·C) per step whatever the number of classes)
and one fused N × N ``addmm`` on GPUs.

Multi-label learning (Sec. III-D, Eqs. 34-41): the perturbation is the closed form δ̃_c = S(c − τ)·ε_c
shared by the positive and negative terms of class c, i.e. the logit u_{i,c} becomes u_{i,c} − δ̃_c
(:func:`multi_label_logit_shift`).

The ``authors_*`` functions reproduce, on purpose and bugs included, the perturbation computed by the
authors' released scripts; they are not the paper's method (see ``docs/lpl.md``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BOUNDS",
    "SPLITS",
    "SinglePerturbation",
    "authors_balanced_fixed_perturbation",
    "authors_balanced_varied_perturbation",
    "authors_class_step",
    "authors_longtail_perturbation",
    "authors_longtail_schedule",
    "authors_varied_step_counts",
    "check_class_counts",
    "check_finite",
    "check_logits",
    "check_multi_label_target",
    "check_non_negative",
    "check_num_classes",
    "check_index_target",
    "check_positive",
    "check_probability_target",
    "check_single_label_target",
    "check_step_budget",
    "class_bounds",
    "class_rank",
    "class_statistics",
    "count_bound_ratio",
    "fixed_step_count",
    "index_threshold",
    "multi_label_logit_shift",
    "pgd_like_perturbation",
    "single_label_perturbation",
    "split_signs",
    "step_counts",
]

#: Category splits of the single-label perturbation.
SPLITS = ("mean", "value", "index")
#: Bound schedules for varied ε_c (Eq. 33): from q̄_c (``"qbar"``) or from training counts (``"count"``).
BOUNDS = ("qbar", "count")

# ε/α within this relative distance of an integer counts as that integer (0.3/0.1 = 2.9999999999999996).
_STEP_RTOL = 1e-6
_TINY = 1e-30


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
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
    check, a finite sum, is inconclusive; skipped under torch.compile)."""
    if _compiling() or bool(_sum_is_finite(t)):
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); the loss would be NaN")


def _compiling() -> bool:
    """True while torch.compile traces: data-dependent checks (host reads) are skipped there."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


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
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise TypeError(f"{name} must hold integer class labels, got dtype {target.dtype}")
    n, c = logits.shape
    if target.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},) to match logits {tuple(logits.shape)}, got "
            f"{tuple(target.shape)}"
        )
    if _compiling():
        return target.long(), ignore_index is not None
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
    lo, hi = int(values[0]), int(values[1])
    if lo < 0 or hi >= c:
        extra = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(f"{name} labels must lie in [0, {c}){extra}, got values in [{lo}, {hi}]")
    return target.long(), bool(ignored is not None and values[-1] == 1.0)


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
    if _compiling():
        return t
    row = t.sum(dim=1)
    tol = 1e-3 if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-9
    stats = [
        torch.isfinite(t).all(),
        (t >= 0).all(),
        ((row - 1).abs() <= tol * t.shape[1]).all(),
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
    if target.is_complex():
        raise TypeError(f"{name} must be real, got dtype {target.dtype}")
    if target.shape != logits.shape:
        raise ValueError(
            f"{name} must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    t = target.to(logits.dtype)
    if _compiling():
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
        if class_counts.dtype == torch.bool or class_counts.is_complex():
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


# --------------------------------------------------------------------------------------------------
# class order, thresholds, statistics
# --------------------------------------------------------------------------------------------------
def class_rank(class_counts: Tensor | Sequence[float]) -> Tensor:
    """Rank of each class in descending training frequency (0 = most frequent), ties by class index.

    This is the class order of Eq. 29 ("categories ordered by proportion") and of Eq. 34.
    """
    counts = check_class_counts(class_counts, len(class_counts))
    order = torch.sort(-counts, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


def index_threshold(tau: object, num_classes: int, name: str = "tau") -> int:
    """Resolve an index threshold τ of Eqs. 29/34 to the number of head classes.

    An ``int`` in [0, C] is that number; a ``float`` in [0, 1] is a fraction of C, rounded half up
    (``tau=0.4`` with C = 100 gives 40). The τ most frequent classes form the head.
    """
    if isinstance(tau, bool) or not _is_number(tau):
        raise TypeError(
            f"{name} must be an int class index or a float fraction of C for an index split, got {tau!r}"
        )
    if isinstance(tau, numbers.Integral):
        if not 0 <= tau <= num_classes:
            raise ValueError(f"{name} as a class index must lie in [0, {num_classes}], got {tau}")
        return int(tau)
    if not math.isfinite(tau) or not 0.0 <= tau <= 1.0:
        raise ValueError(f"{name} as a fraction of C must lie in [0, 1], got {tau!r}")
    return int(math.floor(tau * num_classes + 0.5))


def class_statistics(
    logits: Tensor, target: Tensor, num_classes: int, weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Per-class mini-batch count N_c and mean true-class probability q̄_c (Eq. 28).

    Returns ``(counts, qbar)``, both (C,) in the dtype of ``logits``; q̄_c = 0 for a class absent from the
    batch (``counts == 0``). Differentiable with respect to ``logits``.

    With ``weight`` (N,) >= 0, row i counts with mass w_i: N_c = Σ_{y_i=c} w_i and
    q̄_c = Σ_{y_i=c} w_i p_{i,c} / N_c (rows of mass 0 do not count; weights of 1 give the plain form).
    """
    prob = logits.softmax(dim=1)
    q_true = prob.gather(1, target[:, None]).squeeze(1)
    zeros = logits.new_zeros(num_classes)
    if weight is None:
        counts = zeros.index_add(0, target, torch.ones_like(q_true))
        sums = zeros.index_add(0, target, q_true)
        return counts, sums / counts.clamp_min(1.0)
    w = weight.to(q_true.dtype)
    counts = zeros.index_add(0, target, w)
    sums = zeros.index_add(0, target, q_true * w)
    return counts, sums / torch.where(counts > 0, counts, torch.ones_like(counts))


def split_signs(
    qbar: Tensor,
    present: Tensor,
    *,
    split: str,
    tau: float | None = None,
    rank: Tensor | None = None,
    head: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The category split: sign +1 (positive augmentation, loss maximisation, 𝒫_a), −1 (negative
    augmentation, loss minimisation, 𝒩_a) or 0 (absent from the batch, or q̄_c exactly at τ).

    * ``"mean"``: τ = mean of q̄_c over the present classes (Eq. 27), sign = S(τ − q̄_c);
    * ``"value"``: the given τ in [0, 1], sign = S(τ − q̄_c);
    * ``"index"``: sign = −1 for ``rank < head`` and +1 otherwise (Eq. 29, S(c − τ)).

    Returns ``(sign, tau)``: (C,) and a 0-d tensor (for ``"index"`` the number of head classes).
    """
    pres = present.to(qbar.dtype)
    if split == "mean":
        tau_t = (qbar * pres).sum() / pres.sum().clamp_min(1.0)
        sign = torch.sign(tau_t - qbar) * pres
    elif split == "value":
        if tau is None:
            raise ValueError("tau must be given for split='value'")
        tau_t = qbar.new_tensor(float(tau))
        sign = torch.sign(tau_t - qbar) * pres
    elif split == "index":
        if rank is None or head is None:
            raise ValueError("split='index' needs the class rank and the head size")
        tau_t = qbar.new_tensor(float(head))
        sign = torch.where(rank.to(qbar.device) < head, -1.0, 1.0).to(qbar.dtype) * pres
    else:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return sign, tau_t


def count_bound_ratio(class_counts: Tensor | Sequence[float], head: int) -> Tensor:
    """The count-based ratio of the varied bound (the authors' long-tail schedule, Sec. 1.5 of the notes).

    Head classes (rank < ``head``): n_c / n_max; tail classes: n_min / n_c. Both lie in (0, 1] and
    grow toward the extremes of the frequency order. All counts must be > 0.
    """
    counts = check_class_counts(class_counts, len(class_counts), positive=True)
    rank = class_rank(counts)
    return torch.where(rank < head, counts / counts.max(), counts.min() / counts)


def class_bounds(
    qbar: Tensor,
    sign: Tensor,
    tau: Tensor,
    *,
    epsilon: float,
    delta_epsilon: float,
    split: str,
    bound: str = "qbar",
    count_ratio: Tensor | None = None,
) -> Tensor:
    """Per-class bound ε_c (Eq. 33); 0 for classes with sign 0.

    * ``delta_epsilon == 0``: the fixed bound ε;
    * ``"mean"``/``"value"`` split: the first form ε + Δε·|τ − q̄_c|;
    * ``"index"`` split, ``bound="qbar"``: the second form, read as ε + Δε·q̄_c / max_{head} q̄ for head
      classes and ε + Δε·min_{tail} q̄ / q̄_c for tail classes (max/min over the classes of that side present
      in the batch; with q̄ falling along the frequency order these are the paper's q̄_c/q̄_1 and
      q̄_C/q̄_c);
    * ``"index"`` split, ``bound="count"``: ε + Δε·``count_ratio`` (see :func:`count_bound_ratio`).

    Every ratio lies in [0, 1], so ε ≤ ε_c ≤ ε + Δε.
    """
    active = sign != 0
    if delta_epsilon == 0.0:
        eps = torch.full_like(qbar, epsilon)
    elif split in ("mean", "value"):
        eps = epsilon + delta_epsilon * (tau - qbar).abs()
    elif bound == "count":
        if count_ratio is None:
            raise ValueError("bound='count' needs count_ratio")
        eps = epsilon + delta_epsilon * count_ratio.to(qbar)
    else:
        head = active & (sign < 0)
        tail = active & (sign > 0)
        q = qbar.clamp_min(_TINY)
        q_head = torch.where(head, q, torch.zeros_like(q)).amax()
        q_tail = torch.where(tail, q, torch.full_like(q, float("inf"))).amin()
        # no tail class in the batch: q_tail is unused, but an inf would make the gradient NaN (inf·0)
        q_tail = torch.where(tail.any(), q_tail, torch.ones_like(q_tail))
        ratio = torch.where(head, q / q_head.clamp_min(_TINY), q_tail / q)
        ratio = torch.where(active, ratio, torch.zeros_like(ratio))
        eps = epsilon + delta_epsilon * ratio
    return torch.where(active, eps, torch.zeros_like(eps))


#: Largest number of inner steps ⌊(ε + Δε)/α⌋ a loss accepts (the paper's grids need at most a few hundred).
MAX_STEPS = 10_000


def check_step_budget(epsilon: float, delta_epsilon: float, alpha: float) -> int:
    """The loop length ⌊(ε + Δε)/α⌋, refused unless it is a finite integer <= :data:`MAX_STEPS`."""
    total = epsilon + delta_epsilon
    ratio = total / alpha if math.isfinite(total) else math.inf
    if not math.isfinite(ratio) or ratio > MAX_STEPS:
        raise ValueError(
            f"alpha={alpha!r} with epsilon={epsilon!r} and delta_epsilon={delta_epsilon!r} asks for "
            f"(epsilon + delta_epsilon)/alpha = {ratio:.3g} inner steps; at most {MAX_STEPS} are allowed "
            "(raise alpha or lower epsilon)"
        )
    return fixed_step_count(total, alpha)


def fixed_step_count(epsilon: float, alpha: float) -> int:
    """K = ⌊ε/α⌋ (Algorithm 1, line 2), robust to floating point (0.3/0.1 gives 3, not 2)."""
    return int(math.floor(epsilon / alpha * (1.0 + _STEP_RTOL)))


def step_counts(bounds: Tensor, alpha: float, max_steps: int | None = None) -> Tensor:
    """K_c = ⌊ε_c/α⌋ per class (Algorithm 1, line 2) as int64, with the tolerance of
    :func:`fixed_step_count`; capped at ``max_steps`` when given."""
    k = torch.floor(bounds.detach().double() / alpha * (1.0 + _STEP_RTOL)).long()
    if max_steps is not None:
        k = k.clamp_max(max_steps)
    return k


# --------------------------------------------------------------------------------------------------
# Algorithm 1
# --------------------------------------------------------------------------------------------------
def _group_index(
    target: Tensor, num_classes: int, keep: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """For each sample, the index of the first sample of its class and the size of its class, (N,) each.

    Rows sharing a group index belong to the same class, so class means over the batch are an
    ``index_add`` into N rows and a gather: O(N·C) per step, whatever C is. Built in O(N + C) (a
    scatter-min of the sample indices and a count per class), labels in [0, ``num_classes``). With
    ``keep`` (N,) bool, rows not kept neither count nor share a group: they all go to the extra group N,
    with size 1."""
    n = target.shape[0]
    index = torch.arange(n, device=target.device)
    src = index if keep is None else torch.where(keep, index, n)
    first = torch.full((num_classes,), n, dtype=index.dtype, device=target.device)
    first = first.scatter_reduce(0, target, src, reduce="amin")
    ones = torch.ones_like(index) if keep is None else keep.to(index.dtype)
    size = torch.zeros(num_classes, dtype=index.dtype, device=target.device)
    size = size.index_add(0, target, ones)
    first, size = first.index_select(0, target), size.index_select(0, target)
    if keep is not None:
        first = torch.where(keep, first, n)
        size = torch.where(keep, size, 1)
    return first, size


def _class_mass(target: Tensor, weight: Tensor, num_classes: int) -> Tensor:
    """Σ_{y_i=c} w_i per class (C,), in the dtype of ``weight``; 1 for a class of mass 0 (it does not
    move: its divisor only has to be harmless). Rows are added in batch order."""
    mass = weight.new_zeros(num_classes).index_add(0, target, weight)
    return torch.where(mass > 0, mass, torch.ones_like(mass))


def _can_read_back(t: Tensor) -> bool:
    """Whether a value of ``t`` may be read on the host: not on the data-less meta device, not while
    ``torch.compile`` traces, not while a CUDA graph is being captured."""
    if t.device.type == "meta" or _compiling():
        return False
    return not (t.device.type == "cuda" and torch.cuda.is_current_stream_capturing())


def _loop_range(steps_i: Tensor, max_steps: int, early_stop: bool) -> tuple[int, int]:
    """``(length, unmasked)``: how many steps to run, and how many of the first ones every sample takes.

    Static (``max_steps``, 0) without ``early_stop``; otherwise the batch's largest K_{y_i} (capped at
    ``max_steps``) and its smallest (one host synchronisation)."""
    if not early_stop or max_steps <= 0 or steps_i.numel() == 0:
        return max(max_steps, 0), 0
    lo, hi = torch.stack(torch.aminmax(steps_i)).tolist()
    hi = min(hi, max_steps)
    return max(hi, 0), min(max(lo, 0), max(hi, 0))


def pgd_like_perturbation(
    logits: Tensor,
    target: Tensor,
    sign: Tensor,
    bounds: Tensor,
    steps: Tensor,
    *,
    alpha: float,
    max_steps: int,
    normalize_step: bool = False,
    class_mean: str = "auto",
    weight: Tensor | None = None,
    keep: Tensor | None = None,
    early_stop: bool | None = None,
) -> Tensor:
    """The PGD-like optimisation of Algorithm 1 for all classes at once; returns δ per sample (N, C).

    Class c (sign s_c, bound ε_c, K_c steps) does K_c updates
    δ_c ← Π_{‖·‖≤ε_c}(δ_c + s_c·α·mean_{i∈S_c}(softmax(u_i + δ_c) − y_i)) (Eqs. 30-32: s_c = +1 is the
    maximisation step of Eq. 31, s_c = −1 the minimisation step of Eq. 32), the gradient re-evaluated
    at the perturbed logits each step. Row i of the result is δ_{y_i}. A class stops (its δ is kept)
    once its K_c updates are done (K_c is capped at ``max_steps``). With ``normalize_step`` each class
    step is scaled to length α (the direction of Eq. 31 with a fixed step length).

    ``early_stop`` chooses the loop length, with the same result: ``True`` stops at the largest K_c of
    the classes in the batch (one host synchronisation to read the step counts), ``False`` always runs
    ``max_steps`` steps with a per-sample mask (static shapes and no synchronisation, for CUDA graphs),
    ``None`` (default) is ``True`` except while ``torch.compile`` traces, while a CUDA graph is
    captured and on the meta device.

    ``class_mean`` chooses how class means are taken, with the same result: ``"index"`` (an
    ``index_add`` over the batch, O(N·C), fastest on CPU), ``"matmul"`` (one fused N × N matrix product
    per step, fewest kernels, fastest on GPUs) or ``"auto"`` (index on CPU, matmul elsewhere).

    With ``weight`` (N,) >= 0 the class means are weighted by the row masses (Σ w_i g_i / Σ w_i over the
    rows of the class; see :func:`class_statistics`); rows of mass 0 follow their class but do not move
    it. Weights of exactly 1 give the same numbers as no weight. ``keep`` (N,) bool is the cheap form of
    0/1 weights (ignored rows): rows not kept do not move any class and get δ = 0, at no per-step cost;
    with every row kept the result is that without ``keep``, bit for bit.

    Differentiable with respect to ``logits`` (and ``bounds``) when called with grad enabled. Without
    gradients, the ``index`` path with ``early_stop`` works on one row per class present, in place,
    and on fewer rows as classes finish (see :func:`_pgd_by_class`); ``weight`` and ``keep`` take it too.
    """
    n, c = logits.shape
    if class_mean == "auto":
        class_mean = "index" if logits.device.type == "cpu" else "matmul"
    if class_mean not in ("index", "matmul"):
        raise ValueError(f"class_mean must be 'auto', 'index' or 'matmul', got {class_mean!r}")
    if weight is not None and keep is not None:
        raise ValueError("give at most one of weight and keep")
    if early_stop is None:
        early_stop = _can_read_back(logits)
    elif not isinstance(early_stop, bool):
        raise TypeError(f"early_stop must be None or a bool, got {early_stop!r}")
    grad_needed = torch.is_grad_enabled() and (
        logits.requires_grad
        or bounds.requires_grad
        or sign.requires_grad
        or (weight is not None and weight.requires_grad)
    )
    if (
        early_stop
        and class_mean == "index"
        and not normalize_step
        and not grad_needed
        and logits.is_contiguous()  # other layouts: the per-sample loop keeps their rounding
    ):
        return _pgd_by_class(
            logits,
            target,
            sign,
            bounds,
            steps,
            alpha=alpha,
            max_steps=max_steps,
            weight=weight,
            keep=keep,
        )
    steps_i = steps.to(logits.device)[target][:, None]  # K_{y_i}, (N, 1)
    if keep is not None:  # rows not kept never move: δ = 0
        steps_i = torch.where(keep[:, None], steps_i, torch.zeros_like(steps_i))
    length, unmasked = _loop_range(steps_i, max_steps, early_stop)
    group, size = _group_index(target, c, keep)
    dtype = logits.dtype
    w = None
    if weight is not None:
        w = weight.to(dtype)
        size = _class_mass(target, w, c).index_select(0, target)  # class mass of each row's class
    scale = (alpha * sign.to(dtype))[target][:, None]  # α·s_{y_i}
    mean_scale = scale / size[:, None].to(dtype)  # α·s_{y_i} / N_{y_i}
    radius = bounds.to(dtype)[target][:, None].clamp_min(_TINY)
    shift = scale * F.one_hot(target, c).to(dtype)  # the constant part α·s·y_i of the step
    if class_mean == "matmul" or normalize_step:
        onehot = F.one_hot(target, c).to(dtype)
        same = (target[:, None] == target[None, :]).to(dtype)
        if w is not None:
            same = same * w[None, :]
        elif keep is not None:
            same = same * keep[None, :].to(dtype)
        mean_matrix = same / size[:, None].to(dtype)
        step_matrix = mean_scale * same  # row i: α·s_{y_i}/N_{y_i} on the samples of class y_i
    if grad_needed and length == 0 and max_steps > 0:
        length = 1  # one masked step keeps δ connected to the graph, as the full loop does
    delta = torch.zeros_like(logits)
    extra = 0 if keep is None else 1  # the group of the rows not kept
    # without autograd one buffer holds the class sums (the static path, under compile or capture)
    sums = logits.new_zeros(n + extra, c) if class_mean == "index" and not grad_needed else None
    for k in range(length):
        prob = torch.softmax(logits + delta, dim=1)
        if normalize_step:
            grad = mean_matrix @ prob - onehot
            grad = grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min(_TINY)
            moved = delta + scale * grad
        elif class_mean == "matmul":
            moved = torch.addmm(delta - shift, step_matrix, prob)
        else:
            rows = prob if w is None else prob * w[:, None]
            if sums is not None:
                class_sum = sums.zero_().index_add_(0, group, rows).index_select(0, group)
            else:
                class_sum = logits.new_zeros(n + extra, c).index_add(0, group, rows)
                class_sum = class_sum.index_select(0, group)
            moved = torch.addcmul(delta - shift, mean_scale, class_sum)
        norm = torch.linalg.vector_norm(moved, dim=1, keepdim=True)
        moved = moved * (radius / norm.clamp_min(radius))  # projection onto ‖δ‖ ≤ ε_c
        delta = moved if k < unmasked else torch.where(steps_i > k, moved, delta)
    return delta


def _pgd_by_class(
    logits: Tensor,
    target: Tensor,
    sign: Tensor,
    bounds: Tensor,
    steps: Tensor,
    *,
    alpha: float,
    max_steps: int,
    weight: Tensor | None = None,
    keep: Tensor | None = None,
) -> Tensor:
    """The ``index`` loop of :func:`pgd_like_perturbation` without autograd, stopping early.

    Every sample of a class carries the same δ, so the update, the norm and the projection are done
    once per class present (G rows instead of N). Classes are ordered by K_c (largest first) and the
    samples by class, keeping their batch order within a class, so the classes still moving at step k
    and their samples are leading slices: the loop works on fewer rows as classes finish, with no
    mask, and ends at the largest K_c. Buffers are allocated once. Each value is computed by the same
    operations in the same order as in the per-sample loop (class sums accumulate the samples of a
    class in batch order), so the result is identical. One host synchronisation reads the step counts
    (with the labels and ``keep``).

    ``weight``: the rows' probabilities are scaled by their masses before the class sums, which are
    divided by the class mass (as in the per-sample loop). ``keep``: the rows not kept are left out of
    the loop altogether and read a zero row of δ at the end.
    """
    n, c = logits.shape
    dtype, device = logits.dtype, logits.device
    if n == 0:
        return torch.zeros_like(logits)
    # Bookkeeping on the host, on N + C integers (one synchronisation to read them): sort key larger
    # K_c first, then label; the stable sort keeps the batch order within a class.
    if keep is None:
        y = target.detach().cpu().numpy()
        kept = None
    else:
        y, kept_mask = torch.stack((target.detach(), keep.detach().to(target.dtype))).cpu().numpy()
        kept = kept_mask.nonzero()[0]  # the rows kept, in batch order
        if len(kept) == n:
            kept = None
        elif len(kept) == 0:
            return torch.zeros_like(logits)
        else:
            y = y[kept]
    m = len(y)  # rows in the loop
    k_all = steps.detach().cpu()
    if k_all.is_floating_point():  # class c moves at the steps k < K_c
        k_all = k_all.ceil()
    k_row = np.minimum(np.maximum(k_all.long().numpy(), 0), max(max_steps, 0))[y]
    key = (max_steps - k_row) * c + y
    order = np.argsort(key, kind="stable")
    key = key[order]
    new_class = np.empty(m, dtype=bool)
    new_class[0] = True
    np.not_equal(key[1:], key[:-1], out=new_class[1:])
    row_class = np.cumsum(new_class) - 1  # class slot of each sorted sample
    starts = new_class.nonzero()[0]
    keys = key[starts]
    size = np.subtract(np.append(starts[1:], m), starts)
    k_host = (max_steps - keys // c).tolist()  # K_c of the classes present, descending
    g = len(k_host)
    if kept is None:
        sample_class = np.empty_like(row_class)
        sample_class[order] = row_class
    else:
        order = kept[order]  # batch rows of the sorted samples
        sample_class = np.full(n, g, dtype=row_class.dtype)  # rows not kept: the zero row g
        sample_class[order] = row_class
    size_host = size.tolist()
    index = torch.from_numpy(np.concatenate((order, row_class, sample_class, keys % c, size)))
    order, row_class, sample_class, labels, size = index.to(device).split((m, m, n, g, g))
    per_class = torch.stack((alpha * sign.to(dtype), bounds.to(dtype)), 1).index_select(0, labels)
    scale = per_class[:, :1]  # α·s_c
    if weight is None:
        mean_scale = scale / size[:, None].to(dtype)  # α·s_c / N_c
        row_mass = None
    else:
        w = weight.detach().to(dtype)
        mass = _class_mass(target, w, c).index_select(0, labels)
        mean_scale = scale / mass[:, None]  # α·s_c / Σ_{y_i=c} w_i
        row_mass = w.index_select(0, order)[:, None]
    radius = per_class[:, 1:].clamp_min(_TINY)
    onehot = logits.new_zeros(g, c).scatter_(1, labels[:, None], 1.0)
    shift = scale * onehot  # α·s_c·e_c
    sorted_logits = logits.index_select(0, order)
    delta = logits.new_zeros(
        g + (kept is not None), c
    )  # one row per class present (+ the zero row)
    class_sum = torch.empty_like(shift)
    work = torch.empty_like(sorted_logits)
    factor = radius.new_empty(radius.shape)
    classes, rows, k = len(k_host), m, 0
    while True:
        while classes and k_host[classes - 1] <= k:  # classes done: they leave the leading slices
            classes -= 1
            rows -= size_host[classes]
        if not classes:
            break
        # the same classes move until the next one is done: slice once for those steps
        r_class, z, u = (_lead(t, rows) for t in (row_class, work, sorted_logits))
        s, d, f, r, sh, ms = (
            _lead(t, classes) for t in (class_sum, delta, factor, radius, shift, mean_scale)
        )
        wr = None if row_mass is None else _lead(row_mass, rows)
        until = k_host[classes - 1]
        for _ in range(k, until):
            torch.index_select(delta, 0, r_class, out=z).add_(u)  # u_i + δ_{y_i}
            prob = torch.softmax(z, dim=1)
            if wr is not None:
                prob.mul_(wr)  # w_i·p_i
            s.zero_().index_add_(0, r_class, prob)
            d.sub_(sh).addcmul_(ms, s)
            torch.linalg.vector_norm(d, dim=1, keepdim=True, out=f)
            d.mul_(torch.div(r, f.clamp_min_(r), out=f))  # projection onto ‖δ‖ ≤ ε_c
        k = until
    return delta.index_select(0, sample_class)


def _lead(t: Tensor, m: int) -> Tensor:
    """The first ``m`` rows of ``t``; ``t`` itself when that is all of it (ops on it are cheaper)."""
    return t if m == t.shape[0] else t[:m]


class SinglePerturbation(NamedTuple):
    """Result of :func:`single_label_perturbation`.

    ``delta`` (N, C): the perturbation of each sample (that of its class); ``sign`` (C,): +1 maximised,
    −1 minimised, 0 untouched; ``bounds`` (C,): ε_c; ``steps`` (C,): K_c; ``tau``: the threshold used;
    ``qbar`` and ``counts`` (C,): the batch statistics of Eq. 28.
    """

    delta: Tensor
    sign: Tensor
    bounds: Tensor
    steps: Tensor
    tau: Tensor
    qbar: Tensor
    counts: Tensor


def single_label_perturbation(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float,
    epsilon: float,
    delta_epsilon: float = 0.0,
    split: str = "mean",
    tau: float | None = None,
    rank: Tensor | None = None,
    head: int | None = None,
    bound: str = "qbar",
    count_ratio: Tensor | None = None,
    normalize_step: bool = False,
    weight: Tensor | None = None,
    keep: Tensor | None = None,
) -> SinglePerturbation:
    """Class-level logit perturbation for single-label learning (Eqs. 26-33, Algorithms 1-2, steps 4-6).

    ``logits`` (N, C) floating and ``target`` (N,) int64 labels in [0, C) are taken as valid (the
    losses validate them). The split and bounds come from the batch statistics; the PGD-like loop then
    infers δ. Gradients flow through everything when grad mode is on; the losses call it under
    ``torch.no_grad()`` unless ``differentiable=True``.

    ``weight`` (N,) >= 0: row masses (see :func:`class_statistics`); probability targets are handled by
    the losses as one row per (sample, class) pair weighted by the target's mass (``docs/lpl.md``).
    ``keep`` (N,) bool: rows to use (the others, e.g. ``ignore_index`` rows, are left out at no per-step
    cost; all kept gives the result without ``keep``, bit for bit).
    """
    c = logits.shape[1]
    if weight is not None and keep is not None:
        raise ValueError("give at most one of weight and keep")
    mass = weight if keep is None else keep.to(logits.dtype)
    counts, qbar = class_statistics(logits, target, c, mass)
    present = counts > 0
    sign, tau_t = split_signs(qbar, present, split=split, tau=tau, rank=rank, head=head)
    bounds = class_bounds(
        qbar,
        sign,
        tau_t,
        epsilon=epsilon,
        delta_epsilon=delta_epsilon,
        split=split,
        bound=bound,
        count_ratio=count_ratio,
    )
    max_steps = fixed_step_count(epsilon + delta_epsilon, alpha)
    steps = step_counts(bounds, alpha, max_steps)
    delta = pgd_like_perturbation(
        logits,
        target,
        sign,
        bounds,
        steps,
        alpha=alpha,
        max_steps=max_steps,
        normalize_step=normalize_step,
        weight=weight,
        keep=keep,
    )
    return SinglePerturbation(delta, sign, bounds, steps, tau_t, qbar, counts)


# --------------------------------------------------------------------------------------------------
# multi-label (Eqs. 34-41)
# --------------------------------------------------------------------------------------------------
def multi_label_logit_shift(
    rank: Tensor,
    head: int,
    *,
    epsilon: float,
    delta_epsilon: float = 0.0,
    count_ratio: Tensor | None = None,
) -> Tensor:
    """The multi-label perturbation as a shift to add to the logits, (C,).

    Eq. 41 and the text after it: δ̃_c = S(c − τ)·ε_c, shared by the positive and negative terms of
    class c, which enter Eq. 34 as log(1 + e^{−u + δ̃}) and log(1 + e^{u − δ̃}): the logit becomes
    u_{i,c} − δ̃_c. Head classes (rank < ``head``, S = −1, Eq. 37) get +ε_c (positive loss down,
    negative loss up); tail classes (S = +1, Eq. 38) get −ε_c (positive loss up, negative loss down).
    ε_c = ε + Δε·``count_ratio`` (varied) or ε (fixed, ``delta_epsilon == 0``).
    """
    s = torch.where(rank < head, -1.0, 1.0).double()
    if delta_epsilon == 0.0:
        eps = torch.full_like(s, epsilon)
    else:
        if count_ratio is None:
            raise ValueError("varied multi-label bounds need count_ratio")
        eps = epsilon + delta_epsilon * count_ratio.double()
    return -(s * eps)


# --------------------------------------------------------------------------------------------------
# the authors' scripts (reproductions, not the paper's method)
# --------------------------------------------------------------------------------------------------
def authors_class_step(
    logits: Tensor, target: Tensor, alpha: float, sign: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the authors' shared primitive (``compute_adv_sign``), per sample (N, C).

    With P = softmax(U) and n_c the batch count (replaced by 100 when 0): M[c] = Σ_{y_i=c} P_i / n_c,
    q̄_c = M[c, c], G = M − I, row c of G divided by the L2 norm of *column* c, τ = mean of q̄ over all
    C classes (absent ones count as 0), s_c = S(τ − q̄_c) unless ``sign`` is given, and the step of
    sample i is α·s_{y_i}·G[y_i]. The norm is floored at 1e-30 (the scripts divide 0/0 into NaN).
    Returns ``(step, qbar, tau)``.
    """
    return _authors_step(logits, target, alpha, sign, _authors_counts(logits, target))


def _authors_counts(logits: Tensor, target: Tensor) -> Tensor:
    """The scripts' class counts n_c in the batch, 100 for an absent class, (C,) in the logits' dtype."""
    counts = logits.new_zeros(logits.shape[1]).index_add(0, target, logits.new_ones(target.shape))
    return torch.where(counts == 0, torch.full_like(counts, 100.0), counts)


def _authors_step(
    logits: Tensor,
    target: Tensor,
    alpha: float,
    sign: Tensor | None,
    counts: Tensor,
    eye: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`authors_class_step` with the counts (and, for gradients, the identity) given: both are
    fixed across a preset's loop, so the loops build them once.

    Only the column norms need all of M (C × C). Without gradients M is built and turned into G in
    place and the step is built on the N rows of G that the samples use, with the same operations in
    the same order as on all C rows. With gradients the operations are those of the scripts' form
    (G = M − I, then per class, then per sample), so gradients accumulate in the same order too."""
    c = logits.shape[1]
    prob = logits.softmax(dim=1)
    if torch.is_grad_enabled() and logits.requires_grad:
        m = logits.new_zeros(c, c).index_add(0, target, prob) / counts[:, None]
        qbar = m.diagonal()
        if eye is None:
            eye = torch.eye(c, dtype=logits.dtype, device=logits.device)
        g = m - eye
        g = g / g.norm(dim=0).clamp_min(_TINY)[:, None]
        tau = qbar.mean()
        s = torch.sign(tau - qbar) if sign is None else sign.to(logits)
        return (alpha * (s[:, None] * g))[target], qbar, tau
    m = logits.new_zeros(c, c).index_add_(0, target, prob).div_(counts[:, None])
    tau = m.diagonal().mean()  # on the strided diagonal, as before (same summation order)
    qbar = m.diagonal().clone()
    g = m
    g.diagonal().sub_(1.0)  # G = M − I without building I
    norm = g.norm(dim=0).clamp_min(_TINY)
    s = torch.sign(tau - qbar) if sign is None else sign.to(logits)
    rows = g.index_select(0, target) / norm.index_select(0, target)[:, None]
    return alpha * (s.index_select(0, target)[:, None] * rows), qbar, tau


def _authors_eye(logits: Tensor) -> Tensor | None:
    """The identity for :func:`_authors_step` when gradients flow (built once per loop), else None."""
    if torch.is_grad_enabled() and logits.requires_grad:
        return torch.eye(logits.shape[1], dtype=logits.dtype, device=logits.device)
    return None


def _snapshot_indices(k_i: Tensor, iterations: int) -> set[int] | None:
    """The snapshot indices some sample takes (one read-back), or None where values cannot be read
    (meta device, torch.compile, CUDA graph capture): then every iteration takes its snapshot."""
    if not _can_read_back(k_i):
        return None
    return {int(k) for k in torch.unique(k_i).tolist() if 0 <= k < iterations}


def authors_balanced_fixed_perturbation(
    logits: Tensor, target: Tensor, *, alpha: float = 0.005, steps: int = 20
) -> Tensor:
    """``lpl-balanced/networks/train.py``: ``steps`` iterations U ← U + step(U) of
    :func:`authors_class_step` (signs and τ recomputed each time); returns U_P − U."""
    counts, eye = _authors_counts(logits, target), _authors_eye(logits)
    u = logits
    for _ in range(steps):
        u = u + _authors_step(u, target, alpha, None, counts, eye)[0]
    return u - logits


def authors_varied_step_counts(qbar: Tensor, tau: Tensor, *, base: int, scale: float) -> Tensor:
    """Step indices of the authors' varied scripts, from the unperturbed statistics.

    d_c = τ − q̄_c (absent classes included, q̄ = 0); on each side of zero the magnitudes are divided by
    that side's largest, and K_c = base + max(0, round(scale·|d_c|/max_side − 1)) (round half to even).
    ``train_lpl.py``: base = P, scale = 0.1·P; ``networks/train_var.py``: base = 0, scale = P.
    """
    d = (tau - qbar).double()
    mag = d.abs()
    pos, neg = d > 0, d < 0
    max_pos = torch.where(pos, mag, torch.zeros_like(mag)).amax()
    max_neg = torch.where(neg, mag, torch.zeros_like(mag)).amax()
    side_max = torch.where(pos, max_pos, max_neg)
    ratio = torch.where(side_max > 0, mag / side_max.clamp_min(_TINY), torch.zeros_like(mag))
    return base + torch.round(scale * ratio - 1.0).clamp_min(0.0).long()


def authors_balanced_varied_perturbation(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.01,
    steps: int = 40,
    variant: str = "train_lpl",
) -> Tensor:
    """``lpl-balanced/train_lpl.py`` (``variant="train_lpl"``) or ``networks/train_var.py``
    (``variant="train_var"``): K_c from :func:`authors_varied_step_counts` on the unperturbed logits,
    then iterations that each recompute a = step(L) and do L += a; snapshot_i = L; L += a (the step is
    applied twice); sample i takes snapshot_{K_{y_i}}. Returns the perturbation (N, C)."""
    if variant == "train_lpl":
        base, scale, iterations = steps, 0.1 * steps, round(1.1 * steps)
    elif variant == "train_var":
        base, scale, iterations = 0, float(steps), steps
    else:
        raise ValueError(f"variant must be 'train_lpl' or 'train_var', got {variant!r}")
    counts, eye = _authors_counts(logits, target), _authors_eye(logits)
    first, qbar, tau = _authors_step(logits, target, alpha, None, counts, eye)
    k_c = authors_varied_step_counts(qbar, tau, base=base, scale=scale)
    k_i = k_c.index_select(0, target)[:, None]
    taken = _snapshot_indices(k_i, iterations)
    u = logits
    out = logits
    for i in range(iterations):
        a = first if i == 0 else _authors_step(u, target, alpha, None, counts, eye)[0]
        u = u + a
        if taken is None or i in taken:
            out = torch.where(k_i == i, u, out)
        u = u + a
    return out - logits


def authors_longtail_schedule(
    class_counts: Sequence[float] | Tensor, split: int, *, steps: int = 50, head_scale: float = 0.2
) -> tuple[list[int], list[float]]:
    """Static step indices and signs of the authors' long-tail scripts.

    With the counts sorted in descending order n_(0) ≥ … ≥ n_(C−1), class index i gets
    K_i = round(n_(i)/n_(0)·head_scale·S − 1) if i < ``split`` else round(n_(C−1)/n_(i)·S − 1)
    (Python rounding, no clamp: −1 is possible and then selects the last snapshot); the sign is −1 for
    i < ``split`` and +1 otherwise. Returns ``(K, sign)`` as lists.
    """
    counts = sorted(
        (float(v) for v in check_class_counts(class_counts, len(class_counts))), reverse=True
    )
    c = len(counts)
    ks = [
        round(counts[i] / counts[0] * head_scale * steps - 1)
        if i < split
        else round(counts[-1] / counts[i] * steps - 1)
        for i in range(c)
    ]
    signs = [-1.0 if i < split else 1.0 for i in range(c)]
    return ks, signs


def authors_longtail_perturbation(
    logits: Tensor,
    target: Tensor,
    step_index: Tensor,
    sign: Tensor,
    *,
    alpha: float,
    iterations: int,
) -> Tensor:
    """``la_lpl_cifar100.py`` / ``train_lpl_cifar{10,100}.py``: ``iterations`` steps L += step(L) with the
    static class signs; snapshot_i = L after i + 1 steps; sample i takes snapshot_{K_{y_i}} (K = −1
    means the last one). Differentiable (the scripts back-propagate through the loop)."""
    k = torch.where(step_index < 0, step_index + iterations, step_index).to(logits.device)
    k_i = k.index_select(0, target)[:, None]
    taken = _snapshot_indices(k_i, iterations)
    counts, eye = _authors_counts(logits, target), _authors_eye(logits)
    u = logits
    out = logits
    for i in range(iterations):
        u = u + _authors_step(u, target, alpha, sign, counts, eye)[0]
        if taken is None or i in taken:
            out = torch.where(k_i == i, u, out)
    return out - logits
