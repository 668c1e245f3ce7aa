"""Vectorised closed form: against sympy at random points (<= 1e-10), hand cases, global optimality."""

import dataclasses
import math

import mpmath
import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import norm

from lpl_theory import closed_form as cf
from lpl_theory import symbolic as S
from lpl_theory.task import FIGURES, GaussianTask, Perturbation

from .conftest import TYPE_PAIRS
from .test_symbolic import mp_function


def _sympy_functions(ev, tp, tm):
    bs = S.b_star(ev, tp, tm)
    r_plus, r_minus, r_total = S.natural_errors(ev, tp, tm)
    ders = S.derivatives(ev, tp, tm)
    exprs = {"b_star": bs, "R_plus": r_plus, "R_minus": r_minus, "R_total": r_total}
    exprs["db_plus"], exprs["db_minus"] = ders["db_drho_plus"], ders["db_drho_minus"]
    exprs["dRp_plus"], exprs["dRm_minus"] = ders["dRplus_drho_plus"], ders["dRminus_drho_minus"]
    return {k: mp_function(e) for k, e in exprs.items()}


def _sympy_values(funcs, pt):
    vals = {}
    for k, f in funcs.items():
        v = f(pt)
        vals[k] = math.nan if isinstance(v, mpmath.mpc) and v.imag != 0 else float(mpmath.re(v))
    return vals


@pytest.mark.parametrize(("tp", "tm"), TYPE_PAIRS)
def test_closed_form_matches_sympy(random_points, tp, tm):
    keys = ("gamma", "d", "eta", "sigma", "K", "eps", "rho_plus", "rho_minus")
    arrays = {k: np.array([p[k] for p in random_points]) for k in keys}
    sol = cf.solve(*(arrays[k] for k in keys), tp, tm)
    dbp = cf.db_star_drho("plus", *(arrays[k] for k in keys), tp, tm)
    dbm = cf.db_star_drho("minus", *(arrays[k] for k in keys), tp, tm)
    dRp = cf.error_derivatives("plus", *(arrays[k] for k in keys), tp, tm)["R_plus"]
    dRm = cf.error_derivatives("minus", *(arrays[k] for k in keys), tp, tm)["R_minus"]
    checked = 0
    funcs = {ev: _sympy_functions(ev, tp, tm) for ev in (True, False)}
    for i, pt in enumerate(random_points):
        ref = _sympy_values(funcs[pt["K"] == 1.0], pt)
        if math.isnan(ref["b_star"]):
            assert not sol.exists[i] and math.isnan(sol.b_star[i])
            continue
        checked += 1
        assert sol.exists[i]
        for name, got in (
            ("b_star", sol.b_star[i]),
            ("R_plus", sol.R_plus[i]),
            ("R_minus", sol.R_minus[i]),
            ("R_total", sol.R_total[i]),
            ("db_plus", dbp[i]),
            ("db_minus", dbm[i]),
            ("dRp_plus", dRp[i]),
            ("dRm_minus", dRm[i]),
        ):
            assert abs(got - ref[name]) <= 1e-10 * max(1.0, abs(ref[name])), (
                name,
                pt,
                got,
                ref[name],
            )
    assert checked >= 10


def test_hand_case_no_perturbation_balanced():
    # Gamma = 1, K = 1, eps = 0: b* = 0 and both errors are Phi(-sqrt(d) eta / sigma)
    sol = cf.solve(1.0, 3, 0.7, 1.3, 1.0, 0.0, 0.0, 0.0)
    assert float(sol.b_star) == pytest.approx(0.0, abs=1e-15)
    expected = 0.5 * math.erfc(math.sqrt(3) * 0.7 / 1.3 / math.sqrt(2))
    assert float(sol.R_plus) == pytest.approx(expected, rel=1e-13)
    assert float(sol.R_minus) == pytest.approx(expected, rel=1e-13)
    assert float(sol.R_total) == pytest.approx(expected, rel=1e-13)


def test_hand_case_theorem1_point():
    # Gamma=2, d=2, eta=1, sigma=1, eps=0.2, rho_+=1, rho_-=1: C = -3.6, b* = 2 log 2 / (-3.6)
    sol = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, 1.0, 1.0)
    b = 2 * math.log(2) / -3.6
    assert float(sol.b_star) == pytest.approx(b, rel=1e-14)
    assert float(sol.R_plus) == pytest.approx(0.5 * math.erfc((2 + b) / 2), rel=1e-12)
    assert float(sol.R_minus) == pytest.approx(0.5 * math.erfc((2 - b) / 2), rel=1e-12)


