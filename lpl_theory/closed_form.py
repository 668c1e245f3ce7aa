"""Vectorised numpy evaluation of the derived b*, the natural per-class errors and their derivatives.

The formulas are those of :mod:`lpl_theory.symbolic` (and are tested against it at random points), written in a
form that is numerically stable for every K >= 1, the equal-variance case K = 1 included. With signed shifts
e_+ = s_+ rho_+ eps and e_- = s_- rho_- eps (s = +1 for the first type, -1 for the second),

    p = d eta - e_+,   q = e_- - d eta,   C = e_+ + e_- - 2 d eta  (< 0 whenever rho eps < eta),
    S^2 = C^2 + 2 d (K^2 - 1) sigma^2 log(K / Gamma)                 (discriminant; b* exists iff S^2 >= 0),
    b* = (q - K^2 p + K S) / (K^2 - 1) = c / (q - K^2 p - K S),  c = K^2 p^2 - q^2 + 2 d K^2 sigma^2 log(Gamma/K).

The second form of b* has no cancellation (c's K^2 p^2 - q^2 is taken as (K p - q)(K p + q), each factor
from d eta and the shifts, so that K p + q, small near K = 1 when the shifts are, keeps its digits however
large d eta is) and reduces at K = 1 to Eq. (44)'s
b* = (e_+ - e_-)/2 + d sigma^2 log(Gamma) / C. The natural errors are R(f_opt,+1) = Phi(-(d eta + b*)/(sqrt(d) sigma))
and R(f_opt,-1) = Phi((b* - d eta)/(K sqrt(d) sigma)) (Eqs. 45, 51, 53).

Global optimality: with K > 1 the perturbed error R_lp(b) increases, then decreases to the local minimum b*, then
increases again, so b* is the global minimiser over b in R u {-inf, +inf} exactly when
R_lp(b*) <= R_lp(-inf) = 1/(1 + Gamma) (the trivial classifier that predicts -1 everywhere); with K = 1, b* is the
unique critical point and always the global minimiser. Where S^2 < 0 there is no critical point at all and
R_lp is increasing: the optimum is b = -inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from .task import GaussianTask, Perturbation, type_sign

__all__ = [
    "Solution",
    "db_star_drho",
    "error_derivatives",
    "perturbed_error",
    "solve",
    "solve_task",
]

_SQRT_2PI = np.sqrt(2.0 * np.pi)


def _as_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, str | bytes) or value is None or _is_bool(value):  # True would read as 1
        raise TypeError(f"{name} must be a real number or an array of reals, got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except OverflowError:  # an int beyond float64 (10**400)
        what = f"an integer of {len(str(abs(value)))} digits" if isinstance(value, int) else "more"
        raise ValueError(
            f"{name} is too large for float64 (at most about 1.8e308), got {what}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a real number or an array of reals, got {value!r}"
        ) from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _is_bool(value: Any) -> bool:
    """A bool, a NumPy bool or an array (or list) of them."""
    if isinstance(value, bool | np.bool_):
        return True
    try:
        return np.asarray(value).dtype.kind == "b"
    except (TypeError, ValueError, OverflowError):
        return False


def _require(name: str, arr: np.ndarray, ok: np.ndarray, allowed: str) -> None:
    if not np.all(ok):
        first = float(arr[~ok].ravel()[0])
        raise ValueError(f"{name} must be {allowed}, got {first!r}")


def _prepare(
    gamma: Any,
    d: Any,
    eta: Any,
    sigma: Any,
    K: Any,
    eps: Any,
    rho_plus: Any,
    rho_minus: Any,
    type_plus: str,
    type_minus: str,
) -> dict[str, np.ndarray | int]:
    g, dd, et, sg, kk, ep, rp, rm = (
        _as_array(n, v)
        for n, v in (
            ("gamma", gamma),
            ("d", d),
            ("eta", eta),
            ("sigma", sigma),
            ("K", K),
            ("eps", eps),
            ("rho_plus", rho_plus),
            ("rho_minus", rho_minus),
        )
    )
    _require("gamma", g, g > 0, "> 0")
    _require("d", dd, dd >= 1, ">= 1")
    _require("d", dd, dd == np.floor(dd), "an integer (the dimension)")
    _require("eta", et, et > 0, "> 0")
    _require("sigma", sg, sg > 0, "> 0")
    _require("K", kk, kk >= 1, ">= 1 (sigma_- = K sigma_+)")
    _require("eps", ep, ep >= 0, ">= 0")
    _require("rho_plus", rp, rp >= 0, ">= 0")
    _require("rho_minus", rm, rm >= 0, ">= 0")
    g, dd, et, sg, kk, ep, rp, rm = np.broadcast_arrays(g, dd, et, sg, kk, ep, rp, rm)
    for name, rho in (("rho_plus", rp), ("rho_minus", rm)):
        ok = rho * ep < et
        if not np.all(ok):
            i = np.flatnonzero(~ok.ravel())[0]
            raise ValueError(
                f"{name} * eps must be < eta (0 <= rho*eps < eta), got {name} = {rho.ravel()[i]!r}, "
                f"eps = {ep.ravel()[i]!r}, eta = {et.ravel()[i]!r}"
            )
    return {
        "gamma": g,
        "d": dd,
        "eta": et,
        "sigma": sg,
        "K": kk,
        "eps": ep,
        "rho_plus": rp,
        "rho_minus": rm,
        "s_plus": type_sign(type_plus, "type_plus"),
        "s_minus": type_sign(type_minus, "type_minus"),
    }


#: The lengths of the problem (|p|, |q|, sqrt(d)·sigma) are used as they are inside this range; outside it
#: their squares would lose digits or underflow, so they are divided by a power of two near the largest
#: (exact in binary floating point) and b* multiplied back: the problem is scale-invariant (eta, sigma,
#: eps and b scale together), and inside the range every number is the same as without the scaling.
_PLAIN_RANGE = (1e-100, 1e100)


def _first(v: dict[str, Any], mask: np.ndarray, like: np.ndarray) -> str:
    """The parameters of the first point where ``mask`` (broadcast to ``like``'s shape) holds, for an
    error message."""
    i = np.flatnonzero(np.broadcast_to(mask, np.shape(like)).ravel())[0]
    return ", ".join(
        f"{name}={float(np.broadcast_to(v[name], np.shape(like)).ravel()[i]):g}"
        for name in ("gamma", "d", "eta", "sigma", "K", "eps")
    )


def _core(v: dict[str, Any]) -> dict[str, np.ndarray]:
    g, dd, et, sg, kk = v["gamma"], v["d"], v["eta"], v["sigma"], v["K"]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e_plus = v["s_plus"] * v["rho_plus"] * v["eps"]
        e_minus = v["s_minus"] * v["rho_minus"] * v["eps"]
        p = dd * et - e_plus
        q = e_minus - dd * et
        C = e_plus + e_minus - 2 * dd * et
        length = np.maximum(np.maximum(np.abs(p), np.abs(q)), np.sqrt(dd) * sg)
        plain = (length >= _PLAIN_RANGE[0]) & (length <= _PLAIN_RANGE[1])
        unit = np.where(plain | ~np.isfinite(length) | (length <= 0), 1.0,
                        np.exp2(np.floor(np.log2(np.where(length > 0, length, 1.0)))))  # fmt: skip
        ps, qs, Cs, ss = p / unit, q / unit, C / unit, sg / unit
        log_k_over_g = np.log(kk) - np.log(g)
        # K = 1 (Theorems 1-2): the log term is exactly 0, whatever sigma
        log_term = np.where(kk == 1, 0.0, 2 * dd * (kk**2 - 1) * ss**2 * log_k_over_g)
        disc_s = Cs**2 + log_term
        exists = disc_s >= 0
        S_s = np.sqrt(np.where(exists, disc_s, np.nan))
        # K^2 p^2 - q^2 as (K p - q)(K p + q), each factor from d eta and the shifts directly: at K = 1,
        # p + q = e_- - e_+ is small where p and q are large, and p^2 - q^2 would lose its digits
        kp_plus_q = ((kk - 1) * dd * et - kk * e_plus + e_minus) / unit
        kp_minus_q = ((kk + 1) * dd * et - kk * e_plus - e_minus) / unit
        c = kp_minus_q * kp_plus_q - 2 * dd * kk**2 * ss**2 * log_k_over_g
        b_star = unit * (c / (qs - kk**2 * ps - kk * S_s))
        scale_ok = np.isfinite(np.sqrt(dd) * sg * kk)
        disc, S = unit**2 * disc_s, unit * S_s
        sig_s = np.sqrt(dd) * ss  # sigma's term in sigma^2 log(K/Gamma), in the unit of the scaling
    tiny = np.finfo(float).tiny
    underflow = np.isfinite(length) & (length < tiny)  # subnormal lengths: their digits are gone
    # p or q so much smaller than the largest length that its square underflows (eta against sigma)
    rel = np.sqrt(tiny)
    underflow |= ((np.abs(ps) < rel) & (ps != 0)) | ((np.abs(qs) < rel) & (qs != 0))
    underflow |= (sig_s < rel) & (sig_s != 0)  # sigma's term, the same way
    if np.any(underflow):
        at = _first(v, underflow, b_star)
        raise ValueError(
            f"the parameters underflow float64 in the closed form of b* ({at}): one of d*eta - "
            f"rho*eps, rho*eps - d*eta and sqrt(d)*sigma is below {rel:.3g} of the largest of them "
            f"(its square is lost), or that largest below {tiny:.3g}; the problem is scale-invariant "
            "(eta, sigma, eps and b scale together), so only these ratios matter"
        )
    overflow = ~(np.isfinite(p) & np.isfinite(q) & np.isfinite(disc_s) & np.isfinite(c) & scale_ok)
    overflow |= exists & ~np.isfinite(b_star)
    if np.any(overflow):
        at = _first(v, overflow, b_star)
        raise ValueError(
            f"the parameters overflow float64 in the closed form of b* ({at}): d*eta, sigma^2 or K^2 is too "
            "large for b* to be represented; use smaller values"
        )
    return {
        "e_plus": e_plus,
        "e_minus": e_minus,
        "C": C,
        "S": S,
        "disc": disc,
        "exists": exists,
        "b_star": b_star,
        "log_k_over_g": log_k_over_g,
        # the same lengths in the unit of the scaling (for the derivatives, ratios of squares)
        "C_s": Cs,
        "S_s": S_s,
        "sigma_s": ss,
    }


def _perturbed(
    b: np.ndarray, v: dict[str, Any], e_plus: np.ndarray, e_minus: np.ndarray
) -> np.ndarray:
    dd, et, sg, kk, g = v["d"], v["eta"], v["sigma"], v["K"], v["gamma"]
    scale = np.sqrt(dd) * sg
    z_plus = (-dd * et - b + e_plus) / scale
    z_minus = (-dd * et + b + e_minus) / (kk * scale)
    return (ndtr(z_plus) + g * ndtr(z_minus)) / (1 + g)


@dataclass(frozen=True)
class Solution:
    """Arrays (broadcast shape of the inputs; NumPy scalars for scalar inputs) describing the optimum of
    the perturbed error.

    Attributes:
        b_star: the local minimiser of the perturbed error from the first-order condition (NaN where none exists).
        R_plus, R_minus: natural errors R(f_opt, +1), R(f_opt, -1) of sign(sum x_i + b*) (NaN where no b*).
        R_total: (R_plus + Gamma R_minus) / (1 + Gamma).
        exists: whether a real b* exists (discriminant S^2 >= 0; always for K = 1).
        is_global: whether b* is the global minimiser over b in R u {-inf, +inf}.
        perturbed_at_b_star: the perturbed prior-weighted error R_lp(b*).
        b_global: the global minimiser (b* where is_global, else -inf: predict -1 everywhere).
        R_plus_global, R_minus_global, R_total_global: natural errors of the global optimum.
        discriminant: S^2 = C^2 + 2d(K^2-1) sigma^2 log(K/Gamma).
    """

    b_star: np.ndarray
    R_plus: np.ndarray
    R_minus: np.ndarray
    R_total: np.ndarray
    exists: np.ndarray
    is_global: np.ndarray
    perturbed_at_b_star: np.ndarray
    b_global: np.ndarray
    R_plus_global: np.ndarray
    R_minus_global: np.ndarray
    R_total_global: np.ndarray
    discriminant: np.ndarray


def solve(
    gamma: Any,
    d: Any,
    eta: Any,
    sigma: Any = 1.0,
    K: Any = 1.0,
    eps: Any = 0.0,
    rho_plus: Any = 1.0,
    rho_minus: Any = 1.0,
    type_plus: str = "first",
    type_minus: str = "first",
) -> Solution:
    """b*, natural errors and global optimality over broadcast arrays of parameters (Theorems 1-3).

    Args:
        gamma: prior ratio Gamma > 0 (P+ : P- = 1 : Gamma).
        d: dimension >= 1.
        eta: mean coordinate > 0.
        sigma: standard deviation of class +1, > 0.
        K: sigma_- / sigma_+ >= 1.
        eps: base perturbation bound >= 0.
        rho_plus, rho_minus: bound multipliers >= 0 with rho * eps < eta.
        type_plus, type_minus: "first" (Eq. 18) or "second" (Eq. 19).
    """
    v = _prepare(gamma, d, eta, sigma, K, eps, rho_plus, rho_minus, type_plus, type_minus)
    core = _core(v)
    g, dd, et, sg, kk = v["gamma"], v["d"], v["eta"], v["sigma"], v["K"]
    scale = np.sqrt(dd) * sg
    bs = core["b_star"]
    r_plus = ndtr(-(dd * et + bs) / scale)
    r_minus = ndtr((bs - dd * et) / (kk * scale))
    r_total = (r_plus + g * r_minus) / (1 + g)
    exists = core["exists"]
    with np.errstate(invalid="ignore"):
        at_b = _perturbed(bs, v, core["e_plus"], core["e_minus"])
    # K = 1: b* is the unique critical point, a minimum, hence global (decided analytically: where b* lies far
    # in a tail, R_lp(b*) and the trivial errors agree to rounding and a comparison could go either way).
    # K > 1: R_lp increases after b* towards R_lp(+inf) = Gamma/(1+Gamma), so R_lp(b*) < Gamma/(1+Gamma) and
    # the only competitor is b = -inf, with R_lp(-inf) = 1/(1+Gamma); where no b* exists R_lp is increasing.
    trivial_minus = 1.0 / (1 + g)  # b -> -inf: every point predicted -1
    with np.errstate(invalid="ignore"):
        is_global = exists & ((kk == 1) | (at_b <= trivial_minus))
    b_global = np.where(is_global, bs, -np.inf)
    r_plus_g = np.where(is_global, r_plus, 1.0)
    r_minus_g = np.where(is_global, r_minus, 0.0)
    r_total_g = (r_plus_g + g * r_minus_g) / (1 + g)
    fields = dict(
        b_star=bs,
        R_plus=r_plus,
        R_minus=r_minus,
        R_total=r_total,
        exists=exists,
        is_global=is_global,
        perturbed_at_b_star=at_b,
        b_global=b_global,
        R_plus_global=r_plus_g,
        R_minus_global=r_minus_g,
        R_total_global=r_total_g,
        discriminant=core["disc"],
    )
    # one kind per call: NumPy scalars for scalar inputs (np.where gives 0-d arrays), arrays otherwise
    return Solution(**{k: np.asarray(x)[()] for k, x in fields.items()})


def solve_task(task: GaussianTask, perturbation: Perturbation) -> Solution:
    """:func:`solve` for one :class:`GaussianTask` and one :class:`Perturbation` (0-d arrays)."""
    if not isinstance(task, GaussianTask):
        raise TypeError(f"task must be a GaussianTask, got {type(task).__name__}")
    if not isinstance(perturbation, Perturbation):
        raise TypeError(f"perturbation must be a Perturbation, got {type(perturbation).__name__}")
    perturbation.check_against(task)
    return solve(
        task.gamma,
        task.d,
        task.eta,
        task.sigma,
        task.K,
        perturbation.eps,
        perturbation.rho_plus,
        perturbation.rho_minus,
        perturbation.type_plus,
        perturbation.type_minus,
    )


def perturbed_error(
    b: Any,
    gamma: Any,
    d: Any,
    eta: Any,
    sigma: Any = 1.0,
    K: Any = 1.0,
    eps: Any = 0.0,
    rho_plus: Any = 1.0,
    rho_minus: Any = 1.0,
    type_plus: str = "first",
    type_minus: str = "first",
) -> np.ndarray:
    """The perturbed prior-weighted error R_lp(b) = (Phi(z_+) + Gamma Phi(z_-)) / (1 + Gamma) (Eqs. 43, 49).

    ``b`` may be +-inf (the trivial classifiers).
    """
    if isinstance(b, str | bytes) or b is None or _is_bool(b):
        raise TypeError(f"b must be a real number or an array of reals, got {b!r}")
    try:
        bb = np.asarray(b, dtype=float)
    except OverflowError:  # an int beyond float64 (10**400): ±inf are the trivial classifiers
        raise ValueError(
            "b is too large for float64 (at most about 1.8e308); give ±inf for the trivial classifiers"
        ) from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"b must be a real number or an array of reals, got {b!r}") from exc
    if np.any(np.isnan(bb)):
        raise ValueError(f"b must not be NaN, got {b!r}")
    v = _prepare(gamma, d, eta, sigma, K, eps, rho_plus, rho_minus, type_plus, type_minus)
    e_plus = v["s_plus"] * v["rho_plus"] * v["eps"]
    e_minus = v["s_minus"] * v["rho_minus"] * v["eps"]
    return _perturbed(bb, v, e_plus, e_minus)


def db_star_drho(
    which: str,
    gamma: Any,
    d: Any,
    eta: Any,
    sigma: Any = 1.0,
    K: Any = 1.0,
    eps: Any = 0.0,
    rho_plus: Any = 1.0,
    rho_minus: Any = 1.0,
    type_plus: str = "first",
    type_minus: str = "first",
) -> np.ndarray:
    """db*/drho_+ (``which="plus"``) or db*/drho_- (``"minus"``), as in Eqs. (46) and (54), stable at K = 1.

    db*/drho_+ = eps s_+ K (C^2 + 2 d K^2 sigma^2 log(K/Gamma)) / (S (K S - C)),
    db*/drho_- = eps s_- (2 d sigma^2 log(K/Gamma) - C^2) / (S (S - K C)).
    Hence with the first type, b* increases in rho_+ iff log(Gamma/K) < C^2 / (2 d K^2 sigma^2) and
    decreases in rho_- iff log(K/Gamma) < C^2 / (2 d sigma^2). NaN where b* does not exist.
    """
    if which not in ("plus", "minus"):
        raise ValueError(f"which must be 'plus' or 'minus', got {which!r}")
    v = _prepare(gamma, d, eta, sigma, K, eps, rho_plus, rho_minus, type_plus, type_minus)
    core = _core(v)
    C, S, L = core["C_s"], core["S_s"], core["log_k_over_g"]  # in the unit of the scaling: ratios
    dd, sg, kk, ep = v["d"], core["sigma_s"], v["K"], v["eps"]
    with np.errstate(divide="ignore", invalid="ignore"):
        if which == "plus":
            return ep * v["s_plus"] * kk * (C**2 + 2 * dd * kk**2 * sg**2 * L) / (S * (kk * S - C))
        return ep * v["s_minus"] * (2 * dd * sg**2 * L - C**2) / (S * (S - kk * C))


def error_derivatives(
    which: str,
    gamma: Any,
    d: Any,
    eta: Any,
    sigma: Any = 1.0,
    K: Any = 1.0,
    eps: Any = 0.0,
    rho_plus: Any = 1.0,
    rho_minus: Any = 1.0,
    type_plus: str = "first",
    type_minus: str = "first",
) -> dict[str, np.ndarray]:
    """dR(f_opt,+1)/drho, dR(f_opt,-1)/drho and dR(f_opt)/drho for rho = rho_+ or rho_- (``which``).

    The natural errors depend on rho only through b*: dR_+/drho = -phi(U_+) db*/drho / (sqrt(d) sigma) and
    dR_-/drho = phi(U_-) db*/drho / (K sqrt(d) sigma), so R_+ and R_- always move in opposite directions.
    Keys: ``R_plus``, ``R_minus``, ``R_total``.
    """
    db = db_star_drho(
        which, gamma, d, eta, sigma, K, eps, rho_plus, rho_minus, type_plus, type_minus
    )
    sol = solve(gamma, d, eta, sigma, K, eps, rho_plus, rho_minus, type_plus, type_minus)
    g, dd, et, sg, kk = (np.asarray(x, dtype=float) for x in (gamma, d, eta, sigma, K))
    scale = np.sqrt(dd) * sg
    u_plus = -(dd * et + sol.b_star) / scale
    u_minus = (sol.b_star - dd * et) / (kk * scale)
    d_plus = -np.exp(-(u_plus**2) / 2) / _SQRT_2PI * db / scale
    d_minus = np.exp(-(u_minus**2) / 2) / _SQRT_2PI * db / (kk * scale)
    return {"R_plus": d_plus, "R_minus": d_minus, "R_total": (d_plus + g * d_minus) / (1 + g)}
