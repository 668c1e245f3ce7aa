"""Planted errors: ``python -m lpl_theory verify`` must exit 1 and name the check that caught each one.

Each test plants one error in memory (the real modules, patched), then runs the CLI's ``verify`` in-process,
through its real code path and exit code, with fewer Monte Carlo samples than the default (the tolerances are in
standard errors, so they hold at any sample size).
"""

import dataclasses
import re

import numpy as np
import pytest

from lpl_theory import closed_form as cf
from lpl_theory import paper, symbolic, task
from lpl_theory import verify as V
from lpl_theory.__main__ import main

ARGS = ["verify", "--mc-samples", "200000", "--points", "40"]


def _verify(capsys):
    code = main(ARGS)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _failed(err):
    assert err.startswith("lpl-theory: verify: failed: ") and err.count("\n") == 1
    return set(err.split(": ", 3)[3].strip().split("; "))


def _flat(out):
    """The report with its wrapped lines joined (a detail may be wrapped anywhere)."""
    return " ".join(out.split())


def test_unmodified_verify_passes(capsys):
    code, out, err = _verify(capsys)
    assert code == 0 and err == ""
    assert "closed-form checks: PASS" in out
    for name in (
        V.NUMERIC_CHECK,
        V.DERIVATIVE_CHECK,
        V.MC_NATURAL_CHECK,
        V.MC_PERTURBED_CHECK,
        V.SYMBOLIC_CHECK,
    ):
        assert name in out
    # findings are computed, and do not fail the run
    assert "[WRONG] Corollary 3, first case" in out and "[INCOMPLETE] Fig. 5" in out
    # typos read from the text are listed apart from the computed verdicts
    assert out.index("Read from the text (not recomputed):") > out.index("[INCOMPLETE] Fig. 5")
    assert "Proof of Corollary 1: 'According to Eq. (45)" in out


@pytest.mark.parametrize(("shift", "probe"), [(0.3, "b*-h"), (-0.3, "b*+h")])
def test_shifted_b_star_fails(monkeypatch, capsys, shift, probe):
    # b* moved by +-0.3 everywhere, with the natural errors recomputed at the moved b* (a consistent wrong closed
    # form); the simulated R_lp is lower on the side b* was moved away from, and only that side's probe sees it
    core = cf._core

    def shifted(v):
        out = dict(core(v))
        out["b_star"] = out["b_star"] + shift
        return out

    monkeypatch.setattr(cf, "_core", shifted)
    code, out, err = _verify(capsys)
    assert code == 1
    failed = _failed(err)
    assert V.NUMERIC_CHECK in failed and V.MC_PERTURBED_CHECK in failed
    assert (
        V.MC_NATURAL_CHECK not in failed
    )  # the natural errors at the moved b* are right: only R_lp catches it
    assert "b* not the simulated minimiser" in out
    assert f"R_lp({probe}) - R_lp(b*) = -" in _flat(out)


def test_flipped_types_fail(monkeypatch, capsys):
    original = task.type_sign
    for module in (task, cf, symbolic):
        monkeypatch.setattr(module, "type_sign", lambda kind, name="type": -original(kind, name))
    code, out, err = _verify(capsys)
    assert code == 1
    failed = _failed(err)
    assert {V.NUMERIC_CHECK, V.MC_PERTURBED_CHECK, V.SYMBOLIC_CHECK} <= failed


def test_altered_printed_formula_fails(monkeypatch, capsys):
    # Eq. (21) transcribed with eps rho_+ added instead of subtracted in U_+
    original = paper.eq21_arguments

    def altered(Gamma, d, eta, sigma, eps, rho_plus):
        u_plus, u_minus = original(Gamma, d, eta, sigma, eps, rho_plus)
        return u_plus + 2 * eps * rho_plus / (d**0.5 * sigma), u_minus

    monkeypatch.setattr(paper, "eq21_arguments", altered)
    code, out, err = _verify(capsys)
    assert code == 1
    assert _failed(err) == {V.SYMBOLIC_CHECK}
    assert "Theorem 1 U_plus" in out
    assert "[WRONG] Eq. (44) b* and Eq. (21)/(45) errors of Theorem 1" in out