def test_hand_case_unequal_variance_no_perturbation():
    # K = 2, Gamma = K: the log term vanishes, S = 2 d eta, b* = (-d eta (K^2+1) + 2 K d eta) / (K^2 - 1)
    d, eta, K = 2, 1.0, 2.0
    sol = cf.solve(K, d, eta, 1.0, K, 0.1, 0.0, 0.0)
    expected = d * eta * (-(K**2 + 1) + 2 * K) / (K**2 - 1)  # = -d eta (K-1)/(K+1)
    assert float(sol.b_star) == pytest.approx(expected, rel=1e-13)
    # then U_+ = U_-: the two natural errors are equal (Corollary 3's boundary Gamma = K)
    assert float(sol.R_plus) == pytest.approx(float(sol.R_minus), rel=1e-12)


def test_stable_at_k_close_to_one():
    a = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, 2.0, 1.0)
    b = cf.solve(2.0, 2, 1.0, 1.0, 1.0 + 1e-9, 0.2, 2.0, 1.0)
    assert float(b.b_star) == pytest.approx(float(a.b_star), abs=1e-7)
    assert float(
        cf.db_star_drho("plus", 2.0, 2, 1.0, 1.0, 1.0 + 1e-9, 0.2, 2.0, 1.0)
    ) == pytest.approx(
        float(cf.db_star_drho("plus", 2.0, 2, 1.0, 1.0, 1.0, 0.2, 2.0, 1.0)), abs=1e-6
    )


def test_equal_variance_global_verdict_matches_brute_force(random_points):
    # K = 1: closed_form decides "global" analytically; the repository's brute-force minimisation (adversary
    # searched, limits b -> +-inf compared) must find the same minimiser and call it global
    from lpl_theory import verify as V

    pts = [p for p in random_points if p["K"] == 1.0]
    for tp, tm in TYPE_PAIRS:
        for p in pts[:6]:
            task = GaussianTask(p["gamma"], p["d"], p["eta"], p["sigma"], 1.0)
            pert = Perturbation(p["eps"], p["rho_plus"], p["rho_minus"], tp, tm)
            sol = cf.solve_task(task, pert)
            num = V.numeric_minimum(task, pert)
            assert bool(sol.is_global) and math.isfinite(num.b_global)
            assert abs(num.b_global - float(sol.b_star)) <= 1e-6


def test_figure5_b_star_is_never_global():
    spec = FIGURES[5]
    rho = np.linspace(0, spec.rho_max, 50, endpoint=False)
    sol = cf.solve(3.5, 2, 1.0, 1.0, 3.0, 0.1, rho, 1.0)
    assert sol.exists.all()
    assert not sol.is_global.any()
    # the constant classifier "predict -1" has perturbed error 1/(1+Gamma) below R_lp(b*)
    assert np.all(sol.perturbed_at_b_star > 1 / 4.5)
    assert np.all(np.isneginf(sol.b_global))
    assert np.all(sol.R_plus_global == 1.0) and np.all(sol.R_minus_global == 0.0)
    assert np.allclose(sol.R_total_global, 1 / 4.5)


def test_no_real_root_means_increasing_error():
    sol = cf.solve(6.0, 2, 1.0, 1.0, 3.0, 0.1, 1.0, 1.0)
    assert not bool(sol.exists) and math.isnan(float(sol.b_star))
    assert float(sol.discriminant) == pytest.approx(
        (0.2 - 4) ** 2 + 2 * 2 * 8 * math.log(0.5), rel=1e-12
    )
    bs = np.linspace(-30, 30, 2001)
    err = cf.perturbed_error(bs, 6.0, 2, 1.0, 1.0, 3.0, 0.1, 1.0, 1.0)
    assert np.all(np.diff(err) >= -1e-15)
    assert float(sol.b_global) == -math.inf


