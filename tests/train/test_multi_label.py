"""Multi-label baselines against hand-computed cases and their defining properties."""

import math

import pytest
import torch
import torch.nn.functional as F

from lpl_train.losses import build_loss
from lpl_train.losses.lpl_multi_label import MultiLabelLPLLoss
from lpl_train.losses.multi_label import (
    ClassBalancedFocalBCELoss,
    RebalancedBCELoss,
    ntr_bias,
    rebalanced_weights,
)
from lpl_train.losses.single_label import class_balanced_weights

MULTI = [
    "bce",
    "rw_bce",
    "focal_bce",
    "cb_focal_bce",
    "rbce",
    "rbce_focal",
    "rbce_ntr",
    "rbce_focal_ntr",
    "rbce_lc",
    "rbce_focal_lc",
]
COUNTS = [40, 12, 3, 25]
N_TRAIN = 60


def _build(name, **kw):
    if name.endswith("_ntr"):
        kw.setdefault("num_samples", N_TRAIN)
    return build_loss(name, num_classes=4, class_counts=COUNTS, **kw)


def _data(n=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g, dtype=dtype) * 3
    y = (torch.rand(n, 4, generator=g) < 0.4).to(dtype)
    y[0] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype)
    y[1] = 0  # an image with no positive label
    return z, y


def _sp(x):
    return math.log1p(math.exp(x))


def _sig(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("name", MULTI)
def test_elementwise_reduction_and_dtype_agreement(name):
    z, y = _data()
    per = _build(name, reduction="none").double()(z, y)
    assert per.shape == (6, 4)
    torch.testing.assert_close(_build(name, reduction="mean").double()(z, y), per.mean())
    torch.testing.assert_close(_build(name, reduction="sum").double()(z, y), per.sum())
    z32 = z.float().requires_grad_(True)
    out32 = _build(name)(z32, y.float())
    out32.backward()
    assert torch.isfinite(z32.grad).all()
    torch.testing.assert_close(out32.double(), per.mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MULTI)
def test_gradcheck_and_extreme_logits(name):
    z, y = _data(n=3)
    loss = _build(name).double()
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (z.clone().requires_grad_(True),))
    big = torch.tensor([[90.0, -90.0, 0.0, 30.0]] * 2, requires_grad=True)
    yy = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    out = _build(name)(big, yy)
    (g,) = torch.autograd.grad(out, big)
    assert torch.isfinite(out) and torch.isfinite(g).all()


def test_bce_hand_computed():
    z = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0]])
    out = build_loss("bce", reduction="none")(z, y)
    torch.testing.assert_close(out, torch.tensor([[math.log(2.0), _sp(2.0)]]))


def test_rw_bce_weights_are_inverse_frequency_summing_to_c():
    loss = _build("rw_bce")
    inv = torch.tensor([1 / n for n in COUNTS], dtype=torch.float64)
    torch.testing.assert_close(loss.weight, 4 * inv / inv.sum())
    z, y = _data()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    torch.testing.assert_close(loss.double()(z, y), (bce * loss.weight.double()).mean())
    torch.testing.assert_close(_build("rw_bce", power=0.0).double()(z, y), bce.mean())


def test_focal_bce_hand_and_gamma_zero():
    z, y = _data()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    loss = build_loss("focal_bce", focal_gamma=0.0, focal_balance=1.0, reduction="none")
    torch.testing.assert_close(loss(z, y), bce)
    # logit 1, label 1: p_t = sigmoid(1); logit 1, label 0: p_t = sigmoid(-1); gamma 2, balance 2
    out = build_loss("focal_bce", reduction="none")(
        torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    )
    expected = [2 * (1 - _sig(1)) ** 2 * _sp(-1), 2 * (1 - _sig(-1)) ** 2 * _sp(1)]
    torch.testing.assert_close(out, torch.tensor([expected]))


