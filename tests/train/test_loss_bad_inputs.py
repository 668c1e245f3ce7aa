"""A battery of bad parameters and inputs for every loss: each must raise the exact error type with a
message that names the argument at fault (one line, nothing silently accepted)."""

import numpy as np
import pytest
import torch
from torch import nn

from lpl_train.losses import build_loss
from lpl_train.losses.multi_label import ntr_bias, rebalanced_weights
from lpl_train.losses.single_label import class_balanced_weights, ldam_margins, logit_adjust_posthoc

C = 4
COUNTS = [40, 20, 10, 5]
U = torch.randn(6, C, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3, 0, 1])
T = torch.tensor(
    [[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]
)
X = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
FC = nn.Linear(5, C)


def b(name, **kw):
    return lambda: build_loss(name, **kw)


def call(name, *args, **kw):
    def run():
        loss = build_loss(name, num_classes=C, class_counts=COUNTS, **kw)
        return loss(*args)

    return run


def nan_logits():
    u = U.clone()
    u[0, 0] = float("nan")
    return u


CASES = [
    # ---------------------------------------------------------------- registry
    ("unknown loss", b("lpll"), ValueError, "unknown loss 'lpll'"),
    ("unknown parameter", b("lpl", num_classes=C, epsilonn=0.1), ValueError, "epsilonn"),
    ("loss name not a string", lambda: build_loss(["ce"]), TypeError, "loss name"),
    # ---------------------------------------------------------------- single-label baselines
    (
        "ldam drw_beta without drw_epoch",
        b("ldam", class_counts=COUNTS, drw_beta=1.0),
        ValueError,
        "drw_beta",
    ),
    ("disturb_label seed past 2**64", b("disturb_label", seed=2**64), ValueError, "seed"),
    (
        "lpl drw_beta without drw_epoch",
        b("lpl", num_classes=C, class_counts=COUNTS, drw_beta=1.0),
        ValueError,
        "drw_beta",
    ),
    (
        "la_lpl drw_beta without drw_epoch",
        b("la_lpl", num_classes=C, class_counts=COUNTS, drw_beta=0.0),
        ValueError,
        "drw_beta",
    ),
    # ---------------------------------------------------------------- lpl construction
    ("lpl num_classes str", b("lpl", num_classes="4"), TypeError, "num_classes"),
    ("lpl num_classes bool", b("lpl", num_classes=True), TypeError, "num_classes"),
    ("lpl num_classes 1", b("lpl", num_classes=1), ValueError, "num_classes"),
    ("lpl alpha 0", b("lpl", num_classes=C, alpha=0.0), ValueError, "alpha"),
    ("lpl alpha negative", b("lpl", num_classes=C, alpha=-0.1), ValueError, "alpha"),
    ("lpl alpha nan", b("lpl", num_classes=C, alpha=float("nan")), ValueError, "alpha"),
    ("lpl alpha str", b("lpl", num_classes=C, alpha="0.1"), TypeError, "alpha"),
    ("lpl alpha tiny", b("lpl", num_classes=C, alpha=1e-300, epsilon=1.0), ValueError, "alpha"),
    ("lpl epsilon huge", b("lpl", num_classes=C, epsilon=1e308), ValueError, "epsilon"),
    ("lpl epsilon negative", b("lpl", num_classes=C, epsilon=-0.1), ValueError, "epsilon"),
    ("lpl epsilon inf", b("lpl", num_classes=C, epsilon=float("inf")), ValueError, "epsilon"),
    (
        "lpl delta_epsilon neg",
        b("lpl", num_classes=C, delta_epsilon=-1.0),
        ValueError,
        "delta_epsilon",
    ),
    ("lpl split", b("lpl", num_classes=C, split="median"), ValueError, "split"),
    ("lpl bound", b("lpl", num_classes=C, bound="counts"), ValueError, "bound"),
    ("lpl tau with mean", b("lpl", num_classes=C, tau=0.5), ValueError, "tau"),
    ("lpl tau value missing", b("lpl", num_classes=C, split="value"), TypeError, "tau"),
    ("lpl tau value range", b("lpl", num_classes=C, split="value", tau=1.5), ValueError, "tau"),
    (
        "lpl index without counts",
        b("lpl", num_classes=C, split="index"),
        ValueError,
        "class_counts",
    ),
    (
        "lpl tau index too big",
        b("lpl", num_classes=C, class_counts=COUNTS, split="index", tau=9),
        ValueError,
        "tau",
    ),
    (
        "lpl tau index str",
        b("lpl", num_classes=C, class_counts=COUNTS, split="index", tau="2"),
        TypeError,
        "tau",
    ),
    (
        "lpl tau index bool",
        b("lpl", num_classes=C, class_counts=COUNTS, split="index", tau=True),
        TypeError,
        "tau",
    ),
    (
        "lpl count bound mean",
        b("lpl", num_classes=C, class_counts=COUNTS, bound="count"),
        ValueError,
        "bound",
    ),
    (
        "lpl count bound zero",
        b(
            "lpl",
            num_classes=C,
            class_counts=[4, 0, 1, 1],
            split="index",
            tau=2,
            bound="count",
            delta_epsilon=1.0,
        ),
        ValueError,
        "class_counts",
    ),
    (
        "lpl counts bool list",
        b("lpl", num_classes=C, class_counts=[True, False, True, True]),
        TypeError,
        "class_counts",
    ),
    (
        "lpl counts bool tensor",
        b("lpl", num_classes=C, class_counts=torch.ones(C, dtype=torch.bool)),
        TypeError,
        "class_counts",
    ),
    (
        "lpl counts bool numpy",
        b("lpl", num_classes=C, class_counts=np.ones(C, dtype=bool)),
        TypeError,
        "class_counts",
    ),
    (
        "lpl counts length",
        b("lpl", num_classes=C, class_counts=[1, 2, 3]),
        ValueError,
        "class_counts",
    ),
    (
        "lpl counts negative",
        b("lpl", num_classes=C, class_counts=[1, -2, 3, 4]),
        ValueError,
        "class_counts",
    ),
    (
        "lpl counts nan",
        b("lpl", num_classes=C, class_counts=[1, float("nan"), 3, 4]),
        ValueError,
        "class_counts",
    ),
    ("lpl counts str", b("lpl", num_classes=C, class_counts="1234"), TypeError, "class_counts"),
    ("lpl reduction", b("lpl", num_classes=C, reduction="avg"), ValueError, "reduction"),
    ("lpl validate", b("lpl", num_classes=C, validate=1), TypeError, "validate"),
    (
        "lpl differentiable",
        b("lpl", num_classes=C, differentiable="yes"),
        TypeError,
        "differentiable",
    ),
    (
        "lpl normalize_step",
        b("lpl", num_classes=C, normalize_step=None),
        TypeError,
        "normalize_step",
    ),
    (
        "lpl ignore_index float",
        b("lpl", num_classes=C, ignore_index=-1.5),
        TypeError,
        "ignore_index",
    ),
    (
        "lpl label_smoothing >1",
        b("lpl", num_classes=C, label_smoothing=1.5),
        ValueError,
        "label_smoothing",
    ),
    (
        "lpl label_smoothing str",
        b("lpl", num_classes=C, label_smoothing="0.1"),
        TypeError,
        "label_smoothing",
    ),
    ("lpl weight length", b("lpl", num_classes=C, weight=[1.0, 2.0]), ValueError, "weight"),
    (
        "lpl weight negative",
        b("lpl", num_classes=C, weight=[1.0, -2.0, 1.0, 1.0]),
        ValueError,
        "weight",
    ),
    ("lpl weight 2-D", b("lpl", num_classes=C, weight=torch.ones(2, 2)), ValueError, "weight"),
    ("lpl preset unknown", b("lpl", num_classes=C, preset="authors"), ValueError, "preset"),
    (
        "lpl preset with epsilon",
        b("lpl", num_classes=C, preset="authors_balanced_fixed", epsilon=0.3),
        ValueError,
        "epsilon",
    ),
    ("lpl steps without preset", b("lpl", num_classes=C, steps=5), ValueError, "steps"),
    (
        "lpl preset steps 0",
        b("lpl", num_classes=C, preset="authors_balanced_fixed", steps=0),
        ValueError,
        "steps",
    ),
    (
        "lpl preset steps huge",
        b("lpl", num_classes=C, preset="authors_balanced_fixed", steps=10**9),
        ValueError,
        "steps",
    ),
    (
        "lpl longtail tau missing",
        b("lpl", num_classes=C, class_counts=COUNTS, preset="authors_longtail"),
        ValueError,
        "tau",
    ),
    (
        "lpl longtail iterations",
        b(
            "lpl",
            num_classes=C,
            class_counts=COUNTS,
            preset="authors_longtail",
            tau=2,
            iterations=0,
        ),
        ValueError,
        "iterations",
    ),
    (
        "lpl balanced preset tau",
        b("lpl", num_classes=C, preset="authors_balanced_fixed", tau=2),
        ValueError,
        "tau",
    ),
    # ---------------------------------------------------------------- lpl forward
    ("lpl logits list", call("lpl", U.tolist(), Y), TypeError, "logits"),
    ("lpl logits 1-D", call("lpl", U[0], Y), ValueError, "logits"),
    ("lpl logits int", call("lpl", U.long(), Y), TypeError, "logits"),
    ("lpl logits columns", call("lpl", U[:, :3], Y), ValueError, "num_classes"),
    ("lpl logits nan", call("lpl", nan_logits(), Y), ValueError, "logits"),
    ("lpl target list", call("lpl", U, Y.tolist()), TypeError, "target"),
    ("lpl target shape", call("lpl", U, Y[:-1]), ValueError, "target"),
    ("lpl target float 1-D", call("lpl", U, Y.float()), TypeError, "target"),
    ("lpl target bool", call("lpl", U, Y.bool()), TypeError, "target"),
    ("lpl target out of range", call("lpl", U, Y + 4), ValueError, "target"),
    ("lpl target negative", call("lpl", U, Y - 1), ValueError, "target"),
    ("lpl probs shape", call("lpl", U, torch.full((6, 3), 1 / 3)), ValueError, "target"),
    ("lpl probs not summing", call("lpl", U, torch.full((6, C), 0.5)), ValueError, "target"),
    (
        "lpl probs negative",
        call("lpl", U, torch.tensor([[1.5, -0.5, 0, 0]] * 6)),
        ValueError,
        "target",
    ),
    ("lpl probs int", call("lpl", U, torch.ones(6, C, dtype=torch.long)), ValueError, "target"),
    # ---------------------------------------------------------------- la_lpl
    ("la_lpl without counts", b("la_lpl", num_classes=C), ValueError, "class_counts"),
    (
        "la_lpl counts zero",
        b("la_lpl", num_classes=C, class_counts=[4, 0, 1, 1]),
        ValueError,
        "class_counts",
    ),
    (
        "la_lpl lam negative",
        b("la_lpl", num_classes=C, class_counts=COUNTS, lam=-1.0),
        ValueError,
        "lam",
    ),
    ("la_lpl lam str", b("la_lpl", num_classes=C, class_counts=COUNTS, lam="1"), TypeError, "lam"),
    (
        "la_lpl balanced preset",
        b("la_lpl", num_classes=C, class_counts=COUNTS, preset="authors_balanced_fixed"),
        ValueError,
        "preset",
    ),
    (
        "la_lpl preset with split",
        b("la_lpl", num_classes=C, class_counts=COUNTS, preset="authors_longtail", split="mean"),
        ValueError,
        "split",
    ),
    (
        "la_lpl preset without tau",  # as LPLLoss: never the 0.4·C default (the scripts hard-code 27)
        b("la_lpl", num_classes=C, class_counts=COUNTS, preset="authors_longtail"),
        ValueError,
        "needs tau",
    ),
    # ---------------------------------------------------------------- ml_lpl
    ("ml_lpl without counts", b("ml_lpl", num_classes=C), ValueError, "class_counts"),
    (
        "ml_lpl tau fraction",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, tau=1.5),
        ValueError,
        "tau",
    ),
    (
        "ml_lpl tau negative",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, tau=-1),
        ValueError,
        "tau",
    ),
    (
        "ml_lpl epsilon",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, epsilon=-0.1),
        ValueError,
        "epsilon",
    ),
    (
        "ml_lpl varied zero count",
        b("ml_lpl", num_classes=C, class_counts=[4, 0, 1, 1], delta_epsilon=0.1),
        ValueError,
        "class_counts",
    ),
    (
        "ml_lpl base single-label",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, base_loss="ce"),
        ValueError,
        "base_loss",
    ),
    (
        "ml_lpl base lpl",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, base_loss="lpl"),
        ValueError,
        "base_loss",
    ),
    (
        "ml_lpl base type",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, base_loss=3),
        TypeError,
        "base_loss",
    ),
    (
        "ml_lpl base_params alone",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, base_params={"a": 1}),
        ValueError,
        "base_params",
    ),
    (
        "ml_lpl base reduction",
        b(
            "ml_lpl",
            num_classes=C,
            class_counts=COUNTS,
            base_loss="bce",
            base_params={"reduction": "mean"},
        ),
        ValueError,
        "base_loss",
    ),
    (
        "ml_lpl soft_targets",
        b("ml_lpl", num_classes=C, class_counts=COUNTS, soft_targets="no"),
        TypeError,
        "soft_targets",
    ),
    ("ml_lpl target shape", call("ml_lpl", U, T[:, :3]), ValueError, "target"),
    ("ml_lpl target values", call("ml_lpl", U, T * 2), ValueError, "target"),
    ("ml_lpl logits columns", call("ml_lpl", U[:, :3], T[:, :3]), ValueError, "num_classes"),
    ("ml_lpl logits nan", call("ml_lpl", nan_logits(), T), ValueError, "logits"),
    # ---------------------------------------------------------------- single-label baselines
    ("la counts missing", b("la"), ValueError, "class_counts"),
    ("la counts bool", b("la", class_counts=[True, True, False, True]), TypeError, "class_counts"),
    (
        "la counts bool numpy",
        b("la", class_counts=np.array([1, 0, 1, 1], dtype=bool)),
        TypeError,
        "class_counts",
    ),
    ("la counts zero", b("la", class_counts=[3, 0, 1, 1]), ValueError, "class_counts"),
    ("la lam negative", b("la", class_counts=COUNTS, lam=-0.5), ValueError, "lam"),
    (
        "la num_classes mismatch",
        b("la", class_counts=COUNTS, num_classes=5),
        ValueError,
        "num_classes",
    ),
    ("la logits columns", call("la", U[:, :3], Y), ValueError, "logits"),
    ("la posthoc lam", lambda: logit_adjust_posthoc(U, COUNTS, lam=-1.0), ValueError, "lam"),
    ("ldam s zero", b("ldam", class_counts=COUNTS, s=0.0), ValueError, "s must"),
    ("ldam max_m negative", b("ldam", class_counts=COUNTS, max_m=-0.1), ValueError, "max_m"),
    (
        "ldam drw_epoch negative",
        b("ldam", class_counts=COUNTS, drw_epoch=-1),
        ValueError,
        "drw_epoch",
    ),
    ("ldam drw_epoch float", b("ldam", class_counts=COUNTS, drw_epoch=1.5), TypeError, "drw_epoch"),
    (
        "ldam drw_beta 1",
        b("ldam", class_counts=COUNTS, drw_epoch=1, drw_beta=1.0),
        ValueError,
        "beta",
    ),
    (
        "ldam set_epoch beyond",
        lambda: build_loss("ldam", class_counts=COUNTS).set_epoch(5, 4),
        ValueError,
        "epoch",
    ),
    ("ldam margins max_m", lambda: ldam_margins(COUNTS, max_m=float("inf")), ValueError, "max_m"),
    ("cb weights beta 0", lambda: class_balanced_weights(COUNTS, 0.0), ValueError, "beta"),
    ("cb_ce variant", b("cb_ce", class_counts=COUNTS, variant="softplus"), ValueError, "variant"),
    ("cb_focal gamma", b("cb_focal", class_counts=COUNTS, gamma=-1.0), ValueError, "gamma"),
    ("focal gamma str", b("focal", gamma="2"), TypeError, "gamma"),
    ("lq q zero", b("lq", q=0.0), ValueError, "q must"),
    ("disturb alpha", b("disturb_label", alpha=1.5), ValueError, "alpha"),
    ("disturb seed", b("disturb_label", seed=-1), ValueError, "seed"),
    ("ce target float", call("ce", U, Y.float()), TypeError, "target"),
    ("ce target range", call("ce", U, Y + 10), ValueError, "target"),
    ("focal logits 3-D", call("focal", U[None], Y), ValueError, "logits"),
    ("large_margin margin 0", b("large_margin", margin=0), ValueError, "margin"),
    ("large_margin beta_base", b("large_margin", beta_base=-1.0), ValueError, "beta_base"),
    ("large_margin classifier", call("large_margin", X, Y, "fc"), TypeError, "classifier"),
    ("isda lambda0", b("isda", num_classes=C, lambda0=-1.0), ValueError, "lambda0"),
    ("isda num_classes missing", b("isda"), ValueError, "num_classes"),
    ("isda diagonal", b("isda", num_classes=C, diagonal="yes"), TypeError, "diagonal"),
    ("isda classifier classes", call("isda", X, Y, nn.Linear(5, 3)), ValueError, "classifier"),
    ("isda features int", call("isda", X.long(), Y, FC), ValueError, "features"),
    (
        "isda set_epoch",
        lambda: build_loss("isda", num_classes=C).set_epoch(-1, 4),
        ValueError,
        "epoch",
    ),
    ("center weight", b("center", num_classes=C, weight=-1.0), ValueError, "weight"),
    ("center alpha", b("center", num_classes=C, alpha=2.0), ValueError, "alpha"),
    ("center classifier classes", call("center", X, Y, nn.Linear(5, 3)), ValueError, "classifier"),
    ("center classifier features", call("center", X, Y, nn.Linear(4, C)), ValueError, "classifier"),
    ("center feature_dim", b("center", num_classes=C, feature_dim=0), ValueError, "feature_dim"),
    # ---------------------------------------------------------------- multi-label baselines
    (
        "rbce map_alpha negative",
        b("rbce", class_counts=COUNTS, map_alpha=-0.1),
        ValueError,
        "map_alpha",
    ),
    (
        "rbce map_beta negative",
        b("rbce", class_counts=COUNTS, map_beta=-10.0),
        ValueError,
        "map_beta",
    ),
    ("rbce map_mu nan", b("rbce", class_counts=COUNTS, map_mu=float("nan")), ValueError, "map_mu"),
    ("rbce map_alpha str", b("rbce", class_counts=COUNTS, map_alpha="0.1"), TypeError, "map_alpha"),
    (
        "rbce_focal map_alpha",
        b("rbce_focal", class_counts=COUNTS, map_alpha=-1.0),
        ValueError,
        "map_alpha",
    ),
    (
        "rbce_ntr map_beta",
        b("rbce_ntr", class_counts=COUNTS, num_samples=100, map_beta=-1.0),
        ValueError,
        "map_beta",
    ),
    ("rbce_ntr num_samples missing", b("rbce_ntr", class_counts=COUNTS), ValueError, "num_samples"),
    (
        "rbce_ntr num_samples small",
        b("rbce_ntr", class_counts=COUNTS, num_samples=30),
        ValueError,
        "num_samples",
    ),
    (
        "rbce_ntr neg_scale",
        b("rbce_ntr", class_counts=COUNTS, num_samples=100, neg_scale=0.0),
        ValueError,
        "neg_scale",
    ),
    (
        "rbce_focal_ntr focal_gamma",
        b("rbce_focal_ntr", class_counts=COUNTS, num_samples=100, focal_gamma=-2.0),
        ValueError,
        "focal_gamma",
    ),
    (
        "rbce_lc map_mu",
        b("rbce_lc", class_counts=COUNTS, map_mu=float("inf")),
        ValueError,
        "map_mu",
    ),
    (
        "rbce_focal_lc focal_balance",
        b("rbce_focal_lc", class_counts=COUNTS, focal_balance=0.0),
        ValueError,
        "focal_balance",
    ),
    (
        "rbce counts bool",
        b("rbce", class_counts=[True, True, True, True]),
        TypeError,
        "class_counts",
    ),
    (
        "rebalanced_weights map_alpha",
        lambda: rebalanced_weights(T, COUNTS, map_alpha=-0.5),
        ValueError,
        "map_alpha",
    ),
    (
        "ntr_bias init_bias",
        lambda: ntr_bias(COUNTS, 100, init_bias=float("nan"), neg_scale=1.0),
        ValueError,
        "init_bias",
    ),
    ("rw_bce power", b("rw_bce", class_counts=COUNTS, power=-1.0), ValueError, "power"),
    ("cb_focal_bce beta", b("cb_focal_bce", class_counts=COUNTS, beta=1.0), ValueError, "beta"),
    ("focal_bce balance", b("focal_bce", focal_balance=-2.0), ValueError, "focal_balance"),
    ("bce target shape", call("bce", U, T[:, :3]), ValueError, "target"),
    ("bce target values", call("bce", U, T * 3), ValueError, "target"),
    ("rbce logits columns", call("rbce", U[:, :3], T[:, :3]), ValueError, "logits"),
    ("rbce target list", call("rbce", U, T.tolist()), TypeError, "target"),
]