def test_perturbed_error_limits_and_value():
    assert float(cf.perturbed_error(-np.inf, 2.0, 2, 1.0)) == pytest.approx(1 / 3)
    assert float(cf.perturbed_error(np.inf, 2.0, 2, 1.0)) == pytest.approx(2 / 3)
    # first type on both classes: z_+ = (-d eta - b + eps_+)/(sqrt(d) sigma), z_- = (-d eta + b + eps_-)/(sqrt(d) K sigma)
    v = cf.perturbed_error(0.3, 2.0, 2, 1.0, 1.5, 2.0, 0.1, 2.0, 3.0)
    zp = (-2 - 0.3 + 0.2) / (math.sqrt(2) * 1.5)
    zm = (-2 + 0.3 + 0.3) / (math.sqrt(2) * 3.0)
    assert float(v) == pytest.approx((ndtr(zp) + 2 * ndtr(zm)) / 3, rel=1e-14)


@pytest.mark.parametrize(("tp", "tm"), [("first", "second"), ("second", "first")])
def test_perturbed_error_mixed_types_by_hand(tp, tm):
    """Each class's shift takes the sign of its own type (Eqs. 18-19): the second type moves the logit toward
    the right side, z_+ = (-d eta - b - eps_+)/(sqrt(d) sigma), z_- = (-d eta + b - eps_-)/(sqrt(d) K sigma)."""
    g, d, eta, sg, K, eps, rp, rm, b = 2.0, 2, 1.0, 1.5, 2.0, 0.1, 2.0, 3.0, 0.3
    s_p = 1 if tp == "first" else -1
    s_m = 1 if tm == "first" else -1
    zp = (-d * eta - b + s_p * rp * eps) / (math.sqrt(d) * sg)
    zm = (-d * eta + b + s_m * rm * eps) / (math.sqrt(d) * K * sg)
    want = (norm.cdf(zp) + g * norm.cdf(zm)) / (1 + g)
    got = cf.perturbed_error(b, g, d, eta, sg, K, eps, rp, rm, tp, tm)
    assert float(got) == pytest.approx(want, rel=1e-13)


def test_perturbed_error_refuses_a_nan_bias():
    with pytest.raises(ValueError, match="b must not be NaN"):
        cf.perturbed_error(np.array([0.0, np.nan]), 2.0, 2, 1.0)


def test_bools_and_a_bias_beyond_float64_are_refused_not_read_as_numbers():
    """True would read as 1 (K = True as K = 1), and an int beyond float64 was an OverflowError from
    NumPy: each is one error naming the argument, as for the other parameters."""
    for kwargs in ({"K": True}, {"gamma": np.bool_(True)}, {"d": [True, False]}):
        with pytest.raises(TypeError, match=f"{next(iter(kwargs))} must be a real number"):
            cf.solve(**{"gamma": 2.0, "d": 2, "eta": 1.0, **kwargs})
    with pytest.raises(TypeError, match="b must be a real number"):
        cf.perturbed_error(True, 2.0, 2, 1.0)
    with pytest.raises(ValueError, match="b is too large for float64"):
        cf.perturbed_error(10**400, 2.0, 2, 1.0)
    # +inf stays the trivial classifier that predicts +1 everywhere: R_+ = 0, R_- = 1, so R_lp = 2 / 3
    assert float(cf.perturbed_error(np.inf, 2.0, 2, 1.0)) == pytest.approx(2.0 / 3.0, rel=1e-15)


@pytest.mark.parametrize(
    ("g", "eta", "sg", "K", "want"),
    [
        # Gamma = K: the log term is 0 and b* = (K^2 p^2 - q^2) / (q - K^2 p - K S) = -eta/3 (p = eta, q = -eta,
        # S = 2 eta); p^2 and q^2 (1e-340) underflow against sigma = 1, which would give b* = 0
        (2.0, 1e-170, 1.0, 2.0, -1e-170 / 3),
        # K = 1, eps = 0: b* = d sigma^2 log(Gamma) / C = -sigma^2 log(2) / (2 eta) = -3.47e-121; sigma is 1e-160
        # of the unit eta (its square is lost), which would give b* = 0
        (2.0, 1e200, 1e40, 1.0, -1e80 * math.log(2.0) / 2e200),
    ],
)
def test_a_lost_square_is_refused_never_a_silent_wrong_b_star(g, eta, sg, K, want):
    """Where a square in the closed form underflows, b* is either refused with a ValueError or right."""
    try:
        sol = cf.solve(g, 1, eta, sg, K)
    except ValueError as exc:
        assert "underflow" in str(exc)
    else:
        assert float(sol.b_star) == pytest.approx(want, rel=1e-9, abs=0)


