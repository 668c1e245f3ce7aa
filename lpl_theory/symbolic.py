"""Symbolic derivation of the optimal bias b* and the natural per-class errors (Sec. III.B, Appendix A-D).

Nothing here is typed in from the paper: the perturbed prior-weighted error (the last line of Eqs. 43 and 49)
is built from the data model, differentiated in b, the first-order condition is solved by sympy, and the root
that is a minimum is chosen by the sign of the second derivative. The perturbation types enter as signs
s_+, s_- (+1 for the first type, -1 for the second), so one derivation covers every combination.

With z_+(b) = (-d*eta - b + s_+ eps_+) / (sqrt(d) sigma) and z_-(b) = (-d*eta + b + s_- eps_-) / (sqrt(d) K sigma)
the perturbed error is R_lp(b) = (Phi(z_+) + Gamma * Phi(z_-)) / (1 + Gamma), and the natural errors of the
classifier sign(sum_i x_i + b*) are R(f_opt, +1) = Phi(U_+) and R(f_opt, -1) = Phi(U_-) with
U_+ = -(d*eta + b*) / (sqrt(d) sigma) and U_- = (b* - d*eta) / (sqrt(d) K sigma) (Eq. 53).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .task import type_sign

# Symbols of the setting.  s_p, s_m are the signs of the perturbation types.
b = sp.Symbol("b", real=True)
d, eta, sigma, K, Gamma, eps = sp.symbols("d eta sigma K Gamma epsilon", positive=True)
rho_p, rho_m = sp.symbols("rho_+ rho_-", nonnegative=True)
s_p, s_m = sp.symbols("s_+ s_-", real=True, nonzero=True)

#: Reference point used only to decide which root of the first-order condition is the minimum.
_REFERENCE = {d: 2, eta: 1, sigma: 1, K: 2, Gamma: 3, eps: sp.Rational(1, 10), rho_p: 1, rho_m: 1}


def Phi(x: sp.Expr) -> sp.Expr:
    """Standard normal CDF, Pr{N(0,1) < x}, written with erf."""
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def z_plus(bias: sp.Expr = b) -> sp.Expr:
    """Argument of Phi in the perturbed error of class +1: Pr{sum x_i + b - s_+ eps_+ < 0 | y = +1}."""
    return (-d * eta - bias + s_p * rho_p * eps) / (sp.sqrt(d) * sigma)


def z_minus(bias: sp.Expr = b, variance_ratio: sp.Expr = K) -> sp.Expr:
    """Argument of Phi in the perturbed error of class -1: Pr{sum x_i + b + s_- eps_- > 0 | y = -1}."""
    return (-d * eta + bias + s_m * rho_m * eps) / (sp.sqrt(d) * variance_ratio * sigma)


def perturbed_error(equal_variance: bool = False) -> sp.Expr:
    """Prior-weighted error of the perturbed classifier as a function of b (Eqs. 43 and 49, normalised).

    Args:
        equal_variance: if True, sigma_- = sigma_+ (K = 1, Theorems 1-2); else sigma_- = K sigma (Theorem 3).
    """
    if not isinstance(equal_variance, bool):
        raise TypeError(f"equal_variance must be a bool, got {equal_variance!r}")
    k = sp.Integer(1) if equal_variance else K
    return (Phi(z_plus(b)) + Gamma * Phi(z_minus(b, k))) / (1 + Gamma)


def first_order_condition(equal_variance: bool = False) -> sp.Equality:
    """The condition dR_lp/db = 0, rewritten as a polynomial equation in b by taking logarithms.

    dR_lp/db is the difference of two positive Gaussian-density terms; equating their logarithms gives an
    equation that is linear in b when K = 1 and quadratic when K > 1.
    """
    # The factor 1/(1 + Gamma) does not move the root; differentiate the unnormalised error.
    derivative = sp.diff(perturbed_error(equal_variance) * (1 + Gamma), b)
    terms = sp.Add.make_args(sp.expand(sp.powsimp(derivative)))
    if len(terms) != 2:
        raise RuntimeError(f"unexpected form of dR/db: {derivative}")
    negative = [t for t in terms if t.could_extract_minus_sign()]
    positive = [t for t in terms if not t.could_extract_minus_sign()]
    if len(negative) != 1 or len(positive) != 1:
        raise RuntimeError(f"unexpected signs in dR/db: {derivative}")
    lhs = sp.expand_log(sp.log(sp.powsimp(positive[0])), force=True)
    rhs = sp.expand_log(sp.log(sp.powsimp(-negative[0])), force=True)
    return sp.Eq(sp.expand(lhs - rhs), 0)


@dataclass(frozen=True)
class Derivation:
    """Result of the derivation for one variance case, with the perturbation types still symbolic (s_+, s_-).

    Attributes:
        error: R_lp(b), the perturbed prior-weighted error.
        foc: the first-order condition as a polynomial equation in b.
        roots: every root of the first-order condition.
        b_star: the root at which d^2 R_lp / db^2 > 0 (the local minimum).
        U_plus, U_minus: arguments of Phi in the natural errors R(f_opt, +1), R(f_opt, -1) (Eq. 53).
    """

    error: sp.Expr
    foc: sp.Equality
    roots: tuple[sp.Expr, ...]
    b_star: sp.Expr
    U_plus: sp.Expr
    U_minus: sp.Expr


@lru_cache(maxsize=2)
def derive(equal_variance: bool = False) -> Derivation:
    """Derive b* from the first-order condition and the natural per-class errors (Appendix A and C).

    Args:
        equal_variance: True for K = 1 (Theorems 1-2, one root), False for K > 1 (Theorem 3, two roots).
    """
    error = perturbed_error(equal_variance)
    foc = first_order_condition(equal_variance)
    roots = tuple(sp.solve(foc, b))
    if not roots:
        raise RuntimeError("the first-order condition has no symbolic root")
    second = sp.diff(error, b, 2)
    reference = dict(_REFERENCE)
    reference[s_p] = 1
    reference[s_m] = 1
    minima = []
    for root in roots:
        value = second.subs(b, root).subs(reference)
        if sp.N(value, 30) > 0:
            minima.append(root)
    if len(minima) != 1:
        raise RuntimeError(f"expected exactly one minimising root, found {len(minima)}")
    b_star = minima[0]
    k = sp.Integer(1) if equal_variance else K
    U_plus = -(d * eta + b_star) / (sp.sqrt(d) * sigma)
    U_minus = (b_star - d * eta) / (sp.sqrt(d) * k * sigma)
    return Derivation(error, foc, roots, b_star, U_plus, U_minus)


def specialise(expr: sp.Expr, type_plus: str = "first", type_minus: str = "first") -> sp.Expr:
    """Substitute the perturbation types (the signs s_+, s_-) into an expression of :func:`derive`."""
    return expr.subs(
        {s_p: type_sign(type_plus, "type_plus"), s_m: type_sign(type_minus, "type_minus")}
    )


def b_star(equal_variance: bool, type_plus: str = "first", type_minus: str = "first") -> sp.Expr:
    """b* for the given variance case and perturbation types (Eqs. 44 and 50 are special cases)."""
    return specialise(derive(equal_variance).b_star, type_plus, type_minus)


def natural_error_arguments(
    equal_variance: bool, type_plus: str = "first", type_minus: str = "first"
) -> tuple[sp.Expr, sp.Expr]:
    """(U_+, U_-): R(f_opt, +1) = Phi(U_+), R(f_opt, -1) = Phi(U_-) (Eqs. 21, 23, 25, 45, 51, 53)."""
    der = derive(equal_variance)
    return (
        specialise(der.U_plus, type_plus, type_minus),
        specialise(der.U_minus, type_plus, type_minus),
    )


def natural_errors(
    equal_variance: bool, type_plus: str = "first", type_minus: str = "first"
) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(R(f_opt,+1), R(f_opt,-1), R(f_opt)) with R(f_opt) = (R_+ + Gamma R_-)/(1 + Gamma)."""
    u_plus, u_minus = natural_error_arguments(equal_variance, type_plus, type_minus)
    r_plus, r_minus = Phi(u_plus), Phi(u_minus)
    return r_plus, r_minus, (r_plus + Gamma * r_minus) / (1 + Gamma)


