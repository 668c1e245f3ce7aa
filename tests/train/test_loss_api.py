"""The losses as a PyTorch user meets them: eval mode, ignore_index, probability targets, weight and
label smoothing, imports and reprs, torch.compile, unambiguous parameters, LDAM outside the engine, and
float64 class constants checked against independent float64 formulas."""

import inspect
import math

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lpl_train
from lpl_train import perturbation as P
from lpl_train.loss_variation import LossVariation
from lpl_train.losses import build_loss

C = 5
COUNTS = [100, 50, 20, 10, 5]
LPL_CONFIGS = [
    {"alpha": 0.05, "epsilon": 0.3},
    {"alpha": 0.05, "epsilon": 0.2, "delta_epsilon": 0.3},
    {"alpha": 0.1, "epsilon": 0.5, "split": "index", "tau": 2},
    {
        "alpha": 0.1,
        "epsilon": 0.2,
        "delta_epsilon": 0.6,
        "split": "index",
        "tau": 2,
        "bound": "count",
    },
    {"alpha": 0.05, "epsilon": 0.3, "normalize_step": False},
    {"alpha": 0.05, "epsilon": 0.3, "differentiable": True},
]


def _batch(n=24, c=C, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.arange(n) % c
    y = y[torch.randperm(n, generator=g)]
    return u, y


def _lpl(**kw):
    return build_loss("lpl", num_classes=C, class_counts=COUNTS, **kw)


# ------------------------------------------------------------------------------------------ eval mode
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_eval_mode_is_the_unperturbed_cross_entropy(reduction):
    u, y = _batch()
    loss = _lpl(alpha=0.05, epsilon=0.3, reduction=reduction)
    trained = loss(u, y)
    assert not torch.allclose(trained, F.cross_entropy(u, y, reduction=reduction))
    assert loss.eval()(u, y).equal(F.cross_entropy(u, y, reduction=reduction))
    assert loss.train()(u, y).equal(trained)


def test_la_lpl_eval_mode_is_the_logit_adjusted_loss_and_ml_lpl_the_base_loss():
    u, y = _batch()
    la_lpl = build_loss(
        "la_lpl", num_classes=C, class_counts=COUNTS, lam=0.7, epsilon=0.5, alpha=0.1
    )
    la = build_loss("la", class_counts=COUNTS, lam=0.7)
    torch.testing.assert_close(la_lpl.eval()(u, y), la(u, y), rtol=0, atol=1e-15)
    t = (torch.rand(24, C, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    ml = build_loss("ml_lpl", num_classes=C, class_counts=COUNTS, tau=2, epsilon=0.3)
    assert ml.eval()(u, t).equal(F.binary_cross_entropy_with_logits(u, t))
    assert not torch.allclose(ml.train()(u, t), ml.eval()(u, t))
    # perturb() is the training perturbation whatever the mode (the loss-variation measurement uses it)
    assert ml.eval().perturb(u).equal(ml.train().perturb(u))


def test_loss_variation_measures_the_training_loss_even_in_eval_mode():
    u, y = _batch()
    loss = _lpl(alpha=0.05, epsilon=0.3)
    a, b = LossVariation(C), LossVariation(C)
    a.update_with(loss.train(), u, y)
    b.update_with(loss.eval(), u, y)
    assert a.compute() == b.compute()
    assert not loss.training


# ------------------------------------------------------------------------------------------ ignore_index
@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("kw", LPL_CONFIGS)
def test_ignored_rows_neither_count_nor_move_any_class(kw, validate):
    u, y = _batch(n=30)
    y_ign = y.clone()
    drop = torch.tensor([0, 3, 7, 8, 20])
    y_ign[drop] = -100
    keep = y_ign != -100
    loss = _lpl(reduction="none", validate=validate, **kw)
    per = loss(u, y_ign)
    assert per[drop].eq(0).all()  # as torch: an ignored row's loss is 0
    torch.testing.assert_close(per[keep], loss(u[keep], y[keep]), rtol=0, atol=1e-12)
    mean = _lpl(validate=validate, **kw)(u, y_ign)
    torch.testing.assert_close(mean, per[keep].mean(), rtol=0, atol=1e-12)


def test_custom_ignore_index_and_none():
    u, y = _batch()
    y2 = y.clone()
    y2[:4] = 7
    loss = _lpl(alpha=0.05, epsilon=0.3, ignore_index=7, reduction="none")
    torch.testing.assert_close(loss(u, y2)[4:], loss(u[4:], y[4:]), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="ignore_index=7"):
        loss(u, torch.full_like(y, 9))
    strict = _lpl(ignore_index=None)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        strict(u, torch.full_like(y, -100))


def test_ignore_index_with_a_preset_drops_the_rows():
    u, y = _batch(n=30)
    y_ign = y.clone()
    y_ign[:5] = -100
    loss = build_loss(
        "lpl", num_classes=C, preset="authors_balanced_fixed", steps=5, reduction="none"
    )
    per = loss(u, y_ign)
    assert per[:5].eq(0).all()
    torch.testing.assert_close(per[5:], loss(u[5:], y[5:]), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ probability targets
def _soft_reference(u, t, alpha, eps):
    """Per-class loop in float64 of LPL on probability targets: class c weighs sample i by y_ic."""
    n, c = u.shape
    mass = t.sum(0)
    prob = torch.softmax(u, 1)
    qbar = torch.where(
        mass > 0, (t * prob).sum(0) / mass.clamp_min(1e-300), torch.zeros(c, dtype=u.dtype)
    )
    present = mass > 0
    tau = qbar[present].mean()
    delta = torch.zeros(c, c, dtype=u.dtype)
    for k in range(c):
        if not present[k]:
            continue
        s = float(torch.sign(tau - qbar[k]))
        d = torch.zeros(c, dtype=u.dtype)
        for _ in range(math.floor(eps / alpha + 1e-9)):
            g = (t[:, k : k + 1] * (torch.softmax(u + d, 1) - F.one_hot(torch.tensor(k), c))).sum(0)
            d = d + s * alpha * g / mass[k]
            if d.norm() > eps:
                d = d * eps / d.norm()
        delta[k] = d
    per = torch.zeros(n, dtype=u.dtype)
    for k in range(c):
        per += t[:, k] * -torch.log_softmax(u + delta[k], 1)[:, k]
    return per


@pytest.mark.parametrize("seed", range(6))
def test_probability_targets_follow_the_mass_weighted_class_statistics(seed):
    """Mixup targets: each (sample, class) pair counts for its class with its mass, N_c = Σ_i y_ic and
    q̄_c = Σ_i y_ic q_ic / N_c; over several batches (one seed alone never flipped a sign through q̄, so
    counting pairs instead of mass went unnoticed), and the statistics themselves."""
    from lpl_train import perturbation as P

    u, y = _batch(n=20, seed=seed)
    g = torch.Generator().manual_seed(3 + seed)
    lam = torch.rand(20, 1, generator=g, dtype=torch.float64)
    perm = torch.randperm(20, generator=g)
    t = lam * F.one_hot(y, C).double() + (1 - lam) * F.one_hot(y[perm], C).double()  # mixup
    out = _lpl(alpha=0.05, epsilon=0.3, normalize_step=False, reduction="none")(u, t)
    torch.testing.assert_close(out, _soft_reference(u, t, 0.05, 0.3), rtol=0, atol=1e-12)
    rows, cols = t.nonzero(as_tuple=True)  # the pairs with mass
    counts, qbar = P.class_statistics(u[rows], cols, C, weight=t[rows, cols])
    q = u.softmax(1)
    torch.testing.assert_close(counts, t.sum(0), rtol=0, atol=1e-12)
    mass = t.sum(0)
    expected = torch.where(
        mass > 0, (t * q).sum(0) / mass.clamp_min(1e-300), torch.zeros_like(mass)
    )
    torch.testing.assert_close(qbar, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw", LPL_CONFIGS)
def test_one_hot_probabilities_equal_class_indices(kw):
    u, y = _batch(n=30)
    t = F.one_hot(y, C).double()
    for reduction in ("mean", "none"):
        a = u.clone().requires_grad_(True)
        b = u.clone().requires_grad_(True)
        hard = _lpl(reduction=reduction, **kw)(a, y)
        soft = _lpl(reduction=reduction, **kw)(b, t)
        torch.testing.assert_close(soft, hard, rtol=0, atol=1e-12)
        hard.sum().backward()
        soft.sum().backward()
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-12)


def test_one_hot_probabilities_equal_class_indices_for_la_lpl_with_weight_and_smoothing():
    u, y = _batch(n=30)
    kw = {"lam": 1.0, "epsilon": 0.3, "alpha": 0.1, "weight": [1.0, 2.0, 0.5, 1.0, 3.0]}
    kw["label_smoothing"] = 0.1
    la = build_loss("la_lpl", num_classes=C, class_counts=COUNTS, reduction="none", **kw)
    torch.testing.assert_close(la(u, F.one_hot(y, C).double()), la(u, y), rtol=0, atol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_without_perturbation_probability_targets_are_torch_cross_entropy(smoothing):
    u, y = _batch(n=16)
    g = torch.Generator().manual_seed(5)
    t = torch.softmax(torch.randn(16, C, generator=g, dtype=torch.float64) * 3, 1)
    w = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0], dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        loss = _lpl(epsilon=0.0, weight=w, label_smoothing=smoothing, reduction=reduction)
        ref = F.cross_entropy(u, t, weight=w, label_smoothing=smoothing, reduction=reduction)
        torch.testing.assert_close(loss(u, t), ref, rtol=0, atol=1e-12)


def test_dense_probability_targets_warn_once_and_smoothing_belongs_to_the_loss():
    """Label-smoothed mixup targets (every pair non-zero) cost one perturbed row per (sample, class) pair:
    warned once per loss. The remedy the warning gives, unsmoothed targets with the smoothing given to the
    loss, has at most two pairs per row, no warning, and equals torch's cross-entropy of the smoothed
    targets without perturbation."""
    c, n = 40, 8
    g = torch.Generator().manual_seed(3)
    u = torch.randn(n, c, generator=g, dtype=torch.float64)
    y, perm = torch.randint(0, c, (n,), generator=g), torch.randperm(n, generator=g)
    hard = F.one_hot(y, c).double()
    mixed = 0.7 * hard + 0.3 * hard[perm]
    smoothed = mixed * 0.9 + 0.1 / c  # what timm's Mixup(label_smoothing=0.1) gives
    loss = build_loss("lpl", num_classes=c, alpha=0.05, epsilon=0.2)
    with pytest.warns(
        UserWarning, match=r"hold 320 \(sample, class\) pairs .* for 8 rows.*about 40x"
    ):
        loss(u, smoothed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(u, smoothed)  # once per loss
        remedy = build_loss("lpl", num_classes=c, epsilon=0.0, label_smoothing=0.1)
        got = remedy(u, mixed)
        build_loss("lpl", num_classes=c, alpha=0.05, epsilon=0.2, label_smoothing=0.1)(u, mixed)
    torch.testing.assert_close(got, F.cross_entropy(u, smoothed), rtol=0, atol=1e-12)
    # the threshold: 16 pairs per row on average (128 here) do not warn, 129 do
    at = torch.zeros(n, c, dtype=torch.float64)
    at[:, :16] = 1.0 / 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_loss("lpl", num_classes=c, alpha=0.05, epsilon=0.2)(u, at)
    past = at.clone()
    past[0, :17] = 1.0 / 17
    with pytest.warns(UserWarning, match=r"hold 129 \(sample, class\) pairs"):
        build_loss("lpl", num_classes=c, alpha=0.05, epsilon=0.2)(u, past)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_weight_and_label_smoothing_act_on_the_final_cross_entropy(smoothing):
    u, y = _batch(n=30)
    w = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0], dtype=torch.float64)
    y2 = y.clone()
    y2[:3] = -100
    loss = _lpl(alpha=0.05, epsilon=0.3, weight=w, label_smoothing=smoothing)
    plain = _lpl(alpha=0.05, epsilon=0.3)
    ref = F.cross_entropy(plain.perturb(u, y2), y2, weight=w, label_smoothing=smoothing)
    torch.testing.assert_close(loss(u, y2), ref, rtol=0, atol=1e-12)
    assert "weight=[1.0, 2.0, 0.5, 1.5, 3.0]" in repr(loss)


def test_soft_targets_refusals_say_what_is_supported():
    u, y = _batch()
    with pytest.raises(TypeError, match=r"class indices .* or class probabilities"):
        _lpl()(u, y.double())
    with pytest.raises(ValueError, match="sum to 1"):
        _lpl()(u, F.one_hot(y, C).double() * 0.5)
    with pytest.raises(ValueError, match="finite and >= 0"):
        _lpl()(u, F.one_hot(y, C).double() * 2 - 0.5)
    preset = build_loss("lpl", num_classes=C, preset="authors_balanced_fixed")
    with pytest.raises(ValueError, match="supported without a preset"):
        preset(u, F.one_hot(y, C).double())
    with pytest.raises(ValueError, match="perturb\\(\\) takes class-index targets"):
        _lpl().perturb(u, F.one_hot(y, C).double())


@pytest.mark.parametrize("c", [10, 100, 1000])
@pytest.mark.filterwarnings("ignore:lpl. the probability targets hold")  # dense targets on purpose
def test_the_row_sum_check_does_not_loosen_with_the_class_count(c):
    """Rows summing to 0.91, 1.9 or 0 are refused at every C (the tolerance scaled with C once, and let
    them through at C = 100 and 1000); the rounding of a float32 normalisation or of a bfloat16 target
    passes."""
    g = torch.Generator().manual_seed(c)
    u = torch.randn(6, c, generator=g)
    y = torch.randint(0, c, (6,), generator=g)
    soft = torch.rand(6, c, generator=g)
    soft = soft / soft.sum(1, keepdim=True)  # float32: sums within a few roundings of 1
    for loss in (build_loss("lpl", num_classes=c), build_loss("ce", num_classes=c)):
        assert torch.isfinite(loss(u, soft))
        smoothed = (F.one_hot(y, c) * 0.9 + 0.1 / c).bfloat16()  # bf16's rounding
        assert torch.isfinite(loss(u, smoothed))
        for bad in (soft * 0.91, soft * 1.9, torch.zeros(6, c)):
            with pytest.raises(ValueError, match="sum to 1"):
                loss(u, bad)


# ------------------------------------------------------------------------------------------ imports, reprs
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_the_row_sum_tolerance_is_the_documented_one(dtype, tol):
    """Rows of class probabilities may sum to 1 within 1e-9 (float64) or 1e-5 (float32), no more: a row
    off by 3·tol is refused, one off by tol/2 accepted (by LPL and by CE alike)."""
    u, y = _batch(n=6)
    onehot = F.one_hot(y, C).to(dtype)
    u = u.to(dtype)
    for loss in (_lpl(), build_loss("ce")):
        near = onehot.clone()
        near[0, 0] += tol / 2
        assert torch.isfinite(loss(u, near))
        off = onehot.clone()
        off[0, 0] += 3 * tol
        with pytest.raises(ValueError, match="sum to 1"):
            loss(u, off)


def test_every_loss_class_imports_from_the_package():
    import lpl_train.losses as L
    from lpl_train.losses import (  # noqa: F401
        BCELoss,
        CenterLoss,
        ClassBalancedCELoss,
        ClassBalancedFocalBCELoss,
        ClassBalancedFocalLoss,
        CrossEntropyLoss,
        DBLoss,
        DisturbLabelLoss,
        FocalBCELoss,
        FocalLoss,
        GeneralizedCELoss,
        ISDALoss,
        LALPLLoss,
        LargeMarginSoftmaxLoss,
        LDAMLoss,
        LogitAdjustedLoss,
        LPLLoss,
        MultiLabelLPLLoss,
        RebalancedBCELoss,
        ReweightedBCELoss,
        registry,
    )

    for name, cls in registry._REGISTRY.items():
        if cls.__module__.startswith("lpl_train.losses"):
            assert getattr(L, cls.__name__) is cls, name
            assert cls.__name__ in L.__all__


@pytest.mark.parametrize(
    ("name", "params", "shown"),
    [
        ("la", {"lam": 1.5}, "lam=1.5"),
        ("ldam", {"max_m": 0.3, "s": 20.0, "drw_epoch": 4}, "max_m=0.3, s=20.0, drw_epoch=4"),
        ("focal", {"gamma": 2.0}, "gamma=2.0"),
        ("cb_focal", {"beta": 0.999}, "beta=0.999, gamma=1.0, variant='sigmoid'"),
        ("isda", {"lambda0": 0.25}, "lambda0=0.25"),
        ("large_margin", {"margin": 3}, "margin=3"),
        ("disturb_label", {"alpha": 0.2}, "alpha=0.2"),
        ("center", {"weight": 0.01}, "weight=0.01"),
        ("lq", {"q": 0.5}, "q=0.5"),
        ("rw_bce", {"power": 0.5}, "power=0.5"),
        ("focal_bce", {"focal_gamma": 1.0}, "focal_gamma=1.0"),
        ("rbce", {"map_mu": 0.2}, "map_mu=0.2"),
        ("rbce_focal_ntr", {"num_samples": 400}, "neg_scale=5.0, init_bias=0.05, num_samples=400"),
        ("ce", {"reduction": "sum"}, "reduction='sum'"),
    ],
)
def test_baseline_reprs_show_their_hyper_parameters(name, params, shown):
    loss = build_loss(name, num_classes=C, class_counts=COUNTS, **params)
    assert shown in repr(loss)


# ------------------------------------------------------------------------------------------ torch.compile
def test_torch_compile_with_validation_on(monkeypatch):
    """Validation is compile-friendly: the data-dependent checks are skipped while dynamo traces, so
    the validating losses compile to one graph (``fullgraph=True`` fails on any host read) and give the
    eager values."""
    u, y = _batch(dtype=torch.float32)
    loss = _lpl(alpha=0.05, epsilon=0.3)
    assert loss.validate
    out = torch.compile(loss, backend="eager", fullgraph=True)(u, y)
    torch.testing.assert_close(out, loss(u, y))
    ml = build_loss("ml_lpl", num_classes=C, class_counts=COUNTS, tau=2, epsilon=0.3)
    t = (torch.rand(24, C, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    compiled_ml = torch.compile(ml, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled_ml(u, t), ml(u, t))
    # the guard itself: while compiling, no host read happens (an out-of-range label is not read)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    target, maybe_ignored = P.check_index_target(torch.full_like(y, 99), u, ignore_index=-100)
    assert maybe_ignored is True and target.dtype == torch.int64
    with pytest.raises(ValueError, match="target must have shape"):
        P.check_index_target(y[:-1], u)  # shapes are still checked


# ------------------------------------------------------------------------------------------ parameter traps
def test_la_scale_is_lam_and_tau_is_a_deprecated_alias():
    u, y = _batch()
    with pytest.warns(DeprecationWarning, match="lam"):
        old = build_loss("la", class_counts=COUNTS, tau=1.5)
    assert old(u, y).equal(build_loss("la", class_counts=COUNTS, lam=1.5)(u, y))
    with (
        pytest.raises(ValueError, match="give the scale once, as lam"),
        pytest.warns(DeprecationWarning),
    ):
        build_loss("la", class_counts=COUNTS, lam=2.0, tau=1.5)
    with pytest.warns(DeprecationWarning):
        from lpl_train.losses.single_label import logit_adjust_posthoc

        logit_adjust_posthoc(u, COUNTS, tau=1.0)


def _assert_warns_at_its_own_line(fn):
    """``fn`` (a one-line lambda) warns, and every warning names the line of this file that holds it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    assert caught, fn
    where = {(Path(w.filename).name, w.lineno) for w in caught}
    assert where == {(Path(__file__).name, fn.__code__.co_firstlineno)}, (where, caught[0])


def test_a_construction_warning_names_the_line_that_built_the_loss():
    """Python files a warning under the line its ``stacklevel`` names, and shows a DeprecationWarning by
    default only where that line is in ``__main__``: a warning of a loss's arguments names the caller's
    line, whether it built the loss directly or through ``build_loss``, not a line of the loss code."""
    from lpl_train.losses import LogitAdjustedLoss, LPLLoss

    builds = [
        lambda: build_loss("la", class_counts=COUNTS, tau=1.5),
        lambda: LogitAdjustedLoss(COUNTS, tau=1.5),
        lambda: LPLLoss(num_classes=C, class_counts=COUNTS),
        lambda: LPLLoss(num_classes=C, class_counts=COUNTS, split="index", tau=0),
        lambda: build_loss("lpl", num_classes=C, class_counts=COUNTS, split="index", tau=0),
        lambda: build_loss("la_lpl", num_classes=C, class_counts=COUNTS, tau=1.0),
        lambda: LPLLoss(num_classes=C, alpha=1.0, epsilon=0.1),
        lambda: build_loss("la_lpl", num_classes=C, class_counts=COUNTS, alpha=1.0),
        lambda: LPLLoss(num_classes=C, class_counts=COUNTS, split="index", bound="count"),
    ]
    for build in builds:
        _assert_warns_at_its_own_line(build)


def test_a_warning_of_a_call_names_the_line_that_called_the_loss():
    """Warnings raised while a loss runs (an epoch hook never called, logits that are not cosines, dense
    probability targets, a bias L-Softmax cannot train) name the line that called it, through torch's
    ``Module.__call__`` and the package's own functions, not a line of torch or of the loss code."""
    from lpl_train.losses import DistributionBalancedLoss

    u, y = torch.randn(8, C, dtype=torch.float64) * 3, torch.arange(8) % C
    wide, dense = (
        torch.randn(8, 40, dtype=torch.float64),
        torch.full((8, 40), 1 / 40, dtype=torch.float64),
    )
    features = torch.randn(8, 3, dtype=torch.float64)
    head = nn.Linear(3, C).double()
    calls = [
        lambda: build_loss("ldam", class_counts=COUNTS, drw_epoch=1)(u, y),  # twice: DRW, cosines
        lambda: build_loss("lpl", num_classes=C, class_counts=COUNTS, drw_epoch=1)(u, y),
        lambda: build_loss("lpl", num_classes=40, alpha=0.05, epsilon=0.2)(wide, dense),
        lambda: build_loss("large_margin")(features, y, head),
        lambda: DistributionBalancedLoss(COUNTS),
    ]
    for call in calls:
        _assert_warns_at_its_own_line(call)


def test_an_lpl_with_drw_compiles_whole_without_its_epoch_hook():
    """``torch.compile(fullgraph=True)`` cannot trace ``warnings.warn``: the "set_epoch never called"
    warning of an LPL with ``drw_epoch`` stopped the compile of a loss whose hook was not called yet
    (the eager call warns); the compiled loss equals the eager one."""
    loss = build_loss("lpl", num_classes=C, class_counts=COUNTS, drw_epoch=1)
    u, y = torch.randn(8, C) * 3, torch.arange(8) % C
    got = torch.compile(loss, fullgraph=True, backend="eager")(u, y)
    with pytest.warns(UserWarning, match="set_epoch"):
        want = build_loss("lpl", num_classes=C, class_counts=COUNTS, drw_epoch=1)(u, y)
    torch.testing.assert_close(got, want)


def test_la_lpl_warns_when_tau_makes_every_class_a_head_class():
    with pytest.warns(UserWarning, match=r"tau=1.0 puts every class in the head .*lam"):
        build_loss("la_lpl", num_classes=C, class_counts=COUNTS, tau=1.0)
    with pytest.warns(UserWarning, match="tail"):
        build_loss("lpl", num_classes=C, class_counts=COUNTS, split="index", tau=0)


def test_index_split_defaults_are_consistent_and_visible():
    sig = inspect.signature(build_loss("la_lpl", num_classes=C, class_counts=COUNTS).__init__)
    assert sig.parameters["split"].default == "index"
    assert sig.parameters["tau"].default == 0.4
    assert _lpl(split="index").head == _lpl(split="index", tau=0.4).head == 2
    la = build_loss("la_lpl", num_classes=C, class_counts=COUNTS)
    assert la.split == "index" and la.head == 2
    # the default head size applies to the index split only
    mean = build_loss("la_lpl", num_classes=C, class_counts=COUNTS, split="mean")
    assert mean.split == "mean" and mean.head is None


def test_parameters_without_effect_warn():
    from lpl_train.losses import LPLLoss

    with pytest.warns(UserWarning, match="class_counts has no effect with split='mean'"):
        LPLLoss(C, class_counts=COUNTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _lpl()  # the engine passes class_counts to every loss: no warning through build_loss
        LPLLoss(C, class_counts=COUNTS, split="index", tau=2)
    with pytest.warns(UserWarning, match="bound='count' has no effect with delta_epsilon=0"):
        _lpl(split="index", tau=2, bound="count")


def test_no_shipped_config_warns_when_its_loss_is_built():
    from importlib import resources

    folder = resources.files("lpl_train") / "configs"
    checked = 0
    for path in sorted(Path(str(folder)).glob("*.toml")):
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
        name, params = cfg["loss"]["name"], dict(cfg["loss"].get("params", {}))
        built = False
        for c in (2, 10, 20, 80, 100, 1000, 5089, 8142):
            counts = [max(1, int(1000 * 0.99**k)) for k in range(c)]
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                try:
                    build_loss(name, num_classes=c, class_counts=counts, **params)
                except ValueError:
                    continue
            built = True
            break
        assert built, path.name
        checked += 1
    assert checked >= 100


def test_large_step_counts_are_refused_at_construction():
    with pytest.raises(ValueError, match="alpha=1e-300 .* inner steps"):
        _lpl(alpha=1e-300, epsilon=1.0)
    with pytest.raises(ValueError, match=r"epsilon=1e\+308"):
        _lpl(epsilon=1e308, delta_epsilon=1e308)
    with pytest.raises(ValueError, match="at most 10000"):
        _lpl(alpha=1e-5, epsilon=1.0)
    assert _lpl(alpha=0.01, epsilon=5.0).epsilon == 5.0


def test_numpy_integer_num_classes_is_accepted():
    loss = build_loss("lpl", num_classes=np.int64(C), class_counts=np.array(COUNTS))
    assert loss.num_classes == C and type(loss.num_classes) is int


def test_ml_lpl_names_base_loss_when_it_is_single_label():
    for base in ("ce", "lpl", "la"):
        with pytest.raises(ValueError, match=f"base_loss='{base}' is a single-label loss"):
            build_loss("ml_lpl", num_classes=C, class_counts=COUNTS, base_loss=base)


# ------------------------------------------------------------------------------------------ LDAM outside the engine
def test_ldam_warns_when_drw_is_configured_but_the_epoch_hook_is_never_called():
    u = torch.tanh(_batch()[0])
    y = _batch()[1]
    loss = build_loss("ldam", class_counts=COUNTS, drw_epoch=0)
    with pytest.warns(UserWarning, match=r"set_epoch\(epoch, total_epochs\) was never called"):
        loss(u, y)
    hooked = build_loss("ldam", class_counts=COUNTS, drw_epoch=0)
    hooked.set_epoch(0, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hooked(u, y)
        build_loss("ldam", class_counts=COUNTS)(u, y)  # no DRW, no hook needed
    assert not torch.allclose(hooked(u, y), build_loss("ldam", class_counts=COUNTS)(u, y))


def test_ldam_warns_on_raw_logits_not_on_the_cosine_head():
    from lpl_train.models.heads import NormedLinear

    head = NormedLinear(8, C)
    x = torch.randn(24, 8, generator=torch.Generator().manual_seed(0)) * 5
    y = _batch()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_loss("ldam", class_counts=COUNTS)(head(x), y)
    with pytest.warns(UserWarning, match=r"cosine logits in \[-1, 1\] .*NormedLinear"):
        build_loss("ldam", class_counts=COUNTS)(x[:, :C], y)


def test_ldam_max_m_zero_is_scaled_cross_entropy():
    u = torch.tanh(_batch()[0])
    y = _batch()[1]
    out = build_loss("ldam", class_counts=COUNTS, max_m=0.0, s=30.0)(u, y)
    torch.testing.assert_close(out, F.cross_entropy(30.0 * u, y), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ R-BCE's name
def test_rbce_class_name_is_not_timms_distribution_balanced_loss():
    from lpl_train.losses import DBLoss, DistributionBalancedLoss, RebalancedBCELoss

    assert type(build_loss("rbce", class_counts=COUNTS)) is RebalancedBCELoss
    assert type(build_loss("rbce_focal_ntr", class_counts=COUNTS, num_samples=400)) is DBLoss
    with pytest.warns(DeprecationWarning, match="RebalancedBCELoss"):
        old = DistributionBalancedLoss(COUNTS)
    assert isinstance(old, RebalancedBCELoss)


# ------------------------------------------------------------------------------------------ half precision features
@pytest.mark.filterwarnings("ignore:large_margin. the classifier has a bias:UserWarning")
@pytest.mark.parametrize("name", ["isda", "center", "large_margin"])
def test_feature_losses_upcast_half_features(name):
    fc = nn.Linear(6, C)
    x = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % C
    for dtype in (torch.float16, torch.bfloat16):
        loss = build_loss(name, num_classes=C)
        out = loss(x.to(dtype), y, fc)
        ref = build_loss(name, num_classes=C)(x.to(dtype).float(), y, fc)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref)


@pytest.mark.filterwarnings("ignore:large_margin. the classifier has a bias:UserWarning")
@pytest.mark.parametrize("name", ["isda", "center", "large_margin"])
def test_feature_losses_run_under_autocast(name):
    """Called inside bfloat16 autocast (the classifier's product comes in bfloat16): a float32 value near
    the one outside it. L-Softmax put its float32 margin logit into the bfloat16 logits and failed."""
    fc = nn.Linear(8, C, bias=False)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.arange(64) % C
    loss = build_loss(name, num_classes=C, reduction="none")
    if name == "isda":
        loss.set_epoch(5, 10)
        loss(x, y, fc)  # statistics to augment with
    loss.eval()
    ref = loss(x, y, fc)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(x, y, fc)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0.02, atol=0.05)


def test_isda_augments_autocast_logits_in_float32():
    """Under bfloat16 autocast the head's logits come in bfloat16; the augmentation ``lambda/2 q`` is added in
    float32, as ``la`` adds its adjustment (added in bfloat16, the sum was rounded to bfloat16's 8 bits:
    up to 0.02 per sample off here, against 0.006 for autocast's bfloat16 quadratic term alone)."""
    g = torch.Generator().manual_seed(0)
    c = 10
    fc = nn.Linear(64, c)
    loss = build_loss("isda", num_classes=c, reduction="none")
    loss.set_epoch(10, 10)
    for _ in range(3):
        loss(torch.randn(512, 64, generator=g) * 3, torch.randint(0, c, (512,), generator=g), fc)
    loss.eval()
    x, y = torch.randn(512, 64, generator=g) * 3, torch.randint(0, c, (512,), generator=g)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        u = fc(x)
        aug, got = loss.augmented_logits(x, y, fc), loss(x, y, fc)
    assert u.dtype == torch.bfloat16 and aug.dtype == torch.float32
    # the quadratic term by its definition, in float64: (w_c - w_y)^T Sigma_y (w_c - w_y)
    w, cov = fc.weight.detach().double(), loss.covariance.double()
    d = w[None, :, :] - w[y][:, None, :]
    q = torch.einsum("nca,nab,ncb->nc", d, cov[y], d)
    want = F.cross_entropy(u.double() + 0.5 * loss.lam * q, y, reduction="none")
    torch.testing.assert_close(got.double(), want, rtol=0, atol=0.01)


def test_center_refuses_a_classifier_of_another_class_count():
    loss = build_loss("center", num_classes=C)
    with pytest.raises(ValueError, match="classifier has 4 outputs, expected num_classes=5"):
        loss(torch.randn(3, 6), torch.tensor([0, 1, 2]), nn.Linear(6, 4))


# ------------------------------------------------------------------------------------------ float64 is float64
def _f64(x):
    return torch.tensor(x, dtype=torch.float64)


def test_float64_logit_adjustment_matches_the_formula():
    u, y = _batch()
    counts = _f64(COUNTS)
    log_prior = torch.log(counts / counts.sum())
    ref = F.cross_entropy(u + 1.3 * log_prior, y)
    out = build_loss("la", class_counts=COUNTS, lam=1.3)(u, y)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    la_lpl = build_loss("la_lpl", num_classes=C, class_counts=COUNTS, lam=1.3)
    torch.testing.assert_close(la_lpl.adjust(u), u + 1.3 * log_prior, rtol=0, atol=1e-13)


def test_float64_ldam_margins_and_drw_weights_match_the_formula():
    u = torch.tanh(_batch()[0])
    y = _batch()[1]
    n = _f64(COUNTS)
    m = n**-0.25
    m = m * 0.5 / m.max()
    beta = 0.999
    raw = (1 - beta) / (1 - beta**n)
    w = raw * C / raw.sum()
    z = 30.0 * (u - F.one_hot(y, C).double() * m[y][:, None])
    ref = F.cross_entropy(z, y, weight=w)
    loss = build_loss("ldam", class_counts=COUNTS, max_m=0.5, s=30.0, drw_epoch=0, drw_beta=beta)
    loss.set_epoch(0, 1)
    torch.testing.assert_close(loss(u, y), ref, rtol=0, atol=1e-12)


def test_float64_class_balanced_weights_match_the_formula():
    u, y = _batch()
    n = _f64(COUNTS)
    raw = (1 - 0.99) / (1 - 0.99**n)
    w = raw * C / raw.sum()
    ref = (w[y] * F.cross_entropy(u, y, reduction="none")).mean()
    out = build_loss("cb_ce", class_counts=COUNTS, beta=0.99)(u, y)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_float64_multi_label_buffers_match_the_formula():
    u, _ = _batch()
    t = (torch.rand(24, C, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    # head = the 2 most frequent classes: logit + ε (head) or − ε (tail), ε exactly 0.1
    ml = build_loss("ml_lpl", num_classes=C, class_counts=COUNTS, tau=2, epsilon=0.1)
    shift = _f64([0.1, 0.1, -0.1, -0.1, -0.1])
    assert ml.perturb(u).equal(u + shift)
    # varied: ε + Δε·n_c/n_max (head), ε + Δε·n_min/n_c (tail)
    n = _f64(COUNTS)
    ratio = torch.cat([n[:2] / n.max(), n.min() / n[2:]])
    ml = build_loss(
        "ml_lpl", num_classes=C, class_counts=COUNTS, tau=2, epsilon=0.1, delta_epsilon=0.3
    )
    sgn = _f64([1, 1, -1, -1, -1])
    torch.testing.assert_close(ml.perturb(u), u + sgn * (0.1 + 0.3 * ratio), rtol=0, atol=1e-15)
    # re-weighted BCE and R-BCE weights (1/n in float64)
    inv = 1 / n
    rw = build_loss("rw_bce", class_counts=COUNTS, reduction="none")
    bce = F.binary_cross_entropy_with_logits(u, t, reduction="none")
    torch.testing.assert_close(rw(u, t), bce * inv * C / inv.sum(), rtol=0, atol=1e-13)
    rate = (t * inv).sum(1, keepdim=True)
    r = inv / rate
    wr = torch.where(rate > 0, 0.1 + torch.sigmoid(10 * (r - 0.3)), torch.full_like(r, 1.1))
    rb = build_loss("rbce", class_counts=COUNTS, reduction="none")
    torch.testing.assert_close(rb(u, t), wr * bce, rtol=0, atol=1e-13)


def test_float64_lpl_count_bound_ratio_matches_the_formula():
    n = _f64(COUNTS)
    loss = _lpl(split="index", tau=2, bound="count", delta_epsilon=0.5)
    expected = torch.cat([n[:2] / n.max(), n.min() / n[2:]])
    assert loss.count_ratio.dtype == torch.float64
    torch.testing.assert_close(loss.count_ratio, expected, rtol=0, atol=1e-16)


def test_float64_loss_variation_is_computed_in_float64():
    u, y = _batch()
    d = _f64([0.1, -0.2, 0.3, 0.0, 0.05])
    lv = LossVariation(C)
    lv.update(u, y, perturbed_logits=u + d)
    res = lv.compute()
    base = F.cross_entropy(u, y, reduction="none")
    pert = F.cross_entropy(u + d, y, reduction="none")
    for k in range(C):
        m = y == k
        ref = float((pert[m].mean() - base[m].mean()) / base[m].mean())
        assert res["relative_variation"][k] == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_float32_keeps_the_float32_constants():
    """float32 logits meet the float64 constants rounded once to float32 (never promoted)."""
    u, y = _batch(dtype=torch.float32)
    la = build_loss("la", class_counts=COUNTS, lam=1.0)
    assert la.log_prior.dtype == torch.float64
    out = la(u, y)
    assert out.dtype == torch.float32
    ref = F.cross_entropy(u + 1.0 * la.log_prior.float(), y)
    assert out.equal(ref)


def test_version_is_exposed():
    import lpl_theory

    assert isinstance(lpl_train.__version__, str) and lpl_train.__version__
    assert lpl_theory.__version__ == lpl_train.__version__


@pytest.mark.parametrize("name", ["ce", "la"])
def test_ce_and_la_take_torch_cross_entropy_arguments(name):
    u, y = _batch()
    w = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0], dtype=torch.float64)
    y2 = y.clone()
    y2[:3] = -100
    t = torch.softmax(
        torch.randn(24, C, generator=torch.Generator().manual_seed(2), dtype=torch.float64), 1
    )
    kw = {"weight": w, "label_smoothing": 0.1}
    loss = build_loss(name, num_classes=C, class_counts=COUNTS, **kw)
    shift = 0.0 if name == "ce" else torch.log(_f64(COUNTS) / sum(COUNTS))
    for target in (y2, t):
        ref = F.cross_entropy(u + shift, target, weight=w, label_smoothing=0.1)
        torch.testing.assert_close(loss(u, target), ref, rtol=0, atol=1e-12)
    assert "label_smoothing=0.1" in repr(loss)
    with pytest.raises(ValueError, match="weight has 5 entries"):
        build_loss("ce", weight=w)(u[:, :4], y % 4)


def test_every_loss_of_logits_scores_autocast_half_precision_in_float32():
    """Under autocast the logits come in bfloat16; every registered loss of logits returns a float32 value
    (torch's cross-entropy and LPL always did; focal, class-balanced, Lq and the R-BCE family returned
    bfloat16)."""
    import warnings

    from lpl_train.losses.registry import available_losses

    n, c, counts = 32, 5, [500, 300, 200, 100, 50]
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(8, c)
    x, y = torch.randn(n, 8, generator=g), torch.randint(0, c, (n,), generator=g)
    t = (torch.rand(n, c, generator=g) > 0.6).float()
    checked = []
    for name in available_losses():
        kw = {"num_classes": c, "class_counts": counts}
        if name in ("rbce_ntr", "rbce_focal_ntr"):
            kw["num_samples"] = 2000
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = build_loss(name, **kw)
        if getattr(loss, "needs_features", False) or not type(loss).__module__.startswith(
            "lpl_train"
        ):
            continue  # (other tests register losses of their own)
        if hasattr(loss, "set_epoch"):
            loss.set_epoch(5, 10)
        with torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LDAM's note on logits that are not cosines
            out = loss(lin(x), t if getattr(loss, "multi_label", False) else y)
        assert out.dtype == torch.float32, (name, out.dtype)
        checked.append(name)
    assert {"focal", "cb_ce", "cb_focal", "lq", "rbce", "rbce_focal", "ce", "lpl"} <= set(checked)


def test_la_adjusts_autocast_half_logits_in_float32_as_la_lpl_does():
    """Under bfloat16 autocast ``la`` added ``lam log(pi)`` to the bfloat16 logits (rounded to bfloat16's
    8 bits: up to 0.03 per sample off the float32 adjustment, 0.05 off ``la_lpl`` in eval mode)."""
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(16, 10)
    x, y = torch.randn(512, 16, generator=g) * 3, torch.randint(0, 10, (512,), generator=g)
    la = build_loss("la", class_counts=counts, reduction="none")
    la_lpl = build_loss("la_lpl", num_classes=10, class_counts=counts, reduction="none").eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u = lin(x)
        got, base = la(u, y), la_lpl(u, y)
    assert u.dtype == torch.bfloat16 and got.dtype == torch.float32
    want = la(u.float(), y)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(got, base, rtol=0, atol=1e-6)
    p = torch.softmax(torch.randn(512, 10, generator=g), 1)  # probability targets too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = la(lin(x), p)
    torch.testing.assert_close(got, la(u.float(), p), rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:lpl. the probability targets hold")  # dense targets on purpose
def test_half_precision_targets_with_subnormal_entries_pass_the_row_sum_check():
    """Label-smoothed targets at C = 50,000 in float16: entries of 0.1/C are subnormal and round to 2**-24
    absolutely, so rows sum 1.2e-3 off 1 (float16's eps is 9.8e-4, the tolerance without them); they are
    accepted, and a row summing to 0.99 is still refused."""
    from lpl_train import perturbation as P

    c = 50_000
    y = torch.tensor([3, 40_000])
    t = (F.one_hot(y, c).float() * 0.9 + 0.1 / c).half()
    assert (t.float().sum(1) - 1).abs().max() > torch.finfo(torch.float16).eps
    x = torch.zeros(2, c, dtype=torch.float16)
    P.check_probability_target(t, x)
    with pytest.raises(ValueError, match="sum to 1"):
        P.check_probability_target(t * 0.99, x)
