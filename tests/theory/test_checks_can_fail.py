"""The figures' labels and the findings of ``python -m lpl_theory verify`` must be able to fail:
an error planted in exactly what a check claims to check is caught, against references computed here
independently (hand formulas, scipy's normal distribution, a brute-force minimisation, a root finder)."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from lpl_theory import verify as V
from lpl_theory.task import GaussianTask

from .test_closed_form import _hand_b_star


def _brute_force_global(g, d, eta, sg, K, eps, rho_plus, rho_minus):
    """Per ρ₊: whether R_lp has a local minimum in b, and whether the lowest one beats both constant
    classifiers (1/(1 + Γ) here), on a fine grid of b."""
    b = np.linspace(-15.0, 15.0, 30001)[None, :]
    s = np.sqrt(d) * sg
    r = (
        norm.cdf((-d * eta - b + np.asarray(rho_plus)[:, None] * eps) / s)
        + g * norm.cdf((-d * eta + b + rho_minus * eps) / (K * s))
    ) / (1 + g)
    local = (r[:, 1:-1] < r[:, :-2]) & (r[:, 1:-1] < r[:, 2:])
    lowest = np.where(local, r[:, 1:-1], np.inf).min(axis=1)
    return local.any(axis=1), local.any(axis=1) & (lowest < 1 / (1 + g))


def test_a_curve_optimal_on_part_of_its_range_only_is_labelled_b_star_not_f_opt(monkeypatch):
    from lpl_theory import figures
    from lpl_theory.task import FigureSpec

    spec = FigureSpec(
        5, GaussianTask(5.0, 2, 1.0, 1.0, 2.0), 0.1, "rho_plus", 1.0, "first", "first", "K=2"
    )
    rho = np.linspace(0.0, 10.0, 40, endpoint=False)
    _, is_global = _brute_force_global(5.0, 2, 1.0, 1.0, 2.0, 0.1, rho, 1.0)
    assert is_global.any() and not is_global.all()
    monkeypatch.setattr(figures, "figure_spec", lambda number: spec)
    fig = figures.draw_figure(5, mc_samples=0, grid=40)
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert r"$\mathcal{R}(b^*,+1)$" in labels and r"$\mathcal{R}(b^*,-1)$" in labels
    assert not any("f_{opt}" in lab for lab in labels)


FORMULAS = {
    "eq21": ("Eq. (44) b* and Eq. (21)/(45) errors of Theorem 1", (2.0, 2, 1.0, 1.0, 0.2, 3.0),
             lambda: (_hand_b_star(2.0, 2, 1.0, 1.0, 1.0, 0.2, 3.0, 1.0, "first", "first"), 1.0)),
    "eq23": ("Eq. (23) errors of Theorem 2", (2.0, 2, 1.0, 1.0, 0.2, 3.0),
             lambda: (_hand_b_star(2.0, 2, 1.0, 1.0, 1.0, 0.2, 1.0, 3.0, "first", "second"), 1.0)),
    "eq25": ("Eq. (50) b* and Eq. (25)/(51) errors of Theorem 3", (1.1, 2, 1.0, 1.0, 2.5, 0.2, 1.0, 2.0),
             lambda: (_hand_b_star(1.1, 2, 1.0, 1.0, 2.5, 0.2, 1.0, 2.0, "first", "first"), 2.5)),
}  # fmt: skip


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("eq", ["eq21", "eq23", "eq25"])
def test_a_printed_formula_finding_reads_both_of_its_errors(monkeypatch, eq, which):
    """A transcription error in either argument (U₊ or U₋) of a printed formula makes its finding
    "wrong": the altered value is first shown to be more than 1e-3 from Φ(U) at the hand b*."""
    from lpl_theory import paper

    item, point, hand = FORMULAS[eq]
    orig = getattr(paper, f"{eq}_arguments")

    def altered(*a):
        u = list(orig(*a))
        u[which] = u[which] + 0.05
        return tuple(u)

    monkeypatch.setattr(paper, f"{eq}_arguments", altered)
    b, K = hand()
    d, eta = point[1], point[2]
    want = (norm.cdf(-(d * eta + b) / math.sqrt(d)), norm.cdf((b - d * eta) / (K * math.sqrt(d))))
    assert abs(float(getattr(paper, eq)(*point)[which]) - want[which]) > 1e-3
    findings = {x.item: x for x in V.paper_formula_findings(n=200, seed=1)}
    assert findings[item].verdict == "wrong"


def _numeric_b_star(g, d, eta, sg, K, e_plus, e_minus):
    """b* as the root of h(b) = log(Γ/K) + z₊²/2 − z₋²/2 (the stationarity condition), by brentq."""
    from scipy import optimize

    s = math.sqrt(d) * sg

    def h(b):
        return (
            math.log(g / K)
            + ((-d * eta - b + e_plus) / s) ** 2 / 2
            - ((-d * eta + b + e_minus) / (K * s)) ** 2 / 2
        )

    grid = np.linspace(-d * eta - 40 * K * s, d * eta + 40 * K * s, 4001)
    hs = np.array([h(x) for x in grid])
    (i,) = np.flatnonzero((hs[:-1] < 0) & (hs[1:] >= 0))
    return optimize.brentq(h, grid[i], grid[i + 1], xtol=1e-14)


def test_corollary3_second_case_corrected_condition_is_sufficient_and_reported_so():
    """The corrected condition of Corollary 3's second case, log(K/Γ) ≤ ((2d−1)η − ε)²/(2dσ²), makes
    R(−1) fall as ρ₋ grows: checked with a root finder at 12 random settings, never the closed form;
    the report's evidence must then say it holds at every setting of its scan that satisfies it."""
    rng = np.random.default_rng(11)
    checked = 0
    while checked < 12:
        eta, d, sg = rng.uniform(0.3, 2.0), int(rng.integers(1, 6)), rng.uniform(0.3, 2.0)
        K, eps = rng.uniform(1.05, 4.0), rng.uniform(0.01, 0.95) * eta
        g = K * math.exp(-rng.uniform(0.01, 4.0))
        if not math.log(K / g) <= ((2 * d - 1) * eta - eps) ** 2 / (2 * d * sg**2):
            continue
        rhos = np.linspace(0.0, 0.999, 15) * eta / eps
        r_minus = [
            norm.cdf(
                (_numeric_b_star(g, d, eta, sg, K, eps, r * eps) - d * eta)
                / (K * math.sqrt(d) * sg)
            )
            for r in rhos
        ]
        assert np.all(np.diff(r_minus) < 0), (g, d, eta, sg, K, eps)
        checked += 1
    item = (
        "Corollary 3, second case: R(+1) increases and R(-1) decreases as rho_- grows (rho_+ = 1)"
    )
    found = {f.item: f for f in V.corollary_scans(n=300, rhos=21, seed=2)}
    ev = " ".join(found[item].evidence.split())
    held, sat = (
        int(x) for x in ev.split("in the scan it holds at ")[1].split(" settings")[0].split(" of ")
    )
    assert sat > 0 and held == sat
