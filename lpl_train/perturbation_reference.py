"""The literal reference of LPL's inner loop: the specification the fast path must match.

This module holds the straightforward implementation of the per-class loop of Algorithm 1 (the PGD-like
optimisation of Eqs. 30-32) and of the authors'-code presets (``authors_class_step`` and the balanced
and long-tail perturbations built on it), written for readability: fresh tensors every step, an N × N
class grouping, a static loop of ``max_steps`` masked per-sample steps, C × C work in the authors' step.
It is slow and is not used in training. The tests (``tests/train/test_perturbation_speedpath.py``) and
the benchmark (``benchmarks/bench_lpl.py``) take it as the specification that the optimised code in
:mod:`lpl_train.perturbation` must match value for value (``torch.equal``, values and gradients).

It never calls the inner loop it checks (:func:`lpl_train.perturbation.pgd_like_perturbation`,
``_pgd_by_class``, ``_group_index``, ``authors_class_step`` and the preset perturbations). The
class-level inputs of the loop (signs, bounds, step counts: :func:`pipeline_inputs`, and the authors'
varied step counts and schedule) come from :mod:`lpl_train.perturbation`'s own class-level functions, which the
loop's value does not depend on beyond those inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lpl_train import perturbation as P
from lpl_train.losses.lpl import LPLLoss

__all__ = [
    "ReferenceLPLLoss",
    "loop_reference_loss",
    "pipeline_inputs",
    "reference_authors_balanced_fixed",
    "reference_authors_balanced_varied",
    "reference_authors_class_step",
    "reference_authors_longtail",
    "reference_group_index",
    "reference_pgd",
    "reference_pgd_masked",
]

_TINY = 1e-30


# ------------------------------------------------------------------ the paper's inner loop
def reference_group_index(target: Tensor) -> tuple[Tensor, Tensor]:
    """For each sample, the index of the first sample of its class and the size of its class, (N,) each,
    from an N × N comparison (quadratic in the batch size).

    Rows sharing a group index belong to the same class, so class means over the batch are an
    ``index_add`` into N rows and a gather: O(N·C) per step, whatever C is."""
    same = target[:, None] == target[None, :]
    first = same.to(torch.uint8).argmax(dim=1)
    return first, same.sum(dim=1)


def reference_pgd(
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
) -> Tensor:
    """The PGD-like optimisation of Algorithm 1 for all classes at once; returns δ per sample (N, C).

    Class c (sign s_c, bound ε_c, K_c steps) does K_c updates
    δ_c ← Π_{‖·‖≤ε_c}(δ_c + s_c·α·mean_{i∈S_c}(softmax(u_i + δ_c) − y_i)) (Eqs. 30-32: s_c = +1 is the
    maximisation step of Eq. 31, s_c = −1 the minimisation step of Eq. 32), the gradient re-evaluated
    at the perturbed logits each step. Row i of the result is δ_{y_i}. The loop runs ``max_steps``
    times; a class stops (its δ is kept) once its K_c updates are done. With ``normalize_step`` each
    class step is scaled to length α (the direction of Eq. 31 with a fixed step length).

    ``class_mean`` chooses how class means are taken, with the same result: ``"index"`` (an
    ``index_add`` over the batch, O(N·C), fastest on CPU), ``"matmul"`` (one fused N × N matrix product
    per step, fewest kernels, fastest on GPUs) or ``"auto"`` (index on CPU, matmul elsewhere).

    Differentiable with respect to ``logits`` (and ``bounds``) when called with grad enabled.
    """
    n, c = logits.shape
    if class_mean == "auto":
        class_mean = "index" if logits.device.type == "cpu" else "matmul"
    if class_mean not in ("index", "matmul"):
        raise ValueError(f"class_mean must be 'auto', 'index' or 'matmul', got {class_mean!r}")
    group, size = reference_group_index(target)
    onehot = F.one_hot(target, c).to(logits.dtype)
    scale = (alpha * sign.to(logits.dtype))[target][:, None]  # α·s_{y_i}
    mean_scale = scale / size[:, None].to(logits.dtype)  # α·s_{y_i} / N_{y_i}
    radius = bounds.to(logits.dtype)[target][:, None].clamp_min(_TINY)
    active = (
        torch.arange(max_steps, device=logits.device)[:, None, None]
        < steps.to(logits.device)[target][:, None]
    )
    shift = scale * onehot  # the constant part α·s·y_i of the step
    if class_mean == "matmul" or normalize_step:
        same = (target[:, None] == target[None, :]).to(logits.dtype)
        mean_matrix = same / size[:, None].to(logits.dtype)
        step_matrix = mean_scale * same  # row i: α·s_{y_i}/N_{y_i} on the samples of class y_i
    delta = torch.zeros_like(logits)
    for k in range(max_steps):
        prob = torch.softmax(logits + delta, dim=1)
        if normalize_step:
            grad = mean_matrix @ prob - onehot
            grad = grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min(_TINY)
            moved = delta + scale * grad
        elif class_mean == "matmul":
            moved = torch.addmm(delta - shift, step_matrix, prob)
        else:
            class_sum = logits.new_zeros(n, c).index_add(0, group, prob)[group]
            moved = torch.addcmul(delta - shift, mean_scale, class_sum)
        norm = torch.linalg.vector_norm(moved, dim=1, keepdim=True)
        moved = moved * (radius / norm.clamp_min(radius))  # projection onto ‖δ‖ ≤ ε_c
        delta = torch.where(active[k], moved, delta)
    return delta


def reference_pgd_masked(
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
    """The per-sample inner loop that took ignored rows (``keep``) and row masses (``weight``) before
    they went through the per-class loop (index path, no autograd): it stops at the batch's largest
    K_c, groups in O(N + C) with one extra group for the rows not kept, reuses one buffer for the class
    sums, and takes the class masses of weighted rows from an N × N masked sum."""
    n, c = logits.shape
    max_steps = min(max_steps, int(steps.max())) if steps.numel() else 0
    idx = torch.arange(n, device=target.device)
    src = idx if keep is None else torch.where(keep, idx, n)
    first_of = torch.full((c,), n, dtype=torch.long, device=target.device)
    first_of = first_of.scatter_reduce(0, target, src, reduce="amin")
    ones = torch.ones_like(idx) if keep is None else keep.long()
    counts = torch.zeros(c, dtype=torch.long, device=target.device).index_add(0, target, ones)
    group, size = first_of.index_select(0, target), counts.index_select(0, target)
    if keep is not None:
        group, size = torch.where(keep, group, n), torch.where(keep, size, 1)
    w = None
    if weight is not None:
        w = weight.to(logits.dtype)
        same_w = (target[:, None] == target[None, :]).to(logits.dtype) * w[None, :]
        size = same_w.sum(dim=1)
        size = torch.where(size > 0, size, torch.ones_like(size))
    onehot = F.one_hot(target, c).to(logits.dtype)
    scale = (alpha * sign.to(logits.dtype))[target][:, None]
    mean_scale = scale / size[:, None].to(logits.dtype)
    radius = bounds.to(logits.dtype)[target][:, None].clamp_min(_TINY)
    active = (
        torch.arange(max_steps, device=logits.device)[:, None, None]
        < steps.to(logits.device)[target][:, None]
    )
    shift = scale * onehot
    delta = torch.zeros_like(logits)
    sums = logits.new_zeros(n + (keep is not None), c)
    for k in range(max_steps):
        prob = torch.softmax(logits + delta, dim=1)
        rows = prob if w is None else prob * w[:, None]
        class_sum = sums.zero_().index_add_(0, group, rows).index_select(0, group)
        moved = torch.addcmul(delta - shift, mean_scale, class_sum)
        norm = torch.linalg.vector_norm(moved, dim=1, keepdim=True)
        moved = moved * (radius / norm.clamp_min(radius))
        delta = torch.where(active[k], moved, delta)
    return delta


# ------------------------------------------------------------------ the loss around it
def pipeline_inputs(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float,
    epsilon: float,
    delta_epsilon: float,
    split: str = "mean",
    tau: float | None = None,
    rank: Tensor | None = None,
    head: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """sign, bounds, K_c and the static loop length of the paper's pipeline for one batch (Eqs. 27-29,
    33), from :mod:`lpl_train.perturbation`'s class-level functions: the inputs of the inner loop."""
    c = logits.shape[1]
    counts, qbar = P.class_statistics(logits, target, c)
    sign, tau_t = P.split_signs(qbar, counts > 0, split=split, tau=tau, rank=rank, head=head)
    bounds = P.class_bounds(
        qbar, sign, tau_t, epsilon=epsilon, delta_epsilon=delta_epsilon, split=split
    )
    max_steps = P.fixed_step_count(epsilon + delta_epsilon, alpha)
    return sign, bounds, P.step_counts(bounds, alpha, max_steps), max_steps


