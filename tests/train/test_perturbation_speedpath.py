"""The fast paths of the single-label inner loop and of the authors'-code presets give exactly the values
of the straightforward implementation they replaced.

That implementation is :mod:`lpl_train.perturbation_reference` (the literal per-class loop of
Algorithm 1 and of the authors' presets): every new path (early stop at the batch's largest K_c,
in-place buffers, O(N) class grouping, the authors' step on N × C rows) is compared with it with
``torch.equal`` on float32 and float64 CPU inputs, values and gradients.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from lpl_train import perturbation as P
from lpl_train.losses.lpl import LPLLoss
from lpl_train.perturbation_reference import (
    pipeline_inputs,
    reference_authors_balanced_fixed,
    reference_authors_balanced_varied,
    reference_authors_class_step,
    reference_authors_longtail,
    reference_group_index,
    reference_pgd,
)

torch.set_flush_denormal(True)


# ------------------------------------------------------------------ helpers
def _batch(n, c, seed, dtype, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, c, (n,), generator=g)
    return u, y


class _CountSoftmax(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten._softmax, torch.ops.aten.softmax):
            self.calls += 1
        return func(*args, **(kwargs or {}))


CASES = [  # (n, c, alpha, epsilon, delta_epsilon, split)
    (128, 100, 0.01, 0.1, 0.2, "mean"),
    (128, 100, 0.01, 0.1, 0.0, "mean"),
    (40, 7, 0.05, 0.2, 0.5, "mean"),
    (64, 10, 0.1, 0.0, 1.0, "index"),  # ε = 0: classes with a small ratio take K_c = 0 steps
    (33, 5, 0.02, 0.1, 0.3, "value"),
    (1, 4, 0.01, 0.1, 0.2, "mean"),  # one sample: one class at τ, nothing moves
    (50, 2, 0.3, 0.3, 0.0, "mean"),  # ε/α = 1 within floating point
    (16, 1000, 0.01, 0.1, 0.2, "mean"),  # mostly one-sample classes
]


def _case_inputs(case, seed, dtype):
    n, c, alpha, eps, deps, split = case
    u, y = _batch(n, c, seed, dtype)
    kw = {}
    if split == "index":
        kw = dict(
            rank=torch.randperm(c, generator=torch.Generator().manual_seed(seed)), head=c // 2
        )
    elif split == "value":
        kw = dict(tau=0.3)
    sign, bounds, steps, max_steps = pipeline_inputs(
        u, y, alpha=alpha, epsilon=eps, delta_epsilon=deps, split=split, **kw
    )
    return u, y, sign, bounds, steps, dict(alpha=alpha, max_steps=max_steps)


# ------------------------------------------------------------------ the single-label inner loop
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("early_stop", [None, True, False])
def test_inner_loop_without_grad_is_identical_to_reference(case, dtype, early_stop):
    for seed in range(2):
        u, y, sign, bounds, steps, kw = _case_inputs(case, seed, dtype)
        with torch.no_grad():
            ref = reference_pgd(u, y, sign, bounds, steps, **kw)
            new = P.pgd_like_perturbation(u, y, sign, bounds, steps, early_stop=early_stop, **kw)
        assert new.dtype == dtype
        assert torch.equal(new, ref), (case, seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("class_mean", ["index", "matmul"])
@pytest.mark.parametrize("normalize_step", [False, True])
def test_inner_loop_other_paths_are_identical_to_reference(dtype, class_mean, normalize_step):
    for case in CASES[:5]:
        u, y, sign, bounds, steps, kw = _case_inputs(case, 7, dtype)
        kw.update(class_mean=class_mean, normalize_step=normalize_step)
        with torch.no_grad():
            ref = reference_pgd(u, y, sign, bounds, steps, **kw)
            new = P.pgd_like_perturbation(u, y, sign, bounds, steps, **kw)
            static = P.pgd_like_perturbation(u, y, sign, bounds, steps, early_stop=False, **kw)
        if normalize_step and class_mean == "index":
            # the per-class path sums the class means with index_add, the reference with a matrix
            # product: the same arithmetic in another order, equal to rounding
            tol = 1e-12 if dtype == torch.float64 else 2e-6
            torch.testing.assert_close(new, ref, rtol=tol, atol=tol * bounds.max().item())
            assert not torch.equal(new, torch.zeros_like(new)), case
        else:
            assert torch.equal(new, ref), case
        assert torch.equal(static, ref), case


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("class_mean", ["index", "matmul"])
def test_differentiable_inner_loop_values_and_gradients_are_identical(dtype, class_mean):
    for case in CASES[:6]:
        u0, y, sign, bounds, steps, kw = _case_inputs(case, 3, dtype)
        w = torch.randn(u0.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        results = []
        for fn in (reference_pgd, P.pgd_like_perturbation):
            u = u0.clone().requires_grad_(True)
            b = bounds.clone().requires_grad_(True)
            d = fn(u, y, sign, b, steps, class_mean=class_mean, **kw)
            (d * w).sum().backward()
            results.append((d.detach(), u.grad, b.grad))
        (d_ref, gu_ref, gb_ref), (d_new, gu_new, gb_new) = results
        assert torch.equal(d_new, d_ref), case
        assert torch.equal(gu_new, gu_ref), case
        assert torch.equal(gb_new, gb_ref), case


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_logits_give_the_reference_values_for_that_layout(dtype):
    # the per-sample loop's rounding depends on the memory layout of the logits: keep it
    for case in CASES[:5]:
        u, y, sign, bounds, steps, kw = _case_inputs(case, 1, dtype)
        column_major = u.t().contiguous().t()
        for early_stop in (None, False):
            with torch.no_grad():
                ref = reference_pgd(column_major, y, sign, bounds, steps, **kw)
                new = P.pgd_like_perturbation(
                    column_major, y, sign, bounds, steps, early_stop=early_stop, **kw
                )
            assert torch.equal(new, ref), (case, early_stop)


def test_arbitrary_signs_and_step_counts_including_zero_and_capped():
    # signs of every kind and K_c both 0 with a nonzero sign and above max_steps (capped)
    u, y = _batch(60, 9, 4, torch.float64)
    sign = torch.tensor([1.0, -1.0, 0.0, 1.0, -1.0, 1.0, 1.0, -1.0, 0.0], dtype=torch.float64)
    bounds = torch.tensor([0.3, 0.05, 0.0, 0.0, 0.2, 1.0, 0.12, 0.3, 0.2], dtype=torch.float64)
    steps = torch.tensor([6, 1, 0, 0, 4, 40, 2, 0, 3])
    for dtype in (torch.float32, torch.float64):
        args = (u.to(dtype), y, sign, bounds, steps)
        for max_steps in (0, 1, 5, 12):
            with torch.no_grad():
                ref = reference_pgd(*args, alpha=0.05, max_steps=max_steps)
                for early_stop in (None, False):
                    new = P.pgd_like_perturbation(
                        *args, alpha=0.05, max_steps=max_steps, early_stop=early_stop
                    )
                    assert torch.equal(new, ref), (dtype, max_steps, early_stop)
    # step counts given as floats: a class moves at the steps k < K_c
    fsteps = torch.tensor([2.5, 0.0, 1.0, -1.0, 3.2, 4.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        ref = reference_pgd(u, y, sign, bounds, fsteps, alpha=0.05, max_steps=4)
        assert torch.equal(
            P.pgd_like_perturbation(u, y, sign, bounds, fsteps, alpha=0.05, max_steps=4), ref
        )


def test_loop_stops_at_the_batch_largest_step_count_unless_static():
    u, y = _batch(30, 6, 5, torch.float32)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    bounds = torch.full((6,), 0.5)
    steps = torch.tensor([2, 7, 3, 4, 5, 1])
    kw = dict(alpha=0.01, max_steps=30)
    for early_stop, expected in ((None, int(steps[y].max())), (True, 7), (False, 30)):
        if early_stop is True:
            y = y.clone()
            y[0] = 1  # class 1 (K = 7) present
        for grad in (False, True):
            with _CountSoftmax() as count, torch.set_grad_enabled(grad):
                P.pgd_like_perturbation(
                    u.clone().requires_grad_(grad),
                    y,
                    sign,
                    bounds,
                    steps,
                    early_stop=early_stop,
                    **kw,
                )
            assert count.calls == expected, (early_stop, grad)
    # capped at max_steps; a batch whose classes all take 0 steps runs no step
    with _CountSoftmax() as count, torch.no_grad():
        P.pgd_like_perturbation(u, y, sign, bounds, steps, alpha=0.01, max_steps=3)
    assert count.calls == 3
    with _CountSoftmax() as count, torch.no_grad():
        d = P.pgd_like_perturbation(u, y, sign, bounds, torch.zeros(6, dtype=torch.long), **kw)
    assert count.calls == 0 and torch.equal(d, torch.zeros_like(u))
    with pytest.raises(TypeError, match="early_stop"):
        P.pgd_like_perturbation(u, y, sign, bounds, steps, early_stop=1, **kw)


def test_loop_on_meta_device_takes_the_static_length():
    u = torch.empty(16, 7, device="meta")
    y = torch.empty(16, dtype=torch.long, device="meta")
    s = torch.empty(7, device="meta")
    k = torch.empty(7, dtype=torch.long, device="meta")
    d = P.pgd_like_perturbation(u, y, s, s, k, alpha=0.01, max_steps=4)
    assert d.shape == (16, 7) and d.device.type == "meta"


@pytest.mark.parametrize("n,c", [(1, 3), (10, 2), (128, 100), (300, 7), (64, 1000)])
def test_group_index_matches_the_quadratic_version(n, c):
    g = torch.Generator().manual_seed(n + c)
    for y in (torch.randint(0, c, (n,), generator=g), torch.full((n,), c - 1)):
        ref_first, ref_size = reference_group_index(y)
        assert torch.equal(P._group_index(y, c), ref_first)
        assert torch.equal(P._class_size(y, c), ref_size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("differentiable", [False, True])
def test_lpl_loss_forward_and_backward_identical_to_reference_pipeline(dtype, differentiable):
    alpha, eps, deps = 0.01, 0.1, 0.2
    loss_fn = LPLLoss(  # the reference is Algorithm 1 read literally
        100,
        alpha=alpha,
        epsilon=eps,
        delta_epsilon=deps,
        differentiable=differentiable,
        normalize_step=False,
    )
    for seed in range(2):
        u0, y = _batch(128, 100, seed, dtype)
        grads, values = [], []
        for use_ref in (True, False):
            u = u0.clone().requires_grad_(True)
            if use_ref:
                with torch.set_grad_enabled(differentiable):
                    base = u if differentiable else u.detach()
                    sign, bounds, steps, max_steps = pipeline_inputs(
                        base, y, alpha=alpha, epsilon=eps, delta_epsilon=deps
                    )
                    delta = reference_pgd(
                        base, y, sign, bounds, steps, alpha=alpha, max_steps=max_steps
                    )
                loss = F.cross_entropy(u + delta, y)
            else:
                loss = loss_fn(u, y)
            loss.backward()
            values.append(loss.detach())
            grads.append(u.grad)
        assert torch.equal(values[0], values[1])
        assert torch.equal(grads[0], grads[1])


# ------------------------------------------------------------------ finiteness check
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_check_finite_names_the_tensor_and_finds_every_non_finite_value(dtype):
    t = torch.randn(37, 11).to(dtype)
    P.check_finite(t, "logits")
    P.check_finite(t[:, :0], "empty")
    for bad in (float("nan"), float("inf"), float("-inf")):
        for pos in ((0, 0), (36, 10), (18, 4)):
            x = t.clone()
            x[pos] = bad
            with pytest.raises(ValueError, match="^scores contains non-finite"):
                P.check_finite(x, "scores")
    x = t.clone()
    x[0, 0], x[1, 1] = float("inf"), float("-inf")  # the sum is NaN
    with pytest.raises(ValueError, match="scores"):
        P.check_finite(x, "scores")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_check_finite_accepts_finite_values_whose_sum_overflows(dtype):
    big = torch.finfo(dtype).max
    t = torch.full((8, 5), big, dtype=dtype)
    assert not torch.isfinite(t.sum())  # the fast reduction overflows ...
    P.check_finite(t, "logits")  # ... and the exact fallback clears it
    t[3, 2] = float("nan")
    with pytest.raises(ValueError, match="logits"):
        P.check_finite(t, "logits")


# ------------------------------------------------------------------ the authors'-code presets
def _authors_batches(dtype):
    yield _batch(48, 6, 0, dtype)
    yield _batch(20, 30, 1, dtype)  # most classes absent
    u, y = _batch(12, 4, 2, dtype)
    yield u, torch.zeros_like(y)  # one class: columns of G with zero norm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_authors_class_step_identical_to_reference(dtype):
    for u, y in _authors_batches(dtype):
        c = u.shape[1]
        for sign in (None, torch.where(torch.arange(c) < c // 3, -1.0, 1.0)):
            new = P.authors_class_step(u, y, 0.05, sign=sign)
            ref = reference_authors_class_step(u, y, 0.05, sign=sign)
            for a, b in zip(new, ref, strict=True):
                assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_authors_balanced_presets_identical_to_reference(dtype):
    for u, y in _authors_batches(dtype):
        with torch.no_grad():
            assert torch.equal(
                P.authors_balanced_fixed_perturbation(u, y, alpha=0.02, steps=7),
                reference_authors_balanced_fixed(u, y, alpha=0.02, steps=7),
            )
            for variant, steps in (("train_lpl", 6), ("train_var", 5)):
                kw = dict(alpha=0.03, steps=steps, variant=variant)
                assert torch.equal(
                    P.authors_balanced_varied_perturbation(u, y, **kw),
                    reference_authors_balanced_varied(u, y, **kw),
                )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_authors_longtail_values_and_gradients_identical_to_reference(dtype):
    for u0, y in _authors_batches(dtype):
        c = u0.shape[1]
        k = torch.arange(c) % 4 - 1  # includes −1 (the last snapshot)
        sign = torch.where(torch.arange(c) < c // 2, -1.0, 1.0)
        out = []
        for fn in (reference_authors_longtail, P.authors_longtail_perturbation):
            u = u0.clone().requires_grad_(True)
            d = fn(u, y, k, sign, alpha=0.1, iterations=5)
            (d * torch.linspace(-1, 1, c, dtype=dtype)).sum().backward()
            out.append((d.detach(), u.grad))
        assert torch.equal(out[0][0], out[1][0])
        assert torch.equal(out[0][1], out[1][1])


# ------------------------------------------------------------------ ignored rows and row masses
def _keep_mask(n, seed):
    keep = torch.rand(n, generator=torch.Generator().manual_seed(100 + seed)) > 0.3
    keep[0] = True  # at least one row kept
    return keep


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES[:5] + CASES[7:])
def test_ignored_rows_give_the_reference_on_the_kept_rows_and_no_perturbation(
    case, dtype, monkeypatch
):
    by_class = []
    real = P._pgd_by_class
    monkeypatch.setattr(P, "_pgd_by_class", lambda *a, **k: by_class.append(1) or real(*a, **k))
    for seed in range(2):
        u, y, sign, bounds, steps, kw = _case_inputs(case, seed, dtype)
        keep = _keep_mask(len(y), seed)
        # the class-level inputs come from the kept rows only, as in the loss
        sign, bounds, steps, _ = pipeline_inputs(
            u[keep], y[keep], alpha=kw["alpha"], epsilon=case[3], delta_epsilon=case[4],
            split=case[5], tau=0.3 if case[5] == "value" else None,
            rank=torch.arange(case[1]) if case[5] == "index" else None,
            head=case[1] // 2 if case[5] == "index" else None,
        )  # fmt: skip
        placeholder = torch.where(keep, y, 0)  # ignored rows carry class 0, as the loss passes them
        with torch.no_grad():
            ref = reference_pgd(u[keep], y[keep], sign, bounds, steps, **kw)
            for early_stop in (None, True, False):
                new = P.pgd_like_perturbation(
                    u, placeholder, sign, bounds, steps, keep=keep, early_stop=early_stop, **kw
                )
                assert torch.equal(new[keep], ref), (case, seed, early_stop)
                assert torch.equal(new[~keep], torch.zeros_like(new[~keep]))
    assert len(by_class) == 4  # early_stop None and True take the per-class loop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_rows_ignored_or_all_kept(dtype):
    u, y, sign, bounds, steps, kw = _case_inputs(CASES[2], 0, dtype)
    with torch.no_grad():
        ref = reference_pgd(u, y, sign, bounds, steps, **kw)
        for early_stop in (True, False):
            kept = P.pgd_like_perturbation(
                u, y, sign, bounds, steps, keep=y >= 0, early_stop=early_stop, **kw
            )
            assert torch.equal(kept, ref), early_stop
            none = P.pgd_like_perturbation(
                u, y, sign, bounds, steps, keep=y < 0, early_stop=early_stop, **kw
            )
            assert torch.equal(none, torch.zeros_like(u)), early_stop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES[:5] + CASES[7:])
def test_weighted_rows_take_the_class_loop_with_the_per_sample_values(case, dtype, monkeypatch):
    by_class = []
    real = P._pgd_by_class
    monkeypatch.setattr(P, "_pgd_by_class", lambda *a, **k: by_class.append(1) or real(*a, **k))
    for seed in range(2):
        u, y, sign, bounds, steps, kw = _case_inputs(case, seed, dtype)
        g = torch.Generator().manual_seed(200 + seed)
        w = torch.rand(len(y), generator=g, dtype=torch.float64).to(dtype)
        w[torch.rand(len(y), generator=g) < 0.2] = 0.0  # rows of mass 0 follow but do not move
        with torch.no_grad():
            fast = P.pgd_like_perturbation(u, y, sign, bounds, steps, weight=w, **kw)
            static = P.pgd_like_perturbation(
                u, y, sign, bounds, steps, weight=w, early_stop=False, **kw
            )
            unit = P.pgd_like_perturbation(
                u, y, sign, bounds, steps, weight=torch.ones_like(w), **kw
            )
            ref = reference_pgd(u, y, sign, bounds, steps, **kw)
        assert torch.equal(fast, static), (case, seed)
        assert torch.equal(unit, ref), (case, seed)
    assert len(by_class) == 4


def test_integer_row_masses_act_as_repeated_rows():
    u, y, sign, bounds, steps, kw = _case_inputs((40, 7, 0.05, 0.2, 0.5, "mean"), 3, torch.float64)
    w = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(9))
    rows = torch.arange(40).repeat_interleave(w)
    with torch.no_grad():
        for early_stop in (True, False):
            weighted = P.pgd_like_perturbation(
                u, y, sign, bounds, steps, weight=w.double(), early_stop=early_stop, **kw
            )
            repeated = reference_pgd(u[rows], y[rows], sign, bounds, steps, **kw)
            torch.testing.assert_close(weighted[rows], repeated, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ finiteness in the target checks
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_target_checks_clear_overflowing_sums_and_find_non_finite_logits(dtype):
    big = torch.finfo(dtype).max
    logits = torch.full((6, 4), big, dtype=dtype)
    y = torch.tensor([0, 1, 2, 3, 0, -100])
    probs = torch.full((6, 4), 0.25, dtype=dtype)
    hot = F.one_hot(y.clamp_min(0), 4).to(dtype)
    checks = (
        lambda x: P.check_single_label_target(y, x, check_finite_logits=True, ignore_index=-100),
        lambda x: P.check_probability_target(probs, x, check_finite_logits=True),
        lambda x: P.check_multi_label_target(hot, x, check_finite_logits=True),
    )
    for check in checks:
        check(logits)  # the sum overflows, every value is finite
        for bad in (float("nan"), float("inf"), float("-inf")):
            x = logits.clone()
            x[5, 3] = bad
            with pytest.raises(ValueError, match="^logits contains non-finite"):
                check(x)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        P.check_single_label_target(y, logits, check_finite_logits=True)  # -100 not ignored


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES[:5] + CASES[7:])
def test_normalised_step_takes_the_class_loop_with_weights_and_ignored_rows(
    case, dtype, monkeypatch
):
    """normalize_step=True (the loss's default) takes the per-class loop too, with row weights and ignored
    rows, and agrees to rounding with the per-sample loop (checked against the reference above); a step
    count of one gives a step of exactly length α before the projection."""
    by_class = []
    real = P._pgd_by_class
    monkeypatch.setattr(P, "_pgd_by_class", lambda *a, **k: by_class.append(1) or real(*a, **k))
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for seed in range(2):
        u, y, sign, bounds, steps, kw = _case_inputs(case, seed, dtype)
        kw["normalize_step"] = True
        g = torch.Generator().manual_seed(300 + seed)
        w = torch.rand(len(y), generator=g, dtype=torch.float64).to(dtype)
        keep = _keep_mask(len(y), seed)
        with torch.no_grad():
            for extra in ({}, {"weight": w}, {"keep": keep}):
                fast = P.pgd_like_perturbation(u, y, sign, bounds, steps, **extra, **kw)
                static = P.pgd_like_perturbation(
                    u, y, sign, bounds, steps, early_stop=False, **extra, **kw
                )
                torch.testing.assert_close(fast, static, rtol=tol, atol=tol * bounds.max().item())
                if "keep" in extra:
                    assert torch.equal(fast[~keep], torch.zeros_like(fast[~keep]))
            one = torch.ones_like(steps)
            first = P.pgd_like_perturbation(
                u, y, sign, bounds.new_full(bounds.shape, 1e9), one, **kw
            )
        norms = torch.linalg.vector_norm(first.double(), dim=1)
        torch.testing.assert_close(norms, torch.full_like(norms, kw["alpha"]), rtol=1e-5, atol=0)
    assert len(by_class) == 2 * 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("normalize_step", [False, True])
@pytest.mark.parametrize("rows", ["all", "weighted", "kept"])
def test_first_step_reusing_the_statistics_softmax_changes_nothing(dtype, normalize_step, rows):
    """single_label_perturbation hands its softmax to the loop for the step at δ = 0: the same δ as the
    loop computing that softmax itself, with one softmax fewer."""
    for case in CASES:
        n, c, alpha, eps, deps, split = case
        if split != "mean":
            continue
        for seed in range(3):
            u, y = _batch(n, c, seed, dtype)
            g = torch.Generator().manual_seed(seed + 10)
            weight = keep = None
            if rows == "weighted":
                weight = torch.randint(0, 3, (n,), generator=g).to(dtype)
            elif rows == "kept":
                keep = torch.rand(n, generator=g) < 0.8
            kw = dict(alpha=alpha, epsilon=eps, delta_epsilon=deps, normalize_step=normalize_step)
            with torch.no_grad():
                full = P.single_label_perturbation(u, y, weight=weight, keep=keep, **kw)
                loop = functools.partial(
                    P.pgd_like_perturbation,
                    u,
                    y,
                    full.sign,
                    full.bounds,
                    full.steps,
                    alpha=alpha,
                    max_steps=P.fixed_step_count(eps + deps, alpha),
                    normalize_step=normalize_step,
                    weight=weight,
                    keep=keep,
                )
                count, reuse = _CountSoftmax(), _CountSoftmax()
                with count:
                    again = loop()
                prob = u.softmax(dim=1)
                with reuse:
                    loop(prob=prob)
            assert torch.equal(full.delta, again), (case, seed)
            if count.calls:
                assert reuse.calls == count.calls - 1, (case, seed)


def _outcome(check, target, logits, ignore_index):
    try:
        value, ignored = check(target, logits, "target", True, ignore_index)
        return ("ok", value.tolist(), value.dtype, ignored)
    except ValueError as err:
        return ("error", str(err))


@pytest.mark.parametrize("ignore_index", [None, -100, 3])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_index_target_checks_on_the_host_and_on_the_device_agree(ignore_index, dtype):
    """CPU tensors are checked with NumPy on the host, other devices with tensor operations read back
    once: both forms accept, flag ignored rows and reject (same message) the same inputs."""
    from lpl_train.perturbation_checks import (
        _check_index_target_device,
        _check_index_target_host,
    )

    c = 5
    finite = torch.randn(4, c)
    targets = [[0, 1, 2, 4], [0, 5, 1, 1], [3, 3, 3, 3], [0, 1, 2, 3], [4, 4, 0, 0]]
    if dtype != torch.uint8:
        targets += [[-1, 0, 1, 2], [-100, 0, 1, 2], [-100, -100, -100, -100], [-100, 7, 0, 0]]
    bad_logits = finite.clone()
    bad_logits[1, 2] = float("nan")
    huge = torch.full((4, c), 3e38)  # finite values whose sum overflows
    seen = set()
    for rows in targets:
        target = torch.tensor(rows, dtype=dtype)
        for logits in (finite, bad_logits, huge):
            host = _outcome(_check_index_target_host, target, logits, ignore_index)
            device = _outcome(_check_index_target_device, target, logits, ignore_index)
            assert host == device, (rows, ignore_index)
            seen.add(host[0] if host[0] == "error" else ("ok", host[-1]))
    assert {"error", ("ok", False)} <= seen
    if ignore_index is not None and dtype != torch.uint8:
        assert ("ok", True) in seen


# ------------------------------------------------------------------ the steps every moving class takes
GRIDS = [  # (ε, α): the paper's and the shipped configs' values, and ratios just off an integer
    (eps, alpha)
    for eps in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0)
    for alpha in (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.3)
] + [(0.7, 0.1), (0.3, 0.1), (1e-3, 1e-4), (0.1 * (1 - 1e-7), 0.01), (0.1 * (1 + 1e-7), 0.01)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_moving_step_floor_never_exceeds_a_moving_class_step_count(dtype):
    """K_c >= moving_step_floor for every bound ε_c >= ε as it is held in the dtype (ε itself, or
    ε + Δε·r for any r >= 0), and it is ⌊ε/α⌋ itself for float32 and float64 on the grids."""
    ratios = torch.tensor([0.0, 1e-9, 1e-4, 0.013, 0.5, 1.0], dtype=torch.float64)
    for eps, alpha in GRIDS:
        floor = P.moving_step_floor(eps, alpha, dtype)
        bounds = eps + (0.2 * ratios).to(dtype)  # as class_bounds forms them, in the dtype
        assert floor <= int(P.step_counts(bounds, alpha).min()), (eps, alpha)
        if dtype in (torch.float32, torch.float64) and eps == round(eps, 3):
            assert floor == P.fixed_step_count(eps, alpha), (eps, alpha)


class _CountOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("class_mean", ["index", "matmul"])
@pytest.mark.parametrize("normalize_step", [False, True])
def test_per_sample_loop_unmasked_for_the_steps_every_moving_class_takes(
    dtype, class_mean, normalize_step
):
    """min_steps = ⌊ε/α⌋ runs those first steps of the per-sample loop (static, or with gradients)
    without the mask and its `where`: the same values and gradients bit for bit, the `where` only in the
    later steps; rows not kept get δ = 0 from one `where` at the end."""
    for case in CASES:
        n, c, alpha, eps, deps, split = case
        floor = P.moving_step_floor(eps, alpha, dtype)
        for seed in range(2):
            u0, y, sign, bounds, steps, kw = _case_inputs(case, seed, dtype)
            kw.update(class_mean=class_mean, normalize_step=normalize_step)
            w = torch.randn(u0.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
            keep = _keep_mask(n, seed)
            for extra in ({}, {"keep": keep}):
                out = []
                for min_steps in (0, floor):
                    with torch.no_grad(), _CountOps() as ops:
                        static = P.pgd_like_perturbation(
                            u0, y, sign, bounds, steps, early_stop=False, min_steps=min_steps,
                            **extra, **kw,
                        )  # fmt: skip
                    u = u0.clone().requires_grad_(True)
                    d = P.pgd_like_perturbation(
                        u, y, sign, bounds, steps, min_steps=min_steps, **extra, **kw
                    )
                    (d * w).sum().backward()
                    out.append((static, d.detach(), u.grad, ops.calls.get("where", 0)))
                (s0, d0, g0, where0), (s1, d1, g1, where1) = out
                assert torch.equal(s1, s0) and torch.equal(d1, d0) and torch.equal(g1, g0), (
                    case, seed, extra.keys(),
                )  # fmt: skip
                # one `where` fewer in each of the first ⌊ε/α⌋ steps (one more at the end with keep)
                assert where0 - where1 == (floor - (floor > 0) if extra else floor), case
                if extra:
                    assert torch.equal(s1[~keep], torch.zeros_like(s1[~keep]))
                assert where0 >= kw["max_steps"], case


# ------------------------------------------------------------------ the static loop, compiled on a CPU
@pytest.fixture
def fresh_dynamo():
    """Dynamo's caches emptied before and after: the tests below compile the same code objects
    (``LPLLoss.forward``) many times, which would reach its recompilation limit, a hard error under
    ``fullgraph``, here or in a later test."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _recording_backend(graphs):
    """torch.compile's ``aot_eager`` (functionalised, the same ATen operations as eager mode), keeping the
    traced graphs."""
    aot_eager = torch._dynamo.lookup_backend("aot_eager")

    def backend(gm, example_inputs):
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    return backend


def _cond_nodes(graphs):
    """The ``torch.cond`` nodes of the traced graphs."""
    return [
        node
        for gm in graphs
        for node in gm.graph.nodes
        if node.target is torch.ops.higher_order.cond
    ]


def _conds(graphs):
    return len(_cond_nodes(graphs))


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3], CASES[4], CASES[6]])
def test_compiled_cpu_loop_skips_the_blocks_after_the_batch_largest_step_count(case, fresh_dynamo):
    """Compiled for a CPU without autograd, the static loop puts its masked steps in ``torch.cond``
    blocks of ``_SKIP_BLOCK`` steps that run only while a class still moves: the values are the eager
    static loop's bit for bit (``aot_eager`` runs the same operations), with rows not kept and with row
    weights; the graph holds one cond per block (none when every step is unmasked, with a fixed bound);
    with autograd the loop stays as it was."""
    n, c, alpha, eps, deps, split = case
    dtype = torch.float32
    u, y, sign, bounds, steps, kw = _case_inputs(case, 0, dtype)
    floor = P.moving_step_floor(eps, alpha, dtype)
    weight = torch.rand(n, generator=torch.Generator().manual_seed(3))
    blocks = -(-max(kw["max_steps"] - floor, 0) // P._SKIP_BLOCK)
    assert blocks == 0 if deps == 0 else blocks >= 1
    largest = int(steps.max())
    for extra in ({}, {"keep": _keep_mask(n, 0)}, {"weight": weight}):
        torch._dynamo.reset()
        graphs = []

        def loop(u, extra=extra):
            return P.pgd_like_perturbation(
                u, y, sign, bounds, steps, min_steps=floor, **extra, **kw
            )

        compiled = torch.compile(
            loop, backend=_recording_backend(graphs), fullgraph=True, dynamic=False
        )
        with torch.no_grad():
            got = compiled(u)
            want = P.pgd_like_perturbation(
                u, y, sign, bounds, steps, early_stop=False, min_steps=floor, **extra, **kw
            )
        assert torch.equal(got, want), (case, extra.keys())
        assert _conds(graphs) == blocks, (case, extra.keys(), largest)
    # with autograd: no cond (its branches would need a backward), the same values as eager
    torch._dynamo.reset()
    graphs = []
    compiled = torch.compile(
        lambda u: P.pgd_like_perturbation(u, y, sign, bounds, steps, min_steps=floor, **kw),
        backend=_recording_backend(graphs),
        fullgraph=True,
        dynamic=False,
    )
    u1, u2 = u.clone().requires_grad_(True), u.clone().requires_grad_(True)
    w = torch.randn(u.shape, generator=torch.Generator().manual_seed(4))
    (compiled(u1) * w).sum().backward()
    (
        P.pgd_like_perturbation(u2, y, sign, bounds, steps, min_steps=floor, **kw) * w
    ).sum().backward()
    assert _conds(graphs) == 0
    torch.testing.assert_close(u1.grad, u2.grad, rtol=0, atol=0)


def test_compiled_cpu_loop_blocks_run_only_while_a_class_moves(monkeypatch):
    """The blocks' condition is the batch's largest K_c: a block that starts at or after it is not run
    (its steps would mask every row), one that starts before it is. Checked with ``torch.cond`` replaced
    by what it does (the branch its condition picks, run on the operands), recording the blocks run."""
    monkeypatch.setattr(P, "_compiling", lambda: True)
    ran = []

    def cond(pred, true_fn, false_fn, operands):
        ran.append(bool(pred))
        return (true_fn if bool(pred) else false_fn)(*operands)

    monkeypatch.setattr(torch, "cond", cond)
    n, c, alpha = 24, 5, 0.01
    u, y = _batch(n, c, 0, torch.float32)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])
    for largest in (10, 11, 14, 15, 30):
        k = torch.tensor([10, 10, largest, 10, 10])
        bounds = k.float() * alpha
        ran.clear()
        with torch.no_grad():
            got = P.pgd_like_perturbation(
                u, y, sign, bounds, k, alpha=alpha, max_steps=30, early_stop=False, min_steps=10
            )
            want = P.pgd_like_perturbation(u, y, sign, bounds, k, alpha=alpha, max_steps=30)
        assert torch.equal(got, want), largest
        # blocks start at 10, 14, 18, 22, 26; those starting before the largest K_c run
        assert ran == [start < largest for start in range(10, 30, P._SKIP_BLOCK)], (largest, ran)


