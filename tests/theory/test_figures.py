"""The figures: the plotted curves are the closed form, the non-global region is marked."""

import numpy as np
import pytest
from scipy.stats import norm

from lpl_theory import closed_form as cf
from lpl_theory import figures
from lpl_theory.figures import curve, draw_figure
from lpl_theory.task import FigureSpec, GaussianTask


def _line(ax, label):
    for line in ax.get_lines():
        if line.get_label() == label:
            return line
    raise AssertionError(f"no line {label!r}")


#: the paper's Figs. 3-6, typed in from Sec. III.B (not read from lpl_theory.task): Gamma, d, eta, sigma, K, eps,
#: the varied rho and its x-axis label, the fixed other rho (1) and the two perturbation types
PAPER = {
    3: ((2.0, 2, 1.0, 1.0, 1.0, 0.2), "rho_plus", r"$\rho_+$", ("first", "first")),
    4: ((2.0, 2, 1.0, 1.0, 1.0, 0.2), "rho_minus", r"$\rho_-$", ("first", "second")),
    5: ((3.5, 2, 1.0, 1.0, 3.0, 0.1), "rho_plus", r"$\rho_+$", ("first", "first")),
    6: ((1.1, 2, 1.0, 1.0, 2.5, 0.2), "rho_minus", r"$\rho_-$", ("first", "first")),
}


def _paper_solution(number, rho):
    params, vary, _, types = PAPER[number]
    rhos = {"rho_plus": 1.0, "rho_minus": 1.0, vary: np.asarray(rho, dtype=float)}
    return cf.solve(*params, rhos["rho_plus"], rhos["rho_minus"], *types)


@pytest.mark.parametrize("number", [3, 4, 5, 6])
def test_curves_are_the_closed_form(number):
    fig = draw_figure(number, mc_samples=0, grid=50)
    ax_cls, ax_tot = fig.axes
    params, _, xlabel, _ = PAPER[number]
    rho = np.linspace(0.0, params[2] / params[5], 50, endpoint=False)  # [0, eta/eps)
    sol = _paper_solution(number, rho)
    # R(f_opt, .) only where b* is the optimum along the whole curve; R(b*, .) where the band applies
    who = "f_{opt}" if sol.is_global.all() else "b^*"
    for label, ys in (("+1", sol.R_plus), ("-1", sol.R_minus)):
        line = _line(ax_cls, f"$\\mathcal{{R}}({who},{label})$")
        assert np.allclose(line.get_xdata(), rho, rtol=0, atol=1e-12)
        assert np.allclose(line.get_ydata(), ys, rtol=1e-12, atol=0)
    total = r"$\mathcal{R}(f_{opt})$ at $b^*$" if who == "f_{opt}" else r"$\mathcal{R}(b^*)$"
    assert np.allclose(_line(ax_tot, total).get_xdata(), rho, rtol=0, atol=1e-12)
    assert np.allclose(_line(ax_tot, total).get_ydata(), sol.R_total, rtol=1e-12, atol=0)
    assert (who == "b^*") == (number == 5)
    # the x axis names the rho that varies (rho_+ in Figs. 3 and 5, rho_- in Figs. 4 and 6), on both panels
    assert ax_cls.get_xlabel() == xlabel and ax_tot.get_xlabel() == xlabel
    # and shows the whole allowed range [0, eta/eps), with room left of rho = 0 for the Monte Carlo marker there
    for ax in (ax_cls, ax_tot):
        lo, hi = ax.get_xlim()
        assert lo < 0 and hi == pytest.approx(params[2] / params[5], rel=1e-12)
    bands = [p for p in ax_tot.patches if p.get_label().startswith("$b^*$ not global")]
    assert bool(bands) == (number == 5)


