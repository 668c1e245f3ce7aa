"""Values of the class-level perturbation (Eqs. 27-41, Algorithm 1) and of the authors'-code presets."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpl_train import perturbation as P

torch.set_flush_denormal(True)


def _loop_reference(
    u,
    y,
    *,
    alpha,
    epsilon,
    delta_epsilon=0.0,
    split="mean",
    tau=None,
    head=None,
    rank=None,
    bounds=None,
):
    """Straightforward per-class Python loop of Eqs. 27, 28, 31-33 and Algorithm 1 (float64 numpy).

    ``bounds``: per-class ε_c given by the caller (worked out by hand), instead of Eq. 33's first form."""
    u = u.double().numpy()
    y = y.numpy()
    n, c = u.shape
    p = np.exp(u - u.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    present = [k for k in range(c) if (y == k).any()]
    qbar = {k: p[y == k, k].mean() for k in present}
    if split == "mean":
        t = sum(qbar.values()) / len(present)
    else:
        t = tau
    delta = np.zeros((n, c))
    info = {}
    for k in present:
        if split == "index":
            s = -1.0 if rank[k] < head else 1.0
        else:
            s = float(np.sign(t - qbar[k]))
        eps_c = epsilon + delta_epsilon * abs(t - qbar[k]) if split != "index" else epsilon
        if bounds is not None:
            eps_c = bounds[k]
        steps = math.floor(eps_c / alpha + 1e-9) if s != 0 else 0
        idx = y == k
        onehot = np.eye(c)[k]
        d = np.zeros(c)
        for _ in range(steps):
            z = u[idx] + d
            q = np.exp(z - z.max(1, keepdims=True))
            q /= q.sum(1, keepdims=True)
            d = d + s * alpha * (q - onehot).mean(0)
            norm = np.linalg.norm(d)
            if norm > eps_c:
                d = d * eps_c / norm
        delta[idx] = d
        info[k] = (s, eps_c, steps)
    return delta, info, t


def _batch(n=40, c=6, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, c, (n,), generator=g)
    return u, y


# ------------------------------------------------------------------------------------------ statistics
def test_class_statistics_hand_built_batch():
    # logits giving softmax rows [0.5, 0.25, 0.25] and [0.25, 0.5, 0.25] etc.
    u = torch.log(torch.tensor([[2.0, 1, 1], [1, 2, 1], [1, 1, 2], [2, 1, 1]], dtype=torch.float64))
    y = torch.tensor([0, 0, 2, 0])
    counts, qbar = P.class_statistics(u, y, 4 - 1)
    assert counts.tolist() == [3.0, 0.0, 1.0]
    # class 0: q_{i,0} = 0.5, 0.25, 0.5 -> 5/12; class 2: 0.5; class 1 absent -> 0
    assert qbar.tolist() == pytest.approx([5 / 12, 0.0, 0.5])


def test_mean_split_on_hand_built_batch_ignores_absent_classes():
    u = torch.log(torch.tensor([[2.0, 1, 1, 1], [1, 3, 1, 1], [1, 1, 1, 1]], dtype=torch.float64))
    y = torch.tensor([0, 1, 2])
    counts, qbar = P.class_statistics(u, y, 4)
    sign, tau = P.split_signs(qbar, counts > 0, split="mean")
    # q̄ = [2/5, 3/6, 1/4, absent]; τ over present classes only = (0.4 + 0.5 + 0.25) / 3
    assert float(tau) == pytest.approx((0.4 + 0.5 + 0.25) / 3)
    assert sign.tolist() == [-1.0, -1.0, 1.0, 0.0]  # q̄ < τ -> +1 (maximised); absent -> 0
    sign_v, tau_v = P.split_signs(qbar, counts > 0, split="value", tau=0.45)
    assert float(tau_v) == 0.45 and sign_v.tolist() == [1.0, -1.0, 1.0, 0.0]
    sign_i, _ = P.split_signs(
        qbar, counts > 0, split="index", rank=torch.tensor([3, 0, 1, 2]), head=2
    )
    assert sign_i.tolist() == [1.0, -1.0, -1.0, 0.0]


@pytest.mark.parametrize("c", [3, 7, 10, 100])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_split_with_every_present_class_tied_perturbs_none(c, dtype):
    """Equal logits (e.g. a zero-initialised head) give every present class q̄ = 1/C = τ: no class is
    on either side. The rounded mean of C equal values fell one ulp off them (C = 7 in float64, C = 10
    in float32), which gave every class the same sign and a δ of norm 0.25-0.27 (ε = 0.3, α = 0.1)."""
    u = torch.zeros(2 * c, c, dtype=dtype)
    y = torch.arange(c).repeat(2)
    out = P.single_label_perturbation(u, y, alpha=0.1, epsilon=0.3, delta_epsilon=0.2)
    assert float(out.tau) == float(out.qbar[0])
    assert out.sign.tolist() == [0.0] * c
    assert torch.equal(out.delta, torch.zeros_like(out.delta))
    # the clamp to [min, max] of the present q̄ leaves an untied mean and the absent classes as they were
    qbar = torch.tensor([0.2, 0.5, 0.3, 0.0], dtype=dtype)
    sign, tau = P.split_signs(qbar, torch.tensor([True, True, True, False]), split="mean")
    assert float(tau) == pytest.approx(1 / 3) and sign.tolist() == [1.0, -1.0, 1.0, 0.0]
    none = P.split_signs(qbar, torch.zeros(4, dtype=torch.bool), split="mean")
    assert float(none[1]) == 0.0 and none[0].tolist() == [0.0] * 4


def test_class_rank_and_index_threshold():
    assert P.class_rank([5, 50, 20, 20]).tolist() == [3, 0, 1, 2]  # ties by class index
    assert P.index_threshold(0.4, 100) == 40
    assert P.index_threshold(0.5, 5) == 3  # rounded half up
    assert P.index_threshold(7, 10) == 7
    assert P.index_threshold(0, 10) == 0 and P.index_threshold(10, 10) == 10


def test_step_count_is_floor_of_ratio_and_robust_to_floating_point():
    assert 0.3 / 0.1 < 3  # the trap
    assert P.fixed_step_count(0.3, 0.1) == 3
    assert P.fixed_step_count(0.1, 0.01) == 10
    assert P.fixed_step_count(0.29, 0.1) == 2
    assert P.fixed_step_count(0.05, 0.1) == 0
    k = P.step_counts(torch.tensor([0.3, 0.25, 0.0999, 0.7], dtype=torch.float64), 0.1)
    assert k.tolist() == [3, 2, 0, 7]
    k32 = P.step_counts(torch.tensor([0.3, 0.6], dtype=torch.float32), 0.1)
    assert k32.tolist() == [3, 6]


def test_bounds_first_and_second_form_of_eq33():
    qbar = torch.tensor([0.8, 0.5, 0.2, 0.1], dtype=torch.float64)
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0])
    tau = torch.tensor(0.4, dtype=torch.float64)
    first = P.class_bounds(qbar, sign, tau, epsilon=0.1, delta_epsilon=0.5, split="mean")
    assert first.tolist() == pytest.approx(
        [0.1 + 0.5 * 0.4, 0.1 + 0.5 * 0.1, 0.1 + 0.5 * 0.2, 0.1 + 0.5 * 0.3]
    )
    second = P.class_bounds(qbar, sign, tau, epsilon=0.0, delta_epsilon=2.0, split="index")
    # head: q̄_c / max_head q̄ -> 1, 0.625; tail: min_tail q̄ / q̄_c -> 0.5, 1
    assert second.tolist() == pytest.approx([2.0, 2.0 * 0.625, 2.0 * 0.5, 2.0])
    absent = P.class_bounds(
        qbar, torch.tensor([1.0, 0.0, -1.0, 1.0]), tau, epsilon=0.3, delta_epsilon=0.0, split="mean"
    )
    assert absent.tolist() == pytest.approx([0.3, 0.0, 0.3, 0.3])


