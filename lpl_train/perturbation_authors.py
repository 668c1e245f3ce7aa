"""The authors' released scripts' perturbation, reproduced on purpose and bugs included.

These presets are not the paper's method (see ``docs/lpl.md``): :func:`authors_class_step` is the
scripts' shared primitive (``compute_adv_sign``), and the balanced (fixed and varied) and long-tail
perturbations are the loops built on it. They are re-exported by :mod:`lpl_train.perturbation`, which is
where callers import them from; this module depends only on :mod:`lpl_train.perturbation_checks`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from .perturbation_checks import _TINY, _can_read_back, check_class_counts

__all__ = [
    "authors_balanced_fixed_perturbation",
    "authors_balanced_varied_perturbation",
    "authors_class_step",
    "authors_longtail_perturbation",
    "authors_longtail_schedule",
    "authors_varied_schedule",
    "authors_varied_step_counts",
]


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


def _varied_schedule(steps: int, variant: str) -> tuple[int, float, int, int]:
    if variant == "train_lpl":
        base, scale, iterations = steps, 0.1 * steps, round(1.1 * steps)
    elif variant == "train_var":
        base, scale, iterations = 0, float(steps), steps
    else:
        raise ValueError(f"variant must be 'train_lpl' or 'train_var', got {variant!r}")
    largest = base + max(0, round(scale - 1.0))  # the largest snapshot index a class can take
    return base, scale, iterations, largest


def authors_varied_schedule(steps: int, variant: str = "train_lpl") -> tuple[int, float, int]:
    """``(base, scale, iterations)`` of the authors' varied-bound scripts for ``steps`` = P: K_c =
    base + round(scale·ratio − 1) (clamped at 0) and the number of iterations, ``train_lpl``: (P, 0.1·P,
    round(1.1·P)), ``train_var``: (0, P, P). Raises ``ValueError`` where the iterations' snapshots hold
    none that some class takes (``train_lpl`` with P < 5; the script fails there), naming the smallest
    P that works."""
    base, scale, iterations, largest = _varied_schedule(steps, variant)
    if not _fits(steps, variant):
        enough = next(p for p in itertools.count(steps + 1) if _fits(p, variant))
        raise ValueError(
            f"steps={steps} is too short for variant {variant!r}: its {iterations} iterations give "
            f"snapshots 0..{iterations - 1}, but the classes take snapshots {base}..{largest} (the "
            f"script fails there); give steps >= {enough}"
        )
    return base, scale, iterations


def _fits(steps: int, variant: str) -> bool:
    """Whether the iterations of ``steps`` hold every snapshot a class can take."""
    _, _, iterations, largest = _varied_schedule(steps, variant)
    return largest < iterations


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
    base, scale, iterations = authors_varied_schedule(steps, variant)
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
