"""Per-class relative loss variation (l′ − l)/l (Figs. 1, 2, 11) for any logit-perturbing loss."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from lpl_train.loss_variation import LossVariation
from lpl_train.losses import build_loss
from lpl_train.losses.lpl import LPLLoss, MultiLabelLPLLoss
from lpl_train.perturbation import single_label_perturbation

torch.set_flush_denormal(True)


def test_hand_computed_single_label_two_batches():
    # l = log 2 for every sample of [0, 0] logits; perturbed logits give l' = log(1 + e^{∓1})
    u = torch.zeros(3, 2)
    y = torch.tensor([0, 1, 1])
    pert = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    lv = LossVariation(2)
    lv.update(u, y, perturbed_logits=pert)
    lv.update(u[:1], y[:1], perturbed_loss=torch.tensor([math.log(2.0)]))
    out = lv.compute()
    l0 = math.log(2.0)
    lp0 = (math.log(1 + math.exp(-1.0)) + l0) / 2
    lp1 = (math.log(1 + math.exp(1.0)) + l0) / 2
    assert out["count"] == [2, 2]
    assert out["loss"] == pytest.approx([l0, l0])
    assert out["perturbed_loss"] == pytest.approx([lp0, lp1])
    assert out["relative_variation"] == pytest.approx([(lp0 - l0) / l0, (lp1 - l0) / l0])
    json.dumps(out)


def test_absent_class_is_none_and_reset_forgets():
    lv = LossVariation(3)
    u = torch.randn(4, 3)
    y = torch.tensor([0, 0, 2, 2])
    lv.update(u, y, perturbed_logits=u)
    out = lv.compute()
    assert out["relative_variation"][1] is None and out["count"] == [2, 0, 2]
    # a mean over no sample is undefined, not 0 (a perfect loss): both means of the absent class
    assert out["loss"][1] is None and out["perturbed_loss"][1] is None
    assert out["relative_variation"][0] == pytest.approx(0.0, abs=1e-7)
    ce = torch.nn.functional.cross_entropy(u, y, reduction="none")
    assert out["loss"][0] == pytest.approx(float(ce[:2].mean()), rel=1e-6)
    json.dumps(out)
    lv.reset()
    assert lv.compute()["count"] == [0, 0, 0]


def test_logit_adjustment_sign_pattern_head_down_tail_up():
    # LA (u + log π): the head class's loss falls and the tail class's rises, as in Fig. 1(d)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(200, 3, generator=g)
    y = torch.randint(0, 3, (200,), generator=g)
    log_prior = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    lv = LossVariation(3)
    lv.update(u, y, perturbed_logits=u + log_prior)
    rel = lv.compute()["relative_variation"]
    assert rel[0] < 0 < rel[2]


def test_update_with_uses_the_loss_per_sample_and_restores_reduction():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (64,), generator=g)
    loss = LPLLoss(4, alpha=0.05, epsilon=0.3)
    lv = LossVariation(4)
    lv.update_with(loss, u, y)
    assert loss.reduction == "mean"
    ref = LossVariation(4)
    ref.update(u, y, perturbed_logits=loss.perturb(u, y))
    assert lv.compute()["relative_variation"] == pytest.approx(ref.compute()["relative_variation"])
    # LPL: classes it maximises gain loss, classes it minimises lose loss
    sign = single_label_perturbation(u, y, alpha=0.05, epsilon=0.3).sign
    assert set(sign.tolist()) == {-1.0, 1.0}
    rel = lv.compute()["relative_variation"]
    for k in range(4):
        assert (rel[k] > 0) == (sign[k] > 0), k


def test_update_with_measures_a_loss_in_eval_mode_as_it_trains():
    """In eval mode a perturbing loss is its plain base loss; update_with measures l′ as the loss trains
    (its perturbed logits) and leaves the loss in eval mode."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (64,), generator=g)
    loss = LPLLoss(4, alpha=0.05, epsilon=0.3).eval()
    lv = LossVariation(4)
    lv.update_with(loss, u, y)
    assert not loss.training
    ref = LossVariation(4)
    ref.update(u, y, perturbed_logits=loss.perturb(u, y))
    rel = lv.compute()["relative_variation"]
    assert rel == pytest.approx(ref.compute()["relative_variation"])
    assert all(abs(r) > 1e-3 for r in rel)  # not the 0 of the plain loss


