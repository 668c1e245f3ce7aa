"""The adversary, searched, and direct numeric minimisation over b (checks 1 and 2 of :mod:`lpl_theory.verify`).

At every b each class's shift delta_c is searched on [-eps_c, eps_c] (the first type maximising the class's
perturbed error, Eq. 18, the second minimising it, Eq. 19), so neither the closed form's signs nor
:func:`lpl_theory.task.type_sign` enter. :func:`check_numeric_minimisation` compares the closed-form b*, existence
and global optimality with :func:`numeric_minimum`; :func:`check_derivatives` compares the closed-form
derivatives in rho with central finite differences of that minimiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import ndtr

from . import closed_form as cf
from .task import PERTURBATION_TYPES, GaussianTask, Perturbation, check_count
from .verify_results import CheckResult

__all__ = [
    "NumericMinimum",
    "adversary_shift",
    "check_derivatives",
    "check_numeric_minimisation",
    "numeric_minimum",
    "random_settings",
]

B_TOLERANCE = 1e-6
#: relative tolerance of the closed-form derivatives against finite differences of the numeric minimiser
DERIVATIVE_TOLERANCE = 1e-5
#: number of shifts (endpoints included) on which each class's adversary is searched before refinement
SHIFT_GRID = 21
#: shifts searched per class when bracketing the minima on the grid of b (ends included)
COARSE_GRID = 5
_SQRT_2PI = math.sqrt(2.0 * math.pi)

NUMERIC_CHECK = "numeric minimisation, searched adversary"
DERIVATIVE_CHECK = "derivatives db*/drho, dR/drho vs finite differences"


def _check_class(cls: int) -> None:
    if cls not in (1, -1):
        raise ValueError(f"cls must be +1 or -1, got {cls!r}")


def _class_law(task: GaussianTask, cls: int) -> tuple[float, float]:
    """Mean and standard deviation of sum_i x_i given y = cls (Eq. 17)."""
    if cls == 1:
        return task.d * task.eta, math.sqrt(task.d) * task.sigma_plus
    return -task.d * task.eta, math.sqrt(task.d) * task.sigma_minus


def _class_z(task: GaussianTask, cls: int, b: Any, delta: Any) -> np.ndarray:
    """z with Pr{class ``cls`` misclassified by sign(sum x_i + b + delta)} = Phi(z).

    Class +1 is wrong when sum x_i + b + delta < 0: Phi(-(m_+ + b + delta)/sd_+); class -1 is wrong when
    sum x_i + b + delta >= 0: 1 - Phi(-(m_- + b + delta)/sd_-) = Phi((m_- + b + delta)/sd_-).
    """
    mean, sd = _class_law(task, cls)
    loc = mean + np.asarray(b, dtype=float) + np.asarray(delta, dtype=float)
    return -loc / sd if cls == 1 else loc / sd


def _class_error(task: GaussianTask, cls: int, b: Any, delta: Any) -> np.ndarray:
    """Pr{class ``cls`` misclassified by sign(sum x_i + b + delta)}."""
    return ndtr(_class_z(task, cls, b, delta))


def _class_key(task: GaussianTask, cls: int, b: Any, delta: Any) -> np.ndarray:
    """Phi^-1 of the class's error e, i.e. z: ordered like e and never rounded to 0 or 1 in the tails, so the
    shift that maximises (minimises) it is the one that maximises (minimises) the class's error."""
    return _class_z(task, cls, b, delta)


def _class_error_slope(task: GaussianTask, cls: int, b: Any, delta: Any) -> np.ndarray:
    """d/db of :func:`_class_error` at a fixed shift."""
    _, sd = _class_law(task, cls)
    z = _class_z(task, cls, b, delta)
    return np.exp(-0.5 * z**2) / _SQRT_2PI * (-cls / sd)


def _bound_and_kind(pert: Perturbation, cls: int) -> tuple[float, bool]:
    """(eps_c, maximise?) of class ``cls``: the first type maximises the class's loss (Eq. 18), the second
    minimises it (Eq. 19). Read from the type's name, not from a sign convention."""
    _check_class(cls)
    kind = pert.type_plus if cls == 1 else pert.type_minus
    if kind not in PERTURBATION_TYPES:
        raise ValueError(f"unknown perturbation type {kind!r}")
    return (pert.eps_plus if cls == 1 else pert.eps_minus), kind == "first"