def _brute_force(g, d, eta, sg, K, eps, rho_plus, rho_minus):
    """(exists, is_global) of b* on a grid of rho_+ (first type on both classes), from R_lp(b) evaluated with
    scipy's normal CDF on a fine grid of b: b* exists where R_lp has an interior local minimum, and is global
    where that minimum is below R_lp(-inf) = 1/(1 + Gamma) (R_lp(+inf) = Gamma/(1 + Gamma) is larger for
    Gamma > 1)."""
    assert g > 1
    b = np.linspace(-15.0, 15.0, 30001)[None, :]
    s = np.sqrt(d) * sg
    e_plus, e_minus = np.asarray(rho_plus)[:, None] * eps, rho_minus * eps
    r = (
        norm.cdf((-d * eta - b + e_plus) / s) + g * norm.cdf((-d * eta + b + e_minus) / (K * s))
    ) / (1 + g)
    local = (r[:, 1:-1] < r[:, :-2]) & (r[:, 1:-1] < r[:, 2:])
    exists = local.any(axis=1)
    lowest = np.where(local, r[:, 1:-1], np.inf).min(axis=1)
    return exists, exists & (lowest < 1 / (1 + g))


def _runs(x, mask):
    """Contiguous runs of ``mask`` as x-intervals reaching half-way to the neighbouring grid points (clipped
    to [x[0], x[-1] + step/2])."""
    step = x[1] - x[0]
    out, i = [], 0
    while i < x.size:
        if mask[i]:
            j = i
            while j + 1 < x.size and mask[j + 1]:
                j += 1
            out.append((max(x[0], x[i] - step / 2), x[j] + step / 2))
            i = j + 1
        else:
            i += 1
    return out


