"""Independent checks of the derived closed forms, and of the paper's printed formulas and claims (Sec. III.B).

Five checks of :mod:`lpl_theory.closed_form` (each can fail; ``python -m lpl_theory verify`` exits 1 if one does):

1. ``numeric``: direct minimisation of the perturbed error over b, built from the data model with the normal
   CDF (``scipy.special.ndtr``). The adversary is *searched*, not assumed: at every b, each class's shift delta_c
   is found by optimising over [-eps_c, eps_c] (maximising the class's perturbed error for the first type, Eq. 18;
   minimising it for the second type, Eq. 19), so neither the closed form's signs nor
   :func:`lpl_theory.task.type_sign` enter. Every local minimum is bracketed on a grid and refined as a root of
   dR_lp/db (Danskin: the slope at the searched shift), then compared with the limits b -> +-inf; b* must agree
   to 1e-6 and the existence and global-optimality verdicts must agree.
2. ``derivatives``: db*/drho_+- and dR(f_opt, +-1)/drho_+- of the closed form (the signs that decide every
   corollary's direction) against central finite differences of the numeric minimiser of check 1.
3. ``monte_carlo`` (natural errors): the per-class errors of sign(sum_i x_i + b*) estimated from simulated
   d-dimensional Gaussian data must lie within 4 standard errors of the closed form.
4. ``monte_carlo`` (perturbed objective): on the same draws, the class-level adversary is simulated (each class's
   shift searched over [-eps_c, eps_c] on the sample) and R_lp is estimated at b*, at b* +- h (common random
   numbers) and at the trivial classifiers b = -inf, +inf. The estimates must agree with the closed form's
   R_lp(b) within 4 s.e., b* must be the simulated minimiser within 4 s.e. of the paired differences, and the
   global-optimality flag must agree with the simulated comparison with the trivial classifiers.
5. ``sympy``: derived minus printed b*, U_+, U_- of Theorems 1-3 (Eqs. 21, 23, 25, 44, 50) simplify to 0. This
   fixes the sign convention of the closed form (first type = s = +1) against the paper.

Then the ``paper`` findings: the printed Eqs. (21, 23, 25, 44, 46, 50, 52, 54) against the derivation, the
existence and optimality of b* (Theorem 3, Fig. 5), the normalisation w = 1, and parameter scans of Corollaries
1-3 (stated direction of change and stated condition). These produce verdicts, not failures.

This module runs everything (:func:`run_all`, :func:`format_report`) and holds the sympy check; the others live
in :mod:`~lpl_theory.verify_numeric` (checks 1, 2), :mod:`~lpl_theory.verify_monte_carlo` (checks 3, 4),
:mod:`~lpl_theory.verify_findings` (printed formulas, corollary scans, typos read from the text),
:mod:`~lpl_theory.verify_thresholds` (Fig. 5's thresholds in Gamma, the scale of w) and
:mod:`~lpl_theory.verify_results` (the result types). Their public names, the check names and the
tolerances all import from here.
"""

from __future__ import annotations

# Names not listed in __all__ (check names, tolerances, helpers) are imported too, as they always resolved here
# (hence the noqa). closed_form and paper stay attributes (verify.cf, verify.paper): the checks call them through
# those module attributes, so a patched cf.solve_task or paper.eq44_b_star reaches every check; run_all calls
# the checks through this module's names, so a patched verify.check_* reaches it.
from . import closed_form as cf  # noqa: F401
from . import paper  # noqa: F401
from .task import check_count
from .verify_findings import (  # noqa: F401
    COR3_CASE1_GLOBAL,
    COR3_CASE1_LOCAL,
    FORMULA_TOLERANCE,
    TEXT_READINGS,
    corollary_scans,
    paper_formula_findings,
)
from .verify_monte_carlo import (  # noqa: F401
    MC_NATURAL_CHECK,
    MC_PERTURBED_CHECK,
    MC_SIGMAS,
    check_monte_carlo,
    check_perturbed_monte_carlo,
    monte_carlo_checks,
    monte_carlo_errors,
    simulate_error_fractions,
    simulated_perturbed_error,
)
from .verify_numeric import (  # noqa: F401
    B_TOLERANCE,
    COARSE_GRID,
    DERIVATIVE_CHECK,
    DERIVATIVE_TOLERANCE,
    NUMERIC_CHECK,
    SHIFT_GRID,
    NumericMinimum,
    _class_error,
    _searched_objective,
    adversary_shift,
    check_derivatives,
    check_numeric_minimisation,
    numeric_minimum,
    random_settings,
)
from .verify_results import CheckResult, Finding, Report
from .verify_thresholds import figure5_thresholds, weight_scale_minimum

