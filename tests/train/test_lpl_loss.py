"""Values, gradients, dtypes and input checks of the LPL losses (lpl, la_lpl, ml_lpl)."""

import inspect
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lpl_train import perturbation as P
from lpl_train.losses import build_loss, register
from lpl_train.losses.lpl import LALPLLoss, LPLLoss, MultiLabelLPLLoss

torch.set_flush_denormal(True)

COUNTS = [100, 50, 20, 10, 5]


def _batch(n=40, c=5, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, c, (n,), generator=g)
    return u, y


def _class_mean_step_reference(u, y, s, eps, alpha):
    """Independent per-class loop: K = ⌊ε/α⌋ steps of s·α·mean(softmax(u + δ) − y), projected."""
    c = u.shape[1]
    out = torch.zeros_like(u)
    for k in range(c):
        m = y == k
        if not bool(m.any()):
            continue
        d = torch.zeros(c, dtype=u.dtype)
        for _ in range(math.floor(eps[k] / alpha + 1e-9)):
            d = d + s[k] * alpha * (torch.softmax(u[m] + d, 1) - F.one_hot(y[m], c)).mean(0)
            if d.norm() > eps[k]:
                d = d * eps[k] / d.norm()
        out[m] = d
    return out


# ------------------------------------------------------------------------------------------ values
def test_registry_builds_the_three_losses():
    assert isinstance(build_loss("lpl", num_classes=5, class_counts=COUNTS), LPLLoss)
    assert isinstance(build_loss("la_lpl", num_classes=5, class_counts=COUNTS, lam=0.5), LALPLLoss)
    assert isinstance(
        build_loss("ml_lpl", num_classes=5, class_counts=COUNTS, tau=2), MultiLabelLPLLoss
    )


def test_index_split_loss_equals_reference_per_sample():
    u, y = _batch(seed=1)
    # the reference is Algorithm 1 read literally (raw class-mean steps)
    kw = dict(class_counts=COUNTS, alpha=0.1, epsilon=0.35, split="index", normalize_step=False)
    loss = LPLLoss(5, tau=2, reduction="none", **kw)
    s = [-1.0, -1.0, 1.0, 1.0, 1.0]  # head = the 2 most frequent classes (0, 1)
    ref = F.cross_entropy(
        u + _class_mean_step_reference(u, y, s, [0.35] * 5, 0.1), y, reduction="none"
    )
    assert torch.allclose(loss(u, y), ref, atol=1e-12)
    mean = LPLLoss(5, tau=0.4, **kw)
    total = LPLLoss(5, tau=0.4, reduction="sum", **kw)
    assert float(mean(u, y)) == pytest.approx(float(ref.mean()))
    assert float(total(u, y)) == pytest.approx(float(ref.sum()))


def test_count_bound_loss_equals_reference_with_hand_computed_bounds():
    """bound="count": ε_c = ε + Δε·n_c/n_max (head), ε + Δε·n_min/n_c (tail), worked out by hand for
    unsorted counts; the loss is CE after ⌊ε_c/α⌋ raw class-mean steps of the reference loop."""
    u, y = _batch(seed=15)
    assert set(y.tolist()) == set(range(5))
    counts = [5, 100, 10, 50, 20]  # head (τ = 2): classes 1 and 3
    loss = LPLLoss(5, class_counts=counts, alpha=0.05, epsilon=0.1, delta_epsilon=0.4, split="index",
                   tau=2, bound="count", normalize_step=False, reduction="none")  # fmt: skip
    s = [1.0, -1.0, 1.0, -1.0, 1.0]
    eps = [0.1 + 0.4 * r for r in (5 / 5, 100 / 100, 5 / 10, 50 / 100, 5 / 20)]
    ref = F.cross_entropy(u + _class_mean_step_reference(u, y, s, eps, 0.05), y, reduction="none")
    torch.testing.assert_close(loss(u, y), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("normalize_step", [True, False])
@pytest.mark.parametrize("classes", [[0, 1], [2, 3, 4]])
def test_varied_index_bounds_with_one_side_absent_have_finite_gradients(classes, normalize_step):
    """Eq. 33's second form through the differentiable loop on a batch with only head (or only tail)
    classes: the missing side's normaliser is unused, and must not turn the gradient into NaN."""
    u, _ = _batch(n=12, seed=16)
    y = torch.tensor(classes).repeat(12 // len(classes))
    u.requires_grad_(True)
    loss = LPLLoss(5, class_counts=COUNTS, alpha=0.1, epsilon=0.2, delta_epsilon=0.5,
                   split="index", tau=2, differentiable=True, normalize_step=normalize_step)  # fmt: skip
    loss(u, y).backward()
    assert torch.isfinite(u.grad).all()
    assert float(u.grad.abs().max()) > 0


def test_zero_bound_is_plain_cross_entropy():
    u, y = _batch(seed=2)
    assert float(LPLLoss(5, epsilon=0.0)(u, y)) == pytest.approx(float(F.cross_entropy(u, y)))


def test_la_lpl_is_lpl_on_adjusted_logits():
    u, y = _batch(seed=3)
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS))
    la = LALPLLoss(5, class_counts=COUNTS, lam=0.7, epsilon=0.0)
    assert float(la(u, y)) == pytest.approx(
        float(F.cross_entropy(u + 0.7 * log_prior, y)), rel=1e-6
    )
    la = LALPLLoss(5, class_counts=COUNTS, lam=0.7, alpha=0.1, epsilon=0.3, split="index", tau=2)
    plain = LPLLoss(5, class_counts=COUNTS, alpha=0.1, epsilon=0.3, split="index", tau=2)
    assert float(la(u, y)) == pytest.approx(float(plain(u + 0.7 * log_prior.float(), y)), rel=1e-6)
    assert la.head == 2 and LALPLLoss(5, class_counts=COUNTS).head == 2  # default τ = 0.4·C


