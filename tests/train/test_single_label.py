"""Single-label baselines against hand-computed cases and their defining properties."""

import io
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lpl_train.losses import available_losses, build_loss
from lpl_train.losses.single_label import (
    CenterLoss,
    ClassBalancedCELoss,
    ClassBalancedFocalLoss,
    DRWSchedule,
    FocalLoss,
    GeneralizedCELoss,
    ISDALoss,
    LargeMarginSoftmaxLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    class_balanced_weights,
    ldam_margins,
    logit_adjust_posthoc,
)

SINGLE = ["ce", "la", "ldam", "focal", "cb_ce", "cb_focal", "disturb_label", "lq"]
FEATURE = ["isda", "large_margin", "center"]
COUNTS = [50, 10, 2]


def _data(n=7, c=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=dtype) * 2
    y = torch.arange(n) % c
    return z, y


def _softplus(x):
    return math.log1p(math.exp(x))


# ------------------------------------------------------------------ registry / common behaviour


def test_every_name_builds_through_the_registry_with_engine_params():
    for name in SINGLE + FEATURE:
        loss = build_loss(name, num_classes=3, class_counts=COUNTS)
        assert isinstance(loss, nn.Module)
        assert getattr(loss, "needs_features", False) == (name in FEATURE)
    assert set(SINGLE + FEATURE) <= set(available_losses())


def test_unknown_name_and_parameter_are_errors():
    with pytest.raises(ValueError, match="unknown loss 'ldam_drw'.*ldam"):
        build_loss("ldam_drw")
    with pytest.raises(ValueError, match="unknown parameter 'gama'"):
        build_loss("focal", gama=2.0)


@pytest.mark.parametrize("name", SINGLE)
def test_reductions_are_consistent(name):
    z, y = _data()
    per = build_loss(name, class_counts=COUNTS, reduction="none").eval()(z, y)
    total = build_loss(name, class_counts=COUNTS, reduction="sum").eval()(z, y)
    mean = build_loss(name, class_counts=COUNTS, reduction="mean").eval()(z, y)
    assert per.shape == (7,)
    torch.testing.assert_close(total, per.sum())
    if name != "ldam":  # LDAM's mean is the weighted mean, tested below
        torch.testing.assert_close(mean, per.mean())


@pytest.mark.parametrize("name", SINGLE)
def test_float32_matches_float64_and_gradients_are_finite(name):
    z, y = _data(dtype=torch.float64)
    z64 = z.clone().requires_grad_(True)
    z32 = z.float().requires_grad_(True)
    l64 = build_loss(name, class_counts=COUNTS).eval()(z64, y)
    l32 = build_loss(name, class_counts=COUNTS).eval()(z32, y)
    l64.backward()
    l32.backward()
    assert torch.isfinite(z32.grad).all() and torch.isfinite(z64.grad).all()
    torch.testing.assert_close(l32.double(), l64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["la", "ldam", "focal", "cb_ce", "cb_focal", "lq"])
def test_gradcheck_float64(name):
    z, y = _data(n=4)
    if name == "ldam":
        z = z.tanh()  # cosine logits, as from the NormedLinear head LDAM is trained with
    loss = build_loss(name, class_counts=COUNTS)
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (z.clone().requires_grad_(True),))


@pytest.mark.parametrize("name", SINGLE + FEATURE)
def test_int32_and_uint8_targets_are_accepted(name):
    z, y = _data(dtype=torch.float32)
    fc = nn.Linear(5, 3)
    feats = torch.randn(7, 5, generator=torch.Generator().manual_seed(3))
    outs = []
    for t in (y, y.int(), y.to(torch.uint8)):
        loss = build_loss(name, num_classes=3, class_counts=COUNTS).eval()
        if getattr(loss, "needs_features", False):
            outs.append(loss(feats, t, fc))
        else:
            outs.append(loss(z, t))
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(outs[2], outs[0])


