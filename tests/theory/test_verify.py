"""Independent checks: numeric minimisation (<= 1e-6 in b*), Monte Carlo (within 4 s.e.), paper findings."""

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import norm

from lpl_theory import closed_form as cf
from lpl_theory import verify as V
from lpl_theory.figures import default_rho
from lpl_theory.task import FIGURES, GaussianTask, Perturbation, figure_spec


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


def test_numeric_minimum_finds_a_minimum_many_standard_deviations_out():
    # K = 1, no perturbation, Gamma = e^2.5: b* = d sigma^2 log(Gamma) / (-2 d eta) = -4 * 2.5 / 0.6 = -16.67 (Eq. 44
    # at eps = 0), about 8 standard deviations (sqrt(d) sigma = 2) below the class means: the search must reach it
    g, eta, sg = math.exp(2.5), 0.3, 2.0
    num = V.numeric_minimum(GaussianTask(g, 1, eta, sg), Perturbation(0.0, 0.0, 0.0))
    assert len(num.local_minima) == 1
    assert num.local_minima[0] == pytest.approx(-(sg**2) * 2.5 / (2 * eta), abs=1e-6)
    assert num.b_global == num.local_minima[0]


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
    with pytest.raises(ValueError, match="offsets must not be NaN"):
        V.simulate_error_fractions(task, [0.0, np.nan], [0.0], n=1000)


def test_numeric_minimum_refuses_a_coarse_grid():
    # fewer than 100 grid points over +-40 standard deviations could step over a minimum
    with pytest.raises(ValueError, match="grid must be an integer >= 100"):
        V.numeric_minimum(GaussianTask(2.0, 2, 1.0), Perturbation(0.2), grid=99)


def test_paper_formula_findings_verdicts():
    findings = {f.item: f for f in V.paper_formula_findings(n=300, seed=1)}
    assert findings["Eq. (44) b* and Eq. (21)/(45) errors of Theorem 1"].verdict == "confirmed"
    assert findings["Eq. (23) errors of Theorem 2"].verdict == "confirmed"
    # Eq. (46) is d/drho_+ of Eq. (44): eps/2 - d eps sigma^2 log(Gamma)/C^2 (not the rho_- derivative, which
    # starts with -eps/2); Eq. (54) equals db*/drho_+ once its t is read as rho_+
    assert findings["Eq. (46) db*/drho_+ (Corollary 1)"].verdict == "confirmed"
    assert findings["Eq. (54) db*/dt"].verdict == "typo"
    assert findings["Eq. (50) b* and Eq. (25)/(51) errors of Theorem 3"].verdict == "confirmed"
    assert findings["Eq. (52) b* at rho_+ = rho_- = 0"].verdict == "typo"
    assert (
        findings["Theorem 3 (Eqs. 25, 50): existence and optimality of b*"].verdict == "incomplete"
    )
    assert (
        findings["Fig. 5 / Theorem 3: for which Gamma b* is the global optimum"].verdict
        == "incomplete"
    )
    w = findings["Appendix A: w = 1 (Lemma 1 of Xu et al.) under the perturbation"]
    assert w.verdict == "incomplete" and "at c = 100" in w.evidence