def derivatives(
    equal_variance: bool, type_plus: str = "first", type_minus: str = "first"
) -> dict[str, sp.Expr]:
    """Derivatives the corollaries reason about (Eqs. 46 and 54): db*/drho_c and dR/drho_c.

    Keys: ``db_drho_plus``, ``db_drho_minus``, ``dRplus_drho_plus``, ``dRminus_drho_plus``,
    ``dRplus_drho_minus``, ``dRminus_drho_minus``, ``dRtotal_drho_plus``, ``dRtotal_drho_minus``.
    """
    bs = b_star(equal_variance, type_plus, type_minus)
    r_plus, r_minus, r_total = natural_errors(equal_variance, type_plus, type_minus)
    out: dict[str, sp.Expr] = {}
    for tag, rho in (("plus", rho_p), ("minus", rho_m)):
        out[f"db_drho_{tag}"] = sp.diff(bs, rho)
        out[f"dRplus_drho_{tag}"] = sp.diff(r_plus, rho)
        out[f"dRminus_drho_{tag}"] = sp.diff(r_minus, rho)
        out[f"dRtotal_drho_{tag}"] = sp.diff(r_total, rho)
    return out


def theorem_setting(theorem: int) -> tuple[bool, str, str, dict[sp.Symbol, sp.Expr]]:
    """The variance case, types and fixed rhos of Theorem 1, 2 or 3.

    Returns (equal_variance, type_plus, type_minus, substitutions).
    """
    if theorem == 1:
        return True, "first", "first", {rho_m: sp.Integer(1)}
    if theorem == 2:
        return True, "first", "second", {rho_p: sp.Integer(1)}
    if theorem == 3:
        return False, "first", "first", {}
    raise ValueError(f"theorem must be 1, 2 or 3, got {theorem!r}")


