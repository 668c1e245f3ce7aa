"""The Gaussian binary task of Sec. III.B (Eqs. 16-19) and its class-level logit perturbation.

Data model (Eq. 17): y in {-1, +1} with prior P(+1) : P(-1) = 1 : Gamma,
x ~ N(+theta, sigma_+^2 I) for y = +1 and N(-theta, sigma_-^2 I) for y = -1, theta = (eta, ..., eta) in R^d,
sigma_+ = sigma and sigma_- = K * sigma (K = 1 is Theorems 1-2, K > 1 is Theorem 3, Eqs. 49 and 51).
The classifier is u = w^T x + b with w = 1 (Appendix A, Lemma 1 of Xu et al.).

Perturbation (Eqs. 18-19): class c gets one logit shift delta_c with |delta_c| <= eps_c = rho_c * eps.
The first type maximises the class's loss, so it pushes the logit toward the wrong side
(delta_+ = -eps_+, delta_- = +eps_-); the second type minimises it (delta_+ = +eps_+, delta_- = -eps_-).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal

PerturbationType = Literal["first", "second"]
PERTURBATION_TYPES: tuple[str, ...] = ("first", "second")


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}"
        )
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def check_count(name: str, value: object, least: int) -> None:
    """A count (sample size, grid points, chunk): an integer (Python or NumPy, not a bool) >= ``least``.
    ValueError otherwise, naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def type_sign(kind: str, name: str = "type") -> int:
    """Return +1 for the first perturbation type (Eq. 18) and -1 for the second type (Eq. 19)."""
    if kind == "first":
        return 1
    if kind == "second":
        return -1
    raise ValueError(f"{name} must be one of {PERTURBATION_TYPES}, got {kind!r}")


@dataclass(frozen=True)
class GaussianTask:
    """Data model of Eq. (17) with prior ratio P+ : P- = 1 : Gamma and sigma_- = K * sigma_+.

    Args:
        gamma: prior ratio Gamma > 0 (the paper assumes Gamma > 1: class +1 is the minority).
        d: dimension d >= 1 (an integer).
        eta: mean coordinate eta > 0 (theta = (eta, ..., eta)).
        sigma: standard deviation sigma = sigma_+ > 0.
        K: variance ratio sigma_- / sigma_+ >= 1 (K = 1: Theorems 1-2; K > 1: Theorem 3).
    """

    gamma: float
    d: int
    eta: float
    sigma: float = 1.0
    K: float = 1.0

    def __post_init__(self) -> None:
        gamma = _check_real("gamma", self.gamma)
        if gamma <= 0:
            raise ValueError(f"gamma (prior ratio Gamma) must be > 0, got {self.gamma!r}")
        if isinstance(self.d, bool):  # True would read as d = 1 (bool is an int and a Real)
            raise TypeError(f"d (dimension) must be an integer >= 1, got {self.d!r}")
        if not isinstance(self.d, int):
            if isinstance(self.d, Real) and float(self.d).is_integer():
                object.__setattr__(self, "d", int(self.d))
            else:
                raise TypeError(f"d (dimension) must be an integer >= 1, got {self.d!r}")
        if self.d < 1:
            raise ValueError(f"d (dimension) must be an integer >= 1, got {self.d!r}")
        eta = _check_real("eta", self.eta)
        if eta <= 0:
            raise ValueError(f"eta (class mean coordinate) must be > 0, got {self.eta!r}")
        sigma = _check_real("sigma", self.sigma)
        if sigma <= 0:
            raise ValueError(f"sigma (standard deviation) must be > 0, got {self.sigma!r}")
        K = _check_real("K", self.K)
        if K < 1:
            raise ValueError(f"K (variance ratio sigma_-/sigma_+) must be >= 1, got {self.K!r}")
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "eta", eta)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "K", K)

    @property
    def sigma_plus(self) -> float:
        """Standard deviation of class +1 (sigma)."""
        return self.sigma

    @property
    def sigma_minus(self) -> float:
        """Standard deviation of class -1 (K * sigma)."""
        return self.K * self.sigma