def _best(values: np.ndarray, maximise: bool) -> np.ndarray:
    return np.argmax(values, axis=-1) if maximise else np.argmin(values, axis=-1)


def adversary_shift(
    task: GaussianTask, pert: Perturbation, cls: int, b: float, grid: int = SHIFT_GRID
) -> tuple[float, float]:
    """The class-level shift delta_c in [-eps_c, eps_c] that class ``cls``'s perturbation type picks at bias b.

    The first type maximises the class's perturbed error, the second minimises it. Searched on ``grid`` shifts
    (both ends included) by Phi^-1 of the class's error; where the best grid shift is interior it is refined with a
    bounded scalar search between its neighbours. Nothing about the sign of the best shift is assumed.
    Returns (delta_c, perturbed error of the class at that shift).
    """
    if not isinstance(task, GaussianTask) or not isinstance(pert, Perturbation):
        raise TypeError("task must be a GaussianTask and pert a Perturbation")
    check_count("grid", grid, 2)
    bound, maximise = _bound_and_kind(pert, cls)
    if not math.isfinite(float(b)):
        raise ValueError(f"b must be finite, got {b!r}")
    if bound == 0.0:
        return 0.0, float(_class_error(task, cls, b, 0.0))
    shifts = np.linspace(-bound, bound, grid)
    keys = _class_key(task, cls, b, shifts)
    i = int(_best(keys, maximise))
    delta = float(shifts[i])
    if 0 < i < grid - 1:
        sign = -1.0 if maximise else 1.0
        res = optimize.minimize_scalar(
            lambda t: sign * float(_class_key(task, cls, b, t)),
            bounds=(shifts[i - 1], shifts[i + 1]),
            method="bounded",
            options={"xatol": 1e-12 * max(1.0, bound)},
        )
        refined = sign * float(res.fun)
        if (refined > keys[i]) if maximise else (refined < keys[i]):
            delta = float(res.x)
    return delta, float(_class_error(task, cls, b, delta))


def _searched_objective(task: GaussianTask, pert: Perturbation):
    """R_lp(b) and dR_lp/db with each class's shift searched at every b: a vectorised search on ``COARSE_GRID``
    shifts (ends included) for arrays of b (bracketing), :func:`adversary_shift` for a scalar b (refinement)."""
    g = task.gamma
    laws = [(cls, *_bound_and_kind(pert, cls)) for cls in (1, -1)]

    def slope_grid(bs: np.ndarray) -> np.ndarray:
        out = np.zeros_like(bs)
        for (cls, bound, maximise), w in zip(laws, (1.0, g), strict=True):
            s = np.linspace(-bound, bound, COARSE_GRID)
            keys = _class_key(task, cls, bs[:, None], s[None, :])
            out += w * _class_error_slope(task, cls, bs, s[_best(keys, maximise)])
        return out / (1 + g)

    def slope(b: float) -> float:
        dp = adversary_shift(task, pert, 1, b)[0]
        dm = adversary_shift(task, pert, -1, b)[0]
        return float(
            (_class_error_slope(task, 1, b, dp) + g * _class_error_slope(task, -1, b, dm)) / (1 + g)
        )

    def error(b: float) -> tuple[float, float, float]:
        dp, ep = adversary_shift(task, pert, 1, b)
        dm, em = adversary_shift(task, pert, -1, b)
        return (ep + g * em) / (1 + g), dp, dm

    return error, slope, slope_grid


@dataclass(frozen=True)
class NumericMinimum:
    """Result of :func:`numeric_minimum`.

    Attributes:
        local_minima: the local minimisers of R_lp over b in R.
        b_global: the global minimiser over R u {-inf, +inf}.
        error_global: R_lp at ``b_global``.
        shifts: the searched adversary (delta_+, delta_-) at each local minimum.
    """

    local_minima: tuple[float, ...]
    b_global: float
    error_global: float
    shifts: tuple[tuple[float, float], ...] = ()