def _spans(ax, hatched):
    """x-intervals of the grey bands (hatched=False) or of the hatched ones (hatched=True)."""
    return [
        (p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if bool(p.get_hatch()) == hatched
    ]


def _same_spans(got, want):
    assert len(got) == len(want), (got, want)
    assert np.allclose(np.reshape(got, (-1, 2)), np.reshape(want, (-1, 2)), rtol=0, atol=1e-12), (
        got,
        want,
    )


def test_bands_and_hatching_follow_a_brute_force_minimisation(monkeypatch):
    """A setting with all three cases along rho_+ (K = 2, Gamma = 5): b* global, b* only local, no real b*.
    The grey band must cover exactly the grid cells where the brute force finds b* not global (or absent), the
    hatching exactly those where it finds no local minimum."""
    spec = FigureSpec(
        5,
        GaussianTask(5.0, 2, 1.0, 1.0, 2.0),
        0.1,
        "rho_plus",
        1.0,
        "first",
        "first",
        "K=2, Gamma=5",
    )
    monkeypatch.setattr(figures, "figure_spec", lambda number: spec)
    fig = draw_figure(5, mc_samples=0, grid=40)
    rho = np.linspace(0.0, 10.0, 40, endpoint=False)
    exists, is_global = _brute_force(5.0, 2, 1.0, 1.0, 2.0, 0.1, rho, 1.0)
    assert is_global.any() and (exists & ~is_global).any() and (~exists).any()
    for ax in fig.axes:
        _same_spans(_spans(ax, hatched=False), _runs(rho, ~is_global))
        _same_spans(_spans(ax, hatched=True), _runs(rho, ~exists))


def test_figure5_marks_whole_range_and_draws_global_optimum():
    fig = draw_figure(5, mc_samples=0, grid=40)
    ax_tot = fig.axes[1]
    dashed = _line(ax_tot, "global optimum (constant classifier)")
    assert np.allclose(dashed.get_ydata(), 1 / 4.5)
    assert len(dashed.get_xdata()) == 40
    # the brute force finds b* at every rho_+ of the grid, never global: one grey band over the whole range
    # [0, 9.75 + 0.25/2], no hatching
    rho = np.linspace(0.0, 10.0, 40, endpoint=False)
    exists, is_global = _brute_force(3.5, 2, 1.0, 1.0, 3.0, 0.1, rho, 1.0)
    assert exists.all() and not is_global.any()
    for ax in fig.axes:
        _same_spans(_spans(ax, hatched=False), [(0.0, 9.875)])
        assert _spans(ax, hatched=True) == []
    # the better constant classifier predicts -1: R_lp(-inf) = 1/(1 + Gamma) < R_lp(+inf) = Gamma/(1 + Gamma)
    assert 1 / 4.5 < 3.5 / 4.5
    (band,) = [p for p in ax_tot.patches if p.get_label().startswith("$b^*$ not global")]
    assert "predict $-1$: $\\mathcal{R}_+=1$, $\\mathcal{R}_-=0$" in band.get_label()
    assert "predict $+1$" not in band.get_label()


def _markers(ax):
    """{label suffix: (x, y, bar half-lengths)} of the error-bar containers of a panel."""
    out = {}
    for c in ax.containers:
        data, _, (bars,) = c.lines
        half = np.array([abs(seg[1][1] - seg[0][1]) / 2 for seg in bars.get_segments()])
        out[c.get_label().rsplit(", ", 1)[-1]] = (data.get_xdata(), data.get_ydata(), half)
    return out


def test_monte_carlo_markers_near_curve():
    n = 200_000
    fig = draw_figure(3, mc_samples=n, mc_points=3, grid=20)
    ax_cls, ax_tot = fig.axes
    marks = _markers(ax_cls)
    assert set(marks) == {"$+1$", "$-1$"}
    xs = marks["$+1$"][0]
    assert np.allclose(marks["$-1$"][0], xs)
    sol = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, np.asarray(xs), 1.0)
    # each class's markers lie within 4 s.e. of its own curve, and the two classes' curves are far apart
    for key, ref in (("$+1$", sol.R_plus), ("$-1$", sol.R_minus)):
        assert np.all(np.abs(marks[key][1] - ref) <= 4 * np.sqrt(ref * (1 - ref) / n)), key
    assert np.all(np.abs(sol.R_plus - sol.R_minus) > 30 * np.sqrt(0.25 / n))
    # the bars are +-2 standard errors of a binomial fraction, sqrt(p (1 - p) / n) at the marker's p
    for key, (_, y, half) in marks.items():
        assert half == pytest.approx(2 * np.sqrt(y * (1 - y) / n), rel=1e-9), key
    # the total: (R_+ + Gamma R_-)/(1 + Gamma) with the two classes' independent s.e. combined
    (tx, ty, thalf) = _markers(ax_tot)[next(iter(_markers(ax_tot)))]
    yp, ym = marks["$+1$"][1], marks["$-1$"][1]
    assert np.allclose(tx, xs) and ty == pytest.approx((yp + 2 * ym) / 3, rel=1e-12)
    se = np.hypot(np.sqrt(yp * (1 - yp) / n), 2 * np.sqrt(ym * (1 - ym) / n)) / 3
    assert thalf == pytest.approx(2 * se, rel=1e-9)
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
    # booleans are not values of rho (closed_form.solve refuses them too): [True, False] read as [1, 0]
    with pytest.raises(TypeError, match="rho must be numbers"):
        curve(3, [True, False])
    with pytest.raises(ValueError, match="mc_samples"):
        draw_figure(3, mc_samples=-1)
    with pytest.raises(ValueError, match="mc_points must be an integer >= 1"):
        draw_figure(3, mc_points=0)


def test_written_figures_carry_no_version_or_date(tmp_path, monkeypatch):
    """The files depend on the data only: no matplotlib version (PNG "Software") and no date (PDF), so a rerun
    writes the same bytes. A small stand-in figure keeps it fast; write_figures' own savefig settings are tested."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def tiny(number, **kw):
        fig = Figure(figsize=(1.0, 1.0))
        FigureCanvasAgg(fig)
        fig.subplots().plot([0, 1], [0, number])
        return fig

    monkeypatch.setattr(figures, "draw_figure", tiny)
    paths = figures.write_figures(tmp_path, mc_samples=0)
    assert len(paths) == 8
    for n in (3, 4, 5, 6):
        png = (tmp_path / f"fig{n}.png").read_bytes()
        assert b"Software" not in png and b"matplotlib" not in png.lower()
        assert b"CreationDate" not in (tmp_path / f"fig{n}.pdf").read_bytes()
