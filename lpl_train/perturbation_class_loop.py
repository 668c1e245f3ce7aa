"""The inner loop of Algorithm 1 without autograd, one row per class present (``_pgd_by_class``).

:func:`lpl_train.perturbation.pgd_like_perturbation` takes this path for its ``index`` class means when
no gradient is needed and the loop may stop early (eager mode; the default on CPU). Every sample of a
class carries the same δ, so the update, the norm and the projection are done once per class present
(G rows instead of N). The bookkeeping (class order, slices, step counts) is done once per call on the
host, on N + C integers; the loop itself is a fixed sequence of in-place operations on preallocated
buffers. Each value is computed by the same operations in the same order as in the per-sample loop, so
the result is identical (``tests/train/test_perturbation_speedpath.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .perturbation_checks import _TINY


class _Layout(NamedTuple):
    """Host bookkeeping of one call: the loop's rows sorted by (K_c descending, label), batch order kept
    within a class.

    ``order`` (M,): batch row of each sorted sample; ``row_class`` (M,): its class slot; ``sample_class``
    (N,): the class slot of each batch row (G, the zero row, for rows left out); ``labels`` (G,) and
    ``size`` (G,): label and sample count of each slot; ``phases``: ``(start, stop, classes, rows)``, the
    steps ``start <= k < stop`` during which the first ``classes`` slots (their first ``rows`` samples)
    move; ``kept_all``: no row is left out."""

    order: np.ndarray
    row_class: np.ndarray
    sample_class: np.ndarray
    labels: np.ndarray
    size: np.ndarray
    phases: list[tuple[int, int, int, int]]
    kept_all: bool


def _layout(
    target: Tensor, steps: Tensor, keep: Tensor | None, num_classes: int, max_steps: int
) -> _Layout | None:
    """The :class:`_Layout` of a call (one host read of the labels, ``keep`` and the step counts); None
    when no row is kept."""
    n, c = target.shape[0], num_classes
    if keep is None:
        y = target.detach().cpu().numpy()
        kept = None
    else:
        y, kept_mask = torch.stack((target.detach(), keep.detach().to(target.dtype))).cpu().numpy()
        kept = kept_mask.nonzero()[0]  # the rows kept, in batch order
        if len(kept) == n:
            kept = None
        elif len(kept) == 0:
            return None
        else:
            y = y[kept]
    m = len(y)  # rows in the loop
    k_all = steps.detach()
    if k_all.is_floating_point():  # class c moves at the steps k < K_c
        k_all = k_all.ceil()
    k_row = k_all.long().clamp(0, max(max_steps, 0)).cpu().numpy()[y]
    # sort key: larger K_c first, then label; the stable sort keeps the batch order within a class
    key = (max_steps - k_row) * c + y
    order = np.argsort(key, kind="stable")
    key = key[order]
    new_class = np.empty(m, dtype=bool)
    new_class[0] = True
    np.not_equal(key[1:], key[:-1], out=new_class[1:])
    row_class = np.cumsum(new_class) - 1  # class slot of each sorted sample
    starts = new_class.nonzero()[0]
    keys = key[starts]
    g = len(starts)
    ends = np.append(starts[1:], m)  # one past the last sorted sample of each slot
    k_slot = max_steps - keys // c  # K_c of the slots, descending
    # Phases: the classes with K_c > k are the leading slots; they change where K_c does. ``last``:
    # the last slot of each distinct K_c, in the order of K_c ascending.
    last = np.append(np.flatnonzero(k_slot[1:] != k_slot[:-1]), g - 1)[::-1]
    phases, start = [], 0
    for stop, classes, rows in zip(
        k_slot[last].tolist(), (last + 1).tolist(), ends[last].tolist(), strict=True
    ):
        if stop > start:
            phases.append((start, stop, classes, rows))
            start = stop
    if kept is None:
        sample_class = np.empty_like(row_class)
        sample_class[order] = row_class
    else:
        order = kept[order]  # batch rows of the sorted samples
        sample_class = np.full(n, g, dtype=row_class.dtype)  # rows not kept: the zero row g
        sample_class[order] = row_class
    return _Layout(order, row_class, sample_class, keys % c, ends - starts, phases, kept is None)


def _class_mass(target: Tensor, weight: Tensor, num_classes: int) -> Tensor:
    """Σ_{y_i=c} w_i per class (C,), in the dtype of ``weight``; 1 for a class of mass 0 (the losses give
    such a class sign 0, so it does not move: its divisor only has to be harmless). Rows are added in
    batch order."""
    mass = weight.new_zeros(num_classes).index_add(0, target, weight)
    return torch.where(mass > 0, mass, torch.ones_like(mass))


def _lead(t: Tensor, m: int) -> Tensor:
    """The first ``m`` rows of ``t``; ``t`` itself when that is all of it (ops on it are cheaper)."""
    return t if m == t.shape[0] else t[:m]


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
    normalize_step: bool = False,
    prob: Tensor | None = None,
) -> Tensor:
    """The ``index`` loop of :func:`~lpl_train.perturbation.pgd_like_perturbation` without autograd,
    stopping early.

    Classes are ordered by K_c (largest first) and the samples by class, keeping their batch order within
    a class, so the classes still moving at step k and their samples are leading slices: the loop works on
    fewer rows as classes finish, with no mask, and ends at the largest K_c. Buffers are allocated once.
    Each value is computed by the same operations in the same order as in the per-sample loop (class sums
    accumulate the samples of a class in batch order), so the result is identical. One host
    synchronisation reads the step counts (with the labels and ``keep``).

    ``weight``: the rows' probabilities are scaled by their masses before the class sums, which are
    divided by the class mass (as in the per-sample loop). ``keep``: the rows not kept are left out of
    the loop altogether and read a zero row of δ at the end. ``normalize_step``: the class step (class
    mean of the probabilities minus the one-hot label) is scaled to length α before the update; the
    per-sample loop takes its class means with a matrix product there, so the two agree to rounding (not
    bit for bit). ``prob``: softmax(``logits``) (N, C) when the caller has it already; the first step,
    taken at δ = 0, reuses it instead of computing it again (the same values).
    """
    n, c = logits.shape
    dtype, device = logits.dtype, logits.device
    lay = _layout(target, steps, keep, c, max_steps) if n else None
    if lay is None:
        return torch.zeros_like(logits)
    m, g = len(lay.order), len(lay.labels)
    index = torch.from_numpy(
        np.concatenate((lay.order, lay.row_class, lay.sample_class, lay.labels))
    )
    order, row_class, sample_class, labels = index.to(device).split((m, m, n, g))
    per_class = torch.stack((alpha * sign.to(dtype), bounds.to(dtype)), 1).index_select(0, labels)
    scale = per_class[:, :1]  # α·s_c
    if weight is None:
        mass = torch.from_numpy(lay.size[:, None]).to(device=device, dtype=dtype)  # N_c
        row_mass = None
    else:
        w = weight.detach().to(dtype)
        mass = _class_mass(target, w, c).index_select(0, labels)[:, None]  # Σ_{y_i=c} w_i
        row_mass = w.index_select(0, order)[:, None]
    mean_scale = scale / mass  # α·s_c / N_c
    radius = per_class[:, 1:].clamp_min(_TINY)
    onehot = logits.new_zeros(g, c).scatter_(1, labels[:, None], 1.0)
    shift = scale * onehot  # α·s_c·e_c
    sorted_logits = logits.index_select(0, order)
    first = None if prob is None else prob.index_select(0, order)  # softmax(u_i + 0)
    delta = logits.new_zeros(
        g + (not lay.kept_all), c
    )  # one row per class present (+ the zero row)
    class_sum = torch.empty_like(shift)
    step = torch.empty_like(shift) if normalize_step else None  # the normalised class step
    work = torch.empty_like(sorted_logits)
    factor = radius.new_empty(radius.shape)
    index_select, softmax, vector_norm, div = (
        torch.index_select,
        torch.softmax,
        torch.linalg.vector_norm,
        torch.div,
    )
    for start, stop, classes, rows in lay.phases:
        # the same classes move during these steps: slice once
        r_class, z, u = (_lead(t, rows) for t in (row_class, work, sorted_logits))
        s, d, f, r, sh, ms = (
            _lead(t, classes) for t in (class_sum, delta, factor, radius, shift, mean_scale)
        )
        if step is not None:
            st, ma, oh, sc = (_lead(t, classes) for t in (step, mass, onehot, scale))
        wr = None if row_mass is None else _lead(row_mass, rows)
        for k in range(start, stop):
            if k == 0 and first is not None:
                p = _lead(first, rows)
            else:
                p = softmax(
                    index_select(delta, 0, r_class, out=z).add_(u), dim=1
                )  # at u_i + δ_{y_i}
            if wr is not None:
                p = p.mul_(wr)  # w_i·p_i
            s.zero_().index_add_(0, r_class, p)
            if step is None:
                d.sub_(sh).addcmul_(ms, s)
            else:  # δ_c += α·s_c·g/‖g‖, g = class mean of the probabilities − e_c
                div(s, ma, out=st).sub_(oh)
                vector_norm(st, dim=1, keepdim=True, out=f)
                d.addcmul_(sc, st.div_(f.clamp_min_(_TINY)))
            vector_norm(d, dim=1, keepdim=True, out=f)
            d.mul_(div(r, f.clamp_min_(r), out=f))  # projection onto ‖δ‖ ≤ ε_c
    return delta.index_select(0, sample_class)