def test_half_precision_logits_are_measured_in_float32():
    """bf16 logits (autocast) are measured in float32: l and l′ agree with the float64 cross-entropy of
    the same bf16 values to float32 rounding, not to bf16's 8-bit mantissa."""
    g = torch.Generator().manual_seed(4)
    u = (3 * torch.randn(32, 3, generator=g)).to(torch.bfloat16)
    y = torch.arange(32) % 3
    pert = (u.float() + torch.tensor([0.5, 0.0, -0.5])).to(torch.bfloat16)
    lv = LossVariation(3)
    lv.update(u, y, perturbed_logits=pert)
    out = lv.compute()
    l = F.cross_entropy(u.double(), y, reduction="none")
    lp = F.cross_entropy(pert.double(), y, reduction="none")
    for k in range(3):
        assert out["loss"][k] == pytest.approx(float(l[y == k].mean()), rel=1e-5)
        assert out["perturbed_loss"][k] == pytest.approx(float(lp[y == k].mean()), rel=1e-5)


def test_update_with_calls_the_loss_on_half_precision_logits_in_float32():
    """l′ is computed in float32 from bf16 logits, as l is: the plain CE measured against itself varies
    by nothing, and LDAM's variation is that of the same logits in float32."""
    g = torch.Generator().manual_seed(4)
    u = (3 * torch.randn(256, 3, generator=g)).to(torch.bfloat16)
    y = torch.arange(256) % 3
    lv = LossVariation(3)
    lv.update_with(build_loss("ce"), u, y)
    assert lv.compute()["relative_variation"] == [0.0, 0.0, 0.0]
    loss = build_loss("ldam", num_classes=3, class_counts=[16, 4, 1])
    cos = (u.float() / 10).to(torch.bfloat16)
    half, full = LossVariation(3), LossVariation(3)
    half.update_with(loss, cos, y)
    full.update_with(loss, cos.float(), y)
    assert half.compute() == full.compute()


def test_ldam_is_measured_on_its_scaled_logits_and_raises_every_class():
    # cosine logits of a trained model: 0.3 on the true class, 0.1 elsewhere; s = 30, margins 0.5·(1/n)^¼
    y = torch.tensor([0, 1, 2, 2])
    u = torch.full((4, 3), 0.1, dtype=torch.float64)
    u[torch.arange(4), y] = 0.3
    loss = build_loss("ldam", num_classes=3, class_counts=[16, 1, 1], drw_epoch=0)
    loss.set_epoch(0, 10)  # DRW weights on: they are not part of the logit perturbation
    lv = LossVariation(3)
    lv.update_with(loss, u, y)
    out = lv.compute()
    margins = [0.25, 0.5, 0.5]
    expected = []
    for k in range(3):
        z = 30 * u[y == k][0]
        z_m = z.clone()
        z_m[k] -= 30 * margins[k]
        l = float(F.cross_entropy(z[None], torch.tensor([k])))
        lm = float(F.cross_entropy(z_m[None], torch.tensor([k])))
        expected.append((lm - l) / l)
    assert out["relative_variation"] == pytest.approx(expected, rel=1e-4)
    assert all(v > 0 for v in out["relative_variation"])  # Eq. 9: LDAM raises every class's loss
    assert loss.reduction == "mean"


def test_update_with_leaves_the_loss_state_alone():
    # DisturbLabel draws its noisy labels from a step counter: measuring must not advance it
    u = torch.randn(16, 3, generator=torch.Generator().manual_seed(3))
    y = torch.arange(16) % 3
    loss = build_loss("disturb_label", alpha=0.5).train()
    LossVariation(3).update_with(loss, u, y)
    assert int(loss.step) == 0
    twin = build_loss("disturb_label", alpha=0.5).train()
    assert float(loss(u, y)) == float(twin(u, y))


def test_multi_label_positive_and_negative_separately():
    u = torch.zeros(2, 2)
    t = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    lv = LossVariation(2, multi_label=True)
    lv.update(u, t, perturbed_logits=u - 1.0)  # logit down: pos loss up, neg loss down
    out = lv.compute()
    l0 = math.log(2.0)
    up = math.log(1 + math.e)
    down = math.log(1 + math.exp(-1.0))
    assert out["pos"]["count"] == [1, 0] and out["neg"]["count"] == [1, 2]
    assert out["pos"]["relative_variation"][0] == pytest.approx((up - l0) / l0)
    assert out["pos"]["relative_variation"][1] is None
    assert out["neg"]["relative_variation"] == pytest.approx([(down - l0) / l0] * 2)
    json.dumps(out)


def test_multi_label_with_ml_lpl_elementwise_loss():
    g = torch.Generator().manual_seed(2)
    u = torch.randn(50, 4, generator=g)
    t = (torch.rand(50, 4, generator=g) < 0.5).float()
    loss = MultiLabelLPLLoss(4, class_counts=[40, 30, 20, 10], epsilon=0.2, tau=2)
    lv = LossVariation(4, multi_label=True)
    lv.update_with(loss, u, t)
    out = lv.compute()
    # head (classes 0, 1): positive loss down, negative up; tail: the reverse (Eqs. 37, 38)
    assert [v < 0 for v in out["pos"]["relative_variation"]] == [True, True, False, False]
    assert [v > 0 for v in out["neg"]["relative_variation"]] == [True, True, False, False]
    manual = F.binary_cross_entropy_with_logits(
        u + torch.tensor([0.2, 0.2, -0.2, -0.2]), t, reduction="none"
    )
    base = F.binary_cross_entropy_with_logits(u, t, reduction="none")
    pos = t[:, 0] == 1
    expected = (manual[pos, 0].sum() - base[pos, 0].sum()) / base[pos, 0].sum()
    assert out["pos"]["relative_variation"][0] == pytest.approx(float(expected), rel=1e-5)