def test_altered_theorem2_formula_fails(monkeypatch, capsys):
    # Eq. (23) transcribed with eps rho_- subtracted instead of added in U_-: only Theorem 2's reduction reads it
    original = paper.eq23_arguments

    def altered(Gamma, d, eta, sigma, eps, rho_minus):
        u_plus, u_minus = original(Gamma, d, eta, sigma, eps, rho_minus)
        return u_plus, u_minus - 2 * eps * rho_minus / (d**0.5 * sigma)

    monkeypatch.setattr(paper, "eq23_arguments", altered)
    code, out, err = _verify(capsys)
    assert code == 1
    assert _failed(err) == {V.SYMBOLIC_CHECK}
    assert "nonzero: Theorem 2 U_minus" in _flat(out) and "Theorem 2 U_plus" not in _flat(out)
    assert "[WRONG] Eq. (23) errors of Theorem 2" in out


def test_altered_theorem3_formula_fails(monkeypatch, capsys):
    # Eq. (50) transcribed with the square root's factor K dropped: only Theorem 3's reduction reads it
    original = paper.eq50_b_star

    def altered(Gamma, d, eta, sigma, K, eps, rho_plus, rho_minus):
        b = original(Gamma, d, eta, sigma, K, eps, rho_plus, rho_minus)
        disc = (eps * rho_minus + eps * rho_plus - 2 * d * eta) ** 2 + 2 * d * (
            K**2 - 1
        ) * sigma**2 * symbolic.sp.log(K / Gamma)
        return b - (K - 1) * symbolic.sp.sqrt(disc) / (K**2 - 1)

    monkeypatch.setattr(paper, "eq50_b_star", altered)
    result = V.check_symbolic_reduction()
    assert not result.passed
    assert result.detail == "nonzero: Theorem 3 b_star"


def test_wrong_minus_side_derivative_fails(monkeypatch, capsys):
    # db*/drho_- (and with it dR/drho_-, which error_derivatives computes from it) 0.1% too large; db*/drho_+ right
    original = cf.db_star_drho

    def off(which, *a, **k):
        value = original(which, *a, **k)
        return value * 1.001 if which == "minus" else value

    monkeypatch.setattr(cf, "db_star_drho", off)
    code, out, err = _verify(capsys)
    assert code == 1
    assert _failed(err) == {V.DERIVATIVE_CHECK}
    flat = _flat(out)
    assert re.search(r"\d+ disagreements, e\.g\. db\*/drho_minus at", flat)
    assert "drho_plus at" not in flat


def test_closed_form_missing_a_local_minimum_fails(monkeypatch, capsys):
    # "no real b*" where b* exists but is not the global minimiser (K > 1): the global flag stays right (False),
    # so only the existence comparison with the numeric minima can see it
    solve = cf.solve

    def hidden(*a, **k):
        sol = solve(*a, **k)
        hide = np.asarray(sol.exists & ~sol.is_global)
        nan = np.where(hide, np.nan, 1.0)
        return dataclasses.replace(
            sol,
            exists=sol.exists & ~hide,
            b_star=sol.b_star * nan,
            R_plus=sol.R_plus * nan,
            R_minus=sol.R_minus * nan,
            R_total=sol.R_total * nan,
            perturbed_at_b_star=sol.perturbed_at_b_star * nan,
        )

    # the numeric check's random points (seed 0) include such points, e.g. the second one
    assert any(
        bool(s.exists & ~s.is_global)
        for s in (cf.solve_task(*ts) for ts in V.random_settings(int(ARGS[-1]), 0))
    )
    monkeypatch.setattr(cf, "solve", hidden)
    code, out, err = _verify(capsys)
    assert code == 1
    assert V.NUMERIC_CHECK in _failed(err)
    assert re.search(r"mismatches, e\.g\. existence at [^;]*: closed form False", _flat(out))


def test_reversed_corollary_direction_fails(monkeypatch, capsys):
    # the derivative that decides every corollary's direction, with its sign reversed
    original = cf.db_star_drho
    monkeypatch.setattr(cf, "db_star_drho", lambda *a, **k: -original(*a, **k))
    code, out, err = _verify(capsys)
    assert code == 1
    assert _failed(err) == {V.DERIVATIVE_CHECK}
    assert (
        "[WRONG] Corollary 1 (condition Eq. 48)" in out
    )  # the scan now reads the reversed direction


@pytest.mark.parametrize("flag", [True, False])
def test_wrong_global_flag_fails(monkeypatch, capsys, flag):
    # the global-optimality verdict forced to one value: the brute force and the simulation disagree somewhere
    solve = cf.solve

    def forced(*a, **k):
        sol = solve(*a, **k)
        return dataclasses.replace(sol, is_global=sol.exists & flag if flag else sol.exists & False)

    monkeypatch.setattr(cf, "solve", forced)
    code, _, err = _verify(capsys)
    assert code == 1
    failed = _failed(err)
    assert V.NUMERIC_CHECK in failed and V.MC_PERTURBED_CHECK in failed