def test_constant_delta_gradient_is_softmax_minus_onehot():
    u, y = _batch(seed=4)
    u.requires_grad_(True)
    loss = LPLLoss(5, alpha=0.05, epsilon=0.2, delta_epsilon=0.3)
    perturbed = loss.perturb(u, y).detach()
    loss(u, y).backward()
    expected = (perturbed.softmax(1) - F.one_hot(y, 5)) / len(y)
    assert torch.allclose(u.grad, expected, atol=1e-12)


def test_differentiable_passes_gradcheck_and_differs_from_constant_delta():
    u, y = _batch(n=12, c=4, seed=5)
    u.requires_grad_(True)
    loss = LPLLoss(4, alpha=0.1, epsilon=0.3, differentiable=True, reduction="sum")
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (u,), eps=1e-6, atol=1e-7)
    varied = LPLLoss(4, alpha=0.1, epsilon=0.25, delta_epsilon=0.3, differentiable=True)
    assert torch.autograd.gradcheck(lambda z: varied(z, y), (u,), eps=1e-6, atol=1e-7)
    g_diff = torch.autograd.grad(loss(u, y), u)[0]
    const = LPLLoss(4, alpha=0.1, epsilon=0.3, reduction="sum")
    g_const = torch.autograd.grad(const(u, y), u)[0]
    assert float((g_diff - g_const).abs().max()) > 1e-4
    assert float(loss(u, y).detach()) == pytest.approx(float(const(u, y).detach()))


def test_float32_float64_and_bfloat16_autocast_agree():
    u64, y = _batch(n=64, c=10, seed=6)
    loss = LPLLoss(10, alpha=0.02, epsilon=0.2, delta_epsilon=0.2)
    ref = float(loss(u64, y))
    assert float(loss(u64.float(), y)) == pytest.approx(ref, rel=1e-5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g)
    lin = nn.Linear(16, 10)
    full = float(loss(lin(x), y).detach())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = lin(x)
        assert logits.dtype == torch.bfloat16
        half = loss(logits, y)
    assert half.dtype == torch.float32
    assert float(half.detach()) == pytest.approx(full, rel=2e-2)