def test_corollary_scans_verdicts():
    findings = {f.item: f for f in V.corollary_scans(n=300, rhos=21, seed=2)}
    verdicts = {item: f.verdict for item, f in findings.items()}
    assert verdicts["Corollary 1 (condition Eq. 48)"] == "confirmed"
    # outside Eq. (48) the direction fails near rho_+ eps -> eta: R(+1) must fall at every grid point
    # (db*/drho_+ > 0 on the whole line), so every setting outside fails, not only those where it never falls
    evidence = findings["Corollary 1 (condition Eq. 48)"].evidence
    outside = int(evidence.split(" of the ")[1].split(" settings outside")[0])
    assert f"{outside} of the {outside} settings outside Eq. (48) fail" in evidence and outside > 50
    assert "Eq. (48) is exactly the condition for the whole range" in evidence
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
    assert (
        verdicts[
            "Sentence after Eq. (54): db*/drho_+ <= 0 means R(+1) decreases and R(-1) increases"
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


def test_run_all_validates_its_arguments():
    with pytest.raises(ValueError, match="mc_samples"):
        V.run_all(mc_samples=10)
    with pytest.raises(ValueError, match="numeric_points"):
        V.run_all(numeric_points=0)


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


def test_eq50_verdict_reads_every_variance_ratio(monkeypatch):
    # Eq. (50) wrong only for K > 3 (the random points draw K in [1.05, 5)): still a wrong printed formula
    good = V.paper.eq50_b_star
    monkeypatch.setattr(
        V.paper, "eq50_b_star", lambda *a: good(*a) + np.where(np.asarray(a[4]) > 3.0, 1e-3, 0.0)
    )
    findings = {f.item: f.verdict for f in V.paper_formula_findings(n=200, seed=1)}
    assert findings["Eq. (50) b* and Eq. (25)/(51) errors of Theorem 3"] == "wrong"


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


def _brute_force(task, pert):
    """The repository's independent minimisation (adversary searched) and the natural errors at its argmin."""
    num = V.numeric_minimum(task, pert)
    out = []
    for b in num.local_minima:
        s = math.sqrt(task.d)
        out.append(
            (
                b,
                float(norm.cdf(-(task.d * task.eta + b) / (s * task.sigma))),
                float(norm.sf((task.d * task.eta - b) / (s * task.sigma * task.K))),
            )
        )
    return num, out


@pytest.mark.parametrize(
    ("task", "eps", "rhos", "vary"),
    [
        (
            GaussianTask(4.7, 2, 1.0, 1.0, 3.0),
            0.1,
            (0.0, 1.0),
            "plus",
        ),  # Cor. 3 first case, b* local
        (
            GaussianTask(6.0, 1, 1.0, 1.0, 1.1),
            0.1,
            (0.0, 1.0),
            "plus",
        ),  # Cor. 3 first case, b* global
        (GaussianTask(1.1, 1, 1.0, 1.0, 6.0), 0.2, (0.0, 4.9), "minus"),  # Cor. 3 second case
    ],
)
def test_corollary3_counterexamples_match_brute_force(task, eps, rhos, vary):
    # the counterexamples' numbers come from the closed form; here they are recomputed by brute force
    found = []
    for rho in rhos:
        pert = Perturbation(eps, rho, 1.0) if vary == "plus" else Perturbation(eps, 1.0, rho)
        sol = cf.solve_task(task, pert)
        num, vals = _brute_force(task, pert)
        assert len(vals) == 1
        b, r_plus, r_minus = vals[0]
        assert abs(b - float(sol.b_star)) <= 1e-6
        assert abs(r_plus - float(sol.R_plus)) <= 1e-7 and abs(r_minus - float(sol.R_minus)) <= 1e-7
        assert math.isfinite(num.b_global) == bool(sol.is_global)
        found.append((r_plus, r_minus))
    (p0, m0), (p1, m1) = found
    if vary == "plus":  # the claim: R(+1) falls, R(-1) rises; brute force: the opposite
        assert p1 > p0 and m1 < m0
    else:  # the claim: R(+1) rises, R(-1) falls; brute force: the opposite
        assert p1 < p0 and m1 > m0


def test_corollary3_no_root_and_figure5_not_global_by_brute_force():
    task = GaussianTask(4.7, 2, 1.0, 1.0, 3.0)
    assert not bool(cf.solve_task(task, Perturbation(0.1, 2.0, 1.0)).exists)
    assert V.numeric_minimum(task, Perturbation(0.1, 2.0, 1.0)).local_minima == ()
    spec = FIGURES[5]
    for rho in (0.0, 2.0, 5.0, 9.9):
        pert = spec.perturbation(rho)
        num = V.numeric_minimum(spec.task, pert)
        sol = cf.solve_task(spec.task, pert)
        assert num.b_global == -math.inf and not bool(sol.is_global)
        # R_lp at the local minimum, by brute force, against the closed form's
        value = V._searched_objective(spec.task, pert)[0](num.local_minima[0])[0]
        assert value == pytest.approx(float(sol.perturbed_at_b_star), abs=1e-9)
        assert value > 1 / (1 + spec.task.gamma)


def test_adversary_is_found_by_search():
    # Eq. 18: the first type maximises the class's error, i.e. pushes the logit toward the wrong side (delta_+ =
    # -eps_+, delta_- = +eps_-); Eq. 19: the second type the other way. The search knows only max/min.
    task = GaussianTask(2.0, 2, 1.0, 1.3, 2.0)
    for b in (-3.0, 0.0, 2.5):
        first = Perturbation(0.2, 2.0, 3.0, "first", "first")
        second = Perturbation(0.2, 2.0, 3.0, "second", "second")
        assert V.adversary_shift(task, first, 1, b)[0] == pytest.approx(-0.4)
        assert V.adversary_shift(task, first, -1, b)[0] == pytest.approx(0.6)
        assert V.adversary_shift(task, second, 1, b)[0] == pytest.approx(0.4)
        assert V.adversary_shift(task, second, -1, b)[0] == pytest.approx(-0.6)
        worst = V.adversary_shift(task, first, 1, b)[1]
        best = V.adversary_shift(task, second, 1, b)[1]
        assert best < float(V._class_error(task, 1, b, 0.0)) < worst
    with pytest.raises(ValueError, match="cls"):
        V.adversary_shift(task, first, 0, 0.0)


def test_numeric_check_fails_when_the_types_are_read_flipped(monkeypatch):
    from lpl_theory import symbolic, task

    original = task.type_sign
    for module in (task, cf, symbolic):
        monkeypatch.setattr(module, "type_sign", lambda kind, name="type": -original(kind, name))
    res = V.check_numeric_minimisation(n=12, seed=0)
    assert not res.passed and res.worst > 1e-3


def test_simulated_perturbed_error():
    task = GaussianTask(2.0, 2, 1.0, 1.0, 1.5)
    pert = Perturbation(0.2, 3.0, 1.0, "first", "second")
    sim = V.simulated_perturbed_error(task, pert, [-np.inf, 0.0, np.inf], n=100_000, seed=3)
    # trivial classifiers: exact whatever the draws
    assert sim["R_lp"][0] == pytest.approx(1 / 3) and sim["R_lp"][2] == pytest.approx(2 / 3)
    # the simulated adversary at b = 0: first type on +1 -> -eps_+, second type on -1 -> -eps_-
    assert sim["delta_plus"][1] == pytest.approx(-0.6) and sim["delta_minus"][1] == pytest.approx(
        -0.2
    )
    closed = cf.perturbed_error(0.0, 2.0, 2, 1.0, 1.0, 1.5, 0.2, 3.0, 1.0, "first", "second")
    assert abs(sim["R_lp"][1] - float(closed)) <= 4 * math.sqrt(0.25 / 100_000)


def test_monte_carlo_common_random_numbers():
    task = GaussianTask(2.0, 2, 1.0)
    rp, rm = V.monte_carlo_errors(task, np.array([0.0, 0.01]), n=200_000, seed=1)
    one = V.monte_carlo_errors(task, 0.0, n=200_000, seed=1)
    assert (rp[0], rm[0]) == one
    # same draws: a small move of b changes the estimates by the few points it crosses, in the right direction
    assert 0 <= rp[0] - rp[1] < 0.002 and 0 <= rm[1] - rm[0] < 0.002


def test_derivative_check_passes_and_catches_a_reversed_direction(monkeypatch):
    assert V.check_derivatives(n=6, seed=1).passed
    original = cf.db_star_drho
    monkeypatch.setattr(cf, "db_star_drho", lambda *a, **k: -original(*a, **k))
    res = V.check_derivatives(n=6, seed=1)
    assert not res.passed and res.worst > 1


def test_derivative_check_is_not_passed_by_skipping_every_point(monkeypatch):
    from lpl_theory import verify_numeric as VN

    monkeypatch.setattr(VN, "_near_merge", lambda *a: True)  # every point looks like S^2 ~ 0
    res = V.check_derivatives(n=4, seed=1)
    assert res.points == 0 and not res.passed


def test_derivative_check_is_relative_for_small_derivatives(monkeypatch):
    """eps = 0.005: db*/drho and dR/drho are of order eps/2 ~ 2.5e-3, above the floor 1e-3 eps of the relative
    deviation; a closed form 0.1% off must fail there as it does for derivatives of order 1."""
    from lpl_theory import verify_numeric as VN

    setting = (GaussianTask(2.0, 2, 1.0, 1.0, 1.5), Perturbation(0.005, 40.0, 60.0))
    monkeypatch.setattr(VN, "random_settings", lambda n, seed: [setting])
    assert V.check_derivatives(n=1, seed=0).passed
    original = cf.db_star_drho
    monkeypatch.setattr(cf, "db_star_drho", lambda *a, **k: 1.001 * original(*a, **k))
    res = V.check_derivatives(n=1, seed=0)
    assert res.points == 1 and not res.passed and 5e-4 < res.worst < 2e-3


def test_numeric_check_names_a_b_star_a_few_tolerances_off(monkeypatch):
    core = cf._core

    def shifted(v):
        out = dict(core(v))
        out["b_star"] = out["b_star"] + 3 * V.B_TOLERANCE
        return out

    monkeypatch.setattr(cf, "_core", shifted)
    res = V.check_numeric_minimisation(n=2, seed=0)
    assert not res.passed and "mismatches, e.g. b* at" in res.detail


def test_numeric_check_catches_a_global_flag_where_no_b_star_exists(monkeypatch):
    # closed form claiming "b* global" exactly where it has no b*: only the global-flag comparison can see it
    from lpl_theory import verify_numeric as VN

    settings = V.random_settings(12, 0)
    missing = [s for s in settings if not bool(cf.solve_task(*s).exists)]
    assert missing
    monkeypatch.setattr(VN, "random_settings", lambda n, seed: missing[:1])
    solve_task = cf.solve_task

    def claimed(t, p):
        sol = solve_task(t, p)
        return dataclasses.replace(sol, is_global=sol.is_global | ~sol.exists)

    monkeypatch.setattr(cf, "solve_task", claimed)
    res = V.check_numeric_minimisation(n=1, seed=0)
    assert not res.passed and "global at" in res.detail


def test_numeric_check_skips_only_points_at_the_existence_boundary():
    """Points are skipped only within 1e-6 (relative) of S^2 = 0; S^2 by hand from the signed shifts."""
    near = 0
    for t, p in V.random_settings(30, 3):
        e_p = (1 if p.type_plus == "first" else -1) * p.eps_plus
        e_m = (1 if p.type_minus == "first" else -1) * p.eps_minus
        C = e_p + e_m - 2 * t.d * t.eta
        disc = C**2 + 2 * t.d * (t.K**2 - 1) * t.sigma**2 * math.log(t.K / t.gamma)
        near += abs(disc) < 1e-6 * (2 * t.d * t.eta) ** 2
    res = V.check_numeric_minimisation(n=30, seed=3)
    assert res.points == 30 - near
    assert f"{near} skipped at S^2~0" in res.detail


def test_figure5_thresholds_by_bisection_of_the_brute_force():
    # each threshold is a root of R_lp(b*) = 1/(1+Gamma); check it with the repository's brute-force minimum
    th = V.figure5_thresholds(points=11)
    spec = FIGURES[5]
    for gamma, rho, eps in (
        (th["at_rho0"], 0.0, 0.1),
        (th["whole_curve"], 9.99, 0.1),
        (th["no_perturbation"], 0.0, 0.0),
    ):
        for g, is_global in ((gamma * (1 - 1e-3), True), (gamma * (1 + 1e-3), False)):
            task = GaussianTask(g, spec.task.d, spec.task.eta, spec.task.sigma, spec.task.K)
            num = V.numeric_minimum(task, Perturbation(eps, rho, 1.0))
            assert math.isfinite(num.b_global) == is_global, (gamma, rho, eps, g)
    assert th["whole_curve"] < th["K"] < th["at_rho0"] < th["no_perturbation"] < th["trend_bound"]
    # the corrected trend bound and the stated interval, from their formulas
    assert th["trend_bound"] == pytest.approx(3 * math.exp(2.9**2 / 36))
    assert th["stated_lower"] == pytest.approx(3 * math.exp(3.9**2 / 36))
    # upper end K exp(2 d eta^2 / ((K^2 - 1) sigma^2)) = 3 exp(4 / 8)
    assert th["stated_upper"] == pytest.approx(3 * math.exp(0.5))


def test_figure5_finding_states_what_the_brute_force_shows():
    """At Fig. 5's parameters with Gamma = K = 3 (class +1 is the harder one only above it), the brute force finds
    b* global at rho_+ = 0 but not near rho_+ eps -> eta: no Gamma > K keeps b* global along the whole curve,
    the smallest threshold is at the end of the range, and at rho_+ = 0 alone a small interval above K remains."""
    spec = FIGURES[5]
    task = GaussianTask(3.0, spec.task.d, spec.task.eta, spec.task.sigma, spec.task.K)
    assert math.isfinite(V.numeric_minimum(task, Perturbation(0.1, 0.0, 1.0)).b_global)
    assert V.numeric_minimum(task, Perturbation(0.1, 9.99, 1.0)).b_global == -math.inf
    evidence = _formula("Fig. 5 / Theorem 3: for which Gamma b* is the global optimum").evidence
    flat = " ".join(evidence.split())
    assert (
        "no Gamma gives both a harder class +1 and a globally optimal b* along the whole curve"
        in flat
    )
    assert "some Gamma gives both" not in flat
    assert "(approached as rho_+ eps -> eta)" in flat
    assert "at rho_+ = 0 alone both hold for 3 < Gamma < 3.07" in flat


def test_weight_scale_is_a_normalisation():
    spec = FIGURES[3]
    pert = spec.perturbation(3.0)
    values = [V.weight_scale_minimum(spec.task, pert, c) for c in (1.0, 100.0)]
    # c = 1 is the closed form's minimum; a larger scale of w lowers the minimum perturbed error
    assert values[0] == pytest.approx(
        float(cf.solve_task(spec.task, pert).perturbed_at_b_star), abs=1e-9
    )
    assert values[1] < values[0] - 0.04
    # the same minimum from the closed-form R_lp with eps / 100, minimised by a bounded scalar search
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda b: float(cf.perturbed_error(b, 2.0, 2, 1.0, 1.0, 1.0, 0.2 / 100, 3.0, 1.0)),
        bounds=(-5.0, 5.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert values[1] == pytest.approx(res.fun, abs=1e-9)
    with pytest.raises(ValueError, match="c must be"):
        V.weight_scale_minimum(spec.task, pert, 0.0)


def test_derivative_check_fails_on_derivatives_off_by_a_tenth_of_a_percent(monkeypatch):
    # on the real closed form the finite differences agree to ~1e-8 (relative); a closed form 0.1% off (a wrong
    # constant factor) is 100 times the tolerance 1e-5 and must fail, in db*/drho and in dR(-1)/drho alone
    assert V.DERIVATIVE_TOLERANCE <= 1e-4
    original = cf.db_star_drho
    monkeypatch.setattr(cf, "db_star_drho", lambda *a, **k: 1.001 * original(*a, **k))
    res = V.check_derivatives(n=6, seed=1)
    assert not res.passed and 5e-4 < res.worst < 2e-3
    monkeypatch.undo()
    errors = cf.error_derivatives
    for key, name in (("R_minus", "dR(-1)/drho"), ("R_plus", "dR(+1)/drho")):

        def off(*a, key=key, **k):
            out = dict(errors(*a, **k))
            out[key] = 1.001 * out[key]
            return out

        monkeypatch.setattr(cf, "error_derivatives", off)
        res = V.check_derivatives(n=6, seed=1)
        assert not res.passed and name in res.detail and "db*/drho" not in res.detail, key


@pytest.mark.parametrize("side", ["R_minus", "R_plus"])
@pytest.mark.parametrize(("shift_se", "passed"), [(0.0, True), (8.0, False)])
def test_natural_monte_carlo_check_rejects_eight_standard_errors(
    monkeypatch, shift_se, passed, side
):
    """The natural-error check accepts within 4 s.e.: R(-1) or R(+1) moved by 8 s.e. (s.e. from scipy at the
    textbook b*) must fail it, the true value must pass. One setting (Fig. 6 at rho_- = 2), 200,000 points
    per class."""
    from lpl_theory import verify_monte_carlo as VM

    from .test_closed_form import _hand_b_star

    task, pert, n = GaussianTask(1.1, 2, 1.0, 1.0, 2.5), Perturbation(0.2, 1.0, 2.0), 200_000
    b = _hand_b_star(1.1, 2, 1.0, 1.0, 2.5, 0.2, 1.0, 2.0, "first", "first")
    r = {"R_minus": float(norm.cdf((b - 2.0) / (2.5 * math.sqrt(2)))),
         "R_plus": float(norm.cdf(-(2.0 + b) / math.sqrt(2)))}[side]  # fmt: skip
    se = math.sqrt(r * (1 - r) / n)
    solve_task = cf.solve_task

    def planted(t, p):
        sol = solve_task(t, p)
        return dataclasses.replace(sol, **{side: getattr(sol, side) + shift_se * se})

    monkeypatch.setattr(VM, "_monte_carlo_settings", lambda *a: [(task, pert)])
    monkeypatch.setattr(cf, "solve_task", planted)
    natural, _ = VM.monte_carlo_checks(n=n, seed=0)
    assert natural.points == 1 and natural.passed == passed
    if not passed:
        assert 5.0 < natural.worst < 11.0


@pytest.mark.parametrize(("offset", "passed"), [(0.0, True), (0.01, False)])
def test_perturbed_monte_carlo_check_rejects_a_wrong_objective_value(monkeypatch, offset, passed):
    """R_lp(b) of the closed form moved up by 0.01 at every b (argmin and global flag unchanged): about 20 s.e.
    at 200,000 points per class, so the comparison of the values alone must fail it. One setting (Fig. 3)."""
    from lpl_theory import verify_monte_carlo as VM

    task, pert = GaussianTask(2.0, 2, 1.0, 1.0, 1.0), Perturbation(0.2, 3.0, 1.0)
    perturbed_error = cf.perturbed_error
    monkeypatch.setattr(VM, "_monte_carlo_settings", lambda *a: [(task, pert)])
    monkeypatch.setattr(cf, "perturbed_error", lambda *a, **k: perturbed_error(*a, **k) + offset)
    _, perturbed = VM.monte_carlo_checks(n=200_000, seed=0)
    assert perturbed.points == 1 and perturbed.passed == passed
    if not passed:
        assert "R_lp(b*) at" in perturbed.detail


@pytest.mark.parametrize("step", [0.0, -0.25, math.inf, math.nan, True])
def test_monte_carlo_checks_refuse_a_step_that_cannot_probe_the_argmin(step):
    """h = step * sqrt(d) sigma is the distance of the probes b* +- h: with step = 0 both probes are b* itself,
    and a b* moved by 0.3 passed the argmin test (paired differences 0); the step must be finite and > 0."""
    from lpl_theory import verify_monte_carlo as VM

    with pytest.raises(ValueError, match="step must be a finite number > 0"):
        VM.monte_carlo_checks(n=10_000, seed=0, step=step)


def test_monte_carlo_checks_name_a_bad_count_of_settings():
    """random_points = 0 (figures only) runs; a negative or fractional count is refused naming itself (it
    had been refused as "n must be an integer >= 1", the sample size's name), and no setting at all too."""
    from lpl_theory import verify_monte_carlo as VM

    nat, _pert = VM.monte_carlo_checks(n=2_000, rhos_per_figure=1, random_points=0)
    assert nat.points == 4  # one setting per figure, 3-6
    for kw, name in (
        ({"random_points": -1}, "random_points"),
        ({"rhos_per_figure": 1.5}, "rhos_per_figure"),
    ):
        with pytest.raises(ValueError, match=f"^{name} must be an integer >= 0"):
            VM.monte_carlo_checks(n=2_000, **kw)
    with pytest.raises(ValueError, match="both 0: there is no setting to check"):
        VM.monte_carlo_checks(n=2_000, rhos_per_figure=0, random_points=0)


def test_check_monte_carlo_and_check_perturbed_monte_carlo_return_their_own_check(monkeypatch):
    from lpl_theory import verify_monte_carlo as VM

    setting = (GaussianTask(2.0, 2, 1.0, 1.0, 1.0), Perturbation(0.2, 3.0, 1.0))
    monkeypatch.setattr(VM, "_monte_carlo_settings", lambda *a: [setting])
    assert V.check_monte_carlo(n=10_000).name == V.MC_NATURAL_CHECK
    assert V.check_perturbed_monte_carlo(n=10_000).name == V.MC_PERTURBED_CHECK


def test_monte_carlo_settings_span_each_figures_range_of_rho():
    """Figs. 3-6 at rho = 0, 0.49 and 0.98 of eta/eps (5, 5, 10, 5: typed in from the paper), then the random
    settings."""
    from lpl_theory import verify_monte_carlo as VM

    settings = VM._monte_carlo_settings(0, 3, 2)
    assert len(settings) == 4 * 3 + 2
    for k, (number, rho_max, vary) in enumerate(
        ((3, 5.0, "rho_plus"), (4, 5.0, "rho_minus"), (5, 10.0, "rho_plus"), (6, 5.0, "rho_minus"))
    ):
        for j, frac in enumerate((0.0, 0.49, 0.98)):
            task, pert = settings[3 * k + j]
            assert task == FIGURES[number].task
            assert getattr(pert, vary) == pytest.approx(frac * rho_max, rel=1e-12)


def test_random_settings_cover_every_type_pair_and_both_variance_cases():
    # the numeric and derivative checks claim "all type combinations, K = 1 and K > 1"
    settings = V.random_settings(8, seed=0)
    combos = {(p.type_plus, p.type_minus, t.K == 1.0) for t, p in settings}
    pairs = [("first", "first"), ("first", "second"), ("second", "first"), ("second", "second")]
    assert combos == {(a, b, k) for a, b in pairs for k in (True, False)}
    for t, p in settings:
        assert p.eps_plus < t.eta and p.eps_minus < t.eta and p.eps > 0


# The verdicts below are computed; each test moves the computation's input so that the paper's statement holds
# (or fails) and checks that the verdict follows, so a verdict typed in as a constant string fails here.

COR3_DIRECTION = (
    "Corollary 3, first case: R(+1) decreases and R(-1) increases as rho_+ grows (rho_- = 1)"
)
EQ54_SENTENCE = "Sentence after Eq. (54): db*/drho_+ <= 0 means R(+1) decreases and R(-1) increases"


def _scan(item):
    return {f.item: f for f in V.corollary_scans(n=300, rhos=21, seed=2)}[item]


def _formula(item):
    return {f.item: f for f in V.paper_formula_findings(n=200, seed=1)}[item]


def test_corollary3_direction_verdict_follows_the_scan(monkeypatch):
    from lpl_theory import verify_findings as VF

    real = _scan(COR3_DIRECTION)
    assert real.verdict == "wrong" and "holds at 0 settings anywhere" in real.evidence
    # draw Gamma inside the corrected interval K < Gamma < K exp(((2d-1) eta - eps)^2 / (2 d K^2 sigma^2))
    # instead of the stated one: there db*/drho_+ > 0 and b* exists on the whole line, so the claim holds
    bounds = VF._cor3_bounds

    def corrected(gamma, d, eta, sg, K, eps):
        b = dict(bounds(gamma, d, eta, sg, K, eps))
        b["log_lower"], b["log_upper"] = np.log(K), b["log_corrected"]
        return b

    monkeypatch.setattr(VF, "_cor3_bounds", corrected)
    found = _scan(COR3_DIRECTION)
    assert found.verdict == "confirmed"
    assert "in 300 random settings inside the stated interval" in found.evidence
    assert "holds at 300 settings anywhere" in found.evidence
    # the same interval with the sign of db*/drho_+ reversed: the claimed direction fails again
    db = cf.db_star_drho
    monkeypatch.setattr(cf, "db_star_drho", lambda *a, **k: -db(*a, **k))
    assert _scan(COR3_DIRECTION).verdict == "wrong"
    # and with it reversed at a single grid point of a single setting: "confirmed" needs every point
    monkeypatch.setattr(cf, "db_star_drho", _one_point_reversed(db, "plus"))
    assert _scan(COR3_DIRECTION).verdict == "wrong"


def _one_point_reversed(db, side, types=None):
    """db*/drho_{side} made negative at the last rho of the first scanned setting (2-d scans of those types)."""

    def patched(which, *a, **k):
        out = np.array(db(which, *a, **k), dtype=float)
        if which == side and out.ndim == 2 and (types is None or a[-2:] == types):
            out[0, -1] = -abs(out[0, -1])
        return out

    return patched


def test_corollary2_verdict_needs_every_setting(monkeypatch):
    assert _scan("Corollary 2 (Gamma > 1)").verdict == "confirmed"
    monkeypatch.setattr(
        cf, "db_star_drho", _one_point_reversed(cf.db_star_drho, "minus", ("first", "second"))
    )
    found = _scan("Corollary 2 (Gamma > 1)")
    assert found.verdict == "wrong" and "it holds at 299 of 300" in found.evidence


@pytest.mark.parametrize(
    ("exists", "is_global", "verdict"),
    [
        # the real closed form: no b* at Gamma = 6, not global in Fig. 5
        (False, False, "incomplete"),
        (True, False, "incomplete"),  # b* real everywhere, still only a local minimum in Fig. 5
        (False, True, "incomplete"),  # global where it exists, but no b* at Gamma = 6, K = 3
        (True, True, "confirmed"),  # both: the theorem's b* would be the optimum as stated
    ],
)
def test_theorem3_verdict_follows_existence_and_optimality(monkeypatch, exists, is_global, verdict):
    solve = cf.solve

    def forced(*a, **k):
        s = solve(*a, **k)
        yes = np.ones_like(s.exists)
        return dataclasses.replace(
            s,
            exists=yes if exists else s.exists,
            is_global=yes if is_global else s.is_global,
        )

    monkeypatch.setattr(cf, "solve", forced)
    found = _formula("Theorem 3 (Eqs. 25, 50): existence and optimality of b*")
    assert found.verdict == verdict
    assert ("at 201 of 201 grid points" in found.evidence) == is_global


def test_weight_scale_verdict_follows_the_minima(monkeypatch):
    from lpl_theory import verify_thresholds as VT

    item = "Appendix A: w = 1 (Lemma 1 of Xu et al.) under the perturbation"
    real = _formula(item)
    assert real.verdict == "incomplete" and "(falling as c grows" in real.evidence
    # if the adversary's bound grew with the scale of w (eps measured relative to |w|), the classifier c 1 would
    # face Fig. 3's eps whatever c: the minimum no longer falls and w = 1 loses nothing
    minimum = VT.numeric_minimum
    eps3 = FIGURES[3].eps
    seen = []

    def scaled_budget(task, pert):
        seen.append(pert.eps)
        if pert.eps > 0:
            pert = dataclasses.replace(pert, eps=eps3)
        return minimum(task, pert)

    monkeypatch.setattr(VT, "numeric_minimum", scaled_budget)
    found = _formula(item)
    assert seen == pytest.approx([eps3, eps3 / 10, eps3 / 100, 0.0])
    assert found.verdict == "confirmed" and "(not falling as c grows" in found.evidence
    v1, v100 = (float(found.evidence.split(f" at c = {c}")[0].split(" ")[-1]) for c in (1, 100))
    assert v1 == v100


@pytest.mark.parametrize("change", ["none", "reading_off", "printed_right"])
def test_eq52_verdict_follows_the_comparison(monkeypatch, change):
    item = "Eq. (52) b* at rho_+ = rho_- = 0"
    corrected = V.paper.eq52_b_star_corrected
    # reading_off: the misplaced-parenthesis reading no longer reproduces the derived b*;
    # printed_right: the formula as printed already equals the derived b*
    if change == "reading_off":
        monkeypatch.setattr(V.paper, "eq52_b_star_corrected", lambda *a: corrected(*a) + 1e-6)
    elif change == "printed_right":
        monkeypatch.setattr(V.paper, "eq52_b_star_as_printed", corrected)
    verdict = _formula(item).verdict
    assert verdict == {"none": "typo", "reading_off": "wrong", "printed_right": "confirmed"}[change]


@pytest.mark.parametrize(
    ("flip_rows", "verdict"),
    [(None, "wrong"), (slice(None), "confirmed"), (slice(None, None, 2), "incomplete")],
)
def test_eq54_sentence_verdict_follows_the_measured_direction(monkeypatch, flip_rows, verdict):
    # R(+1) replaced by 1 - R(+1) on the scanned lines (all of them, or every other one): R(+1) then falls where
    # b* falls, as the sentence says (all lines), or the lines disagree (every other one)
    solve = cf.solve

    def flipped(*a, **k):
        s = solve(*a, **k)
        if flip_rows is None or s.R_plus.ndim != 2:
            return s
        r = s.R_plus.copy()
        r[flip_rows] = 1.0 - r[flip_rows]
        return dataclasses.replace(s, R_plus=r)

    monkeypatch.setattr(cf, "solve", flipped)
    found = _scan(EQ54_SENTENCE)
    rises = int(found.evidence.split("R(+1) rises at ")[1].split(",")[0])
    falls = int(found.evidence.split(", falls at ")[1].split(" ")[0])
    assert found.verdict == verdict
    directions = {"wrong": (True, False), "confirmed": (False, True), "incomplete": (True, True)}
    assert (rises > 0, falls > 0) == directions[verdict]


COR3_CASE2_ORDER = "Corollary 3, second case: K > Gamma gives R(+1) < R(-1)"


def _unperturbed_class_errors(g, d, eta, sg, K):
    """(R(+1), R(-1)) at the local minimiser of the unperturbed error, b* found numerically (no closed form)."""
    from .test_symbolic import _numeric_b_star

    b = _numeric_b_star(g, d, eta, sg, K, 0.0, 0.0)
    s = math.sqrt(d) * sg
    return norm.cdf(-(d * eta + b) / s), norm.cdf((b - d * eta) / (K * s))


def test_corollary3_second_case_ordering_matches_an_independent_minimisation():
    """Corollary 3's "K > Gamma gives R(+1) < R(-1)" at rho = 0: at random settings with K > Gamma (drawn as the scan draws
    them), the numerically minimised error's class errors always order R(+1) < R(-1), so the scan's verdict
    must be "confirmed" at every one of its settings."""
    rng = np.random.default_rng(7)
    for _ in range(25):
        K = rng.uniform(1.05, 4.0)
        g = K * math.exp(-rng.uniform(0.01, 4.0))
        r_plus, r_minus = _unperturbed_class_errors(
            g, int(rng.integers(1, 6)), rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0), K
        )
        assert r_plus < r_minus
    # the same computation orders them the other way with Gamma > K (it can tell the two apart)
    r_plus, r_minus = _unperturbed_class_errors(2.0, 2, 1.0, 1.0, 1.5)
    assert r_plus > r_minus
    found = _scan(COR3_CASE2_ORDER)
    assert found.verdict == "confirmed"
    assert "R(+1) < R(-1) at 300 of 300 random settings with K > Gamma" in found.evidence


@pytest.mark.parametrize("chunk", [0, -5, 2.5, True])
def test_simulation_refuses_a_chunk_that_is_not_a_positive_integer(chunk):
    # chunk = 0 drew nothing and never advanced: the simulation hung (an alarm turns a hang into a failure)
    import signal

    def hang(*_):
        raise TimeoutError("the simulation hung")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        task = GaussianTask(2.0, 2, 1.0)
        with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
            V.monte_carlo_errors(task, 0.0, n=1000, chunk=chunk)
        with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
            V.simulate_error_fractions(task, 0.0, 0.0, n=1000, chunk=chunk)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        # no grid of rho (or a single point) and no settings: the verdicts read "confirmed" on no evidence,
        # Corollary 3's wrong cases included
        (lambda: V.corollary_scans(n=50, rhos=0), "rhos must be an integer >= 2, got 0"),
        (lambda: V.corollary_scans(n=50, rhos=1), "rhos must be an integer >= 2, got 1"),
        (lambda: V.corollary_scans(n=0), "n must be an integer >= 1, got 0"),
        (lambda: V.corollary_scans(n=50, rhos=2.5), "rhos must be an integer >= 2"),
        (lambda: V.paper_formula_findings(n=0), "n must be an integer >= 1, got 0"),
        # one point reported the threshold at rho_+ = 0 as that of the whole curve
        (lambda: V.figure5_thresholds(points=1), "points must be an integer >= 2, got 1"),
        (lambda: V.figure5_thresholds(points=0), "points must be an integer >= 2, got 0"),
    ],
)
def test_scans_refuse_sizes_without_evidence(call, match):
    with pytest.raises(ValueError, match=match):
        call()


_COUNTS = {  # one call per function that takes a count, with that count given as `k`
    "monte_carlo_errors n": lambda k: V.monte_carlo_errors(GaussianTask(2.0, 2, 1.0), 0.0, n=k),
    "monte_carlo_errors chunk": lambda k: V.monte_carlo_errors(
        GaussianTask(2.0, 2, 1.0), 0.0, n=10, chunk=k
    ),
    "random_settings n": lambda k: V.random_settings(k, 0),
    "corollary_scans rhos": lambda k: V.corollary_scans(n=2, rhos=k),
    "figure5_thresholds points": lambda k: V.figure5_thresholds(points=k),
    "default_rho points": lambda k: default_rho(figure_spec(3), k),
}


@pytest.mark.parametrize("case", list(_COUNTS))
def test_counts_take_numpy_integers_and_refuse_bools(case):
    """A count read from a NumPy array (np.int64) is an integer like any other; True is not a count."""
    call = _COUNTS[case]
    assert len(call(np.int64(2))) >= 2
    with pytest.raises(ValueError, match=r"must be an integer >= \d+, got True"):
        call(True)
