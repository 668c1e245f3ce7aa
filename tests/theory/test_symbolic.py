"""The sympy derivation: structure of the first-order condition, the minimising root, Theorems 1-3."""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from scipy import optimize
from scipy.stats import norm

from lpl_theory import symbolic as S

from .conftest import TYPE_PAIRS

ARGS = (S.Gamma, S.d, S.eta, S.sigma, S.K, S.eps, S.rho_p, S.rho_m)
KEYS = ("gamma", "d", "eta", "sigma", "K", "eps", "rho_plus", "rho_minus")


def mp_function(expr, extra=()):
    """Lambdify ``expr`` with mpmath (30 digits) in the order of ARGS (+ extra symbols)."""
    f = sp.lambdify(ARGS + tuple(extra), expr, modules="mpmath")

    def call(point, *more):
        with mpmath.workdps(30):
            return f(
                *(mpmath.mpf(point[k]) for k in KEYS),
                *(mpmath.mpf(m) if not isinstance(m, mpmath.mpf) else m for m in more),
            )

    return call


def _subs(point, tp, tm):
    return {
        S.Gamma: sp.Float(point["gamma"], 30),
        S.d: point["d"],
        S.eta: sp.Float(point["eta"], 30),
        S.sigma: sp.Float(point["sigma"], 30),
        S.K: sp.Float(point["K"], 30),
        S.eps: sp.Float(point["eps"], 30),
        S.rho_p: sp.Float(point["rho_plus"], 30),
        S.rho_m: sp.Float(point["rho_minus"], 30),
        S.s_p: 1 if tp == "first" else -1,
        S.s_m: 1 if tm == "first" else -1,
    }


def test_first_order_condition_degree():
    lin = sp.Poly(S.first_order_condition(True).lhs, S.b)
    quad = sp.Poly(S.first_order_condition(False).lhs, S.b)
    assert lin.degree() == 1
    assert quad.degree() == 2
    # leading coefficient (1 - 1/K^2) / (2 d sigma^2) > 0 for K > 1
    lead = sp.simplify(quad.LC() - (1 - 1 / S.K**2) / (2 * S.d * S.sigma**2))
    assert lead == 0
    assert len(S.derive(True).roots) == 1
    assert len(S.derive(False).roots) == 2


@pytest.mark.parametrize("theorem", [1, 2, 3])
def test_derivation_reduces_to_theorem(theorem):
    diffs = S.reduction_to_theorem(theorem)
    assert set(diffs) >= {"U_plus", "U_minus"}
    assert all(v == 0 for v in diffs.values()), diffs


def test_equal_variance_b_star_matches_hand_derivation():
    # K = 1: (b + q)^2 - (b + p)^2 = 2 d sigma^2 log Gamma  =>  b* = (e_+ - e_-)/2 + d sigma^2 log Gamma / C
    e_p, e_m = S.s_p * S.rho_p * S.eps, S.s_m * S.rho_m * S.eps
    C = e_p + e_m - 2 * S.d * S.eta
    hand = (e_p - e_m) / 2 + S.d * S.sigma**2 * sp.log(S.Gamma) / C
    assert sp.simplify(S.derive(True).b_star - hand) == 0


@pytest.mark.parametrize(("tp", "tm"), TYPE_PAIRS)
def test_chosen_root_is_a_minimum_and_first_order_condition_holds(random_points, tp, tm):
    for ev in (True, False):
        der = S.derive(ev)
        err = S.specialise(der.error, tp, tm)
        d1 = sp.diff(err, S.b)
        d2 = sp.diff(err, S.b, 2)
        bs = mp_function(S.specialise(der.b_star, tp, tm))
        f1, f2 = mp_function(d1, (S.b,)), mp_function(d2, (S.b,))
        for pt in random_points:
            if (pt["K"] == 1.0) != ev:
                continue
            val = bs(pt)
            if isinstance(val, mpmath.mpc) and val.imag != 0:
                continue  # no real b*
            b0 = mpmath.re(val)
            assert abs(float(f1(pt, b0))) < 1e-12
            assert float(f2(pt, b0)) > 0


def test_other_root_is_a_maximum():
    der = S.derive(False)
    other = [r for r in der.roots if r != der.b_star][0]
    pt = {
        "gamma": 1.5,
        "d": 2,
        "eta": 1.0,
        "sigma": 1.0,
        "K": 2.0,
        "eps": 0.1,
        "rho_plus": 1.0,
        "rho_minus": 2.0,
    }
    sub = _subs(pt, "first", "first")
    d2 = sp.diff(S.specialise(der.error, "first", "first"), S.b, 2)
    b1 = S.specialise(other, "first", "first").subs(sub)
    b2 = S.specialise(der.b_star, "first", "first").subs(sub)
    assert float(sp.N(b1)) < float(sp.N(b2))
    assert float(sp.N(d2.subs(sub).subs(S.b, b1))) < 0


def test_derivatives_keys_and_chain_rule():
    der = S.derivatives(True, "first", "first")
    assert set(der) == {
        f"{a}_drho_{w}" for a in ("db", "dRplus", "dRminus", "dRtotal") for w in ("plus", "minus")
    }
    # Eq. (46) of Theorem 1 (rho_- = 1) is the derived db*/drho_+
    eq46 = (
        S.eps / 2
        - S.d
        * S.eps
        * S.sigma**2
        * sp.log(S.Gamma)
        / (S.eps - 2 * S.d * S.eta + S.eps * S.rho_p) ** 2
    )
    assert sp.simplify(der["db_drho_plus"].subs(S.rho_m, 1) - eq46) == 0


