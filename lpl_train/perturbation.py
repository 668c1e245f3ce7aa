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
and one fused N × N ``addmm`` on GPUs. With ``fused=True`` (the losses' ``fused_loop``), the whole loop is
one kernel instead, one program or thread per class: Triton on a CUDA device, C++ on the CPU
(:mod:`lpl_train.perturbation_fused`).

Multi-label learning (Sec. III-D, Eqs. 34-41): the perturbation is the closed form δ̃_c = S(c − τ)·ε_c
shared by the positive and negative terms of class c, i.e. the logit u_{i,c} becomes u_{i,c} − δ̃_c
(:func:`multi_label_logit_shift`, in :mod:`lpl_train.perturbation_multi_label`).

The inner loop without autograd lives in :mod:`lpl_train.perturbation_class_loop`, the input checks
in :mod:`lpl_train.perturbation_checks`, the ``authors_*`` functions in
:mod:`lpl_train.perturbation_authors` and the multi-label closed form in
:mod:`lpl_train.perturbation_multi_label`; the last three are re-exported here, so every name is imported
from this module. The ``authors_*`` functions reproduce, on purpose and bugs included, the perturbation computed
by the authors' released scripts; they are not the paper's method (see ``docs/lpl.md``).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .perturbation_authors import (
    _authors_counts,  # noqa: F401 (re-exported)
    _authors_eye,  # noqa: F401 (re-exported)
    _authors_step,  # noqa: F401 (re-exported)
    _snapshot_indices,  # noqa: F401 (re-exported)
    authors_balanced_fixed_perturbation,
    authors_balanced_varied_perturbation,
    authors_class_step,
    authors_longtail_perturbation,
    authors_longtail_schedule,
    authors_varied_schedule,
    authors_varied_step_counts,
)
from .perturbation_checks import (
    _TINY,  # noqa: F401 (re-exported)
    _can_read_back,
    _compiling,  # noqa: F401 (re-exported)
    _confirm_finite_logits,  # noqa: F401 (re-exported)
    _is_number,
    _sum_is_finite,  # noqa: F401 (re-exported)
    _tiny,
    _work_dtype,
    check_class_counts,
    check_finite,
    check_index_target,
    check_logits,
    check_multi_label_target,
    check_non_negative,
    check_num_classes,
    check_positive,
    check_probability_target,
    check_single_label_target,
    no_host_reads,
)
from .perturbation_class_loop import _class_mass, _pgd_by_class
from .perturbation_fused import fused_loop_unavailable, pgd_fused
from .perturbation_multi_label import multi_label_logit_shift

__all__ = [
    "BOUNDS",
    "SPLITS",
    "SinglePerturbation",
    "authors_balanced_fixed_perturbation",
    "authors_balanced_varied_perturbation",
    "authors_class_step",
    "authors_longtail_perturbation",
    "authors_longtail_schedule",
    "authors_varied_schedule",
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
    "moving_step_floor",
    "multi_label_logit_shift",
    "no_host_reads",
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
    counts, qbar, _ = _statistics(logits, target, num_classes, weight)
    return counts, qbar


def _statistics(
    logits: Tensor, target: Tensor, num_classes: int, weight: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`class_statistics` and the softmax of the logits it computed, ``(counts, qbar, prob)``."""
    prob = logits.softmax(dim=1)
    q_true = prob.gather(1, target[:, None]).squeeze(1)
    zeros = logits.new_zeros(num_classes)
    if weight is None:
        counts = zeros.index_add(0, target, torch.ones_like(q_true))
        sums = zeros.index_add(0, target, q_true)
        return counts, sums / counts.clamp_min(1.0), prob
    w = weight.to(q_true.dtype)
    counts = zeros.index_add(0, target, w)
    sums = zeros.index_add(0, target, q_true * w)
    return counts, sums / torch.where(counts > 0, counts, torch.ones_like(counts)), prob


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
        weighted = qbar * pres
        tau_t = weighted.sum() / pres.sum().clamp_min(1.0)
        # the mean lies in [min, max] of the present q̄ (each >= 0): keep the rounded one there, so that
        # tied q̄ (e.g. all logits equal) sit exactly at τ (sign 0), not one ulp to one side of it
        hi = weighted.amax()
        tau_t = torch.clamp(tau_t, torch.where(present, qbar, hi).amin(), hi)
        sign = torch.sign(tau_t - qbar) * pres
    elif split == "value":
        if tau is None:
            raise ValueError("tau must be given for split='value'")
        tau_t = qbar.new_full((), float(tau))  # a fill: no copy from the host
        sign = torch.sign(tau_t - qbar) * pres
    elif split == "index":
        if rank is None or head is None:
            raise ValueError("split='index' needs the class rank and the head size")
        tau_t = qbar.new_full((), float(head))
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
        q = qbar.clamp_min(_tiny(qbar.dtype))
        q_head = torch.where(head, q, torch.zeros_like(q)).amax()
        q_tail = torch.where(tail, q, torch.full_like(q, float("inf"))).amin()
        # no tail class in the batch: q_tail is unused, but an inf would make the gradient NaN (inf·0)
        q_tail = torch.where(tail.any(), q_tail, torch.ones_like(q_tail))
        ratio = torch.where(head, q / q_head.clamp_min(_tiny(q.dtype)), q_tail / q)
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


def moving_step_floor(epsilon: float, alpha: float, dtype: torch.dtype) -> int:
    """A number of steps that every class with s_c ≠ 0 takes at least, K_c >= this, for the bounds of
    Eq. 33 (ε_c >= ε) held in ``dtype``: ⌊ε/α⌋ taken at ε·(1 − 8·eps), since ε rounded to ``dtype`` may lie
    just below ε (by half an eps at most; the rest covers the rounding of the float64 division in
    :func:`step_counts`). Exactly ⌊ε/α⌋ for the usual float32 and float64 grids; one less with half
    precision when ε/α is an integer."""
    return fixed_step_count(epsilon * (1.0 - 8.0 * torch.finfo(dtype).eps), alpha)


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
def _group_index(target: Tensor, num_classes: int, keep: Tensor | None = None) -> Tensor:
    """For each sample, the index of the first sample of its class (N,).

    Rows sharing a group index belong to the same class, so class means over the batch are an
    ``index_add`` into N rows and a gather: O(N·C) per step, whatever C is. Built in O(N + C) (a
    scatter-min of the sample indices), labels in [0, ``num_classes``). With ``keep`` (N,) bool, rows not
    kept share no group: they all go to the extra group N."""
    n = target.shape[0]
    index = torch.arange(n, device=target.device)
    src = index if keep is None else torch.where(keep, index, n)
    first = torch.full((num_classes,), n, dtype=index.dtype, device=target.device)
    first = first.scatter_reduce(0, target, src, reduce="amin").index_select(0, target)
    return first if keep is None else torch.where(keep, first, n)


def _class_size(target: Tensor, num_classes: int, keep: Tensor | None = None) -> Tensor:
    """The size of each sample's class (N,) (int64): its kept rows with ``keep``, and 1 for a row not
    kept."""
    ones = torch.ones_like(target) if keep is None else keep.to(target.dtype)
    size = torch.zeros(num_classes, dtype=target.dtype, device=target.device)
    size = size.index_add(0, target, ones).index_select(0, target)
    return size if keep is None else torch.where(keep, size, 1)


def _loop_range(steps_i: Tensor, max_steps: int, early_stop: bool) -> tuple[int, int]:
    """``(length, unmasked)``: how many steps to run, and how many of the first ones every sample takes.

    Static (``max_steps``, 0) without ``early_stop``; otherwise the batch's largest K_{y_i} (capped at
    ``max_steps``) and its smallest (one host synchronisation)."""
    if not early_stop or max_steps <= 0 or steps_i.numel() == 0:
        return max(max_steps, 0), 0
    lo, hi = torch.stack(torch.aminmax(steps_i)).tolist()
    hi = min(hi, max_steps)
    return max(hi, 0), min(max(lo, 0), max(hi, 0))


#: Masked steps per ``torch.cond`` block when compiled on a CPU (see :func:`_skip_finished`). A block
#: costs about 10 µs beyond its steps there. At C = 100 with Δε = 0.2, blocks of 4 were faster than
#: blocks of 1 or 2 (which pay that cost more often), though they run up to 3 steps past the largest K_c.
_SKIP_BLOCK = 4


def _skip_finished(logits: Tensor, grad_needed: bool) -> bool:
    """Whether the static loop puts its masked steps in ``torch.cond`` blocks that run only while a class
    still moves: while ``torch.compile`` traces for a CPU, without autograd. There the compiled code
    reads the condition between blocks on the host at no cost, and the blocks past the batch's largest
    K_c (most of the loop with a varied bound: ⌊(ε + Δε)/α⌋ steps where the batch needs 10-13) are
    skipped instead of run with every row masked. The values are those of the full loop: a masked step
    in which no row moves returns δ unchanged. Not on a GPU (reading the condition would synchronise,
    and a CUDA graph cannot), not in eager mode (the loop stops early there), not with autograd."""
    return (
        not grad_needed and logits.device.type == "cpu" and _compiling() and hasattr(torch, "cond")
    )


def _run_block(advance: Callable[[Tensor, int], Tensor], delta: Tensor, block: range) -> Tensor:
    """The steps ``block`` of the loop, one ``advance(delta, k)`` each."""
    for k in block:
        delta = advance(delta, k)
    return delta


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
    prob: Tensor | None = None,
    min_steps: int = 0,
    fused: bool = False,
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
    ``prob``: softmax(``logits``) (N, C) if the caller has computed it; that path's first step (at δ = 0)
    reuses it. It must be exactly that softmax: it is not checked.

    ``min_steps``: a number of steps that every class with s_c ≠ 0 takes at least (K_c ≥ ``min_steps``;
    ⌊ε/α⌋ for the bounds of Eq. 33, which :func:`single_label_perturbation` passes). It is not checked.
    The per-sample loop runs its first ``min_steps`` steps without the mask: a class with s_c = 0 and
    ε_c = 0 stays at δ = 0 either way, so the values are the same, with two operations fewer per step
    (one kernel launch each on a GPU). Rows not kept form groups of their own, so they move alone in
    those steps, and are set to zero once at the end.

    ``fused``: without gradients, on a CUDA device with Triton or on the CPU where its C++ kernel builds,
    the whole loop runs as one kernel, one program or thread per class (:mod:`lpl_train.perturbation_fused`);
    the values agree with the torch loop to rounding. Elsewhere this argument changes nothing.
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
    if fused and not grad_needed and fused_loop_unavailable(logits) is None:
        return pgd_fused(
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
    if (
        early_stop
        and class_mean == "index"
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
            normalize_step=normalize_step,
            prob=prob,
        )
    steps_i = steps.to(logits.device)[target][:, None]  # K_{y_i}, (N, 1)
    if keep is not None:  # rows not kept never move: δ = 0
        steps_i = torch.where(keep[:, None], steps_i, torch.zeros_like(steps_i))
    length, unmasked = _loop_range(steps_i, max_steps, early_stop)
    # the index form's groups (the matrix forms need only the class sizes)
    by_index = class_mean == "index" and not normalize_step
    group = _group_index(target, c, keep) if by_index else None
    dtype = logits.dtype
    w = None
    if weight is not None:
        w = weight.to(dtype)
        size = _class_mass(target, w, c).index_select(0, target)  # class mass of each row's class
    else:
        size = _class_size(target, c, keep)
    scale = (alpha * sign.to(dtype))[target][:, None]  # α·s_{y_i}
    mean_scale = scale / size[:, None].to(dtype)  # α·s_{y_i} / N_{y_i}
    radius = bounds.to(dtype)[target][:, None].clamp_min(_tiny(dtype))
    onehot = F.one_hot(target, c).to(dtype)
    shift = scale * onehot  # the constant part α·s·y_i of the step
    if not by_index:
        same = (target[:, None] == target[None, :]).to(dtype)
        if w is not None:
            same = same * w[None, :]
        elif keep is not None:
            same = same * keep[None, :].to(dtype)
        mean_matrix = same / size[:, None].to(dtype)
        step_matrix = mean_scale * same  # row i: α·s_{y_i}/N_{y_i} on the samples of class y_i
    if grad_needed and length == 0 and max_steps > 0:
        length = 1  # one masked step keeps δ connected to the graph, as the full loop does
    # the steps every moving class takes need no mask (rows not kept move then, alone: reset at the end)
    unmasked = max(unmasked, min(max(min_steps, 0), length))
    # Plain ints where torch.compile traced them as symbols (from a float hyper-parameter it made
    # dynamic after a change): the loop is unrolled, which fixes them anyway, and a torch.cond block
    # cannot take a symbol in (inductor refuses it). operator.index specialises them; int() would not.
    length, unmasked = operator.index(length), operator.index(unmasked)
    delta = torch.zeros_like(logits)
    extra = 0 if keep is None else 1  # the group of the rows not kept
    # torch.compile on a CPU: the masked steps go in blocks that run only while a class still moves
    skip = length > unmasked and _skip_finished(logits, grad_needed)
    # the masks of the later steps, made at once: (N, 1) each (views of one tensor, which a torch.cond
    # block may not take as inputs: the blocks compare the step counts themselves)
    live: Sequence[Tensor] = ()
    if not skip:
        later = torch.arange(unmasked, length, device=steps_i.device)
        live = (later[:, None, None] < steps_i).unbind(0)
    # the class sums start from one zero buffer (the index form only: the matrix forms and the
    # step-normalised loop take none); without autograd and outside the blocks it is summed into in
    # place (the static path, under compile or capture), else added to out of place (kept zero)
    sums = logits.new_zeros(n + extra, c) if by_index else None
    in_place = not grad_needed and not skip

    def advance(delta: Tensor, k: int) -> Tensor:
        """Step ``k`` of the loop: δ updated where the row's class still moves."""
        prob = torch.softmax(logits + delta, dim=1)
        if normalize_step:
            grad = mean_matrix @ prob - onehot
            grad = grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min(
                _tiny(dtype)
            )
            moved = delta + scale * grad
        elif class_mean == "matmul":
            moved = torch.addmm(delta - shift, step_matrix, prob)
        else:
            rows = prob if w is None else prob * w[:, None]
            if in_place:
                class_sum = sums.zero_().index_add_(0, group, rows)
            else:
                class_sum = sums.index_add(0, group, rows)
            class_sum = class_sum.index_select(0, group)
            moved = torch.addcmul(delta - shift, mean_scale, class_sum)
        norm = torch.linalg.vector_norm(moved, dim=1, keepdim=True)
        moved = moved * (radius / norm.clamp_min(radius))  # projection onto ‖δ‖ ≤ ε_c
        if k < unmasked:
            return moved
        return torch.where(live[k - unmasked] if live else k < steps_i, moved, delta)

    if not skip:
        for k in range(length):
            delta = advance(delta, k)
    else:
        for k in range(unmasked):
            delta = advance(delta, k)
        for first in range(unmasked, length, _SKIP_BLOCK):
            block = range(first, min(first + _SKIP_BLOCK, length))
            delta = torch.cond(
                (steps_i > first).any(),  # a row still moves: the batch's largest K_c is past first
                lambda d, block=block: _run_block(advance, d, block),
                lambda d: d.clone(),
                (delta,),
            )
    if keep is not None and unmasked > 0:
        delta = torch.where(keep[:, None], delta, torch.zeros_like(delta))
    return delta


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
    check: bool = True,
    fused: bool = False,
) -> SinglePerturbation:
    """Class-level logit perturbation for single-label learning (Eqs. 26-33, Algorithms 1-2, steps 4-6).

    ``logits`` (N, C) floating and ``target`` (N,) int64 labels in [0, C) are taken as valid (the
    losses validate them). The split and bounds come from the batch statistics; the PGD-like loop then
    infers δ. Gradients flow through everything when grad mode is on; the losses call it under
    ``torch.no_grad()`` unless ``differentiable=True``.

    ``weight`` (N,) >= 0: row masses (see :func:`class_statistics`); probability targets are handled by
    the losses as one row per (sample, class) pair weighted by the target's mass (``docs/lpl.md``).
    ``keep`` (N,) bool: rows to use (the others, e.g. ``ignore_index`` rows, are left out at no per-step
    cost; all kept gives the result without ``keep``, bit for bit). ``check``: refuse a bad ``alpha``,
    ``epsilon`` or ``delta_epsilon`` and more than MAX_STEPS inner steps, as the losses do when they are
    built (they pass False: their values are checked once, not every step); skipped while torch.compile
    traces, where the values may be symbolic. ``fused``: the inner loop as one kernel where it
    applies (see :func:`pgd_like_perturbation`).
    """
    if check and not _compiling():
        check_positive(alpha, "alpha")
        check_non_negative(epsilon, "epsilon")
        check_non_negative(delta_epsilon, "delta_epsilon")
        check_step_budget(epsilon, delta_epsilon, alpha)
    c = logits.shape[1]
    if weight is not None and keep is not None:
        raise ValueError("give at most one of weight and keep")
    mass = weight if keep is None else keep.to(logits.dtype)
    counts, qbar, prob = _statistics(logits, target, c, mass)
    present = counts > 0
    sign, tau_t = split_signs(qbar, present, split=split, tau=tau, rank=rank, head=head)
    # ε_c in float32 at least: held in half precision, ε = 0.7 is 0.699 (bfloat16) and ε = 0.2 is
    # 0.19995 (float16), and K_c = ⌊ε_c/α⌋ lost a step (6 for 0.7/0.1, 19 for 0.2/0.01)
    bounds = class_bounds(
        _work_dtype(qbar),
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
        prob=prob,
        min_steps=moving_step_floor(epsilon, alpha, bounds.dtype),
        fused=fused,
    )
    return SinglePerturbation(delta, sign, bounds, steps, tau_t, qbar, counts)