class ReferenceLPLLoss(LPLLoss):
    """:class:`LPLLoss` (mean split, class-index targets, no ignored rows) with :func:`reference_pgd`
    (index path) as its inner loop."""

    def _delta(
        self,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        if weight is not None or keep is not None:
            raise ValueError("ReferenceLPLLoss takes class-index targets with no ignored rows")
        sign, bounds, steps, max_steps = pipeline_inputs(
            logits,
            target,
            alpha=self.alpha,
            epsilon=self.epsilon,
            delta_epsilon=self.delta_epsilon,
            split=self.split,
            tau=self.tau,
        )
        return reference_pgd(
            logits,
            target,
            sign,
            bounds,
            steps,
            alpha=self.alpha,
            max_steps=max_steps,
            normalize_step=self.normalize_step,
            class_mean="index",
        )


def loop_reference_loss(logits: Tensor, target: Tensor, *, alpha: float, epsilon: float) -> Tensor:
    """LPL (mean split, fixed bound ``epsilon``) written the straightforward way: a Python loop over
    classes and over the K = ⌊ε/α⌋ steps of Algorithm 1, then cross-entropy on the perturbed logits."""
    c = logits.shape[1]
    u = logits.detach()
    prob = u.softmax(1)
    classes = [int(k) for k in torch.unique(target)]
    qbar = {k: float(prob[target == k, k].mean()) for k in classes}
    tau = sum(qbar.values()) / len(classes)
    delta = torch.zeros_like(u)
    steps = math.floor(epsilon / alpha * (1 + 1e-6))
    for k in classes:
        sign = math.copysign(1.0, tau - qbar[k]) if qbar[k] != tau else 0.0
        idx = target == k
        onehot = F.one_hot(target[idx], c).to(u.dtype)
        d = torch.zeros(c, dtype=u.dtype, device=u.device)
        for _ in range(steps if sign else 0):
            d = d + sign * alpha * (torch.softmax(u[idx] + d, 1) - onehot).mean(0)
            norm = float(d.norm())
            if norm > epsilon:
                d = d * (epsilon / norm)
        delta[idx] = d
    return F.cross_entropy(logits + delta, target)


# ------------------------------------------------------------------ the authors'-code presets
def reference_authors_class_step(
    logits: Tensor, target: Tensor, alpha: float, sign: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the authors' shared primitive (``compute_adv_sign``), per sample (N, C), with C × C
    work throughout and an identity matrix each call.

    With P = softmax(U) and n_c the batch count (replaced by 100 when 0): M[c] = Σ_{y_i=c} P_i / n_c,
    q̄_c = M[c, c], G = M − I, row c of G divided by the L2 norm of *column* c, τ = mean of q̄ over all
    C classes (absent ones count as 0), s_c = S(τ − q̄_c) unless ``sign`` is given, and the step of
    sample i is α·s_{y_i}·G[y_i]. The norm is floored at 1e-30 (the scripts divide 0/0 into NaN).
    Returns ``(step, qbar, tau)``.
    """
    c = logits.shape[1]
    prob = logits.softmax(dim=1)
    counts = logits.new_zeros(c).index_add(0, target, torch.ones_like(prob[:, 0]))
    counts = torch.where(counts == 0, torch.full_like(counts, 100.0), counts)
    m = logits.new_zeros(c, c).index_add(0, target, prob) / counts[:, None]
    qbar = m.diagonal()
    g = m - torch.eye(c, dtype=logits.dtype, device=logits.device)
    g = g / g.norm(dim=0).clamp_min(_TINY)[:, None]
    tau = qbar.mean()
    s = torch.sign(tau - qbar) if sign is None else sign.to(logits)
    step = alpha * (s[:, None] * g)
    return step[target], qbar, tau


def reference_authors_balanced_fixed(
    logits: Tensor, target: Tensor, *, alpha: float = 0.005, steps: int = 20
) -> Tensor:
    """``lpl-balanced/networks/train.py``: ``steps`` iterations U ← U + step(U) of
    :func:`reference_authors_class_step` (signs and τ recomputed each time); returns U_P − U."""
    u = logits
    for _ in range(steps):
        u = u + reference_authors_class_step(u, target, alpha)[0]
    return u - logits


def reference_authors_balanced_varied(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.01,
    steps: int = 40,
    variant: str = "train_lpl",
) -> Tensor:
    """``lpl-balanced/train_lpl.py`` (``variant="train_lpl"``) or ``networks/train_var.py``
    (``variant="train_var"``): K_c from :func:`lpl_train.perturbation.authors_varied_step_counts` on the
    unperturbed logits, then iterations that each recompute a = step(L) and do L += a; snapshot_i = L;
    L += a (the step is applied twice); sample i takes snapshot_{K_{y_i}}. Returns the perturbation
    (N, C). The schedule (K_c's base and scale, the number of iterations) is a class-level input:
    :func:`lpl_train.perturbation.authors_varied_schedule`."""
    base, scale, iterations = P.authors_varied_schedule(steps, variant)
    _, qbar, tau = reference_authors_class_step(logits, target, alpha)
    k_c = P.authors_varied_step_counts(qbar, tau, base=base, scale=scale)
    k_i = k_c[target][:, None]
    u = logits
    out = logits
    for i in range(iterations):
        a = reference_authors_class_step(u, target, alpha)[0]
        u = u + a
        out = torch.where(k_i == i, u, out)
        u = u + a
    return out - logits


def reference_authors_longtail(
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
    k_i = k[target][:, None]
    u = logits
    out = logits
    for i in range(iterations):
        u = u + reference_authors_class_step(u, target, alpha, sign=sign)[0]
        out = torch.where(k_i == i, u, out)
    return out - logits