def test_solve_task_and_broadcasting():
    t, p = GaussianTask(2.0, 2, 1.0), Perturbation(0.2, 3.0, 1.0)
    one = cf.solve_task(t, p)
    many = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, np.array([[3.0, 0.0]]), 1.0)
    assert many.b_star.shape == (1, 2)
    assert float(one.b_star) == many.b_star[0, 0]
    # one kind per call: every field a NumPy scalar for scalar inputs (np.where's 0-d arrays included,
    # at a point where b* is not global: b_global = -inf), every field an array of the broadcast shape
    # otherwise
    fields = [f.name for f in dataclasses.fields(cf.Solution)]
    assert all(getattr(many, f).shape == (1, 2) for f in fields)
    # b* global, then not (b_global = -inf)
    for sol in (one, cf.solve(6.0, 2, 1.0, 1.0, 3.0, 0.1, 1.0, 1.0)):
        assert all(isinstance(getattr(sol, f), np.generic) for f in fields)
    assert not sol.is_global and sol.b_global == -np.inf and sol.R_plus_global == 1.0
    with pytest.raises(TypeError, match="task"):
        cf.solve_task("task", p)
    with pytest.raises(TypeError, match="perturbation must be a Perturbation"):
        cf.solve_task(t, {"eps": 0.2})


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"gamma": 0.0}, ValueError, "gamma must be > 0"),
        ({"K": 0.5}, ValueError, "K must be >= 1"),
        ({"d": 0}, ValueError, "d must be >= 1"),
        # a dimension strictly between 0 and 1 is no dimension either (d >= 1, not d > 0)
        ({"d": 0.5}, ValueError, "d must be >= 1"),
        # and no dimension is fractional (GaussianTask and the command line refuse it too)
        ({"d": 2.5}, ValueError, r"d must be an integer \(the dimension\), got 2.5"),
        ({"d": [2.0, 1.5]}, ValueError, r"d must be an integer \(the dimension\), got 1.5"),
        ({"rho_plus": 6.0}, ValueError, r"rho_plus \* eps must be < eta"),
        # the edge rho * eps == eta (exact in binary: 4 * 0.25 = 1) is outside the theorems' range
        ({"eps": 0.25, "rho_plus": 4.0}, ValueError, r"rho_plus \* eps must be < eta"),
        ({"eps": 0.25, "rho_minus": 4.0}, ValueError, r"rho_minus \* eps must be < eta"),
        # sigma = 0 (the edge of sigma > 0): refused, never a b* of -0
        ({"sigma": 0.0}, ValueError, "sigma must be > 0"),
        ({"rho_minus": -1.0}, ValueError, "rho_minus must be >= 0"),
        ({"eps": "a"}, TypeError, "eps must be a real"),
        ({"eta": np.inf}, ValueError, "eta must be finite"),
    ],
)
def test_solve_validation(kwargs, exc, match):
    base = {
        "gamma": 2.0,
        "d": 2,
        "eta": 1.0,
        "sigma": 1.0,
        "K": 1.0,
        "eps": 0.2,
        "rho_plus": 1.0,
        "rho_minus": 1.0,
    }
    base.update(kwargs)
    with pytest.raises(exc, match=match):
        cf.solve(**base)


def test_solve_accepts_rho_eps_just_below_eta():
    """The other side of the edge: the largest float below rho * eps = eta is inside the range."""
    below = float(np.nextafter(4.0, 0.0))
    assert below * 0.25 < 1.0
    for key in ("rho_plus", "rho_minus"):
        sol = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.25, **{key: below})
        assert bool(sol.exists) and np.isfinite(float(sol.b_star))


def test_derivative_validation():
    with pytest.raises(ValueError, match="which"):
        cf.db_star_drho("both", 2.0, 2, 1.0)


def _mp_perturbed_error(b, gamma, d, eta, sigma, eps_plus, eps_minus):
    """R_lp(b) with the first type on both classes, in mpmath, from the data model (independent of closed_form)."""
    s = mpmath.sqrt(d) * sigma
    wrong_plus = mpmath.ncdf((-d * eta - b + eps_plus) / s)  # sum x + b - eps_+ < 0 | y = +1
    wrong_minus = mpmath.ncdf((-d * eta + b + eps_minus) / s)  # sum x + b + eps_- > 0 | y = -1
    return (wrong_plus + gamma * wrong_minus) / (1 + gamma)