def test_cb_focal_bce_sample_weights_average_positive_classes():
    loss = ClassBalancedFocalBCELoss(COUNTS, beta=0.9)
    cw = class_balanced_weights(COUNTS, 0.9)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    w = loss.sample_weights(y)
    # an image with no positive label: weight 1, the mean class weight (they sum to C)
    expected_w = torch.stack([(cw[0] + cw[2]) / 2, cw.mean(), cw[1]])[:, None]
    torch.testing.assert_close(w, expected_w.float())
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    expected = 2.0 * (1 - torch.exp(-bce)) ** 2 * w * bce
    torch.testing.assert_close(ClassBalancedFocalBCELoss(COUNTS, reduction="none")(z, y), expected)


def test_cb_focal_bce_sample_weights_of_an_integer_or_bool_target():
    """A multi-hot target of 0/1 integers or bools gets the float weights of the float target: the class
    weights were cast to the target's dtype, so int64 truncated them (0.5 for 0.65 and 1.6) and bool
    made every weight 1."""
    loss = ClassBalancedFocalBCELoss(COUNTS, beta=0.9)
    cw = class_balanced_weights(COUNTS, 0.9)
    y = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]])
    expected = torch.stack([(cw[0] + cw[2]) / 2, torch.ones((), dtype=cw.dtype), cw[1]])[:, None]
    for target in (y, y.bool(), y.to(torch.uint8)):
        w = loss.sample_weights(target)
        assert w.dtype == torch.float32
        torch.testing.assert_close(w, expected.float())


def test_rebalanced_weights_hand_computed():
    counts = [1, 2, 4]
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    # row 0: 1/n = (1, .5, .25), sum over positives 1.5 -> r = (2/3, 1/3, 1/6)
    # row 1: sum over positives .25 -> r = (4, 2, 1)
    r = torch.tensor([[2 / 3, 1 / 3, 1 / 6], [4.0, 2.0, 1.0]], dtype=torch.float64)
    w = rebalanced_weights(y, counts, map_alpha=0.1, map_beta=10.0, map_mu=0.3)
    torch.testing.assert_close(w, 0.1 + torch.sigmoid(10.0 * (r - 0.3)))
    # before the smoothing map: invert it and recover r = (1/n_k) / sum_{j in y_i} 1/n_j
    w = rebalanced_weights(y, counts, map_alpha=0.0, map_beta=1.0, map_mu=0.0)
    torch.testing.assert_close(torch.log(w / (1 - w)), r)
    # no positive label: instance sampling rate 0, r = inf, weight sigmoid(inf) + map_alpha
    no_pos = rebalanced_weights(torch.zeros(1, 3), counts, map_alpha=0.25)
    torch.testing.assert_close(no_pos, torch.full((1, 3), 1.25))


def test_rbce_is_rebalanced_weighted_bce():
    z, y = _data()
    loss = _build("rbce", reduction="none").double()
    w = rebalanced_weights(y, COUNTS)
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    torch.testing.assert_close(loss(z, y), w * bce)
    plain = RebalancedBCELoss(COUNTS, reweight=False, reduction="none")
    torch.testing.assert_close(plain(z, y), bce)


def test_ntr_lambda_one_kappa_zero_is_bce():
    z, y = _data()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    ntr = build_loss(
        "rbce_ntr", class_counts=COUNTS, num_samples=N_TRAIN, neg_scale=1.0, init_bias=0.0
    )
    torch.testing.assert_close(ntr.double()(z, y), (rebalanced_weights(y, COUNTS) * bce).mean())
    base = RebalancedBCELoss(COUNTS, neg_scale=1.0, init_bias=0.0, reweight=False)
    torch.testing.assert_close(base(z, y), bce.mean())


