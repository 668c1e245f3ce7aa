"""Findings about the paper: the printed formulas against the derivation, and scans of Corollaries 1-3.

:func:`paper_formula_findings` compares the printed Eqs. (21, 23, 25, 44, 46, 50, 52, 54) with the closed form
and adds the findings of :mod:`lpl_theory.verify_thresholds` (existence and optimality of b*, the scale of w);
:func:`corollary_scans` scans each corollary's stated direction of change under its stated condition.
``TEXT_READINGS`` lists the typos read from the text, not computed. These produce verdicts, not failures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import closed_form as cf
from . import paper
from .task import FIGURES, GaussianTask, Perturbation, check_count
from .verify_results import Finding
from .verify_thresholds import _cor3_bounds, _threshold_and_scale_findings, figure5_thresholds

__all__ = ["TEXT_READINGS", "corollary_scans", "paper_formula_findings"]

#: a printed formula is "confirmed" when it agrees with the derivation to this absolute deviation
FORMULA_TOLERANCE = 1e-9


def _agree(deviation: float) -> str:
    """Verdict on a printed formula from its largest deviation from the derived one."""
    return "confirmed" if float(deviation) <= FORMULA_TOLERANCE else "wrong"


#: Typos established by reading the printed text, not by computation (listed so that the report is complete).
TEXT_READINGS: tuple[Finding, ...] = (
    Finding(
        "Eqs. (21), (25), (43), (45), (49), (51), (53): sqrt(d sigma)",
        "typo",
        "read as sqrt(d) sigma, the standard deviation of sum_i x_i (Eq. 23 prints it so); the same when sigma = 1.",
    ),
    Finding(
        "Eqs. (43), (45), (49), (51), (53): sqrt(d eta)/sigma",
        "typo",
        "read as sqrt(d) eta/sigma (sum_i x_i has mean -d eta or d eta and standard deviation sqrt(d) sigma); "
        "the same when eta = 1.",
    ),
    Finding("Eq. (21), proof of Corollary 1: f_rob, b*_rob", "typo", "read as f_opt, b*."),
    Finding(
        "Proof of Corollary 1: 'According to Eq. (45), we compute the partial derivatives of b*'",
        "typo",
        "b* is Eq. (44); Eq. (45) gives the natural errors (it is rightly cited at the end of the proof).",
    ),
    Finding(
        "Eq. (43), middle lines",
        "typo",
        "Gamma is attached to the +1 term and S(u + eps) != -1 | y = -1 appears under the max over delta_+; the "
        "last line, which the derivation starts from, is right.",
    ),
    Finding(
        "Eq. (49), fourth line",
        "typo",
        "eps rho_+ in the -1 term reads eps rho_-; the next line is right.",
    ),
)


def _fmt(x: Any) -> str:
    return f"{float(x):.6g}"


def _random_equal_variance(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    eta = rng.uniform(0.3, 2.0, n)
    eps = rng.uniform(0.01, 0.9, n) * eta
    return {
        "gamma": np.exp(rng.uniform(-1.0, 3.0, n)),
        "d": rng.integers(1, 8, n).astype(float),
        "eta": eta,
        "sigma": rng.uniform(0.3, 2.0, n),
        "eps": eps,
        "rho": rng.uniform(0.0, 0.999, n) * eta / eps,
    }


def paper_formula_findings(n: int = 2000, seed: int = 0) -> list[Finding]:
    """Compare the printed Eqs. (21), (23), (25)/(51), (44), (46), (50), (52), (54) with the derivation."""
    check_count("n", n, 1)
    rng = np.random.default_rng(seed)
    out: list[Finding] = []
    p = _random_equal_variance(rng, n)
    g, d, eta, sg, eps, rho = p["gamma"], p["d"], p["eta"], p["sigma"], p["eps"], p["rho"]

    sol1 = cf.solve(g, d, eta, sg, 1.0, eps, rho, 1.0, "first", "first")
    dev44 = np.max(np.abs(paper.eq44_b_star(g, d, eta, sg, eps, rho) - sol1.b_star))
    r21 = paper.eq21(g, d, eta, sg, eps, rho)
    dev21 = max(np.max(np.abs(r21[0] - sol1.R_plus)), np.max(np.abs(r21[1] - sol1.R_minus)))
    db1 = cf.db_star_drho("plus", g, d, eta, sg, 1.0, eps, rho, 1.0)
    dev46 = np.max(np.abs(paper.eq46_db_drho_plus(g, d, eta, sg, eps, rho) * 1.0 - db1))
    out.append(
        Finding(
            "Eq. (44) b* and Eq. (21)/(45) errors of Theorem 1",
            _agree(max(dev44, dev21)),
            f"sympy reduces the derived b*, U_+, U_- to the printed forms exactly; numerically over {n} random "
            f"points max |b*_paper - b*| = {dev44:.2e}, max |R_paper - R| = {dev21:.2e}. Reading: rho in Eq. (44) "
            "is rho_+, sqrt(d sigma) is sqrt(d) sigma, f_rob is f_opt.",
        )
    )
    out.append(
        Finding(
            "Eq. (46) db*/drho_+ (Corollary 1)",
            _agree(dev46),
            f"max |Eq.46 - derived db*/drho_+| = {dev46:.2e} over {n} random points.",
        )
    )

    sol2 = cf.solve(g, d, eta, sg, 1.0, eps, 1.0, rho, "first", "second")
    r23 = paper.eq23(g, d, eta, sg, eps, rho)
    dev23 = max(np.max(np.abs(r23[0] - sol2.R_plus)), np.max(np.abs(r23[1] - sol2.R_minus)))
    out.append(
        Finding(
            "Eq. (23) errors of Theorem 2",
            _agree(dev23),
            f"sympy reduction exact; max |R_paper - R| = {dev23:.2e} over {n} random points.",
        )
    )

    K = rng.uniform(1.05, 5.0, n)
    rho_m = rng.uniform(0.0, 0.999, n) * eta / eps
    sol3 = cf.solve(g, d, eta, sg, K, eps, rho, rho_m, "first", "first")
    ex = sol3.exists
    b50 = paper.eq50_b_star(g, d, eta, sg, K, eps, rho, rho_m)
    r25 = paper.eq25(g, d, eta, sg, K, eps, rho, rho_m)
    dev50 = np.max(np.abs(b50 - sol3.b_star)[ex])
    dev25 = max(np.max(np.abs(r25[0] - sol3.R_plus)[ex]), np.max(np.abs(r25[1] - sol3.R_minus)[ex]))
    out.append(
        Finding(
            "Eq. (50) b* and Eq. (25)/(51) errors of Theorem 3",
            _agree(max(dev50, dev25)),
            f"the '+' root of the quadratic first-order condition is the local minimum (d^2R/db^2 > 0); sympy "
            f"reduction exact; over {int(ex.sum())} random points with a real root max |b*_paper - b*| = "
            f"{dev50:.2e}, max |R_paper - R| = {dev25:.2e}.",
        )
    )

    # Theorem 3: existence and global optimality are not stated.
    t = GaussianTask(6.0, 2, 1.0, 1.0, 3.0)
    pt = Perturbation(0.1, 1.0, 1.0)
    s = cf.solve_task(t, pt)
    spec5 = FIGURES[5]
    rr = np.linspace(0.0, 0.999 * spec5.rho_max, 201)
    s5 = cf.solve(
        spec5.task.gamma,
        spec5.task.d,
        spec5.task.eta,
        spec5.task.sigma,
        spec5.task.K,
        spec5.eps,
        rr,
        1.0,
    )
    out.append(
        Finding(
            "Theorem 3 (Eqs. 25, 50): existence and optimality of b*",
            "incomplete" if bool(not s.exists) or not s5.is_global.all() else "confirmed",
            "b* is real only if (eps rho_+ + eps rho_- - 2 d eta)^2 + 2 d (K^2-1) sigma^2 log(K/Gamma) >= 0 "
            "(B^2 + q >= 0), which the theorem does not require: at K=3, Gamma=6, d=2, eta=1, sigma=1, eps=0.1, "
            f"rho_+=rho_-=1 the radicand is {_fmt(s.discriminant)} < 0 and R_lp(b) is increasing, so the optimum "
            "is the trivial classifier (b = -inf). Even where b* is real it is only a local minimum: with Fig. 5's "
            f"parameters (K=3, Gamma=3.5, eps=0.1, rho_-=1) R_lp(b*) ranges over [{_fmt(s5.perturbed_at_b_star.min())}, "
            f"{_fmt(s5.perturbed_at_b_star.max())}] for rho_+ in [0, 10), above the error 1/(1+Gamma) = "
            f"{_fmt(1 / 4.5)} of the classifier that predicts -1 everywhere, so b* is the global optimum at "
            f"{int(s5.is_global.sum())} of 201 grid points; the natural errors of the global optimum are "
            "R(+1) = 1, R(-1) = 0. Fig. 5 plots the local minimum.",
        )
    )

    out.extend(_threshold_and_scale_findings())

    # Eq. (52)
    g52, d52, e52, s52, K52 = 2.0, 2.0, 1.0, 1.0, 3.0
    printed = paper.eq52_b_star_as_printed(g52, d52, e52, s52, K52)
    corrected = paper.eq52_b_star_corrected(g52, d52, e52, s52, K52)
    derived = cf.solve(g52, d52, e52, s52, K52, 0.1, 0.0, 0.0).b_star
    out.append(
        Finding(
            "Eq. (52) b* at rho_+ = rho_- = 0",
            "confirmed"
            if abs(printed - derived) <= 1e-9
            else "typo"
            if abs(corrected - derived) <= 1e-9
            else "wrong",
            "a closing parenthesis is misplaced: the square-root term belongs inside the fraction, "
            "b* = [-d eta (K^2+1) + K sqrt(4 d^2 eta^2 + 2 d (K^2-1) sigma^2 log(K/Gamma))] / (K^2-1). At K=3, "
            f"Gamma=2, d=2, eta=1, sigma=1: as printed {_fmt(printed)}, corrected {_fmt(corrected)}, derived "
            f"{_fmt(derived)}.",
        )
    )

    # Eq. (54)
    Kc = rng.uniform(1.05, 5.0, n)
    eps_c = rng.uniform(0.01, 0.9, n) * eta
    rho_c = rng.uniform(0.0, 0.999, n) * eta / eps_c
    with np.errstate(invalid="ignore"):
        e54 = paper.eq54_db_drho_plus(g, d, eta, sg, Kc, eps_c, rho_c)
    db3 = cf.db_star_drho("plus", g, d, eta, sg, Kc, eps_c, rho_c, 1.0)
    ok = np.isfinite(db3)
    dev54 = np.max(np.abs(e54 - db3)[ok])
    out.append(
        Finding(
            "Eq. (54) db*/dt",
            "typo" if dev54 <= FORMULA_TOLERANCE else "wrong",
            f"t is rho_+ (with rho_- = 1); with that reading the expression equals the derived db*/drho_+ "
            f"(max deviation {dev54:.2e} over {int(ok.sum())} random points). Its sign is <= 0 exactly when "
            "log(Gamma/K) >= (eps + eps rho_+ - 2 d eta)^2 / (2 d K^2 sigma^2), see Corollary 3.",
        )
    )
    return out


def _scan_equal_variance(rng: np.random.Generator, n: int, rhos: int) -> dict[str, np.ndarray]:
    p = _random_equal_variance(rng, n)
    p["eps"] = np.minimum(p["eps"], 0.95 * p["eta"])  # rho = 1 on the other class needs eps < eta
    p["gamma"] = np.exp(rng.uniform(0.0, 4.0, n))  # Gamma > 1 as in the paper
    frac = np.linspace(0.0, 0.999, rhos)
    p["rho_grid"] = frac[None, :] * (p["eta"] / p["eps"])[:, None]
    return p


def corollary_scans(n: int = 4000, rhos: int = 41, seed: int = 0) -> list[Finding]:
    """Parameter scans of Corollaries 1, 2 and 3: the stated direction of change under the stated condition.

    The natural errors depend on rho only through b*, so the direction of R_+ and R_- is the sign of db*/drho;
    it is evaluated with the closed-form derivative on a grid of rho over [0, eta/eps) and confirmed with finite
    differences of the closed-form errors at the counterexamples.
    """
    # a scan with no settings (or no grid of rho) has no evidence: its verdicts would read "confirmed"
    # from empty comparisons; the direction along rho needs two grid points at least
    check_count("n", n, 1)
    check_count("rhos", rhos, 2)
    rng = np.random.default_rng(seed)
    out: list[Finding] = []

    # Corollary 1
    p = _scan_equal_variance(rng, n, rhos)
    col = lambda a: a[:, None]  # noqa: E731
    db = cf.db_star_drho(
        "plus",
        col(p["gamma"]),
        col(p["d"]),
        col(p["eta"]),
        col(p["sigma"]),
        1.0,
        col(p["eps"]),
        p["rho_grid"],
        1.0,
    )
    holds = np.all(db > 0, axis=1)
    cond = paper.corollary1_condition(p["gamma"], p["d"], p["eta"], p["sigma"], p["eps"])
    viol_in = int(np.sum(cond & ~holds))
    fails_out = int(np.sum(~cond & ~holds))
    out.append(
        Finding(
            "Corollary 1 (condition Eq. 48)",
            "confirmed" if viol_in == 0 else "wrong",
            f"{int(cond.sum())} of {n} random settings (Gamma > 1) satisfy Eq. (48); in {viol_in} of them R(+1) "
            f"fails to decrease / R(-1) to increase somewhere on rho_+ in [0, eta/eps). Pointwise, R(+1) "
            "decreases iff log(Gamma) < (eps + eps rho_+ - 2 d eta)^2 / (2 d sigma^2); "
            f"{fails_out} of the {n - int(cond.sum())} settings outside Eq. (48) fail near rho_+ eps -> eta"
            + (
                ", so in the scan Eq. (48) is exactly the condition for the whole range"
                if viol_in == 0 and fails_out == n - int(cond.sum())
                else ""
            )
            + ". Example outside: "
            + _cor1_example(),
        )
    )

    # Corollary 2
    p = _scan_equal_variance(rng, n, rhos)
    db = cf.db_star_drho(
        "minus",
        col(p["gamma"]),
        col(p["d"]),
        col(p["eta"]),
        col(p["sigma"]),
        1.0,
        col(p["eps"]),
        1.0,
        p["rho_grid"],
        "first",
        "second",
    )
    holds = np.all(db > 0, axis=1)
    out.append(
        Finding(
            "Corollary 2 (Gamma > 1)",
            "confirmed" if holds.all() else "wrong",
            f"db*/drho_- = eps/2 + d eps sigma^2 log(Gamma)/C^2 > 0 for Gamma > 1, so R(+1) decreases and "
            f"R(-1) increases in rho_-; it holds at {int(holds.sum())} of {n} random settings with Gamma > 1 "
            "(every rho_- in [0, eta/eps)). (It also holds for Gamma < 1 while log(Gamma) > -C^2/(2 d sigma^2).)",
        )
    )

    out.extend(_corollary3_scans(rng, n, rhos))
    return out


def _cor1_example() -> str:
    g, d, eta, sg, eps = 10.0, 2, 1.0, 1.0, 0.2
    r = np.array([3.0, 4.9])
    s = cf.solve(g, d, eta, sg, 1.0, eps, r, 1.0)
    return (
        f"Gamma=10, d=2, eta=1, sigma=1, eps=0.2 (Eq. 48 needs Gamma < {_fmt(np.exp((3 - 0.2) ** 2 / 4))}): "
        f"R(+1) = {_fmt(s.R_plus[0])} at rho_+=3 and {_fmt(s.R_plus[1])} at rho_+=4.9 (increases)."
    )


def _corollary3_scans(rng: np.random.Generator, n: int, rhos: int) -> list[Finding]:
    out: list[Finding] = []
    eta = rng.uniform(0.3, 2.0, n)
    d = rng.integers(1, 6, n).astype(float)
    sg = rng.uniform(0.3, 2.0, n)
    K = rng.uniform(1.05, 4.0, n)
    eps = rng.uniform(0.01, 0.95, n) * eta
    bounds = _cor3_bounds(None, d, eta, sg, K, eps)
    log_lower, log_upper = bounds["log_lower"], bounds["log_upper"]
    # Case 1: draw log(Gamma) uniformly inside the stated interval where it is non-empty (capped so that
    # Gamma stays a finite float).
    m = (log_lower < log_upper) & (log_lower < 200.0)
    u = rng.uniform(0.0, 1.0, n)
    gamma1 = np.exp(np.where(m, log_lower + u * (np.minimum(log_upper, 200.0) - log_lower), 0.0))
    frac = np.linspace(0.0, 0.999, rhos)
    col = lambda a: a[m][:, None]  # noqa: E731
    rho_grid = frac[None, :] * (eta / eps)[m][:, None]
    at0 = cf.solve(gamma1[m], d[m], eta[m], sg[m], K[m], eps[m], 0.0, 0.0)
    harder = at0.exists & (at0.R_plus > at0.R_minus)
    line = cf.solve(col(gamma1), col(d), col(eta), col(sg), col(K), col(eps), rho_grid, 1.0)
    db = cf.db_star_drho(
        "plus", col(gamma1), col(d), col(eta), col(sg), col(K), col(eps), rho_grid, 1.0
    )
    claimed = line.exists & (db > 0)
    some_exist = line.exists.any(axis=1)
    claim_anywhere = np.any(claimed, axis=1)
    global_anywhere = np.any(line.is_global, axis=1)
    out.append(
        Finding(
            "Corollary 3, first case: R(+1) > R(-1) in the stated Gamma interval",
            "confirmed" if harder.all() else "wrong",
            f"at rho = 0 R(+1) > R(-1) at {int(harder.sum())} of {int(m.sum())} random settings drawn inside the "
            "interval. Derived exact condition: R(+1) > R(-1) at rho = 0 iff K < Gamma (U_+ > U_- reduces to "
            "sqrt(4d^2 eta^2 + 2d(K^2-1) sigma^2 log(K/Gamma)) < 2 d eta), and b* exists iff "
            "Gamma <= K exp(2 d eta^2 / ((K^2-1) sigma^2)) (the upper bound); the lower bound is not needed.",
        )
    )

    # The corrected condition K < Gamma < K exp(((2d-1) eta - eps)^2 / (2 d K^2 sigma^2)), scanned the same way.
    gamma_c = np.exp(np.log(K) + u * (bounds["log_corrected"] - np.log(K)))
    cc = lambda a: a[:, None]  # noqa: E731
    rho_all = frac[None, :] * (eta / eps)[:, None]
    line_c = cf.solve(cc(gamma_c), cc(d), cc(eta), cc(sg), cc(K), cc(eps), rho_all, 1.0)
    db_c = cf.db_star_drho(
        "plus", cc(gamma_c), cc(d), cc(eta), cc(sg), cc(K), cc(eps), rho_all, 1.0
    )
    holds_c = np.all(line_c.exists & (db_c > 0), axis=1)
    harder_c = cf.solve(gamma_c, d, eta, sg, K, eps, 0.0, 0.0)
    harder_c = harder_c.R_plus > harder_c.R_minus
    not_global_somewhere = ~np.all(line_c.is_global, axis=1)
    not_global_anywhere = ~np.any(line_c.is_global, axis=1)

    fig5 = figure5_thresholds()
    g5 = FIGURES[5].task.gamma
    in_corrected = fig5["K"] < g5 < fig5["trend_bound"]
    in_stated = fig5["stated_lower"] < g5 < fig5["stated_upper"]
    out.append(
        Finding(
            "Corollary 3, first case: R(+1) decreases and R(-1) increases as rho_+ grows (rho_- = 1)",
            "confirmed" if np.all(claimed) else "wrong",
            f"in {int(m.sum())} random settings inside the stated interval, the claimed direction (db*/drho_+ > 0) "
            f"holds at {int(claim_anywhere.sum())} settings anywhere on rho_+ in [0, eta/eps); b* exists somewhere "
            f"on the line at {int(some_exist.sum())} and is the global optimum somewhere at "
            f"{int(global_anywhere.sum())}. Derived: db*/drho_+ = eps K (C^2 + 2 d K^2 sigma^2 log(K/Gamma)) / "
            "(S (K S - C)), so b* increases (and R(+1) decreases) iff Gamma < K exp(C^2/(2 d K^2 sigma^2)), "
            "C = eps + eps rho_+ - 2 d eta. At rho_+ = 0 this is Gamma < K exp((2 d eta - eps)^2/(2 d K^2 sigma^2)): "
            "the stated lower bound with the inequality reversed, so inside the stated interval the direction is "
            "the opposite one (Eq. 54 <= 0 means b* decreases, which raises R(+1)). Corrected condition for the "
            "whole range: K < Gamma < K exp(((2d-1) eta - eps)^2 / (2 d K^2 sigma^2)) (the lower bound makes "
            f"class +1 the harder one; the upper bound also guarantees that b* exists). In {n} random settings drawn "
            f"inside it the claimed direction holds on the whole range at {int(holds_c.sum())} and R(+1) > R(-1) "
            f"at rho = 0 at {int(harder_c.sum())}; it does not make b* optimal: b* is not the global optimum "
            f"somewhere on the line at {int(not_global_somewhere.sum())} of {n} "
            f"({100 * float(not_global_somewhere.mean()):.1f}%) and nowhere at {int(not_global_anywhere.sum())}. "
            f"At Fig. 5's K = {fig5['K']:g}, d = {FIGURES[5].task.d}, eta = {FIGURES[5].task.eta:g}, "
            f"eps = {FIGURES[5].eps:g} the corrected bound is {fig5['trend_bound']:.4f} and the stated interval "
            f"is ({fig5['stated_lower']:.4f}, {fig5['stated_upper']:.4f}): Fig. 5's Gamma = {g5:g} lies "
            f"{'inside' if in_corrected else 'outside'} the corrected range and "
            f"{'inside' if in_stated else 'outside'} the stated interval. "
            f"Counterexample with a globally optimal b*: {_cor3_case1_example()} Another, where b* is not "
            f"global: {_cor3_case1_example_local()}",
        )
    )

    # The sentence after Eq. (54): "when db*/drho_+ <= 0, the error of class +1 decreases ... as rho_+ increases".
    # Its direction is measured with finite differences of the closed-form errors along the scanned lines.
    both = line.exists[:, :-1] & line.exists[:, 1:] & (db[:, :-1] < 0) & (db[:, 1:] < 0)
    dR = np.diff(line.R_plus, axis=1)
    rises = int(np.sum(both & (dR > 0)))
    falls = int(np.sum(both & (dR < 0)))
    flat = int(np.sum(both & (dR == 0)))
    out.append(
        Finding(
            "Sentence after Eq. (54): db*/drho_+ <= 0 means R(+1) decreases and R(-1) increases",
            "wrong"
            if rises > 0 and falls == 0
            else ("confirmed" if rises == 0 and falls > 0 else "incomplete"),
            "R(+1) = Phi(-(d eta + b*)/(sqrt(d) sigma)) falls when b* rises, so db*/drho_+ <= 0 raises R(+1) and "
            f"lowers R(-1). Measured on the scanned lines of the first case: over {int(both.sum())} grid steps "
            f"where db*/drho_+ < 0 at both ends, R(+1) rises at {rises}, falls at {falls} and is unchanged in float64 "
            f"at {flat} (finite differences of the closed-form errors). The sentence has the direction reversed; with it reversed, Eq. (54) <= 0 "
            "says the opposite of Corollary 3's first case.",
        )
    )

    # Case 2: K > Gamma, rho_+ = 1, rho_- grows.
    gamma2 = K * np.exp(-rng.uniform(0.01, 4.0, n))
    rho_grid2 = frac[None, :] * (eta / eps)[:, None]
    c2 = lambda a: a[:, None]  # noqa: E731
    at0 = cf.solve(gamma2, d, eta, sg, K, eps, 0.0, 0.0)
    easier = at0.R_plus < at0.R_minus
    db2 = cf.db_star_drho(
        "minus", c2(gamma2), c2(d), c2(eta), c2(sg), c2(K), c2(eps), 1.0, rho_grid2
    )
    line2 = cf.solve(c2(gamma2), c2(d), c2(eta), c2(sg), c2(K), c2(eps), 1.0, rho_grid2)
    holds2 = np.all(db2 < 0, axis=1)
    corrected = np.log(K / gamma2) <= ((2 * d - 1) * eta - eps) ** 2 / (2 * d * sg**2)
    out.append(
        Finding(
            "Corollary 3, second case: K > Gamma gives R(+1) < R(-1)",
            "confirmed" if easier.all() else "wrong",
            f"at rho = 0, R(+1) < R(-1) at {int(easier.sum())} of {n} random settings with K > Gamma "
            "(exact: iff Gamma < K).",
        )
    )
    out.append(
        Finding(
            "Corollary 3, second case: R(+1) increases and R(-1) decreases as rho_- grows (rho_+ = 1)",
            "wrong" if not holds2.all() else "confirmed",
            f"holds on the whole range at {int(holds2.sum())} of {n} random settings with K > Gamma "
            f"(b* global at every grid point in {int(np.all(line2.is_global, axis=1).sum())}). Derived: "
            "db*/drho_- = eps (2 d sigma^2 log(K/Gamma) - C^2) / (S (S - K C)), so R(-1) decreases iff "
            "log(K/Gamma) < C^2 / (2 d sigma^2), C = eps + eps rho_- - 2 d eta; for the whole range the corrected "
            "condition is Gamma < K <= Gamma exp(((2d-1) eta - eps)^2 / (2 d sigma^2)); in the scan it holds at "
            f"{int(np.sum(corrected & holds2))} of {int(corrected.sum())} settings that satisfy it, and the claim "
            f"fails at {int(np.sum(~corrected & ~holds2))} of {int((~corrected).sum())} that do not. "
            f"Counterexample: {_cor3_case2_example()}",
        )
    )
    return out


def _finite_difference_direction(
    task: GaussianTask, pert_a: Perturbation, pert_b: Perturbation
) -> str:
    a, b = cf.solve_task(task, pert_a), cf.solve_task(task, pert_b)
    return (
        f"R(+1) {_fmt(a.R_plus)} -> {_fmt(b.R_plus)}, R(-1) {_fmt(a.R_minus)} -> {_fmt(b.R_minus)}, "
        f"b* global: {bool(a.is_global)}/{bool(b.is_global)}"
    )


def _interval_text(task: GaussianTask, eps: float) -> str:
    b = _cor3_bounds(task.gamma, task.d, task.eta, task.sigma, task.K, eps)
    return f"stated interval ({_fmt(np.exp(b['log_lower']))}, {_fmt(np.exp(b['log_upper']))})"


#: Corollary 3, first case: a point inside the stated interval where b* is the global optimum on the whole line
COR3_CASE1_GLOBAL = (GaussianTask(6.0, 1, 1.0, 1.0, 1.1), 0.1)
#: the same claim at Fig. 5's K, d, eta, eps with Gamma inside the stated interval (b* only a local optimum)
COR3_CASE1_LOCAL = (GaussianTask(4.7, 2, 1.0, 1.0, 3.0), 0.1)


def _cor3_case1_example() -> str:
    task, eps = COR3_CASE1_GLOBAL
    rho = np.linspace(0.0, task.eta / eps, 200, endpoint=False)
    line = cf.solve(task.gamma, task.d, task.eta, task.sigma, task.K, eps, rho, 1.0)
    rising = bool(np.all(np.diff(line.R_plus) > 0))
    return (
        f"K={task.K:g}, Gamma={task.gamma:g} ({_interval_text(task, eps)}), d={task.d}, eta={task.eta:g}, "
        f"sigma={task.sigma:g}, eps={eps:g}, rho_- = 1, rho_+ from 0 to 1: "
        + _finite_difference_direction(
            task, Perturbation(eps, 0.0, 1.0), Perturbation(eps, 1.0, 1.0)
        )
        + f"; on 200 points of rho_+ in [0, {task.eta / eps:g}) b* is the global optimum at "
        f"{int(line.is_global.sum())} and R(+1) {'rises at every step' if rising else 'does not rise at every step'}."
    )


def _cor3_case1_example_local() -> str:
    task, eps = COR3_CASE1_LOCAL
    none_at = cf.solve_task(task, Perturbation(eps, 2.0, 1.0))
    return (
        f"K={task.K:g}, Gamma={task.gamma:g} ({_interval_text(task, eps)}), d={task.d}, eta={task.eta:g}, "
        f"sigma={task.sigma:g}, eps={eps:g}, rho_- = 1, rho_+ from 0 to 1: "
        + _finite_difference_direction(
            task, Perturbation(eps, 0.0, 1.0), Perturbation(eps, 1.0, 1.0)
        )
        + (
            f"; at rho_+ = 2 b* does not exist (radicand {_fmt(none_at.discriminant)})."
            if not bool(none_at.exists)
            else "."
        )
    )


def _cor3_case2_example() -> str:
    task = GaussianTask(1.1, 1, 1.0, 1.0, 6.0)
    a, b = (
        cf.solve_task(task, Perturbation(0.2, 1.0, 0.0)),
        cf.solve_task(task, Perturbation(0.2, 1.0, 4.9)),
    )
    opposite = float(b.R_plus) < float(a.R_plus) and float(b.R_minus) > float(a.R_minus)
    return (
        "K=6, Gamma=1.1, d=1, eta=1, sigma=1, eps=0.2, rho_+ = 1, rho_- from 0 to 4.9: "
        + _finite_difference_direction(
            task, Perturbation(0.2, 1.0, 0.0), Perturbation(0.2, 1.0, 4.9)
        )
        + (
            " (R(+1) decreases and R(-1) increases, the opposite of the claim)."
            if opposite
            else " (not the opposite of the claim)."
        )
    )
