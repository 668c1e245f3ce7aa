"""Independent checks: numeric minimisation (<= 1e-6 in b*), Monte Carlo (within 4 s.e.), paper findings."""

import math

import numpy as np
import pytest

from lpl_theory import closed_form as cf
from lpl_theory import verify as V
from lpl_theory.task import FIGURES, GaussianTask, Perturbation


def test_numeric_minimum_matches_closed_form_at_random_points():
    used = 0
    for task, pert in V.random_settings(40, seed=7):
        sol = cf.solve_task(task, pert)
        num = V.numeric_minimum(task, pert)
        if bool(sol.exists):
            assert len(num.local_minima) == 1
            assert abs(num.local_minima[0] - float(sol.b_star)) <= 1e-6
            used += 1
        else:
            assert num.local_minima == ()
        assert math.isfinite(num.b_global) == bool(sol.is_global)
    assert used >= 20


def test_numeric_minimum_figure5_prefers_constant_classifier():
    spec = FIGURES[5]
    num = V.numeric_minimum(spec.task, spec.perturbation(2.0))
    sol = cf.solve_task(spec.task, spec.perturbation(2.0))
    assert num.b_global == -math.inf
    assert num.error_global == pytest.approx(1 / 4.5)
    assert num.local_minima[0] == pytest.approx(float(sol.b_star), abs=1e-6)


def test_check_numeric_minimisation_passes():
    res = V.check_numeric_minimisation(n=30, seed=3)
    assert res.passed and res.points >= 25 and res.worst <= 1e-6


@pytest.mark.parametrize(
    ("task", "pert"),
    [
        (GaussianTask(2.0, 2, 1.0, 1.0, 1.0), Perturbation(0.2, 3.0, 1.0)),
        (GaussianTask(1.1, 2, 1.0, 1.0, 2.5), Perturbation(0.2, 1.0, 4.0)),
        (GaussianTask(0.7, 3, 0.6, 1.4, 1.7), Perturbation(0.3, 1.5, 0.5, "second", "first")),
    ],
)
def test_monte_carlo_within_four_standard_errors(task, pert):
    n = 1_000_000
    sol = cf.solve_task(task, pert)
    r_plus, r_minus = V.monte_carlo_errors(task, float(sol.b_star), n=n, seed=11)
    for r, rh in ((float(sol.R_plus), r_plus), (float(sol.R_minus), r_minus)):
        assert abs(rh - r) <= 4 * math.sqrt(r * (1 - r) / n)


def test_monte_carlo_is_seeded_and_detects_a_wrong_bias():
    task = GaussianTask(2.0, 2, 1.0)
    a = V.monte_carlo_errors(task, 0.0, n=200_000, seed=5)
    b = V.monte_carlo_errors(task, 0.0, n=200_000, seed=5)
    assert a == b
    # b = 0, Gamma irrelevant: both errors Phi(-sqrt(2)) = 0.0786; a shifted bias moves them apart
    shifted = V.monte_carlo_errors(task, 0.5, n=200_000, seed=5)
    assert shifted[0] < a[0] - 0.01 and shifted[1] > a[1] + 0.01
    with pytest.raises(ValueError, match="n must be"):
        V.monte_carlo_errors(task, 0.0, n=0)


def test_paper_formula_findings_verdicts():
    findings = {f.item: f for f in V.paper_formula_findings(n=300, seed=1)}
    assert findings["Eq. (44) b* and Eq. (21)/(45) errors of Theorem 1"].verdict == "confirmed"
    assert findings["Eq. (23) errors of Theorem 2"].verdict == "confirmed"
    assert findings["Eq. (50) b* and Eq. (25)/(51) errors of Theorem 3"].verdict == "confirmed"
    assert findings["Eq. (52) b* at rho_+ = rho_- = 0"].verdict == "typo"
    assert (
        findings["Theorem 3 (Eqs. 25, 50): existence and optimality of b*"].verdict == "incomplete"
    )


def test_corollary_scans_verdicts():
    verdicts = {f.item: f.verdict for f in V.corollary_scans(n=300, rhos=21, seed=2)}
    assert verdicts["Corollary 1 (condition Eq. 48)"] == "confirmed"
    assert verdicts["Corollary 2 (Gamma > 1)"] == "confirmed"
    assert (
        verdicts["Corollary 3, first case: R(+1) > R(-1) in the stated Gamma interval"]
        == "confirmed"
    )
    assert (
        verdicts[
            "Corollary 3, first case: R(+1) decreases and R(-1) increases as rho_+ grows (rho_- = 1)"
        ]
        == "wrong"
    )
    assert (
        verdicts[
            "Corollary 3, second case: R(+1) increases and R(-1) decreases as rho_- grows (rho_+ = 1)"
        ]
        == "wrong"
    )