def test_equal_variance_far_tail_b_star_is_global_by_brute_force():
    # K = 1, Gamma < 1, b* ~ 457 far in the tails: in float64 R_lp(b*) and Gamma/(1+Gamma) agree to rounding (a
    # float comparison once flagged b* as not global). A brute-force minimisation in 50-digit arithmetic: a grid
    # over b, refined by golden-section search, then compared with both trivial classifiers.
    g, d, eta, sg, eps, rp, rm = 0.1041, 18, 0.441, 13.196, 0.2427, 0.884, 0.623
    sol = cf.solve(g, d, eta, sg, 1.0, eps, rp, rm)
    with mpmath.workdps(50):
        args = (
            mpmath.mpf(g),
            d,
            mpmath.mpf(eta),
            mpmath.mpf(sg),
            mpmath.mpf(eps) * rp,
            mpmath.mpf(eps) * rm,
        )
        f = lambda b: _mp_perturbed_error(b, *args)  # noqa: E731
        grid = [mpmath.mpf(-3000) + 10 * i for i in range(601)]
        values = [f(b) for b in grid]
        i = min(range(len(grid)), key=values.__getitem__)
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        phi = (mpmath.sqrt(5) - 1) / 2
        for _ in range(200):
            a, c = hi - phi * (hi - lo), lo + phi * (hi - lo)
            if f(a) < f(c):
                hi = c
            else:
                lo = a
        b_min = (lo + hi) / 2
        best = f(b_min)
        assert abs(float(b_min) - float(sol.b_star)) <= 1e-6
        assert best < args[0] / (1 + args[0]) and best < 1 / (1 + args[0])
    assert bool(sol.is_global)
    assert float(sol.b_global) == float(sol.b_star)
    assert float(sol.R_total_global) == float(sol.R_total)


def test_not_global_means_constant_minus_one_classifier():
    # Where b* is not global (K > 1) the optimum is b = -inf, also when Gamma < 1: R_lp rises after b* towards
    # R_lp(+inf) = Gamma/(1+Gamma), so b = +inf never wins. No real b* at K=3, Gamma=6 (S^2 < 0).
    sol = cf.solve(np.array([6.0, 3.5]), 2, 1.0, 1.0, 3.0, 0.1, 1.0, 1.0)
    assert not sol.is_global.any()
    assert np.all(sol.b_global == -np.inf)
    assert np.all(sol.R_plus_global == 1.0) and np.all(sol.R_minus_global == 0.0)
    assert np.allclose(sol.R_total_global, 1 / (1 + np.array([6.0, 3.5])), rtol=0, atol=1e-15)


@pytest.mark.parametrize("scale", [1e-170, 1e-120, 1e120, 1e152])
@pytest.mark.parametrize("K", [1.0, 3.0])
def test_the_closed_form_is_scale_invariant_far_from_unit_scale(scale, K):
    """eta, sigma, eps and b scale together: at 1e-170 the squares of p and q underflowed (b* = -0, the
    natural errors wrong, exit 0); now b*/scale, the errors and db*/drho/scale match the unit problem."""
    kw = {"gamma": 2.0, "d": 2, "K": K, "rho_plus": 2.0, "rho_minus": 1.0}
    unit = cf.solve(eta=1.0, sigma=1.0, eps=0.2, **kw)
    far = cf.solve(eta=scale, sigma=scale, eps=0.2 * scale, **kw)
    assert far.b_star / scale == pytest.approx(unit.b_star, rel=1e-12)
    for name in ("R_plus", "R_minus", "R_total"):
        assert getattr(far, name) == pytest.approx(getattr(unit, name), rel=1e-12), name
    assert bool(far.is_global) == bool(unit.is_global)
    d_unit = cf.db_star_drho("plus", eta=1.0, sigma=1.0, eps=0.2, **kw)
    d_far = cf.db_star_drho("plus", eta=scale, sigma=scale, eps=0.2 * scale, **kw)
    assert d_far / scale == pytest.approx(d_unit, rel=1e-10)


def test_a_huge_integer_is_refused_with_a_value_error():
    with pytest.raises(ValueError, match="d is too large for float64"):
        cf.solve(2, 10**400, 1)


