"""Training with the class-level perturbation on the Gaussian task against lpl_theory's b* (Figs. 3-4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpl_theory import GaussianTask, Perturbation, figure_spec, solve_task
from lpl_train import theory_check as T


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread is faster than two on a shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def test_natural_errors_by_hand():
    # w = (1, 1), b = 0, eta = 1, sigma = 1: R+ = Phi(-2/sqrt 2), R- = Phi(-2/sqrt 2)
    rp, rm, rt = T.natural_errors([1.0, 1.0], 0.0, gamma=3.0, eta=1.0)
    assert rp == pytest.approx(phi(-math.sqrt(2)), abs=1e-12)
    assert rm == pytest.approx(rp, abs=1e-12)
    assert rt == pytest.approx(rp, abs=1e-12)
    # b = 0.5, K = 2, gamma = 3, w = (2, 2): scale-invariant in (w, b) jointly
    rp, rm, rt = T.natural_errors([2.0, 2.0], 1.0, gamma=3.0, eta=1.0, K=2.0)
    assert rp == pytest.approx(phi(-(2 + 0.5) / math.sqrt(2)), abs=1e-12)
    assert rm == pytest.approx(phi((0.5 - 2) / (2 * math.sqrt(2))), abs=1e-12)
    assert rt == pytest.approx((rp + 3 * rm) / 4, abs=1e-12)
    # w not along (1, ..., 1): w^T theta = 7 eta, ||w|| = 5
    rp, rm, _ = T.natural_errors([3.0, 4.0], 1.0, gamma=3.0, eta=1.0, sigma=2.0, K=1.5)
    assert rp == pytest.approx(phi(-(7 + 1) / (2 * 5)), abs=1e-12)
    assert rm == pytest.approx(phi((1 - 7) / (1.5 * 2 * 5)), abs=1e-12)
    with pytest.raises(ValueError, match="w must"):
        T.natural_errors([0.0, 0.0], 0.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        T.natural_errors([1.0], 0.0, -1.0, 1.0)


def test_natural_errors_at_b_star_are_the_theory_errors():
    spec = figure_spec(4)
    sol = solve_task(spec.task, spec.perturbation(2.0))
    rp, rm, _ = T.natural_errors(
        [1.0, 1.0], float(sol.b_star), spec.task.gamma, spec.task.eta, spec.task.sigma, spec.task.K
    )
    assert rp == pytest.approx(float(sol.R_plus), abs=1e-12)
    assert rm == pytest.approx(float(sol.R_minus), abs=1e-12)


@pytest.mark.parametrize("number, rho", [(3, 0.0), (3, 3.0), (4, 1.0), (4, 3.5)])
def test_smoothed_01_training_lands_on_b_star(number, rho):
    """Tolerance: 0.06 in b (theory scale) and 0.01 in each natural error, for the defaults (100,000
    samples, temperature 0.1): over seeds 0-5 the trained b scatters around b* with std <= 0.016 at these
    four points, so 0.06 is more than 3.5 standard deviations."""
    spec = figure_spec(number)
    pert = spec.perturbation(rho)
    sol = solve_task(spec.task, pert)
    t = T.train_linear(spec.task, pert, "smooth01", seed=1)
    assert t.w == [1.0, 1.0]
    assert t.b_equiv == pytest.approx(float(sol.b_global), abs=0.06)
    assert t.R_plus == pytest.approx(float(sol.R_plus_global), abs=0.01)
    assert t.R_minus == pytest.approx(float(sol.R_minus_global), abs=0.01)


def test_smoothed_01_training_on_unequal_variances_lands_on_the_eq50_b_star():
    """Fig. 6 (K = 2.5): the training data must give class −1 the larger variance. Against b* written out
    by hand from Eq. (50) (0.097 at ρ₋ = 2.5); with the variances swapped training lands near −0.57.
    Seeds 0-2 gave 0.098, 0.105 and 0.133."""
    from scipy.stats import norm

    from tests.theory.test_closed_form import _hand_b_star

    spec, rho = figure_spec(6), 2.5
    b = _hand_b_star(1.1, 2, 1.0, 1.0, 2.5, 0.2, 1.0, rho, "first", "first")
    t = T.train_linear(spec.task, spec.perturbation(rho), "smooth01", seed=1)
    assert t.b_equiv == pytest.approx(b, abs=0.1)
    assert t.R_minus == pytest.approx(norm.cdf((b - 2.0) / (2.5 * math.sqrt(2))), abs=0.01)


def test_cross_entropy_training_moves_b_as_b_star_does():
    """CE on the perturbed logits is not the 0-1 objective (its b is offset), but the perturbation moves
    it the same way: along Fig. 4's rho_-, b rises with slope within 30% of db*/drho."""
    spec = figure_spec(4)
    rhos = [0.0, 4.0]
    b = [T.train_linear(spec.task, spec.perturbation(r), "ce", seed=0).b_equiv for r in rhos]
    bs = [float(solve_task(spec.task, spec.perturbation(r)).b_global) for r in rhos]
    slope, slope_star = (b[1] - b[0]) / 4.0, (bs[1] - bs[0]) / 4.0
    assert slope_star > 0 and slope == pytest.approx(slope_star, rel=0.3)


