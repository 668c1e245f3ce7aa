"""The paper's printed formulas of Sec. III.B and the Appendix, transcribed as printed (not derived).

These functions exist to be compared with the derivation in :mod:`lpl_theory.symbolic` and
:mod:`lpl_theory.closed_form`; they are never used to compute the reported curves. Each one works on numpy
arrays (broadcasting) and on sympy expressions (for the symbolic reduction of Theorems 1-3).

Reading of the OCR: the text prints both ``\\sqrt{d}\\sigma`` (Eq. 23) and ``\\sqrt{d\\sigma}`` (Eqs. 21, 25, 43,
45, 49, 51, 53) for the same scale; the derivation (sum_i x_i has standard deviation sqrt(d) sigma) and
dimensional consistency give sqrt(d) * sigma, which is what is transcribed. With sigma = 1 (every figure) the
two readings coincide. Likewise ``\\frac{\\sqrt{d\\eta}}{\\sigma}`` (Eqs. 43, 45, 49, 51, 53) is read as
sqrt(d) * eta / sigma (the mean d eta of the sum over its standard deviation); the same when eta = 1.
``f_rob``/``b_rob`` in Eq. 21 and the proof of Corollary 1 are read as f_opt/b*.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp
from scipy.special import ndtr

__all__ = [
    "corollary1_condition",
    "corollary2_condition",
    "corollary3_case1_condition",
    "corollary3_case2_condition",
    "eq21",
    "eq21_arguments",
    "eq23",
    "eq23_arguments",
    "eq25",
    "eq25_arguments",
    "eq44_b_star",
    "eq46_db_drho_plus",
    "eq50_b_star",
    "eq52_b_star_as_printed",
    "eq52_b_star_corrected",
    "eq54_db_drho_plus",
]


def _ops(*args: Any) -> tuple[Any, Any, Any]:
    for a in args:
        if a is None or isinstance(a, str | bytes | bool):
            raise TypeError(
                f"arguments must be numbers, numpy arrays or sympy expressions, got {a!r}"
            )
    if any(isinstance(a, sp.Basic) for a in args):
        return sp.sqrt, sp.log, sp.exp
    return np.sqrt, np.log, np.exp


def _scale(d: Any, sigma: Any) -> Any:
    sqrt, _, _ = _ops(d, sigma)
    return sqrt(d) * sigma


def eq44_b_star(Gamma: Any, d: Any, eta: Any, sigma: Any, eps: Any, rho_plus: Any) -> Any:
    """Eq. (44): b* = eps (rho - 1) / 2 + d sigma^2 log(Gamma) / (eps - 2 d eta + eps rho_+), rho read as rho_+."""
    _, log, _ = _ops(Gamma, d, eta, sigma, eps, rho_plus)
    return eps * (rho_plus - 1) / 2 + d * sigma**2 * log(Gamma) / (
        eps - 2 * d * eta + eps * rho_plus
    )


def eq21_arguments(
    Gamma: Any, d: Any, eta: Any, sigma: Any, eps: Any, rho_plus: Any
) -> tuple[Any, Any]:
    """Eq. (21)/(45), Theorem 1: the arguments (U_+, U_-) of Pr{N(0,1) < U}.

    A = (eps - 2 d eta + eps rho_+) / (sqrt(d) sigma);
    U_- = A/2 + log(Gamma)/A - eps/(sqrt(d) sigma);  U_+ = A/2 - log(Gamma)/A - eps rho_+/(sqrt(d) sigma).
    """
    _, log, _ = _ops(Gamma, d, eta, sigma, eps, rho_plus)
    s = _scale(d, sigma)
    A = (eps - 2 * d * eta + eps * rho_plus) / s
    u_minus = A / 2 + log(Gamma) / A - eps / s
    u_plus = A / 2 - log(Gamma) / A - eps * rho_plus / s
    return u_plus, u_minus


def eq21(Gamma: Any, d: Any, eta: Any, sigma: Any, eps: Any, rho_plus: Any) -> tuple[Any, Any]:
    """Eq. (21): (R(f_opt, +1), R(f_opt, -1)) of Theorem 1 as printed."""
    u_plus, u_minus = eq21_arguments(Gamma, d, eta, sigma, eps, rho_plus)
    return ndtr(u_plus), ndtr(u_minus)


def eq23_arguments(
    Gamma: Any, d: Any, eta: Any, sigma: Any, eps: Any, rho_minus: Any
) -> tuple[Any, Any]:
    """Eq. (23), Theorem 2: the arguments (U_+, U_-).

    A = (eps - 2 d eta - eps rho_-) / (sqrt(d) sigma);
    U_- = A/2 + log(Gamma)/A + eps rho_-/(sqrt(d) sigma);  U_+ = A/2 - log(Gamma)/A - eps/(sqrt(d) sigma).
    """
    _, log, _ = _ops(Gamma, d, eta, sigma, eps, rho_minus)
    s = _scale(d, sigma)
    A = (eps - 2 * d * eta - eps * rho_minus) / s
    u_minus = A / 2 + log(Gamma) / A + eps * rho_minus / s
    u_plus = A / 2 - log(Gamma) / A - eps / s
    return u_plus, u_minus


def eq23(Gamma: Any, d: Any, eta: Any, sigma: Any, eps: Any, rho_minus: Any) -> tuple[Any, Any]:
    """Eq. (23): (R(f_opt, +1), R(f_opt, -1)) of Theorem 2 as printed."""
    u_plus, u_minus = eq23_arguments(Gamma, d, eta, sigma, eps, rho_minus)
    return ndtr(u_plus), ndtr(u_minus)


def eq25_arguments(
    Gamma: Any, d: Any, eta: Any, sigma: Any, K: Any, eps: Any, rho_plus: Any, rho_minus: Any
) -> tuple[Any, Any]:
    """Eq. (25)/(51), Theorem 3: the arguments (U_+, U_-).

    B = (eps rho_+ + eps rho_- - 2 d eta) / (sqrt(d) sigma (K^2 - 1)), q = 2 log(K/Gamma) / (K^2 - 1);
    U_+ = -K sqrt(B^2 + q) - B - eps rho_+/(sqrt(d) sigma);
    U_- = K B + sqrt(B^2 + q) - eps rho_-/(K sqrt(d) sigma).
    NaN (numpy) where B^2 + q < 0.
    """
    sqrt, log, _ = _ops(Gamma, d, eta, sigma, K, eps, rho_plus, rho_minus)
    s = _scale(d, sigma)
    B = (eps * rho_plus + eps * rho_minus - 2 * d * eta) / (s * (K**2 - 1))
    q = 2 * log(K / Gamma) / (K**2 - 1)
    if sqrt is np.sqrt:
        with np.errstate(invalid="ignore"):
            root = np.sqrt(np.asarray(B**2 + q, dtype=float))
    else:
        root = sqrt(B**2 + q)
    u_plus = -K * root - B - eps * rho_plus / s
    u_minus = K * B + root - eps * rho_minus / (K * s)
    return u_plus, u_minus


def eq25(
    Gamma: Any, d: Any, eta: Any, sigma: Any, K: Any, eps: Any, rho_plus: Any, rho_minus: Any
) -> tuple[Any, Any]:
    """Eq. (25): (R(f_opt, +1), R(f_opt, -1)) of Theorem 3 as printed."""
    u_plus, u_minus = eq25_arguments(Gamma, d, eta, sigma, K, eps, rho_plus, rho_minus)
    return ndtr(u_plus), ndtr(u_minus)


def eq50_b_star(
    Gamma: Any, d: Any, eta: Any, sigma: Any, K: Any, eps: Any, rho_plus: Any, rho_minus: Any
) -> Any:
    """Eq. (50): b* = [eps(rho_- + K^2 rho_+) - d eta (K^2+1)
    + K sqrt((eps rho_- + eps rho_+ - 2 d eta)^2 + 2 d (K^2-1) sigma^2 log(K/Gamma))] / (K^2 - 1)."""
    sqrt, log, _ = _ops(Gamma, d, eta, sigma, K, eps, rho_plus, rho_minus)
    disc = (eps * rho_minus + eps * rho_plus - 2 * d * eta) ** 2 + 2 * d * (
        K**2 - 1
    ) * sigma**2 * log(K / Gamma)
    if sqrt is np.sqrt:
        with np.errstate(invalid="ignore"):
            root = np.sqrt(np.asarray(disc, dtype=float))
    else:
        root = sqrt(disc)
    return (eps * (rho_minus + K**2 * rho_plus) - d * eta * (K**2 + 1) + K * root) / (K**2 - 1)


def eq52_b_star_as_printed(Gamma: Any, d: Any, eta: Any, sigma: Any, K: Any) -> Any:
    """Eq. (52) exactly as printed: b* = (-d eta (K^2+1)) / (K^2-1) + K sqrt(4 d^2 eta^2 + 2d(K^2-1) sigma^2 log(K/Gamma)).

    The printed parentheses close the fraction before the square root (one closing parenthesis is left over).
    """
    sqrt, log, _ = _ops(Gamma, d, eta, sigma, K)
    return (-d * eta * (K**2 + 1)) / (K**2 - 1) + K * sqrt(
        4 * d**2 * eta**2 + 2 * d * (K**2 - 1) * sigma**2 * log(K / Gamma)
    )


def eq52_b_star_corrected(Gamma: Any, d: Any, eta: Any, sigma: Any, K: Any) -> Any:
    """Eq. (52) with the square root inside the fraction, i.e. Eq. (50) at rho_+ = rho_- = 0."""
    sqrt, log, _ = _ops(Gamma, d, eta, sigma, K)
    return (
        -d * eta * (K**2 + 1)
        + K * sqrt(4 * d**2 * eta**2 + 2 * d * (K**2 - 1) * sigma**2 * log(K / Gamma))
    ) / (K**2 - 1)


def eq46_db_drho_plus(Gamma: Any, d: Any, eta: Any, sigma: Any, eps: Any, rho_plus: Any) -> Any:
    """Eq. (46): db*/drho_+ = eps/2 - d eps sigma^2 log(Gamma) / (eps - 2 d eta + eps rho_+)^2."""
    _, log, _ = _ops(Gamma, d, eta, sigma, eps, rho_plus)
    return eps / 2 - d * eps * sigma**2 * log(Gamma) / (eps - 2 * d * eta + eps * rho_plus) ** 2


def eq54_db_drho_plus(
    Gamma: Any, d: Any, eta: Any, sigma: Any, K: Any, eps: Any, rho_plus: Any
) -> Any:
    """Eq. (54) with t read as rho_+ (rho_- = 1): [K^2 eps + K^2 eps C / (K sqrt(C^2 + 2d(K^2-1) sigma^2 log(K/Gamma)))]
    / (K^2 - 1) with C = eps + eps rho_+ - 2 d eta. The paper states it is <= 0 in Corollary 3's first case."""
    sqrt, log, _ = _ops(Gamma, d, eta, sigma, K, eps, rho_plus)
    C = eps + eps * rho_plus - 2 * d * eta
    return (
        K**2 * eps
        + K**2 * eps * C / (K * sqrt(C**2 + 2 * d * (K**2 - 1) * sigma**2 * log(K / Gamma)))
    ) / (K**2 - 1)