def test_extreme_logits_stay_finite():
    z = torch.tensor([[80.0, -80.0, 0.0], [-80.0, 80.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 1])
    for name in SINGLE:
        loss = build_loss(name, class_counts=COUNTS).eval()(z, y)
        (g,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(g).all(), name


# ------------------------------------------------------------------ bad input


def test_bad_shapes_and_labels():
    loss = build_loss("ce")
    with pytest.raises(ValueError, match="logits must have shape"):
        loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="target must have shape"):
        loss(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\].*\[0, 2\]"):
        loss(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[-1, 0\]"):
        loss(torch.zeros(2, 2), torch.tensor([0, -1]))
    with pytest.raises(TypeError, match="integer tensor"):
        loss(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        loss([[0.0, 1.0]], torch.tensor([0]))
    with pytest.raises(ValueError, match="logits have 2 columns.*3 classes"):
        build_loss("la", class_counts=COUNTS)(torch.zeros(2, 2), torch.tensor([0, 1]))


def test_bad_counts_and_parameters():
    with pytest.raises(ValueError, match="class_counts has 3 entries but num_classes is 4"):
        build_loss("la", class_counts=COUNTS, num_classes=4)
    with pytest.raises(ValueError, match="class_counts must be > 0"):
        build_loss("ldam", class_counts=[5, 0, 1])
    with pytest.raises(ValueError, match="class_counts must be > 0"):
        build_loss("cb_ce", class_counts=[5, -1, 1])
    with pytest.raises(ValueError, match="class_counts is required"):
        build_loss("la")
    for beta in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"beta must be in \(0.0, 1.0\)"):
            build_loss("cb_ce", class_counts=COUNTS, beta=beta)
        with pytest.raises(ValueError, match="beta must be in"):
            class_balanced_weights(COUNTS, beta)
    with pytest.raises(ValueError, match="gamma must be in"):
        build_loss("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="gamma must be in"):
        build_loss("cb_focal", class_counts=COUNTS, gamma=-0.5)
    with pytest.raises(ValueError, match="s must be in"):
        build_loss("ldam", class_counts=COUNTS, s=0.0)
    with pytest.raises(ValueError, match="max_m must be in"):
        build_loss("ldam", class_counts=COUNTS, max_m=-0.5)
    with pytest.raises(ValueError, match="lam must be in"):
        build_loss("la", class_counts=COUNTS, lam=-1.0)
    with pytest.raises(TypeError, match="lam must be a real number"):
        build_loss("la", class_counts=COUNTS, lam="1")
    with pytest.raises(ValueError, match="reduction must be one of"):
        build_loss("ce", reduction="avg")
    with pytest.raises(ValueError, match="variant must be one of"):
        build_loss("cb_ce", class_counts=COUNTS, variant="tanh")
    with pytest.raises(ValueError, match="q must be in"):
        build_loss("lq", q=0.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        build_loss("disturb_label", alpha=1.5)
    with pytest.raises(ValueError, match="lambda0 must be in"):
        build_loss("isda", num_classes=3, lambda0=-1.0)
    with pytest.raises(ValueError, match="margin must be >= 1"):
        build_loss("large_margin", margin=0)
    with pytest.raises(ValueError, match="epoch must be in"):
        build_loss("ldam", class_counts=COUNTS, drw_epoch=1).set_epoch(5, 4)


# ------------------------------------------------------------------ CE and logit adjustment


def test_ce_hand_computed():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 0])
    expected = [_softplus(-1.0), _softplus(2.0)]
    out = build_loss("ce", reduction="none")(z, y)
    torch.testing.assert_close(out, torch.tensor(expected))


def test_la_hand_computed_and_uniform_prior_is_ce():
    # counts (3, 1): log pi = (log .75, log .25); zero logits, label 1 -> -log(.25 / 1) = log 4
    loss = LogitAdjustedLoss([3, 1], lam=1.0)
    out = loss(torch.zeros(1, 2), torch.tensor([1]))
    torch.testing.assert_close(out, torch.tensor(math.log(4.0)))
    # lam = 2: adjusted logits 2 log(.75), 2 log(.25) -> -log(.0625 / (.5625 + .0625)) = log 10
    out = LogitAdjustedLoss([3, 1], lam=2.0)(torch.zeros(1, 2), torch.tensor([1]))
    torch.testing.assert_close(out, torch.tensor(math.log(10.0)))
    z, y = _data()
    torch.testing.assert_close(LogitAdjustedLoss([7, 7, 7], lam=1.5)(z, y), F.cross_entropy(z, y))
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, lam=0.0)(z, y), F.cross_entropy(z, y))


def test_la_posthoc_hand_computed():
    z = torch.tensor([[0.5, 0.0]])
    out = logit_adjust_posthoc(z, [9, 1], lam=1.0)
    torch.testing.assert_close(out, torch.tensor([[0.5 - math.log(0.9), -math.log(0.1)]]))
    assert out.argmax(1).item() == 1 and z.argmax(1).item() == 0
    torch.testing.assert_close(logit_adjust_posthoc(z, [9, 1], lam=0.0), z)


# ------------------------------------------------------------------ LDAM and DRW


def test_ldam_margins_follow_quarter_power_rule():
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    m = ldam_margins(counts, max_m=0.5).double()
    n = torch.tensor(counts, dtype=torch.float64)
    prod = m * n.pow(0.25)
    torch.testing.assert_close(prod, torch.full_like(prod, prod[0].item()))
    assert m.max().item() == pytest.approx(0.5)
    assert m[-1].item() == pytest.approx(0.5) and m[0].item() == pytest.approx(
        0.5 * (50 / 5000) ** 0.25
    )
    torch.testing.assert_close(
        ldam_margins([16, 1], 0.5), torch.tensor([0.25, 0.5], dtype=torch.float64)
    )


def test_ldam_hand_computed():
    # counts (16, 1): margins (0.25, 0.5); logits (0.2, 0.1), label 0, s = 30
    # -> z = 30 * (0.2 - 0.25, 0.1) = (-1.5, 3.0); CE = softplus(4.5)
    loss = LDAMLoss([16, 1], max_m=0.5, s=30.0)
    out = loss(torch.tensor([[0.2, 0.1]]), torch.tensor([0]))
    torch.testing.assert_close(out, torch.tensor(_softplus(4.5)))
    # label 1: z = 30 * (0.2, 0.1 - 0.5) = (6, -12); CE = softplus(18)
    out = loss(torch.tensor([[0.2, 0.1]]), torch.tensor([1]))
    torch.testing.assert_close(out, torch.tensor(_softplus(18.0)))


def test_drw_schedule_and_ldam_weighted_mean():
    counts = [100, 10]
    sched = DRWSchedule(counts, drw_epoch=3, beta=0.99)
    torch.testing.assert_close(sched.weights(2), torch.ones(2, dtype=torch.float64))
    w = sched.weights(3)
    raw = [(1 - 0.99) / (1 - 0.99**100), (1 - 0.99) / (1 - 0.99**10)]
    expected = torch.tensor([2 * r / sum(raw) for r in raw], dtype=torch.float64)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(sched.weights(10), expected)

    loss = LDAMLoss(counts, drw_epoch=3, drw_beta=0.99)
    z = torch.tensor([[0.3, -0.2], [0.1, 0.4]])
    y = torch.tensor([0, 1])
    per = F.cross_entropy(loss.margin_logits(z, y), y, reduction="none")
    loss.set_epoch(2, 5)
    torch.testing.assert_close(loss(z, y), per.mean())
    loss.set_epoch(3, 5)
    weighted = (expected[0] * per[0] + expected[1] * per[1]) / expected.sum()
    torch.testing.assert_close(loss(z, y), weighted.float())
    # identical to torch's weighted cross-entropy, as in the reference
    torch.testing.assert_close(
        loss(z, y), F.cross_entropy(loss.margin_logits(z, y), y, weight=expected.float())
    )
    # the other reductions carry the same weights: w_y·l per sample, and their sum
    hand = torch.stack([expected[0] * per[0], expected[1] * per[1]]).float()
    for reduction, want in (("none", hand), ("sum", hand.sum())):
        other = LDAMLoss(counts, drw_epoch=3, drw_beta=0.99, reduction=reduction)
        other.set_epoch(3, 5)
        torch.testing.assert_close(other(z, y), want)
        other.set_epoch(2, 5)
        torch.testing.assert_close(other(z, y), per if reduction == "none" else per.sum())