def test_ntr_bias_hand_computed_and_psi_mapping():
    # N = 10, n = (2, 5, 8), kappa .1, lambda 2: b = -.05 log(N/n - 1) = -.05 (log 4, 0, log .25)
    b = ntr_bias([2, 5, 8], 10, init_bias=0.1, neg_scale=2.0)
    expected = torch.tensor([-0.05 * math.log(4), 0.0, 0.05 * math.log(4)], dtype=torch.float64)
    torch.testing.assert_close(b, expected, rtol=0, atol=1e-15)
    loss = RebalancedBCELoss(
        [2, 5, 8], neg_scale=2.0, init_bias=0.1, num_samples=10, reweight=False
    )
    assert loss.psi == pytest.approx(0.05)
    z = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    # Eq. 10 with v = psi log(N/n - 1): pos log(1 + exp(-u + v)), neg (1/lam) log(1 + exp(lam (u - v)))
    v = [0.05 * math.log(4), 0.0, -0.05 * math.log(4)]
    expected = [_sp(-0.3 + v[0]), 0.5 * _sp(2 * (-1.0 - v[1])), 0.5 * _sp(2 * (2.0 - v[2]))]
    torch.testing.assert_close(
        loss.double()(z, y), torch.tensor(expected, dtype=torch.float64).mean()
    )


def test_db_focal_uses_unweighted_pt_on_transformed_logits():
    loss = RebalancedBCELoss(
        [2, 5, 8],
        focal_gamma=2.0,
        focal_balance=2.0,
        neg_scale=2.0,
        init_bias=0.1,
        num_samples=10,
        reduction="none",
    ).double()
    z = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    w = rebalanced_weights(y, [2, 5, 8])[0].tolist()
    b = [-0.05 * math.log(4), 0.0, 0.05 * math.log(4)]
    unweighted = [_sp(-(0.3 + b[0])), _sp(2 * (-1.0 + b[1])), _sp(2 * (2.0 + b[2]))]
    weighted = [w[0] * unweighted[0], w[1] * unweighted[1] / 2, w[2] * unweighted[2] / 2]
    expected = [2 * (1 - math.exp(-u)) ** 2 * l for u, l in zip(unweighted, weighted, strict=True)]
    torch.testing.assert_close(loss(z, y), torch.tensor([expected], dtype=torch.float64))


def test_db_loss_defaults_and_no_silent_features():
    plain = _build("rbce")
    assert plain.focal_gamma is None and plain.neg_scale == 1.0 and plain.init_bias == 0.0
    assert not plain.logit_compensation and not list(plain.parameters())
    db = _build("rbce_focal_ntr")
    assert db.focal_gamma == 2.0 and db.focal_balance == 2.0
    assert db.neg_scale == 5.0 and db.init_bias == 0.05 and db.psi == pytest.approx(0.01)
    assert _build("rbce_focal").neg_scale == 1.0 and _build("rbce_ntr").focal_gamma is None


def test_lc_starts_as_rbce_and_matches_eq12():
    z, y = _data()
    lc = _build("rbce_lc", reduction="none").double()
    torch.testing.assert_close(lc(z, y), _build("rbce", reduction="none").double()(z, y))
    torch.testing.assert_close(
        _build("rbce_focal_lc").double()(z, y), _build("rbce_focal").double()(z, y)
    )
    with torch.no_grad():
        lc.mu_pos.copy_(torch.tensor([0.5, -0.2, 0.0, 1.0]))
        lc.mu_neg.copy_(torch.tensor([-0.3, 0.1, 0.2, 0.0]))
        lc.log_sigma_pos.copy_(torch.log(torch.tensor([2.0, 1.0, 0.5, 1.5])))
        lc.log_sigma_neg.copy_(torch.log(torch.tensor([1.0, 3.0, 0.5, 0.25])))
    sp, mp = torch.tensor([2.0, 1.0, 0.5, 1.5]), torch.tensor([0.5, -0.2, 0.0, 1.0])
    sn, mn = torch.tensor([1.0, 3.0, 0.5, 0.25]), torch.tensor([-0.3, 0.1, 0.2, 0.0])
    eq12 = y * F.softplus(-(sp * z + mp)) + (1 - y) * F.softplus(sn * z + mn)
    torch.testing.assert_close(lc(z, y), rebalanced_weights(y, COUNTS) * eq12)
    lc(z, y).mean().backward()
    params = [lc.mu_pos, lc.mu_neg, lc.log_sigma_pos, lc.log_sigma_neg]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert len(list(lc.parameters())) == 4