@pytest.mark.parametrize(("case", "fn", "exc", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_the_argument(case, fn, exc, names):
    with pytest.raises(Exception) as info:  # noqa: PT011 - the exact type is asserted below
        fn()
    assert type(info.value) is exc, f"{case}: {type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert names in message, f"{case}: {message!r} does not name {names!r}"
    assert "\n" not in message, f"{case}: not one line: {message!r}"


def test_the_battery_is_large_and_distinct():
    assert len(CASES) >= 80
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name", ["lpl", "la_lpl", "ml_lpl"])
@pytest.mark.parametrize("training", [True, False])
def test_an_empty_batch_gives_what_torch_gives_for_no_rows(name, training):
    """N = 0 (a data-parallel rank's empty share, a filtered batch): like ``nn.CrossEntropyLoss`` /
    ``BCEWithLogitsLoss``, nan for the mean, 0 for the sum, an empty tensor for none; not an error."""
    import torch.nn.functional as F

    counts = [5, 4, 3, 2, 1]
    for reduction in ("mean", "sum", "none"):
        loss = build_loss(name, num_classes=5, class_counts=counts, reduction=reduction)
        loss.train(training)
        x = torch.randn(0, 5, requires_grad=True)
        if name == "ml_lpl":
            t = torch.zeros(0, 5)
            want = F.binary_cross_entropy_with_logits(x, t, reduction=reduction)
        else:
            t = torch.zeros(0, dtype=torch.long)
            want = F.cross_entropy(x, t, reduction=reduction)
        got = loss(x, t)
        assert got.shape == want.shape and torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.nan_to_num(), want.nan_to_num())
        got.sum().backward()  # differentiable like torch's
    if name != "ml_lpl":
        with pytest.raises(ValueError, match=r"num_classes=5 columns, got shape \(0, 4\)"):
            build_loss(name, num_classes=5, class_counts=counts)(
                torch.randn(0, 4), torch.zeros(0, dtype=torch.long)
            )


@pytest.mark.parametrize("name", ["lpl", "la_lpl", "ml_lpl"])
def test_an_empty_batch_refuses_a_target_a_full_batch_refuses(name):
    """No rows does not skip the target's kind and shape checks: the loss's own message, not torch's (or
    a silent nan)."""
    loss = build_loss(name, num_classes=5, class_counts=[5, 4, 3, 2, 1])
    x = torch.randn(0, 5)
    with pytest.raises(ValueError, match=r"^target must have .*\(0, 5\), got \(0, 6\)$"):
        loss(x, torch.zeros(0, 6))
    if name != "ml_lpl":
        with pytest.raises(
            TypeError, match=r"^target must be class indices .* got a float tensor of shape"
        ):
            loss(x, torch.zeros(0))
        with pytest.raises(
            ValueError,
            match=r"^target must have shape \(0,\) to match logits \(0, 5\), got \(0, 5\)",
        ):
            loss(x, torch.zeros(0, 5, dtype=torch.long))


def test_integer_one_hot_targets_are_told_to_be_float():
    loss = build_loss("lpl", num_classes=C)
    with pytest.raises(
        ValueError, match=r"got \(6, 4\); class probabilities must be a float tensor"
    ):
        loss(U, torch.nn.functional.one_hot(Y, C))
    with pytest.raises(ValueError, match=r"got \(6, 2\)$"):  # another shape: no such hint
        loss(U, torch.zeros(6, 2, dtype=torch.long))


@pytest.mark.parametrize(
    "name, params",
    [
        ("lpl", {"num_classes": 4}),
        ("la_lpl", {"num_classes": 4}),
        ("ldam", {}),
    ],
)
@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5])
def test_a_bad_drw_beta_is_named_drw_beta(name, params, beta):
    with pytest.raises(ValueError, match=r"^drw_beta must be in \(0\.0, 1\.0\)"):
        build_loss(name, class_counts=COUNTS, drw_epoch=1, drw_beta=beta, **params)