def test_single_class_batch_one_sample_classes_and_two_classes():
    u = torch.tensor([[1.0, 0.0], [0.2, 0.3], [2.0, -1.0]])
    for y in (torch.tensor([1, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([0, 1, 1])):
        v = LPLLoss(2, alpha=0.05, epsilon=0.2)(u, y)
        assert math.isfinite(float(v))
    single = LPLLoss(2, alpha=0.05, epsilon=0.2)(u, torch.tensor([1, 1, 1]))
    assert float(single) == pytest.approx(float(F.cross_entropy(u, torch.tensor([1, 1, 1]))))


def test_presets_reproduce_their_functions_and_defaults():
    u, y = _batch(n=20, c=5, seed=7)
    fixed = LPLLoss(5, preset="authors_balanced_fixed", reduction="none")
    assert fixed.alpha == 0.005 and fixed.steps == 20 and not fixed.differentiable
    d = P.authors_balanced_fixed_perturbation(u, y, alpha=0.005, steps=20)
    assert torch.allclose(fixed(u, y), F.cross_entropy(u + d, y, reduction="none"), atol=1e-12)
    varied = LPLLoss(5, preset="authors_balanced_varied", reduction="none")
    d = P.authors_balanced_varied_perturbation(u, y, alpha=0.01, steps=40)
    assert torch.allclose(varied(u, y), F.cross_entropy(u + d, y, reduction="none"), atol=1e-12)
    lt = LPLLoss(
        5, class_counts=COUNTS, preset="authors_longtail", tau=2, steps=4, reduction="none"
    )
    assert lt.differentiable and lt.alpha == 0.2
    ks, signs = P.authors_longtail_schedule(COUNTS, 2, steps=4, head_scale=0.2)
    assert ks == [0, -1, 0, 1, 3] and lt.iterations == 5  # index −1 = the last of C snapshots
    short = LPLLoss(
        5, class_counts=COUNTS, preset="authors_longtail", tau=2, steps=4, head_scale=1.0
    )
    assert short.iterations == 4  # no −1: snapshots after the largest index are never used
    d = P.authors_longtail_perturbation(
        u, y, torch.tensor(ks), torch.tensor(signs), alpha=0.2, iterations=5
    )
    assert torch.allclose(lt(u, y), F.cross_entropy(u + d, y, reduction="none"), atol=1e-12)
    u.requires_grad_(True)
    g = torch.autograd.grad(lt(u, y).sum(), u)[0]
    g_const = (lt.perturb(u, y).detach().softmax(1) - F.one_hot(y, 5)).double()
    assert (
        float((g - g_const).abs().max()) > 1e-4
    )  # gradients flow through the loop, as in the scripts


# ------------------------------------------------------------------------------------------ multi-label
class _WeightedFocalStandIn(nn.Module):
    """w_c·(1 − p_t)^γ·BCE, elementwise; a stand-in for R-BCE-Focal."""

    def __init__(self, weight, gamma=2.0, reduction="none"):
        super().__init__()
        self.weight = torch.as_tensor(weight, dtype=torch.float32)
        self.gamma = gamma
        self.reduction = reduction

    def forward(self, logits, target):
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-bce)
        return self.weight * (1 - p_t) ** self.gamma * bce


@register("_test_ml_weighted")
class _RegisteredStandIn(_WeightedFocalStandIn):
    def __init__(self, num_classes, class_counts, gamma=2.0, reduction="mean"):
        super().__init__([1.0 / n for n in class_counts], gamma, reduction)


def _ml_batch(seed=8):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(30, 5, generator=g)
    t = (torch.rand(30, 5, generator=g) < 0.4).float()
    return u, t


def test_multi_label_bce_values_and_signs():
    u, t = _ml_batch()
    loss = MultiLabelLPLLoss(5, class_counts=COUNTS, epsilon=0.3, tau=2, reduction="none")
    assert loss.delta.tolist() == pytest.approx([-0.3, -0.3, 0.3, 0.3, 0.3])
    shift = torch.tensor([0.3, 0.3, -0.3, -0.3, -0.3])
    ref = F.binary_cross_entropy_with_logits(u + shift, t, reduction="none")
    out = loss(u, t)
    assert torch.allclose(out, ref, atol=1e-6)
    base = F.binary_cross_entropy_with_logits(u, t, reduction="none")
    pos, neg = t == 1, t == 0
    head = torch.tensor([True, True, False, False, False]).expand_as(u)
    # Eq. 37 (head): positive loss minimised, negative maximised; Eq. 38 (tail): the reverse
    assert bool((out[pos & head] < base[pos & head]).all()) and bool(
        (out[neg & head] > base[neg & head]).all()
    )
    assert bool((out[pos & ~head] > base[pos & ~head]).all()) and bool(
        (out[neg & ~head] < base[neg & ~head]).all()
    )
    mean = MultiLabelLPLLoss(5, class_counts=COUNTS, epsilon=0.3, tau=2)
    assert float(mean(u, t)) == pytest.approx(float(ref.mean()), rel=1e-6)


def test_multi_label_varied_bounds_from_positive_counts():
    loss = MultiLabelLPLLoss(
        5, class_counts=[5, 100, 10, 50, 20], epsilon=0.1, delta_epsilon=1.0, tau=2
    )
    # ranks: class 1, 3 head; ε_c = 0.1 + n_c/100 (head), 0.1 + 5/n_c (tail)
    assert loss.delta.tolist() == pytest.approx([1.1, -1.1, 0.6, -0.6, 0.35])


def test_multi_label_composes_with_a_weighted_focal_module_and_by_name():
    u, t = _ml_batch(9)
    w = [1.0 / n for n in COUNTS]
    stand_in = _WeightedFocalStandIn(w)
    loss = MultiLabelLPLLoss(
        5, class_counts=COUNTS, epsilon=0.2, tau=3, base_loss=stand_in, reduction="sum"
    )
    shifted = u + torch.tensor([0.2, 0.2, 0.2, -0.2, -0.2])
    bce = F.binary_cross_entropy_with_logits(shifted, t, reduction="none")
    manual = torch.tensor(w) * (1 - torch.exp(-bce)) ** 2 * bce
    assert float(loss(u, t)) == pytest.approx(float(manual.sum()), rel=1e-5)
    named = build_loss(
        "ml_lpl",
        num_classes=5,
        class_counts=COUNTS,
        epsilon=0.2,
        tau=3,
        base_loss="_test_ml_weighted",
        base_params={"gamma": 2.0},
        reduction="sum",
    )
    assert float(named(u, t)) == pytest.approx(float(manual.sum()), rel=1e-5)
    with pytest.raises(ValueError, match="reduction='none'"):
        MultiLabelLPLLoss(
            5, class_counts=COUNTS, base_loss=_WeightedFocalStandIn(w, reduction="mean")
        )
    bad = MultiLabelLPLLoss(5, class_counts=COUNTS, base_loss=lambda z, y: z.sum(1))
    with pytest.raises(ValueError, match="elementwise"):
        bad(u, t)


def test_multi_label_soft_targets():
    u, _ = _ml_batch(10)
    soft = torch.full((30, 5), 0.3)
    with pytest.raises(ValueError, match="multi-hot"):
        MultiLabelLPLLoss(5, class_counts=COUNTS)(u, soft)
    v = MultiLabelLPLLoss(5, class_counts=COUNTS, soft_targets=True, epsilon=0.0)(u, soft)
    assert float(v) == pytest.approx(float(F.binary_cross_entropy_with_logits(u, soft)), rel=1e-6)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(alpha=0.0), ValueError, "alpha"),
        (dict(alpha=-1.0), ValueError, "alpha"),
        (dict(epsilon=-0.1), ValueError, "epsilon"),
        (dict(delta_epsilon=-0.1), ValueError, "delta_epsilon"),
        (dict(split="median"), ValueError, "split"),
        (dict(split="value", tau=1.5), ValueError, "tau"),
        (dict(split="mean", tau=0.3), ValueError, "tau"),
        (dict(split="index", tau=6, class_counts=COUNTS), ValueError, "tau"),
        (dict(split="index", tau=-0.2, class_counts=COUNTS), ValueError, "tau"),
        (dict(split="index", tau=2), ValueError, "class_counts"),
        (dict(class_counts=[1, 2, 3]), ValueError, "class_counts"),
        (dict(class_counts=[1, 2, -3, 4, 5]), ValueError, "class_counts"),
        (dict(bound="count", delta_epsilon=1.0), ValueError, "bound"),
        (dict(bound="median"), ValueError, "bound"),
        (dict(preset="nope"), ValueError, "preset"),
        (dict(preset="authors_balanced_fixed", epsilon=0.3), ValueError, "preset"),
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(alpha="0.1"), TypeError, "alpha"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LPLLoss(5, **kwargs)


def test_bad_forward_inputs():
    loss = LPLLoss(5)
    u, y = _batch()
    with pytest.raises(ValueError, match="logits must be 2-D"):
        loss(u[0], y)
    with pytest.raises(TypeError, match="logits must be a floating"):
        loss(u.long(), y)
    with pytest.raises(ValueError, match="num_classes=5"):
        loss(u[:, :4], y)
    with pytest.raises(ValueError, match="target must have shape"):
        loss(u, y[:-1])
    with pytest.raises(TypeError, match="target must be class indices"):
        loss(u, y.float())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        loss(u, torch.full_like(y, 5))
    bad = u.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        loss(bad, y)
    bad[3, 2] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        loss(bad, y)