__all__ = [
    "CheckResult",
    "Finding",
    "NumericMinimum",
    "Report",
    "TEXT_READINGS",
    "adversary_shift",
    "check_derivatives",
    "check_monte_carlo",
    "check_numeric_minimisation",
    "check_perturbed_monte_carlo",
    "check_symbolic_reduction",
    "corollary_scans",
    "figure5_thresholds",
    "format_report",
    "monte_carlo_checks",
    "monte_carlo_errors",
    "numeric_minimum",
    "paper_formula_findings",
    "random_settings",
    "run_all",
    "simulate_error_fractions",
    "simulated_perturbed_error",
    "weight_scale_minimum",
]

SYMBOLIC_CHECK = "sympy: derived b*, U_+, U_- minus Theorems 1-3"


def check_symbolic_reduction() -> CheckResult:
    """Derived minus printed b*, U_+, U_- of Theorems 1-3 (Eqs. 21, 23, 25, 44, 50) must simplify to 0.

    This is what fixes the closed form's sign convention (first type: s = +1, the shift toward the wrong side)
    to the paper's: a flipped reading of the types, or an altered transcription of a printed formula, fails it.
    """
    from . import symbolic

    nonzero = []
    for theorem in (1, 2, 3):
        for key, value in symbolic.reduction_to_theorem(theorem).items():
            if value != 0:
                nonzero.append(f"Theorem {theorem} {key}")
    return CheckResult(
        SYMBOLIC_CHECK,
        not nonzero,
        3,
        float(len(nonzero)),
        0.0,
        "all differences simplify to 0" if not nonzero else "nonzero: " + ", ".join(nonzero),
    )


def run_all(mc_samples: int = 1_000_000, numeric_points: int = 200, seed: int = 0) -> Report:
    """Run the five checks and collect the findings about the paper."""
    check_count("mc_samples", mc_samples, 1_000)
    check_count("numeric_points", numeric_points, 1)
    report = Report()
    report.checks.append(check_numeric_minimisation(numeric_points, seed))
    report.checks.append(check_derivatives(seed=seed))
    report.checks.extend(monte_carlo_checks(mc_samples, seed))
    report.checks.append(check_symbolic_reduction())
    report.findings.extend(paper_formula_findings(seed=seed))
    report.findings.extend(corollary_scans(seed=seed))
    report.readings.extend(TEXT_READINGS)
    return report


def format_report(report: Report, width: int = 110) -> str:
    """A plain-text table of the checks followed by the findings; the last line names any failed check."""
    import textwrap

    lines = [f"{'check':<54} {'points':>6} {'worst':>10} {'tol':>8}  result"]
    lines.append("-" * min(width, 90))
    for c in report.checks:
        lines.append(
            f"{c.name:<54} {c.points:>6} {c.worst:>10.3g} {c.tolerance:>8.3g}  {'PASS' if c.passed else 'FAIL'}"
        )
        lines.extend(
            textwrap.wrap(c.detail, width, initial_indent="    ", subsequent_indent="    ")
        )
    lines.append("")
    lines.append("Findings about the paper (Sec. III.B and Appendix):")
    for f in report.findings:
        lines.append(f"[{f.verdict.upper()}] {f.item}")
        lines.extend(
            textwrap.wrap(f.evidence, width, initial_indent="    ", subsequent_indent="    ")
        )
    if report.readings:
        lines.append("")
        lines.append("Read from the text (not recomputed):")
        for f in report.readings:
            lines.append(f"[{f.verdict.upper()}] {f.item}")
            lines.extend(
                textwrap.wrap(f.evidence, width, initial_indent="    ", subsequent_indent="    ")
            )
    lines.append("")
    if report.passed:
        lines.append("closed-form checks: PASS")
    else:
        lines.append("closed-form checks: FAIL (" + "; ".join(report.failed) + ")")
    return "\n".join(lines)