def test_compare_figure_structure_and_theory_values():
    res = T.compare_figure(3, points=2, losses=("smooth01",), n_train=2000, steps=50)
    spec = figure_spec(3)
    assert res["rho"] == pytest.approx([0.0, spec.rho_max / 2])
    assert set(res) == {"figure", "params", "rho", "theory", "smooth01"}
    for i, rho in enumerate(res["rho"]):
        sol = solve_task(spec.task, spec.perturbation(rho))
        assert res["theory"]["b_star"][i] == pytest.approx(float(sol.b_global))
        assert res["theory"]["R_plus"][i] == pytest.approx(float(sol.R_plus_global))
    assert np.all(np.isfinite(res["smooth01"]["b"]))
    with pytest.raises(ValueError, match="losses"):
        T.compare_figure(3, losses=("hinge",))


def test_bad_inputs_name_the_argument():
    task, pert = GaussianTask(2.0, 2, 1.0), Perturbation(0.2)
    with pytest.raises(ValueError, match="loss"):
        T.train_linear(task, pert, "hinge")
    with pytest.raises(ValueError, match="n_train"):
        T.train_linear(task, pert, n_train=1)
    with pytest.raises(ValueError, match="temperature"):
        T.train_linear(task, pert, temperature=0.0)
    with pytest.raises(TypeError, match="task"):
        T.train_linear("task", pert)
    with pytest.raises(TypeError, match="perturbation must be an lpl_theory.Perturbation"):
        T.train_linear(task, {"eps": 0.2})
    with pytest.raises(ValueError):
        T.train_linear(task, Perturbation(2.0))  # rho * eps >= eta


def test_learned_w_is_reported_in_the_theory_scale():
    """With d = 1 a learned w > 0 is a positive multiple of the theory's w = 1, so sign(w x + b) is
    sign(x + b/w): the reported b_equiv is b/w and the natural errors are those of the bias b_equiv."""
    task = GaussianTask(2.0, 1, 1.0)
    t = T.train_linear(
        task, Perturbation(0.2, 1.0, 1.0), "ce", n_train=2000, steps=100, learn_w=True
    )
    (w,) = t.w
    assert w > 1.2  # cross-entropy grows w: the scale matters
    assert t.b_equiv == pytest.approx(t.b / w, rel=1e-12)
    assert t.R_plus == pytest.approx(phi(-(1.0 + t.b_equiv)), abs=1e-12)
    assert t.R_minus == pytest.approx(phi(t.b_equiv - 1.0), abs=1e-12)


def _fig5_r_lp_at_b_star(rho: float) -> float:
    """R_lp at the textbook root b* of Eq. 50 on Fig. 5's task (Gamma 3.5, K 3, eps 0.1, d 2, eta 1,
    rho_- = 1, first-type perturbations), by hand."""
    g, K, eps, d, eta = 3.5, 3.0, 0.1, 2, 1.0
    e_p, e_m = rho * eps, eps
    p, q, C = d * eta - e_p, e_m - d * eta, e_p + e_m - 2 * d * eta
    b = (q - K**2 * p + K * math.sqrt(C**2 + 2 * d * (K**2 - 1) * math.log(K / g))) / (K**2 - 1)
    return (
        phi((-d * eta - b + e_p) / math.sqrt(d))
        + g * phi((-d * eta + b + e_m) / (K * math.sqrt(d)))
    ) / (1 + g)


def test_compare_figure_reports_the_global_optimum_where_b_star_is_not():
    """Fig. 5: R_lp(b*) (computed here with the textbook root of Eq. 50) is above 1/(1 + Gamma), the error of
    predicting -1 everywhere, so the theory entry is that constant classifier: b = -inf, R(+1) = 1, R(-1) = 0."""
    res = T.compare_figure(5, points=2, losses=("smooth01",), n_train=2000, steps=2)
    for rho in res["rho"]:
        assert _fig5_r_lp_at_b_star(rho) > 1 / (1 + 3.5)
    assert res["theory"]["b_star"] == [-math.inf, -math.inf]
    assert res["theory"]["R_plus"] == [1.0, 1.0] and res["theory"]["R_minus"] == [0.0, 0.0]


