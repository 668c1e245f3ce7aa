"""The figures: the plotted curves are the closed form, the non-global region is marked."""

import numpy as np
import pytest

from lpl_theory import closed_form as cf
from lpl_theory.figures import curve, default_rho, draw_figure
from lpl_theory.task import FIGURES


def _line(ax, label):
    for line in ax.get_lines():
        if line.get_label() == label:
            return line
    raise AssertionError(f"no line {label!r}")


@pytest.mark.parametrize("number", [3, 4, 5, 6])
def test_curves_are_the_closed_form(number):
    fig = draw_figure(number, mc_samples=0, grid=50)
    ax_cls, ax_tot = fig.axes
    spec = FIGURES[number]
    rho = default_rho(spec, 50)
    data = curve(number, rho)
    # R(f_opt, .) only where b* is the optimum along the whole curve; R(b*, .) where the band applies
    who = "f_{opt}" if all(data["b_star_is_global"]) else "b^*"
    assert np.allclose(_line(ax_cls, f"$\\mathcal{{R}}({who},+1)$").get_ydata(), data["R_plus"])
    assert np.allclose(_line(ax_cls, f"$\\mathcal{{R}}({who},-1)$").get_ydata(), data["R_minus"])
    total = r"$\mathcal{R}(f_{opt})$ at $b^*$" if who == "f_{opt}" else r"$\mathcal{R}(b^*)$"
    assert np.allclose(_line(ax_tot, total).get_xdata(), rho)
    assert (who == "b^*") == (number == 5)
    assert ax_cls.get_xlabel() in (r"$\rho_+$", r"$\rho_-$")
    bands = [p for p in ax_tot.patches if p.get_label().startswith("$b^*$ not global")]
    assert bool(bands) == (number == 5)


def test_figure5_marks_whole_range_and_draws_global_optimum():
    fig = draw_figure(5, mc_samples=0, grid=40)
    ax_tot = fig.axes[1]
    dashed = _line(ax_tot, "global optimum (constant classifier)")
    assert np.allclose(dashed.get_ydata(), 1 / 4.5)
    assert len(dashed.get_xdata()) == 40


def test_monte_carlo_markers_near_curve():
    fig = draw_figure(3, mc_samples=200_000, mc_points=3, grid=20)
    ax_cls = fig.axes[0]
    containers = ax_cls.containers
    assert len(containers) == 2
    xs = containers[1].lines[0].get_xdata()
    ys = containers[1].lines[0].get_ydata()  # class +1 markers
    ref = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, np.asarray(xs), 1.0).R_plus
    assert np.all(np.abs(ys - ref) <= 4 * np.sqrt(ref * (1 - ref) / 200_000))
    assert ax_cls.get_xlim()[0] < 0.0  # the marker at rho = 0 is not clipped


def test_figure6_markers_resolve_the_change_of_the_total_error():
    # common draws for every marker: the simulated total error falls with rho_- as the curve does, although
    # each marker's own standard error is of the order of the whole change at this sample size
    fig = draw_figure(6, mc_samples=1_000_000, mc_points=6, grid=20)
    ax_tot = fig.axes[1]
    ys = ax_tot.containers[0].lines[0].get_ydata()
    xs = ax_tot.containers[0].lines[0].get_xdata()
    ref = cf.solve(1.1, 2, 1.0, 1.0, 2.5, 0.2, 1.0, np.asarray(xs)).R_total
    assert np.all(np.diff(ref) < 0) and np.all(np.diff(ys) < 0)
    # the differences between markers follow the curve's much more closely than one marker's s.e.
    se = np.sqrt((0.07 * 0.93 + 1.1**2 * 0.3 * 0.7) / 1_000_000) / 2.1
    assert np.max(np.abs(np.diff(ys) - np.diff(ref))) < se


def test_curve_validation():
    with pytest.raises(ValueError, match="rho must satisfy"):
        curve(3, [0.0, 5.0])
    with pytest.raises(ValueError, match="non-empty"):
        curve(3, [])
    with pytest.raises(ValueError, match="mc_samples"):
        draw_figure(3, mc_samples=-1)