@pytest.mark.parametrize("key", ["class_counts", "num_classes"])
def test_ml_lpl_base_params_cannot_repeat_what_ml_lpl_passes(key):
    value = COUNTS if key == "class_counts" else 4
    with pytest.raises(ValueError, match=f"base_params must not contain '{key}'"):
        build_loss(
            "ml_lpl",
            num_classes=4,
            class_counts=COUNTS,
            base_loss="rbce",
            base_params={key: value},
        )
    with pytest.raises(TypeError, match="base_params must be a dict"):
        build_loss("ml_lpl", num_classes=4, class_counts=COUNTS, base_loss="rbce", base_params=[1])


def test_single_label_perturbation_checks_its_hyper_parameters():
    from lpl_train import perturbation as P

    u, y = torch.randn(6, 4), torch.tensor([0, 1, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="alpha must be a finite number > 0, got 0"):
        P.single_label_perturbation(u, y, alpha=0, epsilon=0.3)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
        P.single_label_perturbation(u, y, alpha=0.1, epsilon=-0.3)
    with pytest.raises(ValueError, match="delta_epsilon must be a finite number >= 0"):
        P.single_label_perturbation(u, y, alpha=0.1, epsilon=0.3, delta_epsilon=float("nan"))
    # the losses' bound on the loop length, not 10^8 steps
    with pytest.raises(ValueError, match="at most 10000 are allowed"):
        P.single_label_perturbation(u, y, alpha=1e-6, epsilon=100.0)


@pytest.mark.parametrize("c", [2, 3, 5])
def test_a_label_equal_to_the_number_of_classes_is_refused(c):
    """Labels lie in the half-open [0, C): C itself is one past the last class."""
    from lpl_train.perturbation_checks import check_index_target, check_single_label_target

    logits, bad, ok = torch.zeros(3, c), torch.tensor([0, 1, c]), torch.tensor([0, 1, c - 1])
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, {c}\)"):
        check_single_label_target(bad, logits)
    assert torch.equal(check_single_label_target(ok, logits), ok)
    with pytest.raises(ValueError):
        check_index_target(bad, logits, ignore_index=-100)


def test_soft_multi_label_targets_above_one_and_all_zero_class_counts_are_refused():
    from lpl_train.perturbation_checks import check_class_counts, check_multi_label_target

    logits = torch.zeros(2, 3)
    ok = torch.tensor([[0.0, 0.3, 1.0], [1.0, 0.0, 0.5]])
    assert torch.equal(check_multi_label_target(ok, logits, soft=True), ok)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        check_multi_label_target(
            torch.tensor([[0.0, 1.5, 0.0], [0.0, 0.0, 0.0]]), logits, soft=True
        )
    with pytest.raises(ValueError, match="positive total"):
        check_class_counts([0, 0, 0], 3)  # a prior or weights from them would be log 0 or 0/0
    assert check_class_counts([0, 0, 1], 3).tolist() == [0.0, 0.0, 1.0]