@pytest.mark.parametrize("normalize_step", [False, True])
def test_compiled_cpu_loop_blocks_take_only_tensors_in(normalize_step, fresh_dynamo):
    """What changes between calls of one compiled loss becomes a symbol in torch.compile's default
    (automatic dynamic) mode: a float hyper-parameter (and with it the loop's length and unmasked
    steps), the number of classes. The blocks take no symbol in (inductor refuses one there: "A subgraph
    argument other than striding has been modified"): the step counts are specialised to plain ints
    (the loop is unrolled anyway) and the blocks close over tensors only, not over sizes. The compiled
    values stay those of the eager loss."""
    graphs = []
    # Δε changes (a symbolic float), then C (a symbolic size), then validate (a third graph)
    settings = [(10, 0.2, True), (10, 0.3, True), (100, 0.3, True), (100, 0.3, False)]
    for c, delta_epsilon, validate in settings:
        u, y = _batch(64, c, 0, torch.float32)
        loss = LPLLoss(
            c, alpha=0.01, epsilon=0.1, delta_epsilon=delta_epsilon, validate=validate,
            normalize_step=normalize_step,
        )  # fmt: skip
        compiled = torch.compile(loss, backend=_recording_backend(graphs), fullgraph=True)
        with torch.no_grad():
            torch.testing.assert_close(compiled(u, y), loss(u, y))
    assert len(graphs) == len(settings)
    # 20 masked steps of 30 (Δε = 0.2) and 30 of 40: 5 and 8 blocks
    assert [_conds([gm]) for gm in graphs] == [5, 8, 8, 8]
    for node in _cond_nodes(graphs):
        values = [a.meta.get("example_value") for a in node.args[3]]
        assert all(isinstance(v, torch.Tensor) for v in values), [type(v) for v in values]