def test_count_bound_ratio():
    r = P.count_bound_ratio([100, 50, 20, 10, 5], head=2)
    assert r.tolist() == pytest.approx([1.0, 0.5, 5 / 20, 5 / 10, 1.0])


def test_second_form_normalises_each_side_by_its_own_extreme():
    """Eq. 33's second form divides by the largest q̄ of the head classes present and the smallest q̄ of
    the tail classes present, each side alone: here a tail class has the largest q̄ of the batch (0.9) and
    a head class the smallest (0.1), so normalising by the extremes of all present classes differs. The
    extreme class of each side gets exactly ε + Δε."""
    qbar = torch.tensor([0.1, 0.6, 0.9, 0.2, 0.0], dtype=torch.float64)
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0, 0.0])  # head 0, 1; tail 2, 3; class 4 absent
    tau = torch.tensor(2.0, dtype=torch.float64)
    b = P.class_bounds(qbar, sign, tau, epsilon=0.1, delta_epsilon=1.0, split="index")
    # head: q̄_c / 0.6 -> 1/6, 1; tail: 0.2 / q̄_c -> 2/9, 1
    assert b.tolist() == pytest.approx([0.1 + 1 / 6, 1.1, 0.1 + 2 / 9, 1.1, 0.0])


def test_count_bounds_enter_the_loop_as_eps_plus_delta_eps_times_the_count_ratio():
    """bound="count" (the count schedule of Eq. 33): ε_c = ε + Δε·n_c/n_max for head classes and
    ε + Δε·n_min/n_c for tail classes, worked out by hand for unsorted counts, then K_c = ⌊ε_c/α⌋ steps of
    the per-class loop."""
    counts = [5, 100, 10, 50, 20]  # by frequency: 1, 3 (head, τ = 2), 4, 2, 0 (tail)
    rank = P.class_rank(counts)
    ratio = P.count_bound_ratio(counts, 2)
    assert ratio.tolist() == pytest.approx([5 / 5, 100 / 100, 5 / 10, 50 / 100, 5 / 20])
    bounds = [0.1 + 0.4 * r for r in (1.0, 1.0, 0.5, 0.5, 0.25)]  # 0.5, 0.5, 0.3, 0.3, 0.2
    u, y = _batch(n=40, c=5, seed=7)
    assert set(y.tolist()) == set(range(5))
    kw = dict(alpha=0.05, epsilon=0.1, delta_epsilon=0.4, split="index")
    out = P.single_label_perturbation(
        u, y, rank=rank, head=2, bound="count", count_ratio=ratio, **kw
    )
    assert out.sign.tolist() == [1.0, -1.0, 1.0, -1.0, 1.0]
    assert out.bounds.tolist() == pytest.approx(bounds)
    assert out.steps.tolist() == [10, 10, 6, 6, 4]
    ref, _, _ = _loop_reference(u, y, rank=rank, head=2, bounds=bounds, **kw)
    assert torch.allclose(out.delta, torch.from_numpy(ref), atol=1e-10)