def _hand_b_star(g, d, eta, sg, K, eps, rp, rm, tp, tm):
    """b* from the textbook formulas (Eq. 44 at K = 1, the '+' root of Eq. 50 at K > 1), signed shifts."""
    e_p = (1 if tp == "first" else -1) * rp * eps
    e_m = (1 if tm == "first" else -1) * rm * eps
    C = e_p + e_m - 2 * d * eta
    if K == 1.0:
        return (e_p - e_m) / 2 + d * sg**2 * math.log(g) / C
    p, q = d * eta - e_p, e_m - d * eta
    S = math.sqrt(C**2 + 2 * d * (K**2 - 1) * sg**2 * math.log(K / g))
    return (q - K**2 * p + K * S) / (K**2 - 1)


@pytest.mark.parametrize(
    ("g", "d", "eta", "sg", "K", "eps", "rp", "rm", "tp", "tm"),
    [
        (2.0, 2, 1.0, 1.0, 1.0, 0.2, 3.0, 1.0, "first", "first"),
        (0.6, 3, 0.7, 1.3, 1.0, 0.1, 2.0, 4.0, "second", "first"),
        (1.1, 2, 1.0, 1.0, 2.5, 0.2, 1.0, 2.0, "first", "first"),
        (4.0, 1, 1.2, 0.8, 1.7, 0.3, 1.5, 0.5, "first", "second"),
    ],
)
@pytest.mark.parametrize("which", ["plus", "minus"])
def test_total_error_derivative_by_finite_differences(g, d, eta, sg, K, eps, rp, rm, tp, tm, which):
    """dR(f_opt)/drho (the R_total key of error_derivatives, which no other test reads) against a central
    difference of (Phi(U_+) + Gamma Phi(U_-)) / (1 + Gamma) at the textbook b*, with scipy's normal CDF."""

    def total(rho_p, rho_m):
        b = _hand_b_star(g, d, eta, sg, K, eps, rho_p, rho_m, tp, tm)
        s = math.sqrt(d) * sg
        r_plus = norm.cdf(-(d * eta + b) / s)
        r_minus = norm.cdf((b - d * eta) / (K * s))
        return (r_plus + g * r_minus) / (1 + g)

    h = 1e-5
    if which == "plus":
        fd = (total(rp + h, rm) - total(rp - h, rm)) / (2 * h)
    else:
        fd = (total(rp, rm + h) - total(rp, rm - h)) / (2 * h)
    got = float(cf.error_derivatives(which, g, d, eta, sg, K, eps, rp, rm, tp, tm)["R_total"])
    assert abs(fd) > 1e-4  # a change to detect
    assert got == pytest.approx(fd, rel=1e-6)


def test_a_b_star_beyond_float64_is_refused_as_an_overflow():
    # p, q, C, sigma and the discriminant are finite in the power-of-two unit, but b* itself is not:
    # K = 1, eps = 0: b* = d sigma^2 log(Gamma) / C = -1e614 * log(1e300) / 2e307 = -3.5e309 (beyond 1.8e308)
    assert math.log10(math.log(1e300)) + 614 - math.log10(2e307) > math.log10(np.finfo(float).max)
    with pytest.raises(ValueError, match="overflow float64"):
        cf.solve(1e300, 1, 1e307, 1e307, 1.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("eta", [1e6, 1e8, 1e10])
def test_b_star_keeps_its_digits_when_the_classes_are_far_apart(eta):
    """K = 1, d eta up to 1e10 sigma: Eq. (44)'s b* = (e_+ - e_-)/2 + d sigma^2 log(Gamma)/C in 50-digit
    arithmetic, to 1e-13 relative (K^2 p^2 - q^2 taken as written lost up to 2e-5 at 1e10)."""
    with mpmath.workdps(50):
        exact = _eq44_far_apart(eta)
    got = float(cf.solve(2.0, 1, eta, 1.0, 1.0, 0.3, 0.5, 0.25).b_star)
    assert abs(got - exact) <= 1e-13 * abs(exact)


def _eq44_far_apart(eta):
    """Eq. (44) at Gamma = 2, d = 1, sigma = 1, eps = 0.3, rho_+ = 0.5, rho_- = 0.25 (first type)."""
    eps = mpmath.mpf("0.3")
    e_p, e_m = mpmath.mpf("0.5") * eps, mpmath.mpf("0.25") * eps
    c = e_p + e_m - 2 * mpmath.mpf(eta)
    return float((e_p - e_m) / 2 + mpmath.log(2) / c)