def test_bad_input():
    lv = LossVariation(3)
    u = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="exactly one"):
        lv.update(u, y)
    with pytest.raises(ValueError, match="exactly one"):
        lv.update(u, y, perturbed_logits=u, perturbed_loss=torch.zeros(4))
    with pytest.raises(ValueError, match="per-sample"):
        lv.update(u, y, perturbed_loss=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="perturbed_logits must have the shape"):
        lv.update(u, y, perturbed_logits=u[:, :2])
    with pytest.raises(ValueError, match="labels must lie"):
        lv.update(u, torch.tensor([0, 1, 3, 0]), perturbed_logits=u)
    with pytest.raises(ValueError, match="multi-hot"):
        LossVariation(3, multi_label=True).update(u, torch.full((4, 3), 0.5), perturbed_logits=u)
    with pytest.raises(TypeError, match="num_classes"):
        LossVariation(3.0)
    with pytest.raises(TypeError, match="reduction"):
        lv.update_with(lambda z, t: z, u, y)


def test_lpl_on_a_cosine_head_or_with_drw_weights_measures_the_perturbation_alone():
    """LPL with ``scale`` (the cosine head of the ablation's q5 runs) or class weights (DRW): l is the CE
    of s·u and l′ the CE of the perturbed logits, unweighted, as for LDAM. Without a perturbation
    (ε = Δε = 0) the variation is 0; it read about +1000% for scale 30 (l the CE of the raw cosines) and
    the DRW weights' own effect with drw_epoch."""
    from lpl_train.loss_variation import LossVariation
    from lpl_train.losses import build_loss

    g = torch.Generator().manual_seed(0)
    counts = [1000, 300, 100, 30, 10]
    cos = torch.tanh(torch.randn(400, 5, generator=g)) * 0.9
    y = torch.randint(0, 5, (400,), generator=g)
    none = {"split": "index", "tau": 0.5, "epsilon": 0.0, "delta_epsilon": 0.0, "alpha": 0.25}
    for name, kw in (
        ("lpl", {"scale": 30.0}),
        ("lpl", {"drw_epoch": 1}),
        ("la_lpl", {"scale": 30.0, "lam": 0.0}),
        # label smoothing at scale 1 measured the smoothing's own effect (up to 0.6% here), and nothing
        # at any other scale
        ("lpl", {"label_smoothing": 0.1}),
        ("la_lpl", {"label_smoothing": 0.1, "lam": 0.0}),
    ):
        loss = build_loss(name, num_classes=5, class_counts=counts, **none, **kw)
        if "drw_epoch" in kw:
            loss.set_epoch(2, 5)
        lv = LossVariation(5)
        lv.update_with(loss, cos, y)
        assert lv.compute()["relative_variation"] == pytest.approx([0.0] * 5, abs=1e-6), (name, kw)
    # with a perturbation: l′ is the CE of s·u + δ, l the CE of s·u
    loss = build_loss("lpl", num_classes=5, class_counts=counts, split="index", tau=0.5, epsilon=0.0,
                      delta_epsilon=2.0, alpha=0.25, scale=30.0)  # fmt: skip
    lv = LossVariation(5)
    lv.update_with(loss, cos, y)
    base = F.cross_entropy(30 * cos, y, reduction="none")
    pert = F.cross_entropy(loss.perturb(cos, y), y, reduction="none")
    expected = [
        float((pert[y == c].sum() - base[y == c].sum()) / base[y == c].sum()) for c in range(5)
    ]
    assert lv.compute()["relative_variation"] == pytest.approx(expected, rel=1e-5)


LPL_FAMILY = {
    "lpl": lambda: build_loss("lpl", num_classes=4, epsilon=0.3, alpha=0.1),
    "la_lpl": lambda: build_loss(
        "la_lpl", num_classes=4, class_counts=[40, 20, 10, 5], epsilon=0.3, alpha=0.1
    ),
    "lpl_scaled_weighted": lambda: build_loss(
        "lpl", num_classes=4, epsilon=0.3, alpha=0.1, scale=8.0, weight=[0.5, 1.0, 1.5, 2.0]
    ),
    "lpl_ignore_index_smoothing": lambda: build_loss(
        "lpl", num_classes=4, epsilon=0.3, alpha=0.1, ignore_index=-1, label_smoothing=0.1
    ),
}