# ------------------------------------------------------------------------------------------ Algorithm 1
@pytest.mark.parametrize(
    "kw",
    [
        dict(alpha=0.05, epsilon=0.3),
        dict(alpha=0.1, epsilon=0.3, delta_epsilon=2.0),
        dict(alpha=0.5, epsilon=1.0, delta_epsilon=3.0),  # large steps: the projection is active
        dict(alpha=0.05, epsilon=0.2, split="value", tau=0.3),
    ],
)
def test_vectorised_loop_equals_per_class_python_loop(kw):
    u, y = _batch(n=30, c=5, seed=1)
    ref, info, tau = _loop_reference(u, y, **kw)
    out = P.single_label_perturbation(u, y, **kw)
    assert torch.allclose(out.delta, torch.from_numpy(ref), atol=1e-10)
    for k, (s, eps_c, steps) in info.items():
        assert out.sign[k].item() == s
        assert out.bounds[k].item() == pytest.approx(eps_c)
        assert out.steps[k].item() == steps
    assert float(out.tau) == pytest.approx(tau)


def test_index_split_matches_loop_reference():
    u, y = _batch(n=30, c=5, seed=2)
    rank = P.class_rank([10, 40, 30, 5, 20])
    ref, info, _ = _loop_reference(u, y, alpha=0.1, epsilon=0.5, split="index", head=2, rank=rank)
    out = P.single_label_perturbation(
        u, y, alpha=0.1, epsilon=0.5, split="index", rank=rank, head=2
    )
    assert torch.allclose(out.delta, torch.from_numpy(ref), atol=1e-10)
    assert out.sign.tolist() == [1.0, -1.0, -1.0, 1.0, 1.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bound_respected_for_every_class(seed):
    u, y = _batch(n=64, c=8, seed=seed, scale=5.0)
    out = P.single_label_perturbation(u, y, alpha=0.4, epsilon=0.5, delta_epsilon=2.0)
    norms = out.delta.norm(dim=1)
    eps_i = out.bounds[y]
    assert bool((norms <= eps_i * (1 + 1e-12)).all())


def test_projection_makes_the_bound_exact_when_steps_overshoot():
    # every sample confidently predicts the next class: the class-mean step has norm ≈ √2·α > ε
    y = torch.tensor([0, 0, 1, 2, 2, 3])
    u = 10.0 * F.one_hot((y + 1) % 4, 4).double()
    out = P.single_label_perturbation(u, y, alpha=0.6, epsilon=0.7, split="value", tau=0.5)
    assert out.steps.tolist() == [1, 1, 1, 1]
    assert torch.allclose(out.delta.norm(dim=1), torch.full((6,), 0.7, dtype=torch.float64))
    raw = 0.6 * (u.softmax(1) - F.one_hot(y, 4)).norm(dim=1)
    assert bool((raw > 0.8).all())  # unprojected it would overshoot


def test_all_samples_of_a_class_share_delta():
    u, y = _batch(n=50, c=4, seed=3)
    d = P.single_label_perturbation(u, y, alpha=0.05, epsilon=0.4).delta
    for k in range(4):
        rows = d[y == k]
        assert torch.allclose(rows, rows[:1].expand_as(rows), atol=1e-14)


def test_ascent_increases_and_descent_decreases_class_mean_loss():
    u, y = _batch(n=80, c=6, seed=4)
    out = P.single_label_perturbation(u, y, alpha=0.02, epsilon=0.2, delta_epsilon=0.5)
    before = F.cross_entropy(u, y, reduction="none")
    after = F.cross_entropy(u + out.delta, y, reduction="none")
    assert set(out.sign.tolist()) == {-1.0, 1.0}
    for k in range(6):
        m = y == k
        change = after[m].mean() - before[m].mean()
        if out.sign[k] > 0:
            assert change > 0, k
        else:
            assert change < 0, k


def test_first_step_is_eq31_32_and_equals_autograd_of_eq30():
    u, y = _batch(n=24, c=4, seed=5)
    alpha = 0.1
    out = P.single_label_perturbation(
        u, y, alpha=alpha, epsilon=1.5 * alpha
    )  # K = 1, ‖step‖ < 1.5α
    assert out.steps.tolist() == [1, 1, 1, 1]
    for k in range(4):
        m = y == k
        d = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        F.cross_entropy(u[m] + d, y[m], reduction="mean").backward()  # ∂/∂δ of the class-mean loss
        analytic = (u[m].softmax(1) - F.one_hot(y[m], 4)).mean(0)  # Eq. 30 averaged as in Eq. 31
        assert torch.allclose(d.grad, analytic, atol=1e-12)
        expected = out.sign[k] * alpha * analytic
        assert torch.allclose(out.delta[m][0], expected, atol=1e-12)


def test_steps_stop_at_k_c():
    # three classes, bounds 0.1, 0.25, 0.3 with α = 0.1 -> 1, 2, 3 steps (no projection: tiny steps)
    u, y = _batch(n=30, c=3, seed=6, scale=0.1)
    sign = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    bounds = torch.tensor([0.1, 0.25, 0.3], dtype=torch.float64)
    steps = P.step_counts(bounds, 0.1)
    assert steps.tolist() == [1, 2, 3]
    d = P.pgd_like_perturbation(u, y, sign, bounds, steps, alpha=0.1, max_steps=5)
    for k, kk in enumerate([1, 2, 3]):
        sub = P.pgd_like_perturbation(
            u,
            y,
            sign,
            torch.full((3,), 9.0, dtype=torch.float64),
            torch.full((3,), kk),
            alpha=0.1,
            max_steps=kk,
        )
        assert torch.allclose(d[y == k], sub[y == k], atol=1e-14)
    single = P.pgd_like_perturbation(
        u, y, sign, bounds, torch.ones(3, dtype=torch.long), alpha=0.1, max_steps=1
    )
    assert not torch.allclose(d[y == 2], single[y == 2])


def test_single_class_batch_one_sample_class_and_two_classes():
    u = torch.tensor([[1.0, 0.0], [2.0, -1.0], [0.5, 0.5]], dtype=torch.float64)
    out = P.single_label_perturbation(u, torch.tensor([0, 0, 0]), alpha=0.05, epsilon=0.2)
    assert out.sign.tolist() == [0.0, 0.0] and bool((out.delta == 0).all())  # τ = q̄_0: no split
    out = P.single_label_perturbation(u, torch.tensor([0, 0, 1]), alpha=0.05, epsilon=0.2)
    assert out.counts.tolist() == [2.0, 1.0]
    assert out.sign.tolist() == [-1.0, 1.0]
    assert bool(torch.isfinite(out.delta).all()) and float(out.delta[2].norm()) > 0


# ------------------------------------------------------------------------------------------ multi-label
def test_multi_label_shift_signs_and_bounds_eqs_37_38():
    rank = P.class_rank([100, 50, 20, 10, 5])
    shift = P.multi_label_logit_shift(rank, 2, epsilon=0.3)
    # δ̃_c = S(c − τ)·ε: head −ε, tail +ε; the logit becomes u − δ̃
    assert (-shift).tolist() == pytest.approx([-0.3, -0.3, 0.3, 0.3, 0.3])
    assert P.multi_label_logit_shift(rank, 0, epsilon=0.3).tolist() == pytest.approx(
        [-0.3] * 5
    )  # Eq. 35
    assert P.multi_label_logit_shift(rank, 5, epsilon=0.3).tolist() == pytest.approx(
        [0.3] * 5
    )  # Eq. 36
    varied = P.multi_label_logit_shift(
        rank,
        2,
        epsilon=0.1,
        delta_epsilon=1.0,
        count_ratio=P.count_bound_ratio([100, 50, 20, 10, 5], 2),
    )
    assert (-varied).tolist() == pytest.approx([-1.1, -0.6, 0.35, 0.6, 1.1])


# ------------------------------------------------------------------------------------------ presets
def _np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_authors_step(u, y, alpha, sign=None):
    """The notes' compute_adv_sign written out with explicit loops."""
    n, c = u.shape
    p = _np_softmax(u)
    m = np.zeros((c, c))
    for k in range(c):
        idx = [i for i in range(n) if y[i] == k]
        nk = len(idx) if idx else 100
        for i in idx:
            m[k] += p[i] / nk
    qbar = np.array([m[k, k] for k in range(c)])
    g = m - np.eye(c)
    col = np.array([math.sqrt(sum(g[r, k] ** 2 for r in range(c))) for k in range(c)])
    for k in range(c):
        g[k] = g[k] / col[k]
    tau = qbar.sum() / c
    s = np.sign(tau - qbar) if sign is None else np.asarray(sign)
    return np.stack([alpha * s[y[i]] * g[y[i]] for i in range(n)]), qbar, tau


def _small():
    g = torch.Generator().manual_seed(11)
    u = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 3, 0])  # class 2 absent
    return u, y