def _numeric_b_star(g, d, eta, sg, K, e_plus, e_minus):
    """The local minimiser of R_lp(b), found numerically (no closed form): dR_lp/db has the sign of
    h(b) = log(Gamma/K) + z_+^2/2 - z_-^2/2, and b* is where h crosses from - to + (grid, then Brent)."""
    s = math.sqrt(d) * sg

    def h(b):
        z_plus = (-d * eta - b + e_plus) / s
        z_minus = (-d * eta + b + e_minus) / (K * s)
        return math.log(g / K) + z_plus**2 / 2 - z_minus**2 / 2

    grid = np.linspace(-d * eta - 40 * K * s, d * eta + 40 * K * s, 4001)
    hs = np.array([h(b) for b in grid])
    (i,) = np.flatnonzero((hs[:-1] < 0) & (hs[1:] >= 0))
    return optimize.brentq(h, grid[i], grid[i + 1], xtol=1e-15, rtol=4 * np.finfo(float).eps)


def _numeric_errors(point, tp, tm):
    """(b*, R(+1), R(-1), R) at a point, from the numeric b* and scipy's normal CDF."""
    g, d, eta, sg, K, eps = (point[k] for k in ("gamma", "d", "eta", "sigma", "K", "eps"))
    e_plus = (1 if tp == "first" else -1) * point["rho_plus"] * eps
    e_minus = (1 if tm == "first" else -1) * point["rho_minus"] * eps
    b = _numeric_b_star(g, d, eta, sg, K, e_plus, e_minus)
    s = math.sqrt(d) * sg
    r_plus = norm.cdf(-(d * eta + b) / s)
    r_minus = norm.cdf((b - d * eta) / (K * s))
    return b, r_plus, r_minus, (r_plus + g * r_minus) / (1 + g)


@pytest.mark.parametrize(
    ("point", "tp", "tm"),
    [
        ((2.0, 2, 1.0, 1.0, 1.0, 0.2, 3.0, 1.0), "first", "first"),
        ((0.6, 3, 0.7, 1.3, 1.0, 0.1, 2.0, 4.0), "first", "second"),
        ((1.1, 2, 1.0, 1.0, 2.5, 0.2, 1.0, 2.0), "first", "first"),
        ((4.0, 1, 1.2, 0.8, 1.7, 0.3, 1.5, 0.5), "first", "second"),
    ],
)
def test_derivatives_match_finite_differences(point, tp, tm):
    """Every value of derivatives() (db*, R(+1), R(-1) and the total R = (R_+ + Gamma R_-)/(1 + Gamma), in
    rho_+ and rho_-) against central differences of the numerically minimised perturbed error."""
    pt = dict(zip(KEYS, point, strict=True))
    der = S.derivatives(pt["K"] == 1.0, tp, tm)
    h = 1e-5
    for tag in ("plus", "minus"):
        up, down = dict(pt), dict(pt)
        up[f"rho_{tag}"] += h
        down[f"rho_{tag}"] -= h
        fd = [
            (a - b) / (2 * h)
            for a, b in zip(_numeric_errors(up, tp, tm), _numeric_errors(down, tp, tm), strict=True)
        ]
        for name, ref in zip(("db", "dRplus", "dRminus", "dRtotal"), fd, strict=True):
            got = float(mp_function(der[f"{name}_drho_{tag}"])(pt))
            assert abs(ref) > 1e-4, (name, tag)  # a change to detect
            assert got == pytest.approx(ref, rel=1e-6), (name, tag)
    # the total is not one class's error: the test tells them apart
    dr = [float(mp_function(der[f"{k}_drho_plus"])(pt)) for k in ("dRplus", "dRminus", "dRtotal")]
    assert min(abs(dr[2] - dr[0]), abs(dr[2] - dr[1])) > 1e-3 * abs(dr[2])


def test_natural_errors_are_phi_of_u():
    r_plus, r_minus, r_total = S.natural_errors(False)
    u_plus, u_minus = S.natural_error_arguments(False)
    x = 0.37
    assert float(S.Phi(sp.Float(x))) == pytest.approx(float(mpmath.ncdf(x)), abs=1e-15)
    assert sp.simplify(r_total - (r_plus + S.Gamma * r_minus) / (1 + S.Gamma)) == 0
    assert sp.simplify(r_plus - S.Phi(u_plus)) == 0 and sp.simplify(r_minus - S.Phi(u_minus)) == 0


def test_invalid_arguments():
    with pytest.raises(ValueError, match="theorem"):
        S.reduction_to_theorem(4)
    with pytest.raises(ValueError, match="type_plus"):
        S.b_star(True, "third", "first")
    with pytest.raises(TypeError, match="equal_variance"):
        S.perturbed_error("yes")
    assert (
        np.isfinite(float(sp.N(S.Phi(sp.Integer(0))))) and float(sp.N(S.Phi(sp.Integer(0)))) == 0.5
    )