@pytest.mark.skipif(
    tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 4),
    reason="torch 2.3 compiles no loss of probability targets, with or without the blocks (it refuses "
    "the data-dependent row count of their pairs)",
)
def test_compiled_cpu_loop_blocks_with_a_data_dependent_number_of_rows(fresh_dynamo):
    """Probability targets go through the loop as one row per (sample, class) pair of nonzero mass, a
    number of rows torch.compile cannot know while it traces: the blocks' condition reads no size (an
    empty batch moves nothing), so the loss still compiles whole, with its blocks, and gives the eager
    values."""
    c = 10
    u, _ = _batch(48, c, 1, torch.float32)
    g = torch.Generator().manual_seed(5)
    target = torch.softmax(torch.randn(48, c, generator=g) * 3, dim=1)
    target[target < 0.05] = 0.0  # some pairs of zero mass: the row count depends on the values
    target = target / target.sum(1, keepdim=True)
    loss = LPLLoss(c, alpha=0.01, epsilon=0.1, delta_epsilon=0.2)
    graphs = []
    compiled = torch.compile(loss, backend=_recording_backend(graphs), fullgraph=True)
    u1, u2 = u.clone().requires_grad_(True), u.clone().requires_grad_(True)
    got, want = compiled(u1, target), loss(u2, target)
    torch.testing.assert_close(got, want)
    got.backward(), want.backward()
    torch.testing.assert_close(u1.grad, u2.grad)
    assert _conds(graphs) == 5  # 20 masked steps of 30


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_cpu_loop_blocks_recompile_under_inductor(fresh_dynamo):
    """The same under inductor, in the sequence that first failed there: the number of classes changes
    (a symbolic size), then ``validate`` (a recompilation in which the size is fixed again). A block
    that closed over a size (a fresh zero tensor per step, made from N and C) then took a symbol in, and
    inductor stopped with "A subgraph argument other than striding has been modified"."""
    for c, validate in ((10, True), (100, True), (100, False)):
        g = torch.Generator().manual_seed(3)
        u, y = torch.randn(128, c, generator=g), torch.randint(0, c, (128,), generator=g)
        loss = LPLLoss(
            c, alpha=0.01, epsilon=0.1, delta_epsilon=0.2, validate=validate, normalize_step=False
        )
        with torch.no_grad():
            torch.testing.assert_close(torch.compile(loss, fullgraph=True)(u, y), loss(u, y))