def test_authors_step_matches_hand_trace():
    u, y = _small()
    step, qbar, tau = P.authors_class_step(u, y, 0.01)
    ref, rq, rt = _np_authors_step(u.numpy(), y.numpy(), 0.01)
    assert np.allclose(step.numpy(), ref) and np.allclose(qbar.numpy(), rq)
    assert float(tau) == pytest.approx(rt)
    assert rq[2] == 0.0 and rt == pytest.approx(rq.sum() / 4)  # τ counts the absent class


def test_authors_balanced_fixed_matches_hand_trace():
    u, y = _small()
    d = P.authors_balanced_fixed_perturbation(u, y, alpha=0.005, steps=20)
    z = u.numpy().copy()
    for _ in range(20):
        z = z + _np_authors_step(z, y.numpy(), 0.005)[0]
    assert np.allclose(d.numpy(), z - u.numpy(), atol=1e-12)
    assert np.linalg.norm(d.numpy(), axis=1).max() > 0.05  # ≈ 20 steps of length ≈ α


def test_authors_varied_step_counts_hand_computed():
    qbar = torch.tensor([0.9, 0.6, 0.1, 0.0, 0.3], dtype=torch.float64)
    tau = torch.tensor(0.38, dtype=torch.float64)
    # d = [-0.52, -0.22, 0.28, 0.38, 0.08]; pos side max 0.38, neg side max 0.52
    # train_lpl (P = 40): 40 + max(0, round(4·|d|/max − 1))
    k = P.authors_varied_step_counts(qbar, tau, base=40, scale=4.0)
    expected = [
        40 + max(0, round(4 * r - 1)) for r in [1.0, 0.22 / 0.52, 0.28 / 0.38, 1.0, 0.08 / 0.38]
    ]
    assert k.tolist() == expected == [43, 41, 42, 43, 40]
    k = P.authors_varied_step_counts(qbar, tau, base=0, scale=10.0)
    assert k.tolist() == [
        max(0, round(10 * r - 1)) for r in [1.0, 0.22 / 0.52, 0.28 / 0.38, 1.0, 0.08 / 0.38]
    ]