def _batch(ignored: bool = False):
    g = torch.Generator().manual_seed(5)
    u = torch.randn(12, 4, generator=g) * 2
    y = torch.tensor([0, 0, 0, 1, 1, 2, 3, 0, 1, 2, 0, 1])
    if ignored:
        y[[2, 9]] = -1
    return u, y


@pytest.mark.parametrize("name", list(LPL_FAMILY))
def test_forward_with_perturbed_is_the_loss_and_its_perturbed_logits(name):
    """The value is forward's and the logits are perturb()'s, bit for bit (so the loss variation measured
    from them is the one that runs the loss again); detached; None in eval mode and for probability
    targets, where no (N, C) perturbed logits are the loss's."""
    loss = LPL_FAMILY[name]()
    u, y = _batch(ignored="ignore" in name)
    u.requires_grad_(True)
    value, z = loss.forward_with_perturbed(u, y)
    assert torch.equal(value, loss(u, y)) and value.requires_grad
    assert torch.equal(z, loss.perturb(u, y)) and not z.requires_grad
    if "scaled" in name:  # the scaled logits s·u, perturbed: not u + δ
        assert not torch.allclose(z, u.detach(), atol=1.0)
    loss.eval()
    value, z = loss.forward_with_perturbed(u, y)
    assert z is None and torch.equal(value, loss(u, y))
    loss.train()
    soft = F.one_hot(y.clamp(min=0), 4).float()
    value, z = loss.forward_with_perturbed(u, soft)
    assert z is None and torch.equal(value, loss(u, soft))


@pytest.mark.parametrize("name", list(LPL_FAMILY))
def test_update_from_perturbed_records_what_update_with_records(name):
    """From the step's perturbed logits, the measurement records the same l and l′ as running the loss
    again (update_with): the plain CE of the perturbed logits with the loss's own label smoothing; on a scaled head or with class weights, the scaled logits' CE against the perturbed logits'
    unweighted CE. (The measurement takes no ignored rows, either way.)"""
    loss = LPL_FAMILY[name]()
    a, b = LossVariation(4), LossVariation(4)
    for seed in (0, 1):
        u, y = _batch()
        u = u + seed
        a.update_with(loss, u, y)
        b.update_from_perturbed(loss, u, y, loss.forward_with_perturbed(u, y)[1])
    assert a.compute() == b.compute()


def test_update_from_perturbed_takes_int32_labels_as_the_loss_does():
    loss = LPL_FAMILY["lpl"]()
    u, y = _batch()
    a, b = LossVariation(4), LossVariation(4)
    a.update_with(loss, u, y.int())
    b.update_from_perturbed(loss, u, y.int(), loss.perturb(u, y))
    assert a.compute() == b.compute()


def test_update_from_perturbed_refuses_what_it_cannot_measure():
    loss = LPL_FAMILY["lpl"]()
    u, y = _batch()
    z = loss.perturb(u, y)
    with pytest.raises(ValueError, match="single-label"):
        LossVariation(4, multi_label=True).update_from_perturbed(loss, u, (u > 0).float(), z)
    with pytest.raises(ValueError, match="single-label"):
        LossVariation(4).update_from_perturbed(loss, u, F.one_hot(y, 4).float(), z)
    with pytest.raises(TypeError, match="LPL-family"):
        LossVariation(4).update_from_perturbed(torch.nn.CrossEntropyLoss(), u, y, z)


def test_rows_the_loss_ignores_are_left_out_of_the_measurement():
    """A batch with ``ignore_index`` rows measures as the same batch without them (LPL leaves them out of
    its statistics and its loss; so does ``nn.CrossEntropyLoss``), through every path of the measurement."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
    y[[0, 5]] = -100
    keep = y != -100
    losses = (
        LPLLoss(4, alpha=0.1, epsilon=0.5),
        LPLLoss(4, alpha=0.1, epsilon=0.5, scale=2.0),  # the scaled path
        torch.nn.CrossEntropyLoss(),
    )
    for loss in losses:
        got, want = LossVariation(4), LossVariation(4)
        got.update_with(loss, x, y)
        want.update_with(loss, x[keep], y[keep])
        a, b = got.compute(), want.compute()
        assert a["count"] == b["count"] == torch.bincount(y[keep], minlength=4).tolist()
        for k in ("loss", "perturbed_loss"):
            assert a[k] == pytest.approx(b[k], rel=1e-6), (loss, k)
    lpl = losses[0]
    got = LossVariation(4)
    got.update_from_perturbed(lpl, x, y, lpl.forward_with_perturbed(x, y)[1])
    want = LossVariation(4)
    want.update_with(lpl, x[keep], y[keep])
    assert got.compute()["perturbed_loss"] == pytest.approx(
        want.compute()["perturbed_loss"], rel=1e-6
    )