# ------------------------------------------------------------------ class-balanced weights, focal


def test_class_balanced_weights_hand_and_limits():
    # beta .5, counts (1, 2): raw (0.5/0.5, 0.5/0.75) = (1, 2/3); normalised to sum 2: (1.2, 0.8)
    torch.testing.assert_close(
        class_balanced_weights([1, 2], 0.5), torch.tensor([1.2, 0.8], dtype=torch.float64)
    )
    counts = [5000, 500, 50, 5]
    for beta in (0.9, 0.99, 0.9999):
        assert class_balanced_weights(counts, beta).sum().item() == pytest.approx(4.0)
    inv = torch.tensor([1 / n for n in counts], dtype=torch.float64)
    inv = 4 * inv / inv.sum()
    torch.testing.assert_close(
        class_balanced_weights(counts, 1 - 1e-9).double(), inv, rtol=1e-4, atol=0
    )
    torch.testing.assert_close(
        class_balanced_weights(counts, 1e-6), torch.ones(4, dtype=torch.float64)
    )
    # monotone: rarer classes get larger weights
    w = class_balanced_weights(counts, 0.999)
    assert (w[1:] > w[:-1]).all()


def test_focal_gamma_zero_is_ce_and_hand_value():
    z, y = _data()
    torch.testing.assert_close(FocalLoss(gamma=0.0)(z, y), F.cross_entropy(z, y))
    p = 1 / (1 + math.exp(-1.0))  # two classes, logits (1, 0), label 0
    out = FocalLoss(gamma=2.0)(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    torch.testing.assert_close(out, torch.tensor(-((1 - p) ** 2) * math.log(p)))
    assert FocalLoss(gamma=2.0)(z, y) < F.cross_entropy(z, y)


def test_focal_default_gamma_one_hand_value():
    # gamma = 1 (the default) is not CE: -(1 - p) log p; two classes, logits (1, 0), label 0
    p = 1 / (1 + math.exp(-1.0))
    z, y = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([0])
    expected = torch.tensor(-(1 - p) * math.log(p), dtype=torch.float64)
    torch.testing.assert_close(FocalLoss()(z, y), expected)
    torch.testing.assert_close(FocalLoss(gamma=1.0)(z, y), expected)


def test_class_balanced_softmax_is_weighted_ce_and_focal_gamma_zero_matches():
    z, y = _data()
    w = class_balanced_weights(COUNTS, 0.9999).double()
    expected = (w[y] * F.cross_entropy(z, y, reduction="none")).mean()
    torch.testing.assert_close(ClassBalancedCELoss(COUNTS)(z, y), expected)
    torch.testing.assert_close(
        ClassBalancedFocalLoss(COUNTS, gamma=0.0, variant="softmax")(z, y), expected
    )
    p = F.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    focal = (w[y] * (1 - p) ** 2 * -torch.log(p)).mean()
    torch.testing.assert_close(
        ClassBalancedFocalLoss(COUNTS, gamma=2.0, variant="softmax")(z, y), focal
    )


def test_class_balanced_sigmoid_hand_computed():
    # two classes, counts (3, 1), beta .5: raw (.5/.875, .5/.5) -> normalised (2*4/11, 2*7/11)
    w = [8 / 11, 14 / 11]
    z = torch.tensor([[1.0, -2.0]])
    y = torch.tensor([1])
    # one-hot (0, 1): BCE entries softplus(1), softplus(2); p_t = sigmoid(-1), sigmoid(-2)
    bce = [_softplus(1.0), _softplus(2.0)]
    out = ClassBalancedCELoss([3, 1], beta=0.5, variant="sigmoid")(z, y)
    torch.testing.assert_close(out, torch.tensor(w[1] * sum(bce)))
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    gamma = 1.5
    focal = w[1] * ((1 - sig(-1.0)) ** gamma * bce[0] + (1 - sig(-2.0)) ** gamma * bce[1])
    out = ClassBalancedFocalLoss([3, 1], beta=0.5, gamma=gamma, variant="sigmoid")(z, y)
    torch.testing.assert_close(out, torch.tensor(focal))


# ------------------------------------------------------------------ Lq, DisturbLabel


def test_lq_hand_and_limits():
    z, y = _data()
    p = F.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(GeneralizedCELoss(q=1.0)(z, y), (1 - p).mean())
    torch.testing.assert_close(GeneralizedCELoss(q=0.7)(z, y), ((1 - p**0.7) / 0.7).mean())
    torch.testing.assert_close(
        GeneralizedCELoss(q=1e-7)(z, y), F.cross_entropy(z, y), rtol=1e-5, atol=1e-6
    )


def test_disturb_label_statistics_and_determinism():
    z = torch.zeros(4000, 4)
    y = torch.zeros(4000, dtype=torch.long)
    assert torch.equal(
        build_loss("disturb_label", alpha=0.0)(z[:5], y[:5]), F.cross_entropy(z[:5], y[:5])
    )
    loss = build_loss("disturb_label", alpha=0.4, seed=3)
    d1 = loss.disturb(y, 4)
    changed = (d1 != 0).float().mean().item()
    assert changed == pytest.approx(0.4 * 3 / 4, abs=0.03)  # alpha (C-1)/C of the labels change
    counts = torch.bincount(d1[d1 != 0], minlength=4)[1:].float()
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.05  # disturbed labels uniform
    assert torch.equal(d1, build_loss("disturb_label", alpha=0.4, seed=3).disturb(y, 4))
    logits = torch.randn(4000, 4, generator=torch.Generator().manual_seed(1))
    out = loss(logits, y)  # training mode: CE on the disturbed labels of step 0, then step 1
    torch.testing.assert_close(out, F.cross_entropy(logits, d1))
    assert not torch.equal(loss.disturb(y, 4), d1)
    loss.eval()
    torch.testing.assert_close(loss(logits, y), F.cross_entropy(logits, y))


# ------------------------------------------------------------------ ISDA


def _isda_setup(a=3, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    fc = nn.Linear(a, c).double()
    with torch.no_grad():
        fc.weight.copy_(torch.randn(c, a, generator=g, dtype=torch.float64))
        fc.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    return fc, g


def test_isda_lambda_zero_is_ce():
    fc, g = _isda_setup()
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    loss = ISDALoss(num_classes=3, lambda0=0.5).double()
    loss.set_epoch(0, 10)
    torch.testing.assert_close(loss(x, y, fc), F.cross_entropy(fc(x), y))
    loss.set_epoch(4, 10)
    assert loss.lam == pytest.approx(0.2)
    assert loss(x, y, fc) > F.cross_entropy(fc(x), y)  # every perturbation term is >= 0


def test_isda_covariance_equals_covariance_of_all_samples_seen():
    g = torch.Generator().manual_seed(1)
    loss = ISDALoss(num_classes=3, lambda0=0.5).double()
    diag = ISDALoss(num_classes=3, diagonal=True).double()
    xs, ys = [], []
    for size in (5, 9, 1, 12):
        x = (
            torch.randn(size, 4, generator=g, dtype=torch.float64)
            * torch.tensor([1.0, 2.0, 0.5, 3.0])
            + 1
        )
        y = torch.randint(0, 2, (size,), generator=g)  # class 2 never seen
        loss.update(x, y)
        diag.update(x, y)
        xs.append(x)
        ys.append(y)
    x, y = torch.cat(xs).numpy(), torch.cat(ys).numpy()
    for k in (0, 1):
        xk = x[y == k]
        np.testing.assert_allclose(
            loss.covariance[k].numpy(), np.cov(xk, rowvar=False, bias=True), atol=1e-12
        )
        np.testing.assert_allclose(loss.mean[k].numpy(), xk.mean(0), atol=1e-12)
        np.testing.assert_allclose(diag.covariance[k].numpy(), xk.var(0), atol=1e-12)
        assert loss.count[k].item() == len(xk)
    assert loss.count[2].item() == 0 and not loss.covariance[2].any()


def test_isda_augmented_logits_hand_computed():
    fc = nn.Linear(2, 2, bias=True).double()
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        fc.bias.copy_(torch.tensor([0.5, -0.5]))
    loss = ISDALoss(num_classes=2, lambda0=1.0, feature_dim=2).double()
    with torch.no_grad():
        loss.covariance[0] = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
        loss.covariance[1] = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    loss.set_epoch(1, 2)  # lambda = 0.5
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # sample 0 (class 0): d = w1 - w0 = (-1, 2); d^T S0 d = 2 - 4 + 12 = 10 -> +0.25 * 10 on logit 1
    # sample 1 (class 1): d = w0 - w1 = (1, -2); d^T S1 d = 1 + 16 = 17 -> +0.25 * 17 on logit 0
    u = torch.tensor([[1.5, 1.5], [2.5, -2.5]], dtype=torch.float64)
    expected = u + torch.tensor([[0.0, 2.5], [4.25, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss.augmented_logits(x, y, fc), expected)
    loss.eval()  # frozen statistics: forward is CE of exactly these logits
    torch.testing.assert_close(loss(x, y, fc), F.cross_entropy(expected, y))


def test_isda_diagonal_matches_full_with_diagonal_covariance():
    fc, g = _isda_setup(a=4, c=3)
    full = ISDALoss(3, lambda0=1.0, feature_dim=4).double()
    diag = ISDALoss(3, lambda0=1.0, feature_dim=4, diagonal=True).double()
    var = torch.rand(3, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        diag.covariance.copy_(var)
        full.covariance.copy_(torch.diag_embed(var))
    for m in (full, diag):
        m.set_epoch(3, 4)
        m.eval()
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    torch.testing.assert_close(diag.augmented_logits(x, y, fc), full.augmented_logits(x, y, fc))


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("n", [3, 9])  # fewer samples than classes (per-sample path) and more
def test_isda_augmented_logits_match_direct_formula(diagonal, n):
    c, a = 6, 4
    g = torch.Generator().manual_seed(n)
    fc = nn.Linear(a, c).double()
    loss = ISDALoss(c, lambda0=0.8, feature_dim=a, diagonal=diagonal).double()
    m = torch.randn(c, a, a, generator=g, dtype=torch.float64)
    cov = m @ m.transpose(1, 2)
    with torch.no_grad():
        loss.covariance.copy_(torch.diagonal(cov, dim1=1, dim2=2) if diagonal else cov)
    if diagonal:
        cov = torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
    loss.set_epoch(1, 2)
    x = torch.randn(n, a, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    w = fc.weight.detach()
    expected = fc(x).detach().clone()
    for i in range(n):
        k = int(y[i])
        for j in range(c):
            d = w[j] - w[k]
            expected[i, j] += 0.5 * 0.4 * (d @ cov[k] @ d)
    torch.testing.assert_close(loss.augmented_logits(x, y, fc).detach(), expected)


def test_isda_gradients_state_dict_and_eval_freeze():
    fc, g = _isda_setup()
    x = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = build_loss("isda", num_classes=3, class_counts=COUNTS, lambda0=0.5).double()
    loss.set_epoch(5, 10)
    out = loss(x, y, fc)
    out.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(fc.weight.grad).all()
    assert loss.feature_dim == 3 and loss.covariance.shape == (3, 3, 3)
    state = loss.state_dict()
    fresh = ISDALoss(num_classes=3).double()  # feature size unknown until the state is loaded
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.covariance, loss.covariance)
    assert torch.equal(fresh.count, loss.count) and fresh.feature_dim == 3
    # λ = λ0 · 5/10 of the epoch hook travels with the statistics, also through a weights-only file
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    for saved in (state, torch.load(buf, weights_only=True)):
        restored = ISDALoss(num_classes=3, lambda0=0.5).double()
        restored.load_state_dict(saved)
        assert restored.lam == 0.25
        torch.testing.assert_close(
            restored.augmented_logits(x, y, fc), loss.augmented_logits(x, y, fc)
        )
    # a state dict saved before λ was in it loads strictly and leaves λ as it is
    old = {k: v for k, v in state.items() if k != "_extra_state"}
    assert len(old) == len(state) - 1
    restored = ISDALoss(num_classes=3, lambda0=0.5).double()
    restored.load_state_dict(old)
    assert restored.lam == 0.0 and torch.equal(restored.count, loss.count)
    for bad in ({"lam": "x"}, {"lam": math.nan}, {"lam": True}, None, {}, {"lambda": 0.3}):
        with pytest.raises(ValueError, match="'lam' must be a finite number"):
            ISDALoss(num_classes=3).double().load_state_dict({**state, "_extra_state": bad})
    with pytest.raises(RuntimeError, match="size mismatch"):
        ISDALoss(num_classes=3, feature_dim=5).double().load_state_dict(state)
    # not yet allocated, a state of another shape is refused too: other classes, or the diagonal form
    for other in (ISDALoss(num_classes=4), ISDALoss(num_classes=3, diagonal=True)):
        with pytest.raises(RuntimeError, match="size mismatch for covariance"):
            other.double().load_state_dict(state)
    centers = build_loss("center", num_classes=5)
    centers(x.detach(), torch.tensor([0, 1, 2, 3, 4, 0]), nn.Linear(3, 5).double())
    with pytest.raises(RuntimeError, match="size mismatch for centers"):
        build_loss("center", num_classes=3).load_state_dict(centers.state_dict())
    loss.eval()
    before = loss.covariance.clone()
    loss(x.detach(), y, fc)
    assert torch.equal(before, loss.covariance)
    with pytest.raises(TypeError, match="nn.Linear"):
        loss(x.detach(), y, nn.Identity())
    with pytest.raises(ValueError, match="features have 4 columns"):
        loss(torch.zeros(2, 4, dtype=torch.float64), y[:2], nn.Linear(4, 3).double())


def test_isda_refused_classifier_leaves_the_statistics_unchanged():
    """A training call with a classifier of the wrong size raises before the batch is folded in (it was
    folded in, and the lazy state sized, before the classifier was checked), as the center loss does."""
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    for feature_dim in (None, 6):
        loss = ISDALoss(3, feature_dim=feature_dim)
        before = {k: v.clone() for k, v in loss.state_dict().items() if isinstance(v, torch.Tensor)}
        for fc in (nn.Linear(6, 4), nn.Linear(5, 3)):
            with pytest.raises(ValueError, match="classifier"):
                loss(x, y, fc)
        after = loss.state_dict()
        assert loss.feature_dim == feature_dim
        for k, v in before.items():
            assert after[k].equal(v), k
    loss(x, y, nn.Linear(6, 3))  # the right head: the batch is counted once
    assert loss.count.tolist() == [2, 1, 1]


def test_isda_float32_matches_float64():
    fc, g = _isda_setup()
    x = torch.randn(9, 3, generator=g, dtype=torch.float64)
    y = torch.arange(9) % 3
    l64, l32 = ISDALoss(3).double(), ISDALoss(3)
    for m in (l64, l32):
        m.set_epoch(7, 10)
    out64 = l64(x, y, fc)
    out32 = l32(x.float(), y, fc.float())
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ L-Softmax


@pytest.mark.filterwarnings("ignore:large_margin. the classifier has a bias:UserWarning")
def test_large_margin_m1_is_bias_free_ce_and_hand_value():
    fc, g = _isda_setup()
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    m1 = LargeMarginSoftmaxLoss(margin=1)
    torch.testing.assert_close(m1(x, y, fc), F.cross_entropy(x @ fc.weight.T, y))
    # m = 2, beta = 0: x = (0.6, 0.8) (|x| = 1), w_0 = (2, 0): cos = 0.6 < cos(pi/2) -> k = 0,
    # psi = cos(2 theta) = 2 * 0.36 - 1 = -0.28, f_0 = 2 * 1 * (-0.28) = -0.56
    fc2 = nn.Linear(2, 2, bias=True).double()
    with torch.no_grad():
        fc2.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        fc2.bias.fill_(5.0)  # ignored by L-Softmax
    lm = LargeMarginSoftmaxLoss(margin=2, beta_base=0.0)
    xx = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    z = lm.augmented_logits(xx, torch.tensor([0]), fc2)
    torch.testing.assert_close(z, torch.tensor([[-0.56, 0.8]], dtype=torch.float64))


def test_large_margin_warns_once_of_a_classifier_bias_it_cannot_train():
    """L-Softmax's logits leave the bias out, so the loss never trains it, while the model adds it when it
    predicts: one warning in training (none for a bias-free or frozen bias, none in eval mode)."""
    import warnings

    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    lm = LargeMarginSoftmaxLoss()
    fc = nn.Linear(3, 3).double()
    with pytest.warns(UserWarning, match="large_margin: the classifier has a bias") as seen:
        lm(x, y, fc)
        lm(x, y, fc)
    assert len(seen) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LargeMarginSoftmaxLoss()(x, y, nn.Linear(3, 3, bias=False).double())
        frozen = nn.Linear(3, 3).double().requires_grad_(False)
        LargeMarginSoftmaxLoss()(x, y, frozen)
        LargeMarginSoftmaxLoss().eval()(x, y, fc)


@pytest.mark.filterwarnings("ignore:large_margin. the classifier has a bias:UserWarning")
def test_large_margin_psi_is_continuous_decreasing_and_anneals():
    lm = LargeMarginSoftmaxLoss(margin=4)
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    psi = lm.psi(torch.cos(theta))
    assert (psi[1:] <= psi[:-1] + 1e-9).all()
    assert (psi[1:] - psi[:-1]).abs().max() < 0.05  # no jumps at k pi / m
    torch.testing.assert_close(psi[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(
        psi[-1], torch.tensor(-7.0, dtype=torch.float64)
    )  # (-1)^3 cos(4 pi) - 6
    assert lm.beta == pytest.approx(1000.0)
    fc, g = _isda_setup()
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    lm(x, torch.tensor([0, 1, 2, 0]), fc)
    assert lm.beta == pytest.approx(1000.0 / 1.12)


# ------------------------------------------------------------------ center loss


def test_center_loss_hand_computed_and_update_rule():
    fc = nn.Linear(2, 3)
    nn.init.zeros_(fc.weight)
    nn.init.zeros_(fc.bias)  # CE = log 3 for every sample
    loss = CenterLoss(num_classes=3, weight=2.0, alpha=0.5)
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([0, 0])
    # centres start at 0: per-sample log 3 + (2 / 2) |x|^2 = log 3 + (1, 9)
    out = loss(x, y, fc)
    torch.testing.assert_close(out, torch.tensor(math.log(3) + 5.0))
    # update: delta_0 = (2 * c_0 - (x_1 + x_2)) / (1 + 2) = -(4, 0) / 3; c_0 <- c_0 - 0.5 delta_0
    torch.testing.assert_close(loss.centers, torch.tensor([[2 / 3, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    loss.eval()
    out = loss(x, y, fc)
    torch.testing.assert_close(out, torch.tensor(math.log(3) + ((1 / 3) ** 2 + (7 / 3) ** 2) / 2))
    fresh = CenterLoss(num_classes=3)
    fresh.load_state_dict(loss.state_dict())
    torch.testing.assert_close(fresh.centers, loss.centers)
    assert not any(
        p.requires_grad for p in loss.parameters()
    )  # centres are not optimiser parameters


# ------------------------------------------------------------------ gaps a mutation run found


def test_documented_defaults_of_the_baselines():
    assert FocalLoss().gamma == 1.0
    cb_focal, cb_ce = ClassBalancedFocalLoss(COUNTS), ClassBalancedCELoss(COUNTS)
    assert (cb_focal.beta, cb_focal.gamma, cb_focal.variant) == (0.9999, 1.0, "sigmoid")
    assert (cb_ce.beta, cb_ce.gamma, cb_ce.variant) == (0.9999, 0.0, "softmax")
    ldam = LDAMLoss(COUNTS)
    assert (ldam.max_m, ldam.s, ldam.drw_epoch, ldam.drw_beta) == (0.5, 30.0, None, None)
    sched = DRWSchedule(COUNTS)
    assert (sched.drw_epoch, sched.beta) == (160, 0.9999)
    assert LogitAdjustedLoss(COUNTS).lam == 1.0


def test_documented_defaults_of_lq_disturb_label_and_ldam_drw_values():
    # Lq: q = 0.7 (Zhang & Sabuncu): (1 - p^0.7) / 0.7; two classes, logits (1, 0), label 0
    p = 1 / (1 + math.exp(-1.0))
    z, y = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([0])
    torch.testing.assert_close(
        GeneralizedCELoss()(z, y), torch.tensor((1 - p**0.7) / 0.7, dtype=torch.float64)
    )
    assert build_loss("disturb_label").alpha == 0.1
    # LDAM margins default to max_m = 0.5: m_c = 0.5 (n_min / n_c)^(1/4)
    expected = torch.tensor([0.5 * (2 / n) ** 0.25 for n in COUNTS], dtype=torch.float64)
    torch.testing.assert_close(ldam_margins(COUNTS), expected)
    # DRW's beta defaults to 0.9999: w_c = (1 - beta) / (1 - beta^n_c), normalised to sum C
    raw = [(1 - 0.9999) / (1 - 0.9999**n) for n in COUNTS]
    cb = torch.tensor([3 * r / sum(raw) for r in raw], dtype=torch.float64)
    ldam = LDAMLoss(COUNTS, drw_epoch=2)
    assert ldam.drw_beta == 0.9999
    ldam.set_epoch(2, 4)
    torch.testing.assert_close(ldam.weight, cb)


def test_ce_takes_torch_s_weight_ignore_index_and_checks_probabilities():
    z, y = _data(n=9)
    w = [0.0, 1.0, 2.0]  # a zero weight is allowed, as in torch
    torch.testing.assert_close(
        build_loss("ce", weight=w)(z, y),
        F.cross_entropy(z, y, weight=torch.tensor(w, dtype=torch.float64)),
    )
    y_ign = y.clone()
    y_ign[0] = 2
    for ign in (2, np.int64(2)):
        loss = build_loss("ce", ignore_index=ign)
        assert type(loss.ignore_index) is int
        torch.testing.assert_close(loss(z, y_ign), F.cross_entropy(z, y_ign, ignore_index=2))
    with pytest.raises(TypeError, match="ignore_index"):
        build_loss("ce", ignore_index=True)
    bad = torch.full((9, 3), 0.5, dtype=torch.float64)  # rows sum to 1.5
    with pytest.raises(ValueError, match="sum to 1"):
        build_loss("ce")(z, bad)
    with pytest.raises(ValueError, match="finite and >= 0"):
        build_loss("la", class_counts=COUNTS)(z, -F.one_hot(y, 3).double())


def test_ce_repr_names_what_differs_from_torch_defaults():
    r = repr(build_loss("ce", weight=[1.0, 2.0, 3.0], ignore_index=1, label_smoothing=0.1))
    assert "weight=[1.0, 2.0, 3.0]" in r and "ignore_index=1" in r and "label_smoothing=0.1" in r
    assert "weight" not in repr(build_loss("ce")) and "ignore_index" not in repr(build_loss("ce"))


def test_la_adjusted_logits_checks_the_class_count():
    with pytest.raises(ValueError, match="columns"):
        LogitAdjustedLoss(COUNTS).adjusted_logits(torch.zeros(2, 4))


def test_drw_schedule_rejects_a_negative_epoch_and_hands_out_copies():
    sched = DRWSchedule(COUNTS, drw_epoch=0, beta=0.99)
    with pytest.raises(ValueError, match="epoch"):
        sched.weights(-1)
    first = sched.weights(0)
    first.mul_(0.0)  # the caller's tensor, not the schedule's
    assert float(sched.weights(0).sum()) == pytest.approx(3.0)


def test_ldam_warnings_come_once_in_training_mode_only():
    z = torch.tensor([[2.0, -0.5, 0.1], [0.3, 0.2, -0.1]])
    y = torch.tensor([0, 1])
    loss = LDAMLoss(COUNTS, drw_epoch=1)
    with pytest.warns(UserWarning) as got:
        loss(z, y)
    messages = [str(w.message) for w in got]
    assert any("set_epoch" in m for m in messages) and any("cosine" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(z, y)  # both warnings were given once
    quiet = LDAMLoss(COUNTS).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet(z, y)  # evaluation: no plug-in warnings


def test_ldam_cosine_warning_looks_at_magnitudes_with_a_small_tolerance():
    y = torch.tensor([0, 1])
    with pytest.warns(UserWarning, match="cosine"):  # negative logits beyond -1 are not cosines
        LDAMLoss(COUNTS)(torch.tensor([[-3.0, 0.5, 0.1], [0.3, -2.0, 0.2]]), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float rounding of a cosine head just above 1 is not warned
        LDAMLoss(COUNTS)(torch.tensor([[1.0005, 0.5, 0.1], [0.3, -1.0004, 0.2]]), y)


def test_ldam_cosine_warning_tolerance_is_small():
    # 1e-3 above 1 is rounding; 1.01 is already not a cosine
    y = torch.tensor([0, 1])
    with pytest.warns(UserWarning, match="cosine"):
        LDAMLoss(COUNTS)(torch.tensor([[1.01, 0.5, 0.1], [0.3, -0.2, 0.2]]), y)
    with pytest.warns(UserWarning, match="cosine"):
        LDAMLoss(COUNTS)(torch.tensor([[0.1, 0.5, 0.1], [0.3, -1.002, 0.2]]), y)


def test_feature_losses_defaults_and_input_type():
    assert ISDALoss(3).lambda0 == 0.5
    assert LargeMarginSoftmaxLoss().margin == 4
    center = CenterLoss(3)
    assert (center.weight, center.alpha) == (0.003, 0.5)
    fc = nn.Linear(2, 3)
    for loss in (ISDALoss(3), CenterLoss(3), LargeMarginSoftmaxLoss()):
        with pytest.raises(TypeError, match="features must be a torch.Tensor"):
            loss([[0.0, 1.0]], torch.tensor([0]), fc)


@pytest.mark.filterwarnings("ignore:large_margin. the classifier has a bias:UserWarning")
def test_feature_losses_freeze_their_state_in_eval_mode():
    fc, g = _isda_setup()
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    center = CenterLoss(3, weight=1.0)
    center(x, y, fc)
    before = center.centers.clone()
    center.eval()(x, y, fc)
    torch.testing.assert_close(center.centers, before, rtol=0, atol=0)
    lm = LargeMarginSoftmaxLoss(margin=2)
    lm(x, y, fc)
    lm.eval()(x, y, fc)
    assert int(lm.step) == 1  # the annealing counts training steps only
    lm.train()(x, y, fc)
    assert int(lm.step) == 2


@pytest.mark.filterwarnings("ignore:large_margin. the classifier has a bias:UserWarning")
def test_large_margin_beta_stops_at_beta_min_and_survives_rounding_and_zero_features():
    lm = LargeMarginSoftmaxLoss(margin=4, beta_base=10.0, beta_gamma=1.0, beta_min=2.0)
    lm.step.fill_(3)  # 10 / (1 + 3) = 2.5 > 2
    assert lm.beta == pytest.approx(2.5)
    lm.step.fill_(100)  # 10 / 101 < 2
    assert lm.beta == 2.0
    # cosines a rounding step outside [-1, 1] are the poles, not NaN
    out = lm.psi(torch.tensor([1.0 + 1e-12, -1.0 - 1e-12], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([1.0, -7.0], dtype=torch.float64))
    fc, _ = _isda_setup()
    x = torch.zeros(2, 3, dtype=torch.float64)  # a zero feature vector has no angle
    assert torch.isfinite(lm(x, torch.tensor([0, 1]), fc))


def test_isda_diagonal_leaves_the_true_class_logit_exactly_unchanged():
    fc, g = _isda_setup()
    x = torch.randn(8, 3, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for n in (8, 2):  # the per-class table (N >= C = 3) and the per-sample path (N < C)
        loss = ISDALoss(3, diagonal=True)
        loss.update(x, y)
        loss.set_epoch(5, 10)
        aug = loss.augmented_logits(x[:n], y[:n], fc)
        plain = fc(x[:n])
        own = y[:n, None]
        assert torch.equal(aug.gather(1, own), plain.gather(1, own))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_gradients_stay_finite_on_a_confidently_right_sample(gamma):
    """(1 - p)^gamma with p rounding to 1: for gamma < 1 the power's derivative is infinite at 0, and the
    softmax and sigmoid focal losses gave NaN gradients there (inf · 0); the true gradient is 0."""
    from lpl_train.losses import build_loss

    counts = [50, 20, 5]
    y = torch.tensor([0, 1])
    u = torch.tensor([[30.0, 0.0, 0.0], [0.0, 1.0, -1.0]], requires_grad=True)
    for name in ("focal", "cb_focal"):  # the class-balanced one in its softmax variant
        kw = {"class_counts": counts, "variant": "softmax"} if name == "cb_focal" else {}
        loss = build_loss(name, num_classes=3, gamma=gamma, **kw)
        u.grad = None
        loss(u, y).backward()
        assert torch.isfinite(u.grad).all(), (name, gamma, u.grad)
        assert u.grad[0].abs().max() < 1e-9  # p_0 rounds to 1: nothing to learn from it
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    z = torch.tensor([[120.0, -120.0, -120.0], [0.0, 1.0, -1.0]], requires_grad=True)
    for name in ("focal_bce", "cb_focal_bce", "rbce_focal"):
        kw = {} if name == "focal_bce" else {"class_counts": counts}
        loss = build_loss(name, num_classes=3, focal_gamma=gamma, **kw)
        z.grad = None
        loss(z, t).backward()
        assert torch.isfinite(z.grad).all(), (name, gamma, z.grad)


def test_feature_losses_keep_float64_statistics_for_float64_features():
    """ISDA's class means and covariances and the centre loss's centres are allocated on the first batch
    in the features' precision (float64 stays float64; half precision gets float32): the float32 state
    they had lost ~2e-5 of a covariance of features around 1e3."""
    from lpl_train.losses.single_label import CenterLoss, ISDALoss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g, dtype=torch.float64) + 1e3
    y = torch.arange(64) % 4
    fc = torch.nn.Linear(8, 4).double()
    isda = ISDALoss(4)
    isda.set_epoch(1, 2)
    isda(x, y, fc)
    exact = torch.stack([torch.cov(x[y == c].T, correction=0) for c in range(4)])
    assert isda.covariance.dtype == isda.mean.dtype == torch.float64
    torch.testing.assert_close(isda.covariance, exact, rtol=0, atol=1e-9)
    center = CenterLoss(4)
    center(x, y, fc)
    assert center.centers.dtype == torch.float64
    half = CenterLoss(4)
    half(x.bfloat16(), y, fc.bfloat16())
    assert half.centers.dtype == torch.float32


@pytest.mark.parametrize("name", ["ldam", "lpl"])
def test_a_loss_restored_from_a_state_dict_does_not_warn_that_its_epoch_hook_was_never_called(name):
    counts = [10, 5, 3, 1]
    kw = {"class_counts": counts, "drw_epoch": 0}
    if name == "lpl":
        kw["num_classes"] = 4
    trained = build_loss(name, **kw)
    trained.set_epoch(1, 2)
    x, y = torch.rand(4, 4) * 2 - 1, torch.arange(4)
    restored = build_loss(name, **kw)
    restored.load_state_dict(trained.state_dict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored(x, y)
    assert not [w for w in caught if "never called" in str(w.message)]
    torch.testing.assert_close(restored.weight, trained.weight)
    with pytest.warns(UserWarning, match="never called"):  # without a state, it still warns
        build_loss(name, **kw)(x, y)


@pytest.mark.parametrize("cls", [ISDALoss, CenterLoss])
def test_feature_state_stays_float64_when_sized_at_construction_or_loaded(cls):
    """float64 features keep float64 statistics whether the state is allocated lazily, at construction
    (``feature_dim`` given) or by loading a float64 state dict into a fresh loss (a resumed run)."""
    g = torch.Generator().manual_seed(3)
    head = nn.Linear(3, 4).double()
    batches = [
        (torch.randn(16, 3, generator=g, dtype=torch.float64) * 3 + 1, torch.arange(16) % 4)
        for _ in range(3)
    ]
    lazy, sized = cls(num_classes=4), cls(num_classes=4, feature_dim=3)
    for loss in (lazy, sized):
        if cls is ISDALoss:
            loss.set_epoch(5, 10)
        for x, y in batches:
            out = loss(x, y, head)
        loss.last = out
    name = cls._lazy_buffers[0]
    assert getattr(sized, name).dtype == torch.float64
    torch.testing.assert_close(sized.last, lazy.last, rtol=0, atol=0)
    for fresh in (cls(num_classes=4), cls(num_classes=4, feature_dim=3)):
        fresh.load_state_dict(lazy.state_dict())
        for buf in cls._lazy_buffers:
            assert torch.equal(getattr(fresh, buf), getattr(lazy, buf))


def test_class_balanced_sigmoid_focal_is_exact_in_float64_past_softplus_threshold():
    """(1 - p_t)^gamma of the sigmoid focal term is sigmoid(z)^gamma for a negative class: at z = -25 it is
    1.3887943864771144e-11, where F.softplus (linear above 20) gave e^-25 = 1.3887943864964021e-11, a relative
    error of 1.4e-11, far beyond float64 rounding. Here that class's term dominates the sample's loss."""
    import math

    logits = torch.tensor([[30.0, -25.0]], dtype=torch.float64)
    target = torch.tensor([0])
    loss = ClassBalancedFocalLoss([10, 10], beta=0.9999, gamma=1.0, reduction="none")
    weight = loss.weight[0].item()  # equal counts: both classes weigh the same

    # (1 - p_t) * BCE per class, each factor without cancellation: 1 - p_t is sigmoid(-z) for the target
    # class and sigmoid(z) for the other (sigmoid(-25) itself, not 1 - (1 - p))
    pos = 1.0 / (1.0 + math.exp(30.0)) * math.log1p(math.exp(-30.0))
    neg = 1.0 / (1.0 + math.exp(25.0)) * math.log1p(math.exp(-25.0))
    expected = weight * (pos + neg)
    torch.testing.assert_close(loss(logits, target), torch.tensor([expected], dtype=torch.float64),
                               rtol=1e-13, atol=0)  # fmt: skip


def test_disturb_label_takes_any_generator_seed_and_keeps_the_draws_of_small_ones():
    """A seed near 2**64 overflowed ``seed * 1_000_003 + step`` at the first training step ("Overflow
    when unpacking long long"); the mix is now taken modulo 2**64, which leaves small seeds' draws as they
    were."""
    y = torch.arange(64) % 10
    for seed in (2**64 - 1, 2**50):
        loss = build_loss("disturb_label", seed=seed, alpha=0.5).train()
        assert torch.isfinite(loss(torch.zeros(64, 10), y))
        assert int(loss.step) == 1
    loss = build_loss("disturb_label", seed=3, alpha=0.5)
    loss.step.fill_(7)
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 7)
    flip = torch.rand(64, generator=gen) < 0.5
    want = torch.where(flip, torch.randint(10, (64,), generator=gen), y)
    assert torch.equal(loss.disturb(y, 10), want)