def test_bad_multi_label_inputs():
    u, t = _ml_batch()
    with pytest.raises(ValueError, match="class_counts"):
        MultiLabelLPLLoss(5)
    with pytest.raises(ValueError, match="tau"):
        MultiLabelLPLLoss(5, class_counts=COUNTS, tau=7)
    with pytest.raises(ValueError, match="epsilon"):
        MultiLabelLPLLoss(5, class_counts=COUNTS, epsilon=-1.0)
    with pytest.raises(ValueError, match="class_counts > 0"):
        MultiLabelLPLLoss(5, class_counts=[3, 0, 1, 1, 1], delta_epsilon=1.0)
    loss = MultiLabelLPLLoss(5, class_counts=COUNTS)
    with pytest.raises(ValueError, match="target must have the shape"):
        loss(u, t[:, :4])
    with pytest.raises(ValueError, match="multi-hot"):
        loss(u, t * 2)
    with pytest.raises(ValueError, match="non-finite"):
        loss(u.masked_fill(t.bool(), float("nan")), t)


def test_perturbation_has_no_host_sync():
    # meta tensors carry no data: any .item()/bool() inside the perturbation would raise
    u = torch.empty(16, 7, device="meta")
    y = torch.empty(16, dtype=torch.long, device="meta")
    out = P.single_label_perturbation(u, y, alpha=0.1, epsilon=0.3, delta_epsilon=0.4)
    assert out.delta.shape == (16, 7)
    loss = LPLLoss(
        7,
        class_counts=[7, 6, 5, 4, 3, 2, 1],
        split="index",
        tau=3,
        delta_epsilon=1.0,
        validate=False,
    )
    assert loss(u, y).device.type == "meta"


@pytest.mark.parametrize(
    "cls, kw",
    [
        (LPLLoss, dict(weight=[1.0, 2.0, 3.0, 4.0, 5.0])),
        (LPLLoss, dict(class_counts=COUNTS, drw_epoch=0)),
        (LALPLLoss, dict(class_counts=COUNTS, weight=[1.0, 2.0, 3.0, 4.0, 5.0])),
    ],
)
def test_class_weights_follow_the_logits_device(cls, kw):
    """As the class counts, rank and prior do (devices follow the logits): a loss built on the CPU and not
    moved takes logits on another device (meta here, as a GPU would) with ``weight`` or DRW too."""
    u = torch.empty(8, 5, device="meta")
    y = torch.empty(8, dtype=torch.long, device="meta")
    loss = cls(5, **kw)
    loss.set_epoch(0, 1)
    for training in (True, False):
        loss.train(training)
        assert loss(u, y).device.type == "meta"