def test_bad_input():
    loss = _build("rbce")
    with pytest.raises(ValueError, match="multi-hot with the shape of logits"):
        loss(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        loss(torch.zeros(1, 4), torch.tensor([[0.0, 2.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="logits have 3 columns.*4 classes"):
        loss(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(TypeError, match="multi-hot torch.Tensor"):
        build_loss("bce")(torch.zeros(1, 2), [[0, 1]])
    with pytest.raises(ValueError, match="class_counts has 4 entries but num_classes is 5"):
        build_loss("rbce", class_counts=COUNTS, num_classes=5)
    with pytest.raises(ValueError, match="class_counts must be > 0"):
        build_loss("rw_bce", class_counts=[3, 0])
    with pytest.raises(ValueError, match="num_samples .* is required"):
        build_loss("rbce_ntr", class_counts=COUNTS)
    with pytest.raises(ValueError, match="must be < num_samples=30"):
        build_loss("rbce_ntr", class_counts=COUNTS, num_samples=30)
    with pytest.raises(ValueError, match="neg_scale must be in"):
        build_loss("rbce_ntr", class_counts=COUNTS, num_samples=N_TRAIN, neg_scale=0.0)
    with pytest.raises(ValueError, match="focal_gamma must be in"):
        build_loss("rbce_focal", class_counts=COUNTS, focal_gamma=-1.0)
    with pytest.raises(ValueError, match="beta must be in"):
        build_loss("cb_focal_bce", class_counts=COUNTS, beta=1.0)
    with pytest.raises(ValueError, match="cannot be combined with NTR"):
        RebalancedBCELoss(COUNTS, logit_compensation=True, neg_scale=2.0)
    with pytest.raises(ValueError, match="unknown parameter 'neg_scale'"):
        build_loss("rbce_focal", class_counts=COUNTS, neg_scale=2.0)


@pytest.mark.parametrize("name", MULTI)
def test_bool_and_int_targets_match_float(name):
    z, y = _data(dtype=torch.float32)
    loss = _build(name)
    ref = loss(z, y)
    torch.testing.assert_close(loss(z, y.bool()), ref)
    torch.testing.assert_close(loss(z, y.long()), ref)


# ------------------------------------------------------------------------------------------ input checks
def test_target_checks_reject_complex_and_fractional_values_naming_them():
    loss = build_loss("bce")
    z = torch.zeros(1, 4)
    with pytest.raises(TypeError, match="real 0/1 values"):
        loss(z, torch.tensor([[0, 1, 0, 1]], dtype=torch.complex64))
    # a value inside [0, 1] is still not multi-hot; the message names the offending values only
    with pytest.raises(ValueError, match=r"only 0 and 1\), got values such as \[0\.5\]$"):
        loss(z, torch.tensor([[0.0, 0.5, 1.0, 0.0]]))


@pytest.mark.parametrize("name", ["rw_bce", "cb_focal_bce"])
def test_class_weighted_losses_check_the_logits_columns(name):
    loss = _build(name)
    for cols in (3, 2):
        with pytest.raises(ValueError, match=f"logits have {cols} columns.*4 classes"):
            loss(torch.zeros(2, cols), torch.zeros(2, cols))


def test_focal_factor_is_accurate_for_confident_entries():
    # logit 20, label 1: BCE = log(1 + e^-20) ~ 2e-9, so 1 - p_t must not round to 0 in float32
    expected = []
    for u in (20.0, 12.0):
        bce = math.log1p(math.exp(-u))
        expected.append(2 * (-math.expm1(-bce)) ** 2 * bce)
    out = build_loss("focal_bce", reduction="none")(
        torch.tensor([[20.0, 12.0]]), torch.tensor([[1.0, 1.0]])
    )
    assert out.dtype == torch.float32 and bool((out > 0).all())
    torch.testing.assert_close(out, torch.tensor([expected]), rtol=1e-4, atol=0)


def test_rebalanced_weights_target_shape_and_dtype():
    with pytest.raises(ValueError, match=r"\(N, 4\) multi-hot tensor, got \(4,\)"):
        rebalanced_weights(torch.ones(4), COUNTS)
    with pytest.raises(ValueError, match=r"\(N, 4\) multi-hot tensor, got \(2, 3\)"):
        rebalanced_weights(torch.ones(2, 3), COUNTS)
    _, y = _data()
    ref = rebalanced_weights(y, COUNTS)
    assert ref.dtype == torch.float64
    w_int = rebalanced_weights(y.long(), COUNTS)
    assert w_int.dtype == torch.float32  # an integer target is computed in float32
    torch.testing.assert_close(w_int, ref.float())


def test_ntr_bias_checks_its_arguments():
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        ntr_bias(COUNTS, 0, init_bias=0.05, neg_scale=1.0)
    with pytest.raises(ValueError, match="neg_scale must be in"):
        ntr_bias(COUNTS, N_TRAIN, init_bias=0.05, neg_scale=-2.0)
    # n_k = N makes log(N / n_k - 1) = -inf: rejected at the boundary, accepted one above it
    with pytest.raises(ValueError, match="must be < num_samples=40"):
        ntr_bias(COUNTS, 40, init_bias=0.05, neg_scale=1.0)
    b = ntr_bias(COUNTS, 41, init_bias=0.05, neg_scale=1.0)
    expected = [-0.05 * math.log(41 / n - 1) for n in COUNTS]
    torch.testing.assert_close(b, torch.tensor(expected, dtype=torch.float64))


def test_rbce_constructor_checks_and_negative_init_bias():
    with pytest.raises(TypeError, match="reweight must be a bool"):
        RebalancedBCELoss(COUNTS, reweight=1)
    with pytest.raises(TypeError, match="logit_compensation must be a bool"):
        RebalancedBCELoss(COUNTS, logit_compensation="yes")
    with pytest.raises(ValueError, match="cannot be combined with NTR"):
        RebalancedBCELoss(COUNTS, logit_compensation=True, init_bias=0.05, num_samples=N_TRAIN)
    # NTR is on for any non-zero kappa, negative too: it needs N and shifts the logits
    with pytest.raises(ValueError, match="num_samples .* is required"):
        RebalancedBCELoss(COUNTS, init_bias=-0.05)
    loss = RebalancedBCELoss(COUNTS, init_bias=-0.05, num_samples=N_TRAIN)
    expected = [0.05 * math.log(N_TRAIN / n - 1) for n in COUNTS]
    torch.testing.assert_close(loss.bias, torch.tensor(expected, dtype=torch.float64))


def test_rbce_focal_balance_defaults_to_two():
    z, y = _data()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    loss = RebalancedBCELoss(COUNTS, focal_gamma=1.0, reweight=False, reduction="none").double()
    torch.testing.assert_close(loss(z, y), 2.0 * (1 - torch.exp(-bce)) * bce)


RBCE = ["rbce", "rbce_focal", "rbce_ntr", "rbce_focal_ntr", "rbce_lc", "rbce_focal_lc"]


@pytest.mark.parametrize("name", RBCE)
def test_rbce_family_uses_its_smoothing_map_and_checks_num_classes(name):
    loss = _build(name, map_alpha=0.2, map_beta=4.0, map_mu=0.15)
    assert (loss.map_alpha, loss.map_beta, loss.map_mu) == (0.2, 4.0, 0.15)
    _, y = _data()
    inv = 1.0 / torch.tensor(COUNTS, dtype=torch.float64)
    w = torch.empty_like(y)
    for i in range(y.shape[0]):
        rate = float((y[i] * inv).sum())
        w[i] = 1.2 if rate == 0 else 0.2 + torch.sigmoid(4.0 * (inv / rate - 0.15))
    torch.testing.assert_close(loss.weights(y), w)
    ntr = {"num_samples": N_TRAIN} if name.endswith("_ntr") else {}
    with pytest.raises(ValueError, match="class_counts has 4 entries but num_classes is 5"):
        build_loss(name, class_counts=COUNTS, num_classes=5, **ntr)


def test_rbce_subclasses_pass_their_parameters_on():
    ntr = _build("rbce_ntr")
    assert ntr.neg_scale == 5.0 and ntr.init_bias == 0.05 and ntr.focal_gamma is None
    for name in ("rbce_ntr", "rbce_focal_ntr"):
        loss = _build(name, neg_scale=2.0, init_bias=0.1)
        assert loss.neg_scale == 2.0 and loss.init_bias == 0.1
        expected = [-0.05 * math.log(N_TRAIN / n - 1) for n in COUNTS]
        torch.testing.assert_close(loss.bias, torch.tensor(expected, dtype=torch.float64))
    for name in ("rbce_focal", "rbce_focal_ntr", "rbce_focal_lc"):
        loss = _build(name, focal_gamma=1.0, focal_balance=3.0)
        assert loss.focal_gamma == 1.0 and loss.focal_balance == 3.0


@pytest.mark.parametrize("name", MULTI)
def test_loss_is_in_the_dtype_of_the_logits_and_half_precision_is_scored_in_float32(name):
    """float32 and float64 logits give a loss of their dtype; bfloat16 logits (autocast's) are scored in
    float32, as the single-label losses and LPL score them."""
    z, y = _data(dtype=torch.float32)
    loss = _build(name, reduction="none")
    assert loss(z, y).dtype == torch.float32
    ref = _build(name, reduction="none").double()(z.double(), y.double())
    assert ref.dtype == torch.float64
    out16 = loss(z.bfloat16(), y)
    assert out16.dtype == torch.float32
    torch.testing.assert_close(out16.double(), ref, rtol=0.1, atol=0.05)
    up = _build(name, reduction="none")(
        z.bfloat16().float(), y
    )  # the same, from the rounded logits
    torch.testing.assert_close(out16, up, rtol=0, atol=0)


def test_transformed_logits_checks_and_keeps_the_logits_dtype():
    for name in ("rbce_ntr", "rbce_lc"):
        loss = _build(name)
        with pytest.raises(ValueError, match=r"shape \(N, C\)"):
            loss.transformed_logits(torch.zeros(4))
        zp, zn = loss.transformed_logits(torch.zeros(2, 4, dtype=torch.bfloat16))
        assert zp.dtype == zn.dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------ ml_lpl
# COUNTS = (40, 12, 3, 25): classes 0 and 3 are the two most frequent


def _ml_shift(eps, head=(0, 3)):
    """The logit shift -δ̃: +ε for head classes (Eq. 37), -ε for tail classes (Eq. 38)."""
    return torch.tensor([eps if c in head else -eps for c in range(4)], dtype=torch.float64)


def test_ml_lpl_defaults_and_repr():
    loss = MultiLabelLPLLoss(4, class_counts=COUNTS)
    assert build_loss("ml_lpl", num_classes=4, class_counts=COUNTS).multi_label is True
    assert (loss.epsilon, loss.delta_epsilon, loss.tau, loss.head) == (0.1, 0.0, 0.5, 2)
    assert loss.reduction == "mean" and loss.validate and not loss.soft_targets
    torch.testing.assert_close(loss.delta, -_ml_shift(0.1))
    assert loss.extra_repr() == "epsilon=0.1, delta_epsilon=0.0, tau=0.5 (head=2), reduction='mean'"

    def my_bce(u, t):
        return F.binary_cross_entropy_with_logits(u, t, reduction="none")

    other = MultiLabelLPLLoss(
        4, class_counts=COUNTS, base_loss=my_bce, soft_targets=True, validate=False
    )
    assert other.extra_repr() == (
        "epsilon=0.1, delta_epsilon=0.0, tau=0.5 (head=2), base_loss=test_ml_lpl_defaults_and_repr."
        "<locals>.my_bce, soft_targets=True, reduction='mean', validate=False"
    )
    named = MultiLabelLPLLoss(4, class_counts=COUNTS, base_loss="focal_bce")
    assert "base_loss=" not in named.extra_repr() and "(base_loss): FocalBCELoss(" in repr(named)


def test_ml_lpl_single_class():
    # C = 1 is allowed (one binary task); tau = 1 makes it a head class: u + ε
    loss = MultiLabelLPLLoss(1, class_counts=[5], epsilon=0.2, tau=1, reduction="none")
    u = torch.tensor([[0.3], [-1.0], [2.0]], dtype=torch.float64)
    y = torch.tensor([[1.0], [0.0], [1.0]], dtype=torch.float64)
    expected = [[_sp(-0.5)], [_sp(-0.8)], [_sp(-2.2)]]
    torch.testing.assert_close(loss(u, y), torch.tensor(expected, dtype=torch.float64))


def test_ml_lpl_constructor_checks():
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        MultiLabelLPLLoss(0, class_counts=[])
    with pytest.raises(TypeError, match="num_classes must be an int"):
        MultiLabelLPLLoss(4.0, class_counts=COUNTS)
    with pytest.raises(ValueError, match="delta_epsilon must be a finite number >= 0"):
        MultiLabelLPLLoss(4, class_counts=COUNTS, delta_epsilon=-0.1)
    with pytest.raises(TypeError, match="validate must be a bool"):
        MultiLabelLPLLoss(4, class_counts=COUNTS, validate="yes")
    with pytest.raises(ValueError, match="base_params is only used with base_loss given by name"):
        MultiLabelLPLLoss(4, class_counts=COUNTS, base_params={})


def test_ml_lpl_single_label_base_lists_the_multi_label_names_sorted():
    with pytest.raises(ValueError, match="single-label loss") as info:
        MultiLabelLPLLoss(4, class_counts=COUNTS, base_loss="ce")
    listed = str(info.value).split("by name (")[1].split(")")[0].split(", ")
    assert listed == sorted(listed) and {"bce", "rbce", "rbce_focal_ntr"} <= set(listed)
    assert not {"ml_lpl", "ce", "lpl", "focal"} & set(listed)


def test_ml_lpl_logits_checks():
    loss = MultiLabelLPLLoss(4, class_counts=COUNTS)
    with pytest.raises(TypeError, match="floating"):
        loss(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2-D"):
        loss(torch.zeros(4), torch.zeros(4))


def test_ml_lpl_without_validation_casts_the_target_and_skips_checks():
    z, y = _data(dtype=torch.float32)
    loss = MultiLabelLPLLoss(4, class_counts=COUNTS, epsilon=0.3, tau=2, validate=False)
    shifted = z.double() + _ml_shift(0.3)
    ref = F.binary_cross_entropy_with_logits(shifted, y.double())
    for target in (y.bool(), y.long()):
        torch.testing.assert_close(loss(z, target).double(), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss(z.bfloat16(), target), loss(z.bfloat16().float(), y))
    # a value outside {0, 1} is not checked (validated, it would raise)
    y2 = y.clone()
    y2[0, 0] = 2.0
    ref2 = F.binary_cross_entropy_with_logits(shifted, y2.double())
    torch.testing.assert_close(loss(z, y2).double(), ref2, rtol=1e-5, atol=1e-6)


def test_ml_lpl_dtypes_half_logits_are_scored_in_float32():
    z, y = _data(dtype=torch.float32)
    loss = MultiLabelLPLLoss(4, class_counts=COUNTS, epsilon=0.3, tau=2, reduction="none")
    out = loss(z, y)
    assert out.dtype == torch.float32
    assert loss(z.double(), y).dtype == torch.float64
    zh = z.bfloat16()
    assert loss.perturb(zh).dtype == torch.float32
    shifted = zh.float() + _ml_shift(0.3).float()
    out16 = loss(zh, y)
    assert out16.dtype == torch.float32
    torch.testing.assert_close(
        out16, F.binary_cross_entropy_with_logits(shifted, y, reduction="none")
    )
    loss.eval()  # no perturbation, still float32
    ev = loss(zh, y.bool())
    assert ev.dtype == torch.float32
    torch.testing.assert_close(
        ev, F.binary_cross_entropy_with_logits(zh.float(), y, reduction="none")
    )


def test_rebalanced_weights_of_a_row_without_positives_are_the_maps_limit():
    """r = ∞ for a row with no positive label: α + sigmoid(β·∞), i.e. α + 1, but α + 1/2 where β = 0
    (the map is then the constant α + 1/2 for every finite r too)."""
    y = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    w = rebalanced_weights(y, COUNTS, map_alpha=0.1, map_beta=10.0)
    torch.testing.assert_close(w[1], torch.full((4,), 1.1))
    flat = rebalanced_weights(y, COUNTS, map_alpha=0.1, map_beta=0.0)
    torch.testing.assert_close(flat, torch.full((2, 4), 0.6))


@pytest.mark.parametrize("neg_scale", [1.0, 5.0])
def test_rbce_terms_are_exact_in_float64_at_every_logit(neg_scale):
    """The R-BCE terms softplus(-z_p) and softplus(lam z_n)/lam are exact to rounding in float64, both where
    an entry is badly wrong (F.softplus is linear above 20 and dropped log1p(e^-20) ~ 2e-9) and where it is
    confidently right (binary_cross_entropy_with_logits takes log, not log1p, of 1 + e^-|x|: 3e-5 relative
    at x = 25), so that neg_scale = 1 is the plain BCE it reduces to."""
    lam = neg_scale
    # per row: a negative entry at lam z = 22 (wrong) or -25 (right), a positive entry at -25 or 25
    z = torch.tensor([[22.0 / lam, -25.0], [-25.0 / lam, 25.0]], dtype=torch.float64,
                     requires_grad=True)  # fmt: skip
    y = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    loss = RebalancedBCELoss([4, 9], neg_scale=lam, reweight=False, reduction="none")
    out = loss(z, y)
    out.sum().backward()

    def softplus(x: float) -> float:  # log(1 + e^x), exact in double for these x
        return max(x, 0.0) + math.log1p(math.exp(-abs(x)))

    expected = [[softplus(22.0) / lam, softplus(25.0)], [softplus(-25.0) / lam, softplus(-25.0)]]
    torch.testing.assert_close(out.detach(), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-14, atol=0)  # fmt: skip
    # d/dz: sigmoid(lam z) for a negative entry, -sigmoid(-z) for a positive one
    grad = [[_sig(22.0), -_sig(25.0)], [_sig(-25.0), -_sig(-25.0)]]
    torch.testing.assert_close(z.grad, torch.tensor(grad, dtype=torch.float64), rtol=1e-14, atol=0)


def test_rbce_weights_accept_integer_and_bool_targets():
    """The public ``weights`` method, like :func:`rebalanced_weights`, scores an integer or bool target in
    float32 (it failed inside torch.finfo)."""
    loss = RebalancedBCELoss(COUNTS)
    y = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]])
    expected = rebalanced_weights(y.float(), COUNTS)
    torch.testing.assert_close(loss.weights(y), expected)
    torch.testing.assert_close(loss.weights(y.bool()), expected)
    ones = RebalancedBCELoss(COUNTS, reweight=False).weights(y)
    assert ones.dtype == torch.float32 and bool((ones == 1).all())