@pytest.mark.parametrize("variant,steps", [("train_lpl", 10), ("train_var", 6)])
def test_authors_balanced_varied_matches_hand_trace_with_doubled_steps(variant, steps):
    u, y = _small()
    alpha = 0.01
    d = P.authors_balanced_varied_perturbation(u, y, alpha=alpha, steps=steps, variant=variant)
    un, yn = u.numpy(), y.numpy()
    _, q0, t0 = _np_authors_step(un, yn, alpha)
    dd = t0 - q0
    pos_max = max(abs(v) for v in dd if v > 0)
    neg_max = max(abs(v) for v in dd if v < 0)
    if variant == "train_lpl":
        base, scale, iters = steps, 0.1 * steps, round(1.1 * steps)
    else:
        base, scale, iters = 0, steps, steps
    kc = [base + max(0, round(scale * abs(v) / (pos_max if v > 0 else neg_max) - 1)) for v in dd]
    z = un.copy()
    snaps = []
    for _ in range(iters):
        a = _np_authors_step(z, yn, alpha)[0]
        z = z + a
        snaps.append(z.copy())
        z = z + a
    ref = np.stack([snaps[kc[yn[i]]][i] for i in range(len(yn))]) - un
    assert np.allclose(d.numpy(), ref, atol=1e-12)