def test_la_lpl_with_the_longtail_preset_runs_the_preset_on_adjusted_logits():
    counts = [int(500 * 0.01 ** (c / 99)) for c in range(100)]
    la = LALPLLoss(100, class_counts=counts, preset="authors_longtail", tau=27, reduction="none")
    plain = LPLLoss(100, class_counts=counts, preset="authors_longtail", tau=27, reduction="none")
    assert la.iterations == 50 and la.differentiable
    u, y = _batch(n=32, c=100, seed=12)
    log_prior = torch.log(torch.tensor(counts, dtype=torch.float64) / sum(counts)).float()
    assert torch.allclose(la(u, y), plain(u + log_prior, y), atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    u, y = _batch(n=128, c=100, seed=13, dtype=torch.float32)
    for kw in (
        dict(alpha=0.01, epsilon=0.1, delta_epsilon=0.2),
        dict(alpha=0.05, epsilon=0.3, differentiable=True),
        dict(preset="authors_balanced_varied"),
    ):
        loss = LPLLoss(100, **kw)
        uc = u.cuda().requires_grad_(True)
        ucpu = u.clone().requires_grad_(True)
        vc, vcpu = loss.to("cuda")(uc, y.cuda()), loss.cpu()(ucpu, y)
        assert float(vc.detach()) == pytest.approx(float(vcpu.detach()), rel=1e-4)
        vc.backward()
        vcpu.backward()
        assert torch.allclose(uc.grad.cpu(), ucpu.grad, atol=1e-5)
    ml = MultiLabelLPLLoss(5, class_counts=COUNTS, tau=2, epsilon=0.2).to("cuda")
    um, t = _ml_batch()
    assert float(ml(um.cuda(), t.cuda())) == pytest.approx(float(ml.cpu()(um, t)), rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fused_loop_matches_the_torch_loop(monkeypatch):
    """``fused_loop=True`` on CUDA (the Triton kernel, compiled for the device) against the default loop on
    the same device: δ to rounding, the loss and its gradient, with ignored rows and with probability
    targets; the kernel ran (one launch per call) and the perturbation reads nothing back on the host."""
    pytest.importorskip("triton", reason="the fused loop is a Triton kernel")
    launches = []
    real = P.pgd_fused
    monkeypatch.setattr(P, "pgd_fused", lambda *a, **k: launches.append(1) or real(*a, **k))
    lt = {"split": "index", "tau": 0.5, "epsilon": 1.5, "delta_epsilon": 1.0, "alpha": 0.25}
    cases = [
        (10, torch.float32, {"alpha": 0.01, "epsilon": 0.1, "delta_epsilon": 0.2}),
        (100, torch.float32, {"alpha": 0.01, "epsilon": 0.1, "delta_epsilon": 0.1}),
        (100, torch.float64, {"alpha": 0.02, "epsilon": 0.3, "normalize_step": False}),
        (1000, torch.float32, {**lt, "class_counts": [1000 - k for k in range(1000)]}),
    ]
    for c, dtype, kw in cases:
        u, y = _batch(n=256, c=c, seed=c, dtype=dtype)
        y[:6] = -100
        u, y = u.cuda(), y.cuda()
        ref, fused = LPLLoss(c, **kw).cuda(), LPLLoss(c, fused_loop=True, **kw).cuda()
        ua, ub = u.clone().requires_grad_(True), u.clone().requires_grad_(True)
        va, vb = ref(ua, y), fused(ub, y)
        assert len(launches) == 1, (c, kw)
        launches.clear()
        # float32 on a GPU: Triton's fast exp, division and square root (a few ulp each) on top of
        # the sums' order; emulated at 2 ulp each they moved δ by up to 1.4e-6 at |δ| = 2.5
        top = float(ref.last_delta.abs().max())
        atol = 1e-12 if dtype == torch.float64 else 5e-6 * max(1.0, top)
        torch.testing.assert_close(fused.last_delta, ref.last_delta, rtol=0, atol=atol)
        assert top > 0.05
        va.backward()
        vb.backward()
        torch.testing.assert_close(vb, va, rtol=5e-6, atol=0)
        torch.testing.assert_close(ub.grad, ua.grad, rtol=0, atol=atol)
        quiet = LPLLoss(c, fused_loop=True, validate=False, **kw).cuda()
        torch.cuda.synchronize()
        try:
            torch.cuda.set_sync_debug_mode("error")
            quiet(u, y)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        # no atomics: the same sums in the same order, bit for bit
        assert torch.equal(quiet.last_delta, fused.last_delta)
    # probability targets: the (sample, class) pairs go through the kernel as weighted rows
    u, y = _batch(n=128, c=10, seed=3, dtype=torch.float32)
    soft = (0.7 * F.one_hot(y, 10) + 0.3 * F.one_hot(y.roll(1), 10)).float().cuda()
    kw = {"alpha": 0.01, "epsilon": 0.1, "delta_epsilon": 0.2}
    ref, fused = LPLLoss(10, **kw).cuda(), LPLLoss(10, fused_loop=True, **kw).cuda()
    torch.testing.assert_close(fused(u.cuda(), soft), ref(u.cuda(), soft), rtol=5e-6, atol=0)
    assert len(launches) == 1


def test_numpy_counts_and_scalars_are_accepted_like_python_numbers():
    # np.bincount(...) or list(np.bincount(...)) are how users get class counts; np.int64 τ from configs
    import numpy as np

    u, y = _batch(seed=14)
    ref = LPLLoss(5, class_counts=COUNTS, alpha=0.1, epsilon=0.3, split="index", tau=2)
    for counts in (np.array(COUNTS), list(np.array(COUNTS)), np.array(COUNTS, dtype=np.float32)):
        for tau in (2, np.int64(2)):
            loss = LPLLoss(5, class_counts=counts, alpha=0.1, epsilon=0.3, split="index", tau=tau)
            assert loss.head == 2 and loss.rank.tolist() == ref.rank.tolist()
            assert float(loss(u, y)) == float(ref(u, y))
    assert LPLLoss(5, class_counts=COUNTS, split="index", tau=np.float64(0.4)).head == 2
    assert LPLLoss(5, split="value", tau=np.float32(0.5)).tau == 0.5
    ml = MultiLabelLPLLoss(5, class_counts=np.array(COUNTS), tau=np.int64(2), epsilon=0.3)
    assert ml.delta.tolist() == pytest.approx([-0.3, -0.3, 0.3, 0.3, 0.3])
    with pytest.raises(TypeError, match="class_counts must hold numbers"):
        LPLLoss(5, class_counts=np.array(["a"] * 5))
    with pytest.raises(TypeError, match="tau"):
        LPLLoss(5, class_counts=COUNTS, split="index", tau=np.bool_(True))


# --------------------------------------------------------------- logit scale and deferred re-weighting
def test_scale_is_lpl_on_scaled_logits_and_default_changes_nothing():
    u, y = _batch(seed=7, scale=0.3)
    kw = dict(class_counts=COUNTS, alpha=0.25, epsilon=0.0, delta_epsilon=2.0, split="index", tau=2)
    s = [-1.0, -1.0, 1.0, 1.0, 1.0]
    scaled = LPLLoss(5, scale=30.0, reduction="none", **kw)
    # independent: Eq. 33's q̄-based bounds need the loss's own statistics, so compare with the
    # unscaled loss applied to 30·u, and check the fixed-bound case against the reference loop
    assert torch.equal(scaled(u, y), LPLLoss(5, reduction="none", **kw)(30.0 * u, y))
    fixed = LPLLoss(5, class_counts=COUNTS, alpha=0.1, epsilon=0.35, split="index", tau=2, scale=30.0,
                    normalize_step=False, reduction="none")  # fmt: skip
    ref = F.cross_entropy(
        30.0 * u + _class_mean_step_reference(30.0 * u, y, s, [0.35] * 5, 0.1), y, reduction="none"
    )
    assert torch.allclose(fixed(u, y), ref, atol=1e-10)
    assert torch.allclose(fixed.eval()(u, y), F.cross_entropy(30.0 * u, y, reduction="none"))
    # the default scale returns the very same numbers as before (no multiplication at all)
    plain = LPLLoss(5, reduction="none", **kw)
    assert torch.equal(plain(u, y), LPLLoss(5, reduction="none", scale=1.0, **kw)(u, y))
    la = LALPLLoss(5, class_counts=COUNTS, lam=1.0, epsilon=0.0, scale=30.0, reduction="none")
    prior = torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS))
    assert torch.allclose(la.eval()(u, y), F.cross_entropy(30.0 * u + prior, y, reduction="none"))