def numeric_minimum(task: GaussianTask, pert: Perturbation, grid: int = 20001) -> NumericMinimum:
    """Minimise the perturbed error R_lp(b) over b in R u {-inf, +inf} numerically, adversary searched.

    Every sign change - to + of dR_lp/db on a grid of b is refined with Brent's method (xtol 1e-13); the slope
    at b is that of the class errors at the searched shifts (Danskin's theorem). The global minimiser is the
    best of these local minima and the two trivial classifiers b = -inf (every point predicted -1:
    R_lp = 1/(1+Gamma)) and b = +inf (R_lp = Gamma/(1+Gamma)), whatever the shifts.
    """
    if not isinstance(task, GaussianTask) or not isinstance(pert, Perturbation):
        raise TypeError("task must be a GaussianTask and pert a Perturbation")
    check_count("grid", grid, 100)
    pert.check_against(task)
    error, slope, slope_grid = _searched_objective(task, pert)
    reach = task.d * task.eta + 40.0 * math.sqrt(task.d) * task.sigma_minus + 2 * task.eta
    bs = np.linspace(-reach, reach, grid)
    sl = slope_grid(bs)
    minima: list[float] = []
    shifts: list[tuple[float, float]] = []
    candidates = []
    for i in np.flatnonzero((sl[:-1] < 0) & (sl[1:] >= 0)):
        lo, hi = float(bs[i]), float(bs[i + 1])
        if not (slope(lo) < 0 <= slope(hi)):  # the refined search moved the sign change: widen once
            lo, hi = float(bs[max(i - 1, 0)]), float(bs[min(i + 2, grid - 1)])
        root = float(optimize.brentq(slope, lo, hi, xtol=1e-13, rtol=1e-15, maxiter=200))
        value, dp, dm = error(root)
        minima.append(root)
        shifts.append((dp, dm))
        candidates.append((value, root))
    g = task.gamma
    candidates.append((1.0 / (1 + g), -math.inf))
    candidates.append((g / (1 + g), math.inf))
    best = min(candidates, key=lambda c: c[0])
    return NumericMinimum(tuple(minima), best[1], best[0], tuple(shifts))


