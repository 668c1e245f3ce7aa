"""The transcribed printed formulas: hand values, and agreement/disagreement with the derivation."""

import math

import numpy as np
import pytest

from lpl_theory import closed_form as cf
from lpl_theory import paper


def test_eq44_hand_value():
    # Gamma=2, d=2, eta=1, sigma=1, eps=0.2, rho_+=3: 0.2 + 2 log 2 / (0.2 - 4 + 0.6)
    assert paper.eq44_b_star(2.0, 2, 1.0, 1.0, 0.2, 3.0) == pytest.approx(
        0.2 + 2 * math.log(2) / -3.2
    )


def test_eq21_eq23_agree_with_closed_form_on_figure_grids():
    rho = np.linspace(0, 4.99, 50)
    s3 = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, rho, 1.0)
    p_plus, p_minus = paper.eq21(2.0, 2, 1.0, 1.0, 0.2, rho)
    assert np.allclose(p_plus, s3.R_plus, atol=1e-14) and np.allclose(
        p_minus, s3.R_minus, atol=1e-14
    )
    s4 = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, 1.0, rho, "first", "second")
    p_plus, p_minus = paper.eq23(2.0, 2, 1.0, 1.0, 0.2, rho)
    assert np.allclose(p_plus, s4.R_plus, atol=1e-14) and np.allclose(
        p_minus, s4.R_minus, atol=1e-14
    )


def test_eq25_eq50_agree_where_a_root_exists():
    rho = np.linspace(0, 9.99, 50)
    s5 = cf.solve(3.5, 2, 1.0, 1.0, 3.0, 0.1, rho, 1.0)
    assert np.allclose(
        paper.eq50_b_star(3.5, 2, 1.0, 1.0, 3.0, 0.1, rho, 1.0), s5.b_star, atol=1e-13
    )
    p_plus, p_minus = paper.eq25(3.5, 2, 1.0, 1.0, 3.0, 0.1, rho, 1.0)
    assert np.allclose(p_plus, s5.R_plus, atol=1e-14) and np.allclose(
        p_minus, s5.R_minus, atol=1e-14
    )
    # no real root: the printed form has a negative radicand
    assert np.isnan(paper.eq50_b_star(6.0, 2, 1.0, 1.0, 3.0, 0.1, 1.0, 1.0))


def test_eq52_as_printed_is_a_typo():
    printed = paper.eq52_b_star_as_printed(2.0, 2, 1.0, 1.0, 3.0)
    corrected = paper.eq52_b_star_corrected(2.0, 2, 1.0, 1.0, 3.0)
    derived = float(cf.solve(2.0, 2, 1.0, 1.0, 3.0, 0.1, 0.0, 0.0).b_star)
    # by hand: (-2*10 + 3*sqrt(16 + 32 log 1.5)) / 8
    hand = (-20 + 3 * math.sqrt(16 + 32 * math.log(1.5))) / 8
    assert corrected == pytest.approx(hand, rel=1e-14) and derived == pytest.approx(hand, rel=1e-12)
    assert printed == pytest.approx(-20 / 8 + 3 * math.sqrt(16 + 32 * math.log(1.5)), rel=1e-14)
    assert abs(printed - derived) > 10


def test_eq46_eq54_are_the_derivatives():
    rho = np.linspace(0, 4.9, 20)
    assert np.allclose(
        paper.eq46_db_drho_plus(2.0, 2, 1.0, 1.0, 0.2, rho),
        cf.db_star_drho("plus", 2.0, 2, 1.0, 1.0, 1.0, 0.2, rho, 1.0),
        atol=1e-13,
    )
    rho = np.linspace(0, 9.9, 20)
    assert np.allclose(
        paper.eq54_db_drho_plus(3.5, 2, 1.0, 1.0, 3.0, 0.1, rho),
        cf.db_star_drho("plus", 3.5, 2, 1.0, 1.0, 3.0, 0.1, rho, 1.0),
        atol=1e-13,
    )


def test_conditions_as_printed():
    assert paper.corollary1_condition(7.0, 2, 1.0, 1.0, 0.2)  # bound exp(1.96) = 7.099
    assert not paper.corollary1_condition(7.2, 2, 1.0, 1.0, 0.2)
    assert paper.corollary3_case1_condition(4.7, 2, 1.0, 1.0, 3.0, 0.1)
    assert not paper.corollary3_case1_condition(3.5, 2, 1.0, 1.0, 3.0, 0.1)  # Fig. 5 is outside it
    assert paper.corollary3_case2_condition(1.1, 2.5)
    assert paper.corollary2_condition(1.5) and not paper.corollary2_condition(0.5)


def test_conditions_are_strict_at_their_edges():
    """Corollary 2 prints Gamma > 1 and Corollary 3's second case K > Gamma: the equality is outside both (at
    K = Gamma and rho = 0, b* = -d eta (K-1)/(K+1) and U_+ = U_- = -2 sqrt(d) eta / ((K+1) sigma): neither class
    is the harder one)."""
    assert not paper.corollary2_condition(1.0)
    assert not paper.corollary3_case2_condition(3.0, 3.0)
    assert paper.corollary3_case2_condition(2.999, 3.0)


def test_transcriptions_reject_non_numbers():
    with pytest.raises(TypeError, match="must be numbers"):
        paper.eq44_b_star("2", 2, 1.0, 1.0, 0.2, 1.0)
    with pytest.raises(TypeError, match="must be numbers"):
        paper.eq44_b_star(2.0, 2, 1.0, 1.0, 0.2, True)