def test_drw_weights_switch_at_drw_epoch_to_class_balanced_weights():
    u, y = _batch(seed=8)
    loss = LPLLoss(5, class_counts=COUNTS, epsilon=0.0, drw_epoch=3, drw_beta=0.99, split="index")
    beta = 0.99
    eff = [(1 - beta**n) / (1 - beta) for n in COUNTS]  # effective numbers (Cui et al.)
    w = torch.tensor([1 / e for e in eff], dtype=torch.float64)
    w = w * 5 / w.sum()
    for epoch in range(6):
        loss.set_epoch(epoch, 6)
        want = F.cross_entropy(u, y, weight=w) if epoch >= 3 else F.cross_entropy(u, y)
        assert float(loss(u, y)) == pytest.approx(float(want), rel=1e-12), epoch
    assert torch.allclose(loss.weight, w)
    by_name = build_loss("lpl", num_classes=5, class_counts=COUNTS, drw_epoch=2, scale=30.0)
    assert by_name.drw_epoch == 2 and by_name.scale == 30.0
    with pytest.warns(UserWarning, match="set_epoch"):
        LPLLoss(5, class_counts=COUNTS, split="index", drw_epoch=1)(u, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scale=0.0), "scale"),
        (dict(scale=float("nan")), "scale"),
        (
            dict(drw_epoch=2, weight=[1.0] * 5, class_counts=COUNTS, split="index"),
            "weight and drw_epoch",
        ),
        (dict(drw_epoch=2), "drw_epoch needs class_counts"),
        (dict(drw_epoch=-1, class_counts=COUNTS, split="index"), "drw_epoch"),
        (dict(drw_epoch=1, drw_beta=1.0, class_counts=COUNTS, split="index"), "beta"),
    ],
)
def test_bad_scale_and_drw_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LPLLoss(5, **kwargs)


