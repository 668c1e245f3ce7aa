"""Gaussian binary-classification analysis of class-level logit perturbation (paper Sec. III.B, Appendix).

Modules: :mod:`~lpl_theory.task` (data model and perturbation, Eqs. 16-19), :mod:`~lpl_theory.symbolic` (sympy
derivation of b* and the natural errors, Theorems 1-3), :mod:`~lpl_theory.closed_form` (vectorised numpy
evaluation and global optimality), :mod:`~lpl_theory.paper` (the printed Eqs. 21, 23, 25, 44, 46, 50, 52, 54),
:mod:`~lpl_theory.verify` (numeric, Monte Carlo and corollary checks; implemented in ``verify_numeric``,
``verify_monte_carlo``, ``verify_findings``, ``verify_thresholds``, ``verify_results``),
:mod:`~lpl_theory.figures` (Figs. 3-6).
"""

__version__ = "0.1.0"  # the distribution's version (pyproject reads lpl_train.__version__; a test checks both)

try:
    from .closed_form import (
        Solution,
        db_star_drho,
        error_derivatives,
        perturbed_error,
        solve,
        solve_task,
    )
except ModuleNotFoundError as exc:  # a core install without the extra: say which one
    raise ModuleNotFoundError(
        f"lpl_theory needs {exc.name!r}, part of the [theory] extra: pip install 'lpl-torch[theory]'",
        name=exc.name,
    ) from exc
from .task import FIGURES, FigureSpec, GaussianTask, Perturbation, figure_spec

__all__ = [
    "FIGURES",
    "FigureSpec",
    "GaussianTask",
    "Perturbation",
    "Solution",
    "db_star_drho",
    "error_derivatives",
    "figure_spec",
    "perturbed_error",
    "solve",
    "solve_task",
]