def _hand_class_errors(number: int, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R(+1), R(-1) along Fig. 3 (rho_+ varies, first type on both classes) or Fig. 4 (rho_- varies, first
    type on +1, second on -1): Gamma = 2, d = 2, eta = sigma = K = 1, eps = 0.2, the other rho 1. K = 1, so
    b* = (e_+ - e_-)/2 + d sigma^2 log(Gamma)/C (Eq. 44, signed shifts e, C = e_+ + e_- - 2 d eta) is global."""
    g, d, eta, eps = 2.0, 2, 1.0, 0.2
    e_plus = rho * eps if number == 3 else np.full_like(rho, eps)
    e_minus = np.full_like(rho, eps) if number == 3 else -rho * eps
    c = e_plus + e_minus - 2 * d * eta
    b = (e_plus - e_minus) / 2 + d * math.log(g) / c
    s = math.sqrt(d)
    return (
        np.array([phi(-(d * eta + x) / s) for x in b]),
        np.array([phi((x - d * eta) / s) for x in b]),
    )


def test_plot_comparison_draws_each_class_against_its_own_theory():
    """Per panel: the theory line of each class is that class's closed-form error (computed here by hand), and
    each class's trained markers are that class's trained errors (made-up values, told apart by size)."""
    results = []
    for number in (3, 4):
        rho = [0.0, 2.5]
        results.append(
            {
                "figure": number,
                "rho": rho,
                "smooth01": {"b": [0.0, 0.0], "R_plus": [0.31, 0.32], "R_minus": [0.01, 0.02]},
                "ce": {"b": [0.0, 0.0], "R_plus": [0.41, 0.42], "R_minus": [0.03, 0.04]},
            }
        )
    fig = T.plot_comparison(results)  # a pyplot-free Figure: nothing to close
    assert len(fig.axes) == 2
    for ax, res in zip(fig.axes, results, strict=True):
        lines = {line.get_label(): line for line in ax.get_lines()}
        dense = np.asarray(lines["theory R(f, +1)"].get_xdata())
        assert dense.size == 200 and dense[0] == 0.0 and dense[-1] < 5.0
        r_plus, r_minus = _hand_class_errors(res["figure"], dense)
        assert np.max(np.abs(r_plus - r_minus)) > 5e-2  # the classes' curves are told apart
        assert np.allclose(lines["theory R(f, +1)"].get_ydata(), r_plus, rtol=1e-9, atol=0)
        assert np.allclose(lines["theory R(f, −1)"].get_ydata(), r_minus, rtol=1e-9, atol=0)
        for loss, name in (("smooth01", "smoothed 0-1"), ("ce", "CE")):
            for key, lab in (("R_plus", "+1"), ("R_minus", "−1")):
                marks = lines[f"trained, {name} R(f, {lab})"]
                assert list(marks.get_xdata()) == res["rho"]
                assert list(marks.get_ydata()) == res[loss][key]


def test_plot_comparison_draws_the_global_optimum_where_b_star_is_not():
    """Fig. 5: R_lp(b*) (textbook root of Eq. 50) is above 1/(1 + Gamma) along the curve, so the theory line is the
    constant classifier's error, R(+1) = 1 and R(-1) = 0, not the errors at the local minimum b*."""
    for rho in (0.0, 2.5, 5.0, 7.5, 9.95):
        assert _fig5_r_lp_at_b_star(rho) > 1 / (1 + 3.5)
    res = {"figure": 5, "rho": [0.0], "smooth01": {"b": [0.0], "R_plus": [0.5], "R_minus": [0.1]}}
    (ax,) = T.plot_comparison([res]).axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert np.all(np.asarray(lines["theory R(f, +1)"].get_ydata()) == 1.0)
    assert np.all(np.asarray(lines["theory R(f, −1)"].get_ydata()) == 0.0)


def test_main_seed_reaches_the_training(tmp_path, monkeypatch, capsys):
    """`--seed` is the training seed: main's JSON is compare_figure's with that seed, not with seed 0."""
    import json

    original = T.train_linear
    # 20 Adam steps instead of 600: the seed's effect on the data shows after any number of steps
    monkeypatch.setattr(T, "train_linear", lambda *a, **k: original(*a, **{**k, "steps": 20}))
    assert T.main(["--out", str(tmp_path), "--points", "2", "--n-train", "400", "--seed", "3"]) == 0
    capsys.readouterr()
    written = json.loads((tmp_path / "theory-vs-training.json").read_text(encoding="utf-8"))
    assert [r["figure"] for r in written] == [3, 4]
    seeded = T.compare_figure(3, 2, n_train=400, seed=3)
    unseeded = T.compare_figure(3, 2, n_train=400, seed=0)
    for loss in T.LOSSES:
        assert written[0][loss] == seeded[loss]
        assert written[0][loss]["b"] != unseeded[loss]["b"]


def test_natural_errors_refuse_bools():
    """True is not a number of the task (it would read as 1): refused as the task's own checks refuse it."""
    for kwargs in ({"K": True}, {"sigma": True}, {"gamma": True}):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            T.natural_errors([1.0, 1.0], 0.0, **{"gamma": 3.0, "eta": 1.0, **kwargs})
    with pytest.raises(TypeError, match="b must be a real number, got True"):
        T.natural_errors([1.0, 1.0], True, gamma=3.0, eta=1.0)
