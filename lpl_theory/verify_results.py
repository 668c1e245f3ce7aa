"""What the checks of :mod:`lpl_theory.verify` return: one closed-form check, one finding, the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CheckResult", "Finding", "Report"]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check of the closed form: ``passed`` means within ``tolerance``."""

    name: str
    passed: bool
    points: int
    worst: float
    tolerance: float
    detail: str


@dataclass(frozen=True)
class Finding:
    """One statement of the paper with its verdict.

    Attributes:
        item: what is checked (equation or claim).
        verdict: "confirmed", "typo", "incomplete" or "wrong".
        evidence: how it was established, with a concrete parameter point and numbers where relevant.
    """

    item: str
    verdict: str
    evidence: str


@dataclass
class Report:
    """All checks and findings of :func:`lpl_theory.verify.run_all`; ``readings`` are typos read from the text,
    not computed."""

    checks: list[CheckResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    readings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every closed-form check passed (findings about the paper do not count)."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[str]:
        """Names of the checks that failed."""
        return [c.name for c in self.checks if not c.passed]