def corollary1_condition(Gamma: Any, d: Any, eta: Any, sigma: Any, eps: Any) -> Any:
    """Corollary 1 / Eq. (48): Gamma < exp(((2d - 1) eta - eps)^2 / (2 d sigma^2))."""
    return np.asarray(Gamma) < np.exp(
        ((2 * np.asarray(d) - 1) * eta - eps) ** 2 / (2 * np.asarray(d) * sigma**2)
    )


def corollary2_condition(Gamma: Any) -> Any:
    """Corollary 2: Gamma > 1."""
    return np.asarray(Gamma) > 1


def corollary3_case1_condition(Gamma: Any, d: Any, eta: Any, sigma: Any, K: Any, eps: Any) -> Any:
    """Corollary 3, first case: K exp((2 d eta - eps)^2 / (2 d K^2 sigma^2)) < Gamma < K exp(2 d eta^2 / ((K^2-1) sigma^2))."""
    Gamma, d, eta, sigma, K, eps = (
        np.asarray(v, dtype=float) for v in (Gamma, d, eta, sigma, K, eps)
    )
    lower = K * np.exp((2 * d * eta - eps) ** 2 / (2 * d * K**2 * sigma**2))
    with np.errstate(divide="ignore"):
        upper = K * np.exp(2 * d * eta**2 / ((K**2 - 1) * sigma**2))
    return (lower < Gamma) & (Gamma < upper)


def corollary3_case2_condition(Gamma: Any, K: Any) -> Any:
    """Corollary 3, second case: K > Gamma."""
    return np.asarray(K) > np.asarray(Gamma)