# ------------------------------------------------------------------------------------------ inner-loop step
def _symmetric_one_class_batch(n=6, c=5, seed=11):
    """Rows of class 0 whose non-target logits are equal within each row: u_i = (a_i, b_i, ..., b_i)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 1, generator=g, dtype=torch.float64) * 2
    b = torch.randn(n, 1, generator=g, dtype=torch.float64)
    u = torch.cat([a, b.expand(n, c - 1)], dim=1)
    return u, torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize(("tau", "sign"), [(1.0, 1.0), (0.0, -1.0)])
def test_default_inner_loop_takes_steps_of_length_alpha(tau, sign):
    """With one class in the batch (class 0, logits symmetric in the other C − 1 classes), the class-mean
    gradient mean_i(softmax(u_i + δ) − e_0) keeps the form (−(C−1)q, q, ..., q), q > 0, at every δ of that
    form: every step has the direction s·(−(C−1), 1, ..., 1)/√((C−1)² + C − 1). The default loop scales each
    step to length α, so after K = ⌊ε/α⌋ steps δ_0 = s·K·α·(−4, 1, 1, 1, 1)/√20 (C = 5), of norm
    K·α = min(K·α, ε) (no projection), whatever the logits' scale."""
    u, y = _symmetric_one_class_batch()
    alpha, eps = 0.1, 0.35  # K = 3
    direction = torch.tensor([-4.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64) / math.sqrt(20.0)
    for scale in (1.0, 8.0):  # confident logits: the raw step would be tiny
        loss = LPLLoss(5, alpha=alpha, epsilon=eps, split="value", tau=tau)
        assert loss.normalize_step is True and "normalize_step=True" in repr(loss)
        loss(scale * u, y)
        expected = (sign * 3 * alpha * direction).expand(6, 5)
        torch.testing.assert_close(loss.last_delta, expected, rtol=0, atol=1e-12)
        norms = torch.linalg.vector_norm(loss.last_delta, dim=1)
        torch.testing.assert_close(
            norms, torch.full((6,), min(3 * alpha, eps), dtype=torch.float64)
        )
    # LA + LPL too: with equal counts for classes 1..4 the prior keeps the symmetry; class 0 (rarest) is
    # a tail class of the default index split (head 0.4·C = 2 classes), so it is maximised (s = +1)
    la = LALPLLoss(5, class_counts=[10, 40, 40, 40, 40], alpha=alpha, epsilon=eps)
    assert la.normalize_step is True
    la(u, y)
    torch.testing.assert_close(
        la.last_delta, (3 * alpha * direction).expand(6, 5), rtol=0, atol=1e-12
    )


def _raw_step_length(u, y, alpha):
    """Length of the first raw step α·‖mean_i(softmax(u_i) − e_{y_i})‖ of a one-class batch."""
    return alpha * float(torch.linalg.vector_norm((torch.softmax(u, 1) - F.one_hot(y, 5)).mean(0)))


def test_literal_inner_loop_takes_algorithm_1_raw_steps():
    """normalize_step=False is Algorithm 1 read literally: δ equals the independent per-class loop of raw
    class-mean steps s·α·mean(softmax(u + δ) − y), on a mixed batch and on the one-class batch above, where
    the raw steps are much shorter than α once the logits are confident (δ stays far inside its bound)."""
    u, y = _batch(seed=12)
    s = [-1.0, -1.0, 1.0, 1.0, 1.0]  # head = the 2 most frequent classes (0, 1)
    kw = dict(class_counts=COUNTS, alpha=0.1, epsilon=0.35, split="index", tau=2)
    literal = LPLLoss(5, normalize_step=False, **kw)
    literal(u, y)
    ref = _class_mean_step_reference(u, y, s, [0.35] * 5, 0.1)
    torch.testing.assert_close(literal.last_delta, ref, rtol=0, atol=1e-12)
    default = LPLLoss(5, **kw)
    default(u, y)
    assert not torch.allclose(default.last_delta, ref, atol=1e-3)  # the default is the other loop
    # confident one-class batch: target logit 4 or more above the others, so q = softmax's off-target
    # mass per class is below 1/(e⁴ + 4) and the raw step α·√20·q̄ is below α/10
    u1, y1 = _symmetric_one_class_batch()
    u1[:, 0] = u1[:, 1] + 4.0 + u1[:, 0].abs()
    assert _raw_step_length(u1, y1, 0.1) < 0.1 * 0.1
    kw1 = dict(alpha=0.1, epsilon=0.35, split="value", tau=1.0)
    one = LPLLoss(5, normalize_step=False, **kw1)
    one(u1, y1)
    torch.testing.assert_close(
        one.last_delta, _class_mean_step_reference(u1, y1, [1.0] * 5, [0.35] * 5, 0.1)
    )
    assert float(torch.linalg.vector_norm(one.last_delta[0])) < 0.1  # far inside ε = 0.35
    norm = LPLLoss(5, **kw1)
    norm(u1, y1)
    assert float(torch.linalg.vector_norm(norm.last_delta[0])) == pytest.approx(0.3, abs=1e-12)


def test_presets_take_the_default_normalize_step_only():
    """The authors' presets fix their own step: normalize_step must stay at its default."""
    assert LPLLoss(5, preset="authors_balanced_fixed").normalize_step is True
    with pytest.raises(ValueError, match="normalize_step"):
        LPLLoss(5, preset="authors_balanced_fixed", normalize_step=False)
    with pytest.raises(ValueError, match="normalize_step"):
        LALPLLoss(5, class_counts=COUNTS, preset="authors_longtail", tau=2, normalize_step=False)


def test_balanced_varied_preset_refuses_fewer_than_five_steps():
    """round(1.1·P) snapshots hold none of those the classes take (P or later) for P <= 4; from 5 on
    every P up to the largest allowed works. The loss refuses with the perturbation's own message."""
    for steps in (1, 4):
        with pytest.raises(ValueError, match=rf"steps={steps} is too short .* give steps >= 5$"):
            LPLLoss(5, preset="authors_balanced_varied", steps=steps)
    assert LPLLoss(5, preset="authors_balanced_varied", steps=5).steps == 5
    assert LPLLoss(5, preset="authors_balanced_varied_isda", steps=1).steps == 1
    for steps in range(5, P.MAX_STEPS + 1):
        base, scale, iterations = P.authors_varied_schedule(steps)
        assert base + max(0, round(scale - 1.0)) < iterations  # the last snapshot a class takes
    assert all(P.authors_varied_schedule(p, "train_var")[2] == p for p in range(1, 100))


def test_balanced_isda_preset_runs_the_train_var_variant_with_its_defaults():
    """``authors_balanced_varied_isda`` is train_var.py's variant (K_c in [0, P-1]), not train_lpl.py's."""
    u, y = _batch(n=24, c=5, seed=12)
    isda = LPLLoss(5, preset="authors_balanced_varied_isda", reduction="none")
    assert isda.alpha == 0.001 and isda.steps == 10 and not isda.differentiable
    want = P.authors_balanced_varied_perturbation(u, y, alpha=0.001, steps=10, variant="train_var")
    other = P.authors_balanced_varied_perturbation(u, y, alpha=0.001, steps=10, variant="train_lpl")
    assert not torch.allclose(want, other)  # the two variants differ on this batch
    assert torch.allclose(isda(u, y), F.cross_entropy(u + want, y, reduction="none"), atol=1e-12)


def test_documented_defaults():
    loss = LPLLoss(5)
    assert (loss.alpha, loss.epsilon, loss.delta_epsilon) == (0.01, 0.1, 0.0)
    assert (loss.split, loss.bound, loss.tau, loss.head) == ("mean", "qbar", None, None)
    assert loss.normalize_step is True and loss.differentiable is False
    assert (loss.ignore_index, loss.label_smoothing, loss.reduction) == (-100, 0.0, "mean")
    assert loss.scale == 1.0 and loss.drw_epoch is None and loss.weight is None
    assert LPLLoss(5, split="index", class_counts=COUNTS).head == 2  # tau None: 0.4·C head classes


def test_drw_after_set_epoch_trains_without_the_never_called_warning():
    u, y = _batch(seed=9)
    loss = LPLLoss(5, class_counts=COUNTS, split="index", drw_epoch=1)
    loss.set_epoch(0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(u, y)


def test_class_counts_that_a_preset_ignores_are_warned_about():
    with pytest.warns(UserWarning, match="class_counts has no effect"):
        LPLLoss(5, class_counts=COUNTS, preset="authors_balanced_fixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LPLLoss(5, class_counts=COUNTS, preset="authors_longtail", tau=2, steps=4)
        LPLLoss(5, class_counts=COUNTS, split="index", bound="count", delta_epsilon=0.5)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            dict(split="index", bound="count", delta_epsilon=1.0, class_counts=[9, 5, 0, 3, 1]),
            ValueError,
            "> 0",
        ),
        (dict(preset="authors_longtail", tau=2, class_counts=[9, 5, 0, 3, 1]), ValueError, "> 0"),
        (dict(preset="authors_balanced_fixed", steps=True), ValueError, "steps"),
        (dict(preset="authors_balanced_fixed", steps=10_001), ValueError, "steps"),
        (
            dict(preset="authors_longtail", tau=2, class_counts=COUNTS, iterations=True),
            ValueError,
            "iterations must be an int",
        ),
        (
            dict(preset="authors_longtail", tau=2, class_counts=COUNTS, iterations=10_001),
            ValueError,
            "iterations must be <=",
        ),
        # the schedule's largest step index is 3: 3 iterations (indices 0..2) are too short
        (
            dict(preset="authors_longtail", tau=2, steps=4, class_counts=COUNTS, iterations=3),
            ValueError,
            r"too short for the step schedule of steps=4 \(largest step index 3\): give iterations > 3",
        ),
        # the default steps (50, the C = 100 script's) with the default iterations = C = 5
        (
            dict(preset="authors_longtail", tau=2, class_counts=COUNTS),
            ValueError,
            r"iterations=5 is too short .* steps=50 .* index 49\): give iterations > 49 or fewer steps",
        ),
    ],
)
def test_bad_preset_and_count_bound_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LPLLoss(5, **kwargs)


