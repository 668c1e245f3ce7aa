"""Monte Carlo checks (checks 3 and 4 of :mod:`lpl_theory.verify`): simulated d-dimensional Gaussian data.

:func:`monte_carlo_checks` compares the closed form's natural errors at b* with simulated fractions, and the
closed form's R_lp with the perturbed objective estimated on the same draws, the class-level adversary searched
on the sample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import closed_form as cf
from .task import FIGURES, GaussianTask, Perturbation, check_count
from .verify_numeric import _best, _bound_and_kind, random_settings
from .verify_results import CheckResult

__all__ = [
    "check_monte_carlo",
    "check_perturbed_monte_carlo",
    "monte_carlo_checks",
    "monte_carlo_errors",
    "simulate_error_fractions",
    "simulated_perturbed_error",
]

MC_SIGMAS = 4.0

MC_NATURAL_CHECK = "Monte Carlo: natural errors at b*"
MC_PERTURBED_CHECK = "Monte Carlo: perturbed objective, argmin, global flag"


def _draw_sums(task: GaussianTask, cls: int, n: int, rng: np.random.Generator, chunk: int):
    """Yield chunks of sum_i x_i for ``n`` points of class ``cls``, x drawn in R^d (Eq. 17)."""
    sign = 1.0 if cls == 1 else -1.0
    sd = task.sigma_plus if cls == 1 else task.sigma_minus
    left = n
    while left > 0:
        m = min(chunk, left)
        x = sign * task.eta + sd * rng.standard_normal((m, task.d))
        yield x.sum(axis=1)
        left -= m


def _count_below(sums: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold t (1-d array, +-inf allowed), how many of ``sums`` are < t: O(n log m), one pass."""
    order = np.argsort(thresholds, kind="stable")
    ts = thresholds[order]
    # idx = number of thresholds <= s; s < ts[j] iff idx <= j
    idx = np.searchsorted(ts, sums, side="right")
    below_sorted = np.cumsum(np.bincount(idx, minlength=ts.size + 1))[: ts.size]
    out = np.empty_like(below_sorted)
    out[order] = below_sorted
    return out