def test_corollary3_counterexamples_by_finite_differences():
    # first case: K=3, Gamma=4.7 lies in the stated interval (4.577, 4.946); R(+1) increases with rho_+
    lo = 3 * math.exp(3.9**2 / 36)
    hi = 3 * math.exp(4 / 8)
    assert lo < 4.7 < hi
    s = cf.solve(4.7, 2, 1.0, 1.0, 3.0, 0.1, np.array([0.0, 0.5]), 1.0)
    assert s.R_plus[1] > s.R_plus[0] and s.R_minus[1] < s.R_minus[0]
    # second case: K=6 > Gamma=1.1, d=1; R(-1) increases with rho_-, and b* is the global optimum
    s = cf.solve(1.1, 1, 1.0, 1.0, 6.0, 0.2, 1.0, np.array([0.0, 4.9]))
    assert s.is_global.all()
    assert s.R_minus[1] > s.R_minus[0] and s.R_plus[1] < s.R_plus[0]
    # Corollary 1 outside its condition (Gamma = 10 > 7.10): R(+1) increases near rho_+ eps -> eta
    s = cf.solve(10.0, 2, 1.0, 1.0, 1.0, 0.2, np.array([4.5, 4.9]), 1.0)
    assert s.R_plus[1] > s.R_plus[0]


def test_run_all_report_passes_and_formats():
    report = V.run_all(mc_samples=1_000_000, numeric_points=20, seed=0)
    assert report.passed
    text = V.format_report(report)
    assert "closed-form checks: PASS" in text and "[WRONG] Corollary 3" in text
    with pytest.raises(ValueError, match="mc_samples"):
        V.run_all(mc_samples=10)


def test_formula_verdicts_follow_the_deviation(monkeypatch):
    # a verdict is computed, not typed in: a printed formula that disagrees with the derivation is "wrong"
    good = V.paper.eq44_b_star
    monkeypatch.setattr(V.paper, "eq44_b_star", lambda *a: good(*a) + 1e-3)
    bad54 = V.paper.eq54_db_drho_plus
    monkeypatch.setattr(V.paper, "eq54_db_drho_plus", lambda *a: bad54(*a) * 1.01)
    findings = {f.item: f.verdict for f in V.paper_formula_findings(n=200, seed=1)}
    assert findings["Eq. (44) b* and Eq. (21)/(45) errors of Theorem 1"] == "wrong"
    assert findings["Eq. (54) db*/dt"] == "wrong"
    assert findings["Eq. (23) errors of Theorem 2"] == "confirmed"


def test_numeric_check_fails_on_a_wrong_closed_form(monkeypatch):
    import dataclasses

    solve_task = cf.solve_task

    def shifted(task, pert):
        sol = solve_task(task, pert)
        return dataclasses.replace(sol, b_star=sol.b_star + 1e-4)

    monkeypatch.setattr(V.cf, "solve_task", shifted)
    res = V.check_numeric_minimisation(n=10, seed=0)
    assert not res.passed and res.worst > 1e-5


@pytest.mark.parametrize(("passed", "code"), [(True, 0), (False, 1)])
def test_verify_exit_code_follows_the_checks(monkeypatch, capsys, passed, code):
    from lpl_theory.__main__ import main

    report = V.Report(
        checks=[V.CheckResult("numeric", passed, 1, 0.0, 1e-6, "")],
        findings=[V.Finding("a claim", "wrong", "counterexample")],  # findings never fail the run
    )
    monkeypatch.setattr(V, "run_all", lambda **kw: report)
    assert main(["verify"]) == code
    out = capsys.readouterr().out
    assert ("closed-form checks: PASS" in out) == passed and "[WRONG] a claim" in out


def test_corollary3_counterexamples_match_brute_force_values():
    # Reference values from an independent brute-force minimisation of R_lp(b) (scipy.stats.norm on a grid of
    # b in [-25, 25], refined with scipy.optimize.minimize_scalar), then the natural errors at that b.
    s = cf.solve(4.7, 2, 1.0, 1.0, 3.0, 0.1, np.array([0.0, 1.0]), 1.0)
    assert np.allclose(s.b_star, [-2.143072572, -2.273269790], atol=1e-6)
    assert np.allclose(s.R_plus, [0.5402912864, 0.5766109385], atol=1e-7)
    assert np.allclose(s.R_minus, [0.1644005555, 0.1569146884], atol=1e-7)
    assert not bool(cf.solve(4.7, 2, 1.0, 1.0, 3.0, 0.1, 2.0, 1.0).exists)  # no local minimum found
    s = cf.solve(1.1, 1, 1.0, 1.0, 6.0, 0.2, 1.0, np.array([0.0, 4.9]))
    assert np.allclose(s.R_plus, [0.0205759877, 0.0201839832], atol=1e-7)
    assert np.allclose(s.R_minus, [0.5027922755, 0.5033220717], atol=1e-7)
    # Fig. 5: the local minimum is worse than predicting -1 everywhere (1/(1+Gamma) = 0.2222)
    s = cf.solve(3.5, 2, 1.0, 1.0, 3.0, 0.1, np.array([0.0, 2.0, 5.0, 9.9]), 1.0)
    assert np.allclose(
        s.perturbed_at_b_star, [0.2442269106, 0.2553905351, 0.2726033355, 0.3018198804], atol=1e-7
    )
    assert not s.is_global.any()