@dataclass(frozen=True)
class Perturbation:
    """Class-level logit perturbation with bounds eps_+ = rho_plus * eps and eps_- = rho_minus * eps.

    Args:
        eps: base bound eps >= 0.
        rho_plus: multiplier rho_+ >= 0 of class +1.
        rho_minus: multiplier rho_- >= 0 of class -1.
        type_plus: "first" (Eq. 18, loss maximisation) or "second" (Eq. 19, loss minimisation) for class +1.
        type_minus: the same for class -1.
    """

    eps: float
    rho_plus: float = 1.0
    rho_minus: float = 1.0
    type_plus: PerturbationType = "first"
    type_minus: PerturbationType = "first"

    def __post_init__(self) -> None:
        for name in ("eps", "rho_plus", "rho_minus"):
            value = _check_real(name, getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        type_sign(self.type_plus, "type_plus")
        type_sign(self.type_minus, "type_minus")

    @property
    def eps_plus(self) -> float:
        """Bound of class +1, rho_+ * eps."""
        return self.rho_plus * self.eps

    @property
    def eps_minus(self) -> float:
        """Bound of class -1, rho_- * eps."""
        return self.rho_minus * self.eps

    def check_against(self, task: GaussianTask) -> None:
        """Raise ValueError unless 0 <= rho_c * eps < eta for both classes (the range of Theorems 1-3)."""
        for name, bound in (("rho_plus", self.eps_plus), ("rho_minus", self.eps_minus)):
            if not bound < task.eta:
                raise ValueError(
                    f"{name} * eps must be < eta = {task.eta!r} (Theorems 1-3 require 0 <= rho*eps < eta), "
                    f"got {name} = {getattr(self, name)!r}, eps = {self.eps!r}, product {bound!r}"
                )


@dataclass(frozen=True)
class FigureSpec:
    """Parameters of one of the paper's Figs. 3-6: the task, the fixed bound, and which rho is varied."""

    number: int
    task: GaussianTask
    eps: float
    vary: Literal["rho_plus", "rho_minus"]
    fixed_rho: float
    type_plus: PerturbationType
    type_minus: PerturbationType
    title: str

    @property
    def rho_max(self) -> float:
        """Upper end (excluded) of the allowed range of the varied rho: rho * eps < eta."""
        return self.task.eta / self.eps

    def perturbation(self, rho: float) -> Perturbation:
        """The perturbation at one value of the varied rho."""
        if self.vary == "rho_plus":
            return Perturbation(self.eps, rho, self.fixed_rho, self.type_plus, self.type_minus)
        return Perturbation(self.eps, self.fixed_rho, rho, self.type_plus, self.type_minus)

    def params(self) -> dict[str, object]:
        """A JSON-friendly description of the figure's parameters."""
        return {
            "Gamma": self.task.gamma,
            "d": self.task.d,
            "eta": self.task.eta,
            "sigma": self.task.sigma,
            "K": self.task.K,
            "eps": self.eps,
            "vary": self.vary,
            "rho_plus" if self.vary == "rho_minus" else "rho_minus": self.fixed_rho,
            "type_plus": self.type_plus,
            "type_minus": self.type_minus,
        }


#: The paper's parameters of Figs. 3-6 (Sec. III.B).
FIGURES: dict[int, FigureSpec] = {
    3: FigureSpec(
        3,
        GaussianTask(2.0, 2, 1.0, 1.0, 1.0),
        0.2,
        "rho_plus",
        1.0,
        "first",
        "first",
        "Fig. 3 (Theorem 1), first type on both classes",
    ),
    4: FigureSpec(
        4,
        GaussianTask(2.0, 2, 1.0, 1.0, 1.0),
        0.2,
        "rho_minus",
        1.0,
        "first",
        "second",
        "Fig. 4 (Theorem 2), first type on +1, second type on −1",
    ),
    5: FigureSpec(
        5,
        GaussianTask(3.5, 2, 1.0, 1.0, 3.0),
        0.1,
        "rho_plus",
        1.0,
        "first",
        "first",
        "Fig. 5 (Theorem 3), first type on both classes",
    ),
    6: FigureSpec(
        6,
        GaussianTask(1.1, 2, 1.0, 1.0, 2.5),
        0.2,
        "rho_minus",
        1.0,
        "first",
        "first",
        "Fig. 6 (Theorem 3), first type on both classes",
    ),
}


def figure_spec(number: int) -> FigureSpec:
    """Return the parameters of Fig. ``number`` (3, 4, 5 or 6)."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"figure must be an integer in {sorted(FIGURES)}, got {number!r}")
    if number not in FIGURES:
        raise ValueError(f"figure must be one of {sorted(FIGURES)}, got {number!r}")
    return FIGURES[number]