def test_too_short_iterations_names_the_scripts_values_and_they_work():
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, ratio 100
    with pytest.raises(ValueError) as info:
        LPLLoss(10, preset="authors_longtail", tau=4, class_counts=counts)  # steps 50: index 49
    msg = str(info.value)
    assert "iterations=10 is too short" in msg and "index 49" in msg
    assert "steps=50 for C = 100 and steps=10, head_scale=0.6 for C = 10" in msg
    # the advice works with iterations = C = 10: the largest index is round(1 * 10 - 1) = 9
    loss = LPLLoss(10, preset="authors_longtail", tau=4, class_counts=counts, steps=10,
                   head_scale=0.6)  # fmt: skip
    assert int(loss.preset_steps.max()) == 9


def test_longtail_preset_accepts_iterations_just_past_its_largest_step_index():
    loss = LPLLoss(5, preset="authors_longtail", tau=2, steps=4, class_counts=COUNTS, iterations=4)
    assert loss.iterations == 4


def test_probability_targets_take_the_logits_dtype():
    u, y = _batch(seed=13, dtype=torch.float32)
    soft = F.one_hot(y, 5).double()  # float64 probabilities with float32 logits
    for validate in (True, False):
        out = LPLLoss(5, validate=validate)(u, soft)
        assert out.dtype == torch.float32
        assert float(out) == pytest.approx(float(LPLLoss(5)(u, y)), rel=1e-6)


def test_repr_names_what_differs_from_torch_defaults():
    assert "ignore_index=3" in repr(LPLLoss(5, ignore_index=3))
    assert "ignore_index" not in repr(LPLLoss(5))
    drw = LPLLoss(5, class_counts=COUNTS, split="index", drw_epoch=2)
    assert "drw_epoch=2" in repr(drw) and "weight=" not in repr(
        drw
    )  # DRW's weights change per epoch
    assert "weight=[1.0, 2.0" in repr(LPLLoss(5, weight=[1.0, 2.0, 1.0, 1.0, 1.0]))
    assert "tau=3," in repr(LPLLoss(5, split="index", tau=3, class_counts=COUNTS))  # the head size
    assert "tau=0.25," in repr(LPLLoss(5, split="value", tau=0.25))
    assert repr(LPLLoss(5, validate=False)).endswith("validate=False)")
    assert "validate" not in repr(LPLLoss(5))
    assert "validate=False" in repr(LALPLLoss(5, class_counts=COUNTS, validate=False))


def test_la_lpl_says_what_it_needs_and_which_preset_it_takes():
    with pytest.raises(ValueError, match="prior"):
        LALPLLoss(5)
    with pytest.raises(ValueError, match="la_lpl"):
        LALPLLoss(5, class_counts=COUNTS, preset="authors_balanced_fixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the counts always set the prior, whatever the split
        LALPLLoss(5, class_counts=COUNTS, split="mean")
    assert repr(LALPLLoss(5, class_counts=COUNTS, lam=1.5)).startswith("LALPLLoss(lam=1.5, ")
    # the default head size reads as the number it is in help() and signatures
    assert repr(inspect.signature(LALPLLoss).parameters["tau"].default) == "0.4"


def test_a_step_longer_than_the_bound_warns_that_the_loss_is_plain_ce():
    """ε + Δε < α: K_c = ⌊ε_c/α⌋ = 0 for every class (a swapped α and ε, typically); the loss is exactly
    CE, and says so. ε = Δε = 0 (CE on purpose, the ablation's floor) does not warn."""
    import warnings

    from lpl_train.losses import build_loss

    u = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 5
    with pytest.warns(UserWarning, match=r"alpha=0.2 exceeds epsilon \+ delta_epsilon = 0.1"):
        loss = build_loss("lpl", num_classes=5, alpha=0.2, epsilon=0.1)
    assert torch.equal(loss(u, y), torch.nn.functional.cross_entropy(u, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_loss("lpl", num_classes=5, alpha=0.1, epsilon=0.0, delta_epsilon=0.0)
        build_loss("lpl", num_classes=5, alpha=0.1, epsilon=0.1)  # one step


def test_probability_target_mean_divides_by_the_batch_size_as_torch():
    # torch's "mean" for probability targets is the sum over rows divided by N, whatever the target
    # rows sum to (unchecked with validate=False); ε = 0 leaves the plain cross-entropy
    u, y = _batch(n=6)
    t = 0.5 * F.one_hot(y, 5).double()
    loss = LPLLoss(5, epsilon=0.0, validate=False)
    expected = (0.5 * F.cross_entropy(u, y, reduction="none")).sum() / 6
    torch.testing.assert_close(loss(u, t), expected)
    torch.testing.assert_close(loss(u, t), F.cross_entropy(u, t))


@pytest.mark.parametrize("cls", [LPLLoss, LALPLLoss])
def test_probability_targets_keep_the_pairs_of_a_class_named_by_ignore_index(cls):
    """ignore_index leaves out rows of class-index targets; probability targets have no ignored rows, and
    the (sample, class) pairs of a class equal to ignore_index keep their loss (training had dropped them:
    at ε = 0 the loss fell below torch's soft cross-entropy; eval mode raised torch's refusal). One loss
    can so take class-index batches with ignored rows and mixup batches."""
    u, y = _batch(n=6)
    t = torch.softmax(u.flip(1), dim=1)  # every (sample, class) pair has mass > 0
    kw = dict(class_counts=COUNTS) if cls is LALPLLoss else {}
    for ignore in (3, 0, -1, -100, None):
        loss = cls(5, epsilon=0.0, ignore_index=ignore, **kw)
        want = F.cross_entropy(loss.adjust(u), t)
        for mode in (loss.train, loss.eval):
            mode()
            torch.testing.assert_close(loss(u, t), want)
        assert loss.train()(u[:0], t[:0]).isnan()  # the mean of no rows, as torch's
        if ignore is None:
            continue
        # class-index targets keep it
        y_ign = torch.where(y == ignore, torch.full_like(y, 1), y)
        y_ign[0] = ignore
        assert float(loss(u, y_ign)) == pytest.approx(
            float(F.cross_entropy(loss.adjust(u), y_ign, ignore_index=ignore))
        )