def simulate_error_fractions(
    task: GaussianTask,
    offsets_plus: Any,
    offsets_minus: Any,
    n: int = 1_000_000,
    seed: int = 0,
    chunk: int = 500_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of ``n`` simulated points per class misclassified by sign(sum_i x_i + o), for every offset o.

    x is drawn in R^d from Eq. (17) with a generator seeded by ``seed``; class +1 is wrong when
    sum x_i + o < 0, class -1 when sum x_i + o >= 0. Every offset of a class is evaluated on the same draws
    (common random numbers). Offsets (b + delta, +-inf allowed) may have any shape; returns arrays of the same
    shapes.
    """
    if not isinstance(task, GaussianTask):
        raise TypeError(f"task must be a GaussianTask, got {type(task).__name__}")
    check_count("n", n, 1)
    # chunk = 0 drew nothing and never advanced: a hang
    check_count("chunk", chunk, 1)
    rng = np.random.default_rng(seed)
    out = []
    for cls, offsets in ((1, offsets_plus), (-1, offsets_minus)):
        o = np.asarray(offsets, dtype=float)
        if np.any(np.isnan(o)):
            raise ValueError(f"offsets must not be NaN, got {offsets!r}")
        t = -o.ravel()
        below = np.zeros(t.size, dtype=np.int64)
        for s in _draw_sums(task, cls, n, rng, chunk):
            below += _count_below(s, t)
        wrong = below if cls == 1 else n - below
        out.append((wrong / n).reshape(o.shape))
    return out[0], out[1]


def monte_carlo_errors(
    task: GaussianTask, b: Any, n: int = 1_000_000, seed: int = 0, chunk: int = 500_000
) -> tuple[Any, Any]:
    """Natural per-class errors of sign(sum_i x_i + b) estimated from ``n`` simulated points per class.

    x ~ N(+theta, sigma^2 I) for y = +1 and N(-theta, (K sigma)^2 I) for y = -1 (Eq. 17), drawn in R^d with a
    generator seeded by ``seed``. ``b`` may be a number or a 1-d array of biases: every bias is evaluated on the
    same draws (common random numbers), so differences between biases are estimated far more precisely than
    each value. Returns (R_plus_hat, R_minus_hat), floats for a number, arrays for an array.
    """
    bb = np.asarray(b, dtype=float)
    if bb.ndim > 1 or not np.all(np.isfinite(bb)):
        raise ValueError(f"b must be a finite number or a 1-d array of finite numbers, got {b!r}")
    r_plus, r_minus = simulate_error_fractions(task, bb, bb, n, seed, chunk)
    if bb.ndim == 0:
        return float(r_plus), float(r_minus)
    return r_plus, r_minus


def simulated_perturbed_error(
    task: GaussianTask,
    pert: Perturbation,
    b: Any,
    n: int = 1_000_000,
    seed: int = 0,
    grid: int = 41,
) -> dict[str, np.ndarray]:
    """R_lp(b) estimated on simulated data, the class-level adversary simulated on the sample.

    For each bias (``b`` may be an array and contain +-inf), each class's shift delta_c is searched over
    ``grid`` values of [-eps_c, eps_c] (ends included) on the sample itself: the first type takes the shift with
    the largest empirical error of the class, the second type the smallest. All biases and shifts use the same
    draws. Returns a dict of arrays shaped like b: ``R_lp``, ``R_plus``, ``R_minus`` (perturbed class errors),
    ``delta_plus``, ``delta_minus`` (the simulated adversary) and ``natural_plus``, ``natural_minus`` (the
    unperturbed class errors at b, same draws).
    """
    if not isinstance(pert, Perturbation):
        raise TypeError(f"pert must be a Perturbation, got {type(pert).__name__}")
    check_count("grid", grid, 2)
    bb = np.atleast_1d(np.asarray(b, dtype=float))
    if bb.ndim != 1 or np.any(np.isnan(bb)):
        raise ValueError(f"b must be a number or a 1-d array without NaN, got {b!r}")
    shifts = {}
    kinds = {}
    for cls, key in ((1, "plus"), (-1, "minus")):
        bound, maximise = _bound_and_kind(pert, cls)
        shifts[key] = np.append(np.linspace(-bound, bound, grid), 0.0)  # the last column: no shift
        kinds[key] = maximise
    fp, fm = simulate_error_fractions(
        task, bb[:, None] + shifts["plus"][None, :], bb[:, None] + shifts["minus"][None, :], n, seed
    )
    out: dict[str, np.ndarray] = {}
    rows = np.arange(bb.size)
    for key, frac in (("plus", fp), ("minus", fm)):
        idx = _best(frac[:, :-1], kinds[key])
        out[f"R_{key}"] = frac[rows, idx]
        out[f"delta_{key}"] = shifts[key][idx]
        out[f"natural_{key}"] = frac[:, -1]
    g = task.gamma
    out["R_lp"] = (out["R_plus"] + g * out["R_minus"]) / (1 + g)
    return out


def _monte_carlo_settings(
    seed: int, rhos_per_figure: int, random_points: int
) -> list[tuple[GaussianTask, Perturbation]]:
    settings: list[tuple[GaussianTask, Perturbation]] = []
    for spec in FIGURES.values():
        for rho in np.linspace(0.0, 0.98 * spec.rho_max, rhos_per_figure):
            settings.append((spec.task, spec.perturbation(float(rho))))
    if random_points:
        settings += [
            s
            for s in random_settings(4 * random_points, seed + 1)
            if bool(cf.solve_task(*s).exists)
        ][:random_points]
    return settings


def monte_carlo_checks(
    n: int = 1_000_000,
    seed: int = 0,
    rhos_per_figure: int = 3,
    random_points: int = 4,
    step: float = 0.25,
) -> tuple[CheckResult, CheckResult]:
    """Both Monte Carlo checks on one set of draws: (natural errors at b*, perturbed objective).

    Settings: ``rhos_per_figure`` points of each of Figs. 3-6 and ``random_points`` random settings with a real
    b*; ``n`` points per class each. The perturbed check evaluates b*, b* +- h with h = ``step`` * sqrt(d) sigma
    and b = -inf, +inf. Standard errors: sqrt(p (1-p) / n) per class for a value (p the closed form's for the natural
    errors, the simulated fraction for the perturbed ones), and for a
    paired difference between two biases on the same draws sqrt((|D_c| - D_c^2) / n) per class, D_c the
    difference of the class's two error fractions (the two events are nested).
    """
    check_count("n", n, 1)
    check_count("rhos_per_figure", rhos_per_figure, 0)
    check_count("random_points", random_points, 0)
    if rhos_per_figure == random_points == 0:
        raise ValueError(
            "rhos_per_figure and random_points are both 0: there is no setting to check"
        )
    # h = 0 compares b* with itself: the argmin test would pass whatever b* is
    if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step < math.inf:
        raise ValueError(f"step must be a finite number > 0, got {step!r}")
    settings = _monte_carlo_settings(seed, rhos_per_figure, random_points)
    seeds = np.random.SeedSequence(seed).spawn(len(settings))
    nat_worst = pert_worst = 0.0
    nat_bad: list[str] = []
    pert_bad: list[str] = []
    used = 0
    global_decided = 0
    for (task, pert), ss in zip(settings, seeds, strict=True):
        sol = cf.solve_task(task, pert)
        if not bool(sol.exists):
            continue
        used += 1
        bs = float(sol.b_star)
        h = step * math.sqrt(task.d) * task.sigma
        biases = np.array([bs, bs - h, bs + h, -np.inf, np.inf])
        sim = simulated_perturbed_error(task, pert, biases, n, int(ss.generate_state(1)[0]))
        # natural errors at b* (no shift)
        for cls, r, rh in (
            (1, float(sol.R_plus), float(sim["natural_plus"][0])),
            (-1, float(sol.R_minus), float(sim["natural_minus"][0])),
        ):
            z = abs(rh - r) / math.sqrt(max(r * (1 - r), 1e-300) / n)
            nat_worst = max(nat_worst, z)
            if z > MC_SIGMAS:
                nat_bad.append(
                    f"{task}, {pert}: R({cls:+d}) closed form {r:.6f}, simulated {rh:.6f} ({z:.1f} s.e.)"
                )
        closed = cf.perturbed_error(
            biases,
            task.gamma,
            task.d,
            task.eta,
            task.sigma,
            task.K,
            pert.eps,
            pert.rho_plus,
            pert.rho_minus,
            pert.type_plus,
            pert.type_minus,
        )
        g = task.gamma
        for i, label in enumerate(("b*", "b*-h", "b*+h", "-inf", "+inf")):
            # the s.e. of each class's fraction (floored at 1/n: a fraction of 0 or 1 has no spread)
            var = 0.0
            for key, w in (("plus", 1.0), ("minus", g)):
                q = float(sim[f"R_{key}"][i])
                var += w**2 * max(q * (1 - q), 1.0 / n) / n
            se = math.sqrt(var) / (1 + g)
            z = abs(float(sim["R_lp"][i]) - float(closed[i])) / se
            pert_worst = max(pert_worst, z)
            if z > MC_SIGMAS:
                pert_bad.append(
                    f"R_lp({label}) at {task}, {pert}: closed form {float(closed[i]):.6f}, simulated "
                    f"{float(sim['R_lp'][i]):.6f} ({z:.1f} s.e.; simulated shifts {float(sim['delta_plus'][i]):.3g}, "
                    f"{float(sim['delta_minus'][i]):.3g})"
                )
        for j, label in ((1, "b*-h"), (2, "b*+h")):
            dp = float(sim["R_plus"][j] - sim["R_plus"][0])
            dm = float(sim["R_minus"][j] - sim["R_minus"][0])
            diff = (dp + g * dm) / (1 + g)
            se = math.sqrt(
                max(abs(dp) - dp**2, 1.0 / n) / n + g**2 * max(abs(dm) - dm**2, 1.0 / n) / n
            ) / (1 + g)
            z = -diff / se
            pert_worst = max(pert_worst, z)
            if z > MC_SIGMAS:
                pert_bad.append(
                    f"b* not the simulated minimiser at {task}, {pert}: R_lp({label}) - R_lp(b*) = {diff:.3g} "
                    f"({z:.1f} s.e. below 0)"
                )
        trivial = float(min(sim["R_lp"][3], sim["R_lp"][4]))
        at_b = float(sim["R_lp"][0])
        se_b = math.sqrt(
            (
                max(float(sim["R_plus"][0]) * (1 - float(sim["R_plus"][0])), 1.0 / n)
                + g**2 * max(float(sim["R_minus"][0]) * (1 - float(sim["R_minus"][0])), 1.0 / n)
            )
            / n
        ) / (1 + g)
        z = (trivial - at_b) / se_b  # > 0: b* beats the constant classifiers
        if abs(z) > MC_SIGMAS:
            global_decided += 1
            if (z > 0) != bool(sol.is_global):
                pert_bad.append(
                    f"global flag at {task}, {pert}: closed form {bool(sol.is_global)}, simulated R_lp(b*) = "
                    f"{at_b:.6f} vs trivial {trivial:.6f} ({abs(z):.1f} s.e.)"
                )
                pert_worst = max(pert_worst, abs(z))
    nat_detail = (
        f"{used} settings (Figs. 3-6 and random) x 2 classes, {n} d-dimensional samples per class"
    )
    if nat_bad:
        nat_detail += "; " + "; ".join(nat_bad[:3])
    pert_detail = (
        f"{used} settings, {n} samples per class, adversary simulated; R_lp at b*, b*+-h "
        f"(h = {step:g} sqrt(d) sigma, common random numbers) and b = +-inf within {MC_SIGMAS:g} s.e. of the "
        f"closed form, b* the simulated minimiser, global flag agrees at the {global_decided} settings the "
        "simulation decides"
    )
    if pert_bad:
        pert_detail += f"; {len(pert_bad)} failures, e.g. " + "; ".join(pert_bad[:3])
    return (
        CheckResult(MC_NATURAL_CHECK, not nat_bad, used, nat_worst, MC_SIGMAS, nat_detail),
        CheckResult(MC_PERTURBED_CHECK, not pert_bad, used, pert_worst, MC_SIGMAS, pert_detail),
    )


def check_monte_carlo(
    n: int = 1_000_000, seed: int = 0, rhos_per_figure: int = 3, random_points: int = 4
) -> CheckResult:
    """The natural errors of :func:`monte_carlo_checks` (closed form at b* vs simulation, within 4 s.e.)."""
    return monte_carlo_checks(n, seed, rhos_per_figure, random_points)[0]


def check_perturbed_monte_carlo(
    n: int = 1_000_000, seed: int = 0, rhos_per_figure: int = 3, random_points: int = 4
) -> CheckResult:
    """The perturbed objective of :func:`monte_carlo_checks` (simulated adversary, argmin, global flag)."""
    return monte_carlo_checks(n, seed, rhos_per_figure, random_points)[1]