def test_authors_longtail_schedule_matches_notes_for_la_lpl_cifar100():
    counts = [int(500 * 0.01 ** (c / 99)) for c in range(100)]
    ks, signs = P.authors_longtail_schedule(counts, 27, steps=50, head_scale=0.2)
    applications = [k + 1 for k in ks]
    assert applications[0] == 10 and applications[26] == 3 and applications[27] == 2
    assert applications[99] == 50
    assert signs[:27] == [-1.0] * 27 and signs[27:] == [1.0] * 73


def test_authors_longtail_schedule_small_hand_computed():
    ks, _ = P.authors_longtail_schedule([5, 100, 10, 50, 20], 2, steps=10, head_scale=0.2)
    # sorted 100, 50, 20, 10, 5: head round(2·[1, .5] − 1) = [1, 0]; tail round(10·5/[20, 10, 5] − 1)
    # = round([1.5, 4, 9]) = [2, 4, 9] (half to even); assigned by class index
    assert ks == [1, 0, 2, 4, 9]


def test_authors_longtail_perturbation_matches_hand_trace_and_negative_index():
    u, y = _small()
    alpha = 0.1
    sign = [-1.0, -1.0, 1.0, 1.0]
    kc = [1, -1, 0, 2]
    d = P.authors_longtail_perturbation(
        u, y, torch.tensor(kc), torch.tensor(sign), alpha=alpha, iterations=5
    )
    un, yn = u.numpy(), y.numpy()
    z = un.copy()
    snaps = []
    for _ in range(5):
        z = z + _np_authors_step(z, yn, alpha, sign=sign)[0]
        snaps.append(z.copy())
    ref = np.stack([snaps[kc[yn[i]]][i] for i in range(len(yn))]) - un  # Python index -1 = last
    assert np.allclose(d.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("normalize_step", [False, True])
def test_index_and_matmul_class_means_agree(normalize_step):
    u, y = _batch(n=50, c=7, seed=9)
    out = P.single_label_perturbation(u, y, alpha=0.05, epsilon=0.2, delta_epsilon=0.5)
    args = (u, y, out.sign, out.bounds, out.steps)
    kw = dict(alpha=0.05, max_steps=14, normalize_step=normalize_step)
    a = P.pgd_like_perturbation(*args, class_mean="index", **kw)
    b = P.pgd_like_perturbation(*args, class_mean="matmul", **kw)
    assert torch.allclose(a, b, atol=1e-12)
    if not normalize_step:
        assert torch.allclose(a, out.delta, atol=1e-12)
    with pytest.raises(ValueError, match="class_mean"):
        P.pgd_like_perturbation(*args, class_mean="loop", **kw)


# ------------------------------------------------------------------------------------------ row masks
def _pgd_inputs(n=30, c=6, seed=4):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, c, (n,), generator=g)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, 1.0], dtype=torch.float64)[:c]
    bounds = torch.full((c,), 0.3, dtype=torch.float64)
    steps = torch.tensor([3, 1, 2, 3, 0, 3])[:c]
    return u, y, sign, bounds, steps