def reduction_to_theorem(theorem: int) -> dict[str, sp.Expr]:
    """Differences (simplified) between the derived forms and the paper's printed Theorem 1, 2 or 3.

    Each value is derived minus printed; all zero means the derivation reduces to the theorem. Keys:
    ``b_star`` (against Eq. 44 or 50), ``U_plus`` and ``U_minus`` (against Eqs. 21, 23 or 25).
    """
    from . import paper

    equal_variance, tp, tm, subs = theorem_setting(theorem)
    bs = b_star(equal_variance, tp, tm).subs(subs)
    u_plus, u_minus = (u.subs(subs) for u in natural_error_arguments(equal_variance, tp, tm))
    if theorem == 1:
        printed_b = paper.eq44_b_star(Gamma, d, eta, sigma, eps, rho_p)
        printed_plus, printed_minus = paper.eq21_arguments(Gamma, d, eta, sigma, eps, rho_p)
    elif theorem == 2:
        printed_b = None
        printed_plus, printed_minus = paper.eq23_arguments(Gamma, d, eta, sigma, eps, rho_m)
    else:
        printed_b = paper.eq50_b_star(Gamma, d, eta, sigma, K, eps, rho_p, rho_m)
        printed_plus, printed_minus = paper.eq25_arguments(
            Gamma, d, eta, sigma, K, eps, rho_p, rho_m
        )
    simplify = _simplify_difference if theorem < 3 else _simplify_difference_variance
    out = {
        "U_plus": simplify(u_plus - printed_plus),
        "U_minus": simplify(u_minus - printed_minus),
    }
    if printed_b is not None:
        out["b_star"] = simplify(bs - printed_b)
    return out


def _simplify_difference(diff: sp.Expr) -> sp.Expr:
    return sp.simplify(sp.together(sp.expand(diff)))


def _simplify_difference_variance(diff: sp.Expr) -> sp.Expr:
    """Simplify under K > 1 by naming the radicand X = C^2 + 2 d (K^2-1) sigma^2 log(K/Gamma) > 0.

    log(Gamma) is eliminated in favour of X, every square root is denested with its radicand factored, and
    K = 1 + kappa (kappa > 0) removes the |K - 1| that sympy cannot resolve on its own.
    """
    X = sp.Symbol("X", positive=True)
    kappa = sp.Symbol("kappa", positive=True)
    C = eps * rho_p + eps * rho_m - 2 * d * eta
    log_gamma = sp.log(K) - (X - C**2) / (2 * d * sigma**2 * (K**2 - 1))
    expr = sp.expand_log(diff, force=True).subs(sp.log(Gamma), log_gamma)
    expr = expr.replace(
        lambda e: isinstance(e, sp.Pow) and e.exp == sp.Rational(1, 2),
        lambda e: sp.powdenest(sp.sqrt(sp.factor(sp.expand(e.base))), force=True),
    )
    return sp.simplify(sp.simplify(expr).subs(K, 1 + kappa))