def random_settings(n: int, seed: int) -> list[tuple[GaussianTask, Perturbation]]:
    """``n`` random (task, perturbation) pairs covering K = 1 and K > 1 and every combination of types."""
    check_count("n", n, 1)
    rng = np.random.default_rng(seed)
    out = []
    types = [("first", "first"), ("first", "second"), ("second", "first"), ("second", "second")]
    for i in range(n):
        eta = float(rng.uniform(0.3, 2.0))
        task = GaussianTask(
            gamma=float(np.exp(rng.uniform(-1.0, 2.5))),
            d=int(rng.integers(1, 6)),
            eta=eta,
            sigma=float(rng.uniform(0.4, 2.0)),
            K=1.0 if i % 2 == 0 else float(rng.uniform(1.05, 4.0)),
        )
        eps = float(rng.uniform(0.01, 0.9 * eta))
        tp, tm = types[(i // 2) % 4]
        pert = Perturbation(
            eps,
            float(rng.uniform(0.0, 0.999 * eta / eps)),
            float(rng.uniform(0.0, 0.999 * eta / eps)),
            tp,
            tm,
        )
        out.append((task, pert))
    return out


def _near_merge(sol: cf.Solution, task: GaussianTask, rel: float) -> bool:
    """True near the existence boundary S^2 = 0, where the two critical points merge."""
    return abs(float(sol.discriminant)) < rel * (2 * task.d * task.eta) ** 2


def check_numeric_minimisation(n: int = 200, seed: int = 0) -> CheckResult:
    """Closed-form b*, existence and global optimality against :func:`numeric_minimum` at random points.

    Points within 1e-6 (relative) of the existence boundary S^2 = 0, where the two critical points merge and no
    grid can separate them, are skipped and counted in the detail.
    """
    worst = 0.0
    mismatches: list[str] = []
    skipped = 0
    used = 0
    for task, pert in random_settings(n, seed):
        sol = cf.solve_task(task, pert)
        if _near_merge(sol, task, 1e-6):
            skipped += 1
            continue
        used += 1
        num = numeric_minimum(task, pert)
        exists = bool(sol.exists)
        if exists != (len(num.local_minima) == 1):
            mismatches.append(
                f"existence at {task}, {pert}: closed form {exists}, numeric minima {num.local_minima}"
            )
            continue
        if exists:
            err = abs(float(sol.b_star) - num.local_minima[0])
            worst = max(worst, err)
            if err > B_TOLERANCE:
                dp, dm = num.shifts[0]
                mismatches.append(
                    f"b* at {task}, {pert}: closed form {float(sol.b_star)!r}, numeric "
                    f"{num.local_minima[0]!r} (searched shifts delta_+ = {dp:.6g}, delta_- = {dm:.6g})"
                )
        numeric_global = math.isfinite(num.b_global)
        if bool(sol.is_global) != numeric_global:
            mismatches.append(
                f"global at {task}, {pert}: closed form {bool(sol.is_global)}, numeric b={num.b_global}"
            )
    passed = not mismatches and worst <= B_TOLERANCE
    detail = (
        f"|b* - argmin R_lp| over {used} random points (all type combinations, K=1 and K>1), {skipped} skipped "
        f"at S^2~0; each class's shift searched on [-eps_c, eps_c]"
    )
    if mismatches:
        detail += f"; {len(mismatches)} mismatches, e.g. " + "; ".join(mismatches[:3])
    return CheckResult(NUMERIC_CHECK, passed, used, worst, B_TOLERANCE, detail)


def _natural_errors_at(task: GaussianTask, b: float) -> tuple[float, float]:
    return float(_class_error(task, 1, b, 0.0)), float(_class_error(task, -1, b, 0.0))


def check_derivatives(n: int = 24, seed: int = 0, step: float = 1e-4) -> CheckResult:
    """db*/drho_+-, dR(f_opt,+1)/drho and dR(f_opt,-1)/drho of the closed form against central finite
    differences (step ``step`` * eta/eps in rho) of the numeric minimiser of :func:`numeric_minimum`.

    These derivatives decide the direction every corollary scan reports. The deviation is measured relative to
    max(|derivative|, eps * 1e-3); points with S^2 < 1e-2 (2 d eta)^2 (derivatives blow up) are skipped.
    """
    worst = 0.0
    bad: list[str] = []
    used = skipped = 0
    for task, pert in random_settings(n, seed + 101):
        sol = cf.solve_task(task, pert)
        if not bool(sol.exists) or _near_merge(sol, task, 1e-2) or pert.eps == 0:
            skipped += 1
            continue
        rho_max = task.eta / pert.eps
        h = step * rho_max
        ok = True
        for which in ("plus", "minus"):
            rho = getattr(pert, f"rho_{which}")
            rho = min(max(rho, 2 * h), rho_max - 2 * h)
            base = {"rho_plus": pert.rho_plus, "rho_minus": pert.rho_minus}
            values = []
            for r in (rho - h, rho + h):
                base[f"rho_{which}"] = r
                p = Perturbation(
                    pert.eps, base["rho_plus"], base["rho_minus"], pert.type_plus, pert.type_minus
                )
                num = numeric_minimum(task, p)
                if len(num.local_minima) != 1:
                    break
                b = num.local_minima[0]
                values.append((b, *_natural_errors_at(task, b)))
            if len(values) != 2:
                ok = False
                break
            fd = [(hi - lo) / (2 * h) for lo, hi in zip(values[0], values[1], strict=True)]
            args = (
                task.gamma,
                task.d,
                task.eta,
                task.sigma,
                task.K,
                pert.eps,
                base["rho_plus"] if which == "minus" else rho,
                base["rho_minus"] if which == "plus" else rho,
                pert.type_plus,
                pert.type_minus,
            )
            db = float(cf.db_star_drho(which, *args))
            der = cf.error_derivatives(which, *args)
            for name, analytic, numeric in (
                (f"db*/drho_{which}", db, fd[0]),
                (f"dR(+1)/drho_{which}", float(der["R_plus"]), fd[1]),
                (f"dR(-1)/drho_{which}", float(der["R_minus"]), fd[2]),
            ):
                rel = abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-3 * pert.eps)
                worst = max(worst, rel)
                if not rel <= DERIVATIVE_TOLERANCE:
                    bad.append(
                        f"{name} at {task}, {pert}: closed form {analytic:.6g}, finite difference {numeric:.6g}"
                    )
        if ok:
            used += 1
        else:
            skipped += 1
    detail = (
        f"{used} random points with a real b* (all type combinations), {skipped} skipped (no b*, near S^2 = 0); "
        "central differences of the numeric argmin and of the natural errors at it"
    )
    if bad:
        detail += f"; {len(bad)} disagreements, e.g. " + "; ".join(bad[:3])
    return CheckResult(
        DERIVATIVE_CHECK, not bad and used > 0, used, worst, DERIVATIVE_TOLERANCE, detail
    )