@pytest.mark.parametrize("class_mean", ["index", "matmul"])
@pytest.mark.parametrize("normalize_step", [False, True])
def test_all_kept_rows_and_unit_weights_give_the_same_bits(class_mean, normalize_step):
    u, y, sign, bounds, steps = _pgd_inputs()
    kw = dict(alpha=0.1, max_steps=3, normalize_step=normalize_step, class_mean=class_mean)
    for dtype in (torch.float32, torch.float64):
        x = u.to(dtype)
        plain = P.pgd_like_perturbation(x, y, sign, bounds, steps, **kw)
        kept = P.pgd_like_perturbation(
            x, y, sign, bounds, steps, keep=torch.ones(30, dtype=torch.bool), **kw
        )
        unit = P.pgd_like_perturbation(
            x, y, sign, bounds, steps, weight=torch.ones(30, dtype=dtype), **kw
        )
        assert torch.equal(plain, kept) and torch.equal(plain, unit)


@pytest.mark.parametrize("class_mean", ["index", "matmul"])
@pytest.mark.parametrize("normalize_step", [False, True])
def test_rows_not_kept_do_not_move_their_class(class_mean, normalize_step):
    u, y, sign, bounds, steps = _pgd_inputs()
    keep = torch.ones(30, dtype=torch.bool)
    keep[[0, 5, 11, 12, 29]] = False
    kw = dict(alpha=0.1, max_steps=3, normalize_step=normalize_step, class_mean=class_mean)
    masked = P.pgd_like_perturbation(u, y, sign, bounds, steps, keep=keep, **kw)
    subset = P.pgd_like_perturbation(u[keep], y[keep], sign, bounds, steps, **kw)
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked[keep], subset, rtol=0, atol=1e-13)
    # the same through the weighted form (0/1 masses)
    weighted = P.pgd_like_perturbation(u, y, sign, bounds, steps, weight=keep.double(), **kw)
    torch.testing.assert_close(weighted[keep], subset, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="at most one of weight and keep"):
        P.pgd_like_perturbation(u, y, sign, bounds, steps, weight=keep.double(), keep=keep, **kw)


def test_authors_step_with_gradients_matches_hand_trace_and_balanced_varied_checks_its_variant():
    """The gradient path of the authors' step (the scripts' form, taken when the logits require grad)
    gives the hand trace too, τ over all C classes with the absent one at 0."""
    u, y = _small()
    step, qbar, tau = P.authors_class_step(u.clone().requires_grad_(True), y, 0.01)
    ref, rq, rt = _np_authors_step(u.numpy(), y.numpy(), 0.01)
    assert np.allclose(step.detach().numpy(), ref) and np.allclose(qbar.detach().numpy(), rq)
    assert float(tau.detach()) == pytest.approx(rt)
    with pytest.raises(ValueError, match="variant"):
        P.authors_balanced_varied_perturbation(u, y, variant="train_varied")


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_authors_balanced_varied_refuses_steps_that_leave_no_snapshot_to_take(steps):
    """train_lpl.py keeps round(1.1·P) snapshots and every class takes snapshot P or later: for P <= 4
    (round(1.1·P) = P) there is none, where the script fails; δ = 0 here was plain cross-entropy."""
    u, y = _small()
    with pytest.raises(ValueError, match=f"steps={steps} is too short"):
        P.authors_balanced_varied_perturbation(u, y, steps=steps, variant="train_lpl")
    # P = 5 keeps 6 snapshots (round(5.5) = 6) and the classes take snapshot 5: it moves
    assert P.authors_balanced_varied_perturbation(u, y, steps=5).abs().max() > 0
    # train_var.py's K_c lie in [0, P - 1] for its P snapshots: every P works
    assert (
        P.authors_balanced_varied_perturbation(u, y, steps=steps, variant="train_var").abs().max()
        > 0
    )


@pytest.mark.parametrize("normalize_step", [False, True])
def test_half_precision_perturbation_of_a_class_without_a_side_is_zero_not_nan(normalize_step):
    """A class with sign 0 (a one-class batch: q̄ equals τ) takes no step; in float16 the floor of norms
    and radii (1e-30) rounded to 0 and its δ came out 0/0 = NaN, with autograd on too."""
    from lpl_train import perturbation as P

    u = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)).half().requires_grad_()
    d = P.single_label_perturbation(u, torch.zeros(8, dtype=torch.long), alpha=0.05, epsilon=0.2,
                                    normalize_step=normalize_step).delta  # fmt: skip
    assert torch.equal(d, torch.zeros_like(d))
    d.sum().backward()
    assert torch.isfinite(u.grad).all()
    assert P._tiny(torch.float32) == P._TINY == P._tiny(torch.float64)  # unchanged outside float16


@pytest.mark.parametrize("grad", [False, True])
def test_a_class_whose_rows_all_have_mass_zero_is_absent_and_stays_at_zero(grad):
    # rows of mass 0 do not count: class 1 has no mass, so it is absent (sign 0, δ = 0), in the
    # per-class loop (no autograd) as in the per-sample loop (autograd), where its mass must not be 0/0
    g = torch.Generator().manual_seed(0)
    u = torch.randn(6, 3, generator=g, dtype=torch.float64).requires_grad_(grad)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    w = torch.tensor([1.0, 0.5, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    out = P.single_label_perturbation(u, y, alpha=0.01, epsilon=0.1, weight=w)
    assert out.sign[1] == 0 and out.counts[1] == 0
    assert torch.isfinite(out.delta).all()
    assert (out.delta[2:4] == 0).all()
    assert (out.delta[[0, 4]].norm(dim=1) > 0).all()  # the classes with mass move


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_take_the_step_counts_of_the_bounds_not_of_their_rounding(dtype):
    """K_c = ⌊ε_c/α⌋ (Algorithm 1) with half-precision logits (autocast) as in float32: ε_c was held in
    the logits' dtype, where ε = 0.7 is 0.69921875 (bfloat16) and ε = 0.2 is 0.19995 (float16), so the
    fixed bound took one step fewer (6 for 0.7/0.1, 19 for 0.2/0.01, 2 for 0.9/0.3)."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(12, 4, generator=g)
    y = torch.arange(4).repeat(3)
    for eps, alpha, deps in ((0.7, 0.1, 0.0), (0.2, 0.01, 0.0), (0.9, 0.3, 0.0), (0.1, 0.01, 0.3)):
        half = P.single_label_perturbation(
            u.to(dtype), y, alpha=alpha, epsilon=eps, delta_epsilon=deps
        )
        full = P.single_label_perturbation(u, y, alpha=alpha, epsilon=eps, delta_epsilon=deps)
        assert (half.sign != 0).all()
        floor = P.fixed_step_count(eps, alpha)
        assert int(half.steps.min()) >= floor, (eps, alpha, deps)
        if deps == 0.0:
            assert half.steps.tolist() == full.steps.tolist() == [floor] * 4, (eps, alpha)
        assert half.delta.dtype == dtype


def test_rows_not_kept_are_left_out_of_the_batch_statistics_that_set_signs_and_bounds():
    """``keep`` (``ignore_index`` rows) must leave a row out of N_c, q̄_c and so of τ, the signs and the
    bounds, not only out of the inner loop. Three classes, two kept rows each, with hand-computed
    statistics; four ignored rows carry the placeholder label 0 and logits that would lift q̄_0 above τ
    (flipping class 0's sign) if they were counted."""
    from lpl_train.losses import LPLLoss

    flat, peak = [0.0, 0.0, 0.0], [0.0, 4.0, 0.0]
    u = torch.tensor(
        [flat, flat, peak, peak, flat, flat] + [[10.0, 0.0, 0.0]] * 4, dtype=torch.float64
    )
    y = torch.tensor([0, 0, 1, 1, 2, 2] + [-100] * 4)
    keep = y >= 0
    out = P.single_label_perturbation(
        u, torch.where(keep, y, 0), alpha=0.05, epsilon=0.3, keep=keep
    )
    p_peak = math.exp(4.0) / (math.exp(4.0) + 2.0)
    qbar = torch.tensor([1 / 3, p_peak, 1 / 3], dtype=torch.float64)
    assert out.counts.tolist() == [2, 2, 2]
    torch.testing.assert_close(out.qbar, qbar, rtol=0, atol=1e-15)
    assert float(out.tau) == pytest.approx(float(qbar.mean()), abs=1e-15)
    assert out.sign.tolist() == [1, -1, 1]  # q̄ below τ: maximised; above: minimised
    # through the loss: the ignored rows change nothing for the kept ones
    loss = LPLLoss(num_classes=3, alpha=0.05, epsilon=0.3, reduction="none")
    torch.testing.assert_close(loss(u, y)[keep], loss(u[keep], y[keep]), rtol=0, atol=1e-15)
