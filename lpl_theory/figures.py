"""Figs. 3-6 of the paper (Sec. III.B): natural per-class and total errors of the classifier at b* against rho.

Each figure has two panels as in the paper: left, the per-class errors; right, the total error. Curves are the
closed form at the first-order-condition minimiser b*; markers are Monte Carlo estimates (10^7 samples per class by
default, seeded; every marker of a figure uses the same draws, so the markers' differences are far more precise
than their +-2 s.e. bars). The per-class curves are labelled R(f_opt, +-1) where b* is the global minimiser of the
perturbed error along the whole curve, and R(b*, +-1) otherwise. A grey band marks any rho where b* is not the
global minimiser (there the constant classifier is better, and its total error is drawn dashed in the right panel;
its per-class errors, 1 and 0 or 0 and 1, are named in the legend) and hatching marks rho where no real b* exists.
Matplotlib is used through its object API with the Agg canvas, and mathtext only (no LaTeX).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import closed_form as cf
from .task import FigureSpec, check_count, figure_spec

__all__ = ["curve", "default_rho", "draw_figure", "write_figures"]


def default_rho(spec: FigureSpec, points: int = 200) -> np.ndarray:
    """``points`` values of the varied rho evenly covering the allowed range [0, eta/eps)."""
    check_count("points", points, 2)
    return np.linspace(0.0, spec.rho_max, points, endpoint=False)


def curve(number: int, rho: Any = None, spec: FigureSpec | None = None) -> dict[str, Any]:
    """The data of Fig. ``number`` at the given rho values (default: :func:`default_rho`).

    Args:
        number: the paper's figure number (3, 4, 5 or 6).
        rho: values of the varied rho, each in [0, eta/eps); default a 200-point grid of that range.
        spec: optional replacement of the figure's parameters (e.g. another Gamma), same varied rho.

    Returns a dict with keys ``figure``, ``params``, ``rho``, ``b_star``, ``R_plus``, ``R_minus``, ``R_total``,
    ``b_star_is_global`` (lists aligned with ``rho``; NaN where no real b* exists).
    """
    if spec is None:
        spec = figure_spec(number)
    elif not isinstance(spec, FigureSpec):
        raise TypeError(f"spec must be a FigureSpec, got {type(spec).__name__}")
    if rho is None and not np.isfinite(spec.rho_max):  # the default grid spans [0, eta/eps)
        raise ValueError(
            f"eta/eps, the end of the range of rho, overflows float64 (eta = {spec.task.eta:g}, eps = {spec.eps:g}); "
            "choose eta and eps with a finite ratio, or give the values of rho"
        )
    if rho is not None and cf._is_bool(rho):  # True would read as rho = 1, as solve refuses it
        raise TypeError(f"rho must be numbers, got {rho!r}")
    r = default_rho(spec) if rho is None else np.asarray(rho, dtype=float)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rho must be a non-empty 1-d list of numbers, got {rho!r}")
    if not np.all(np.isfinite(r)) or np.any(r < 0) or np.any(r * spec.eps >= spec.task.eta):
        raise ValueError(
            f"rho must satisfy 0 <= rho*eps < eta, i.e. 0 <= rho < {spec.rho_max:g} for Fig. {number}, got "
            f"{r.tolist()}"
        )
    sol = _solve(spec, r)
    return {
        "figure": number,
        "params": spec.params(),
        "rho": r.tolist(),
        "b_star": sol.b_star.tolist(),
        "R_plus": sol.R_plus.tolist(),
        "R_minus": sol.R_minus.tolist(),
        "R_total": sol.R_total.tolist(),
        "b_star_is_global": sol.is_global.tolist(),
    }


def _solve(spec: FigureSpec, rho: np.ndarray) -> cf.Solution:
    t = spec.task
    rp, rm = (rho, spec.fixed_rho) if spec.vary == "rho_plus" else (spec.fixed_rho, rho)
    return cf.solve(
        t.gamma, t.d, t.eta, t.sigma, t.K, spec.eps, rp, rm, spec.type_plus, spec.type_minus
    )


def _monte_carlo(spec: FigureSpec, rho: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Simulated natural errors at b*(rho) for every rho, all on the same draws (common random numbers)."""
    from .verify import monte_carlo_errors

    out = np.full((rho.size, 2), np.nan)
    sol = _solve(spec, rho)
    ok = np.asarray(sol.exists)
    if ok.any():
        ss = np.random.SeedSequence([seed, spec.number])
        r_plus, r_minus = monte_carlo_errors(
            spec.task, np.asarray(sol.b_star)[ok], samples, int(ss.generate_state(1)[0])
        )
        out[ok, 0], out[ok, 1] = r_plus, r_minus
    return out


def _bands(x: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """Contiguous x-intervals where ``mask`` is True (edges half-way to the neighbouring grid points)."""
    out = []
    step = x[1] - x[0] if x.size > 1 else 1.0
    i = 0
    while i < x.size:
        if mask[i]:
            j = i
            while j + 1 < x.size and mask[j + 1]:
                j += 1
            out.append((max(x[0], x[i] - step / 2), min(x[-1] + step / 2, x[j] + step / 2)))
            i = j + 1
        else:
            i += 1
    return out


def draw_figure(
    number: int, mc_samples: int = 10_000_000, mc_points: int = 6, seed: int = 0, grid: int = 200
):
    """Draw Fig. ``number`` (3, 4, 5 or 6) and return the matplotlib Figure (Agg canvas).

    Args:
        number: the paper's figure number.
        mc_samples: Monte Carlo samples per class, shared by every marker (0 draws no markers).
        mc_points: number of rho values with a Monte Carlo marker.
        seed: seed of the simulation.
        grid: number of rho values of the curves.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spec = figure_spec(number)
    check_count("mc_samples", mc_samples, 0)
    check_count("mc_points", mc_points, 1)
    rho = default_rho(spec, grid)
    sol = _solve(spec, rho)
    t = spec.task
    varied = r"\rho_+" if spec.vary == "rho_plus" else r"\rho_-"

    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax_cls, ax_tot = fig.subplots(1, 2)
    bad = ~np.asarray(sol.is_global)
    # where b* is not the optimum the curves are the errors of the classifier at b*, not of f_opt
    who = "b^*" if bad.any() else "f_{opt}"
    ax_cls.plot(rho, sol.R_minus, color="tab:blue", lw=2, label=f"$\\mathcal{{R}}({who},-1)$")
    ax_cls.plot(rho, sol.R_plus, color="tab:red", lw=2, label=f"$\\mathcal{{R}}({who},+1)$")
    total_label = f"$\\mathcal{{R}}({who})$" + (" at $b^*$" if who == "f_{opt}" else "")
    ax_tot.plot(rho, sol.R_total, color="black", lw=2, label=total_label)

    if bad.any():
        missing = ~np.asarray(sol.exists)
        if np.all(np.isneginf(sol.b_global[bad])):
            trivial = r"predict $-1$: $\mathcal{R}_+=1$, $\mathcal{R}_-=0$"
        else:
            trivial = r"predict $+1$: $\mathcal{R}_+=0$, $\mathcal{R}_-=1$"
        for ax in (ax_cls, ax_tot):
            for k, (lo, hi) in enumerate(_bands(rho, bad)):
                ax.axvspan(
                    lo,
                    hi,
                    color="0.85",
                    zorder=0,
                    label=f"$b^*$ not global (optimum: {trivial})" if k == 0 else None,
                )
            for lo, hi in _bands(rho, missing):
                ax.axvspan(lo, hi, color="0.6", hatch="//", fill=False, zorder=0)
        ax_tot.plot(
            rho[bad],
            sol.R_total_global[bad],
            color="0.35",
            ls="--",
            lw=1.5,
            label="global optimum (constant classifier)",
        )
        if missing.any():
            ax_tot.plot(
                [],
                [],
                color="0.6",
                ls="none",
                marker="s",
                mfc="none",
                label=r"no real $b^*$ (hatched)",
            )

    if mc_samples > 0:
        rho_mc = np.linspace(0.0, spec.rho_max, mc_points, endpoint=False)
        mc = _monte_carlo(spec, rho_mc, mc_samples, seed)
        tot = (mc[:, 0] + t.gamma * mc[:, 1]) / (1 + t.gamma)
        se = np.sqrt(mc * (1 - mc) / mc_samples)
        se_tot = np.sqrt(se[:, 0] ** 2 + (t.gamma * se[:, 1]) ** 2) / (1 + t.gamma)
        lab = f"Monte Carlo $\\pm2$ s.e. ({mc_samples:.0e}/class, common draws)"
        style = {"mfc": "none", "ms": 7, "capsize": 3, "ls": "none"}
        ax_cls.errorbar(
            rho_mc, mc[:, 1], 2 * se[:, 1], fmt="o", color="tab:blue", label=lab + ", $-1$", **style
        )
        ax_cls.errorbar(
            rho_mc, mc[:, 0], 2 * se[:, 0], fmt="s", color="tab:red", label=lab + ", $+1$", **style
        )
        ax_tot.errorbar(rho_mc, tot, 2 * se_tot, fmt="o", color="black", label=lab, **style)

    for ax, ylabel in ((ax_cls, "natural error"), (ax_tot, "total natural error")):
        ax.set_xlabel(f"${varied}$")
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.03 * spec.rho_max, spec.rho_max)  # room for the marker at rho = 0
        ax.grid(alpha=0.3)
        low, high = ax.get_ylim()  # headroom for the legend, which hid a marker at rho = 0 (Fig. 4)
        ax.set_ylim(low, high + 0.3 * (high - low))
        ax.legend(fontsize=8, loc="upper center")
    ax_cls.set_title(f"$\\mathcal{{R}}({who},-1)$ and $\\mathcal{{R}}({who},+1)$", fontsize=10)
    ax_tot.set_title(
        f"$\\mathcal{{R}}({who})=(\\mathcal{{R}}_+ + \\Gamma\\,\\mathcal{{R}}_-)/(1+\\Gamma)$",
        fontsize=10,
    )
    fixed = r"\rho_-" if spec.vary == "rho_plus" else r"\rho_+"
    fig.suptitle(
        f"{spec.title}:  $\\Gamma={t.gamma:g}$, $d={t.d}$, $\\eta={t.eta:g}$, $\\epsilon={spec.eps:g}$, "
        f"$\\sigma={t.sigma:g}$, $K={t.K:g}$, ${fixed}={spec.fixed_rho:g}$",
        fontsize=10,
    )
    return fig


def write_figures(out: str | Path, mc_samples: int = 10_000_000, seed: int = 0) -> list[Path]:
    """Write fig3 ... fig6 as .png and .pdf into ``out`` (created if missing); return the paths written."""
    if not isinstance(out, str | Path):
        raise TypeError(f"out must be a path, got {out!r}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out must be a directory, got the file {str(out_dir)!r}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
        reason = f"{str(blocker)!r} is a file, not a directory" if blocker else exc.strerror
        raise ValueError(f"out: cannot create the directory {str(out_dir)!r}: {reason}") from None
    written = []
    for number in (3, 4, 5, 6):
        fig = draw_figure(number, mc_samples=mc_samples, seed=seed)
        for ext, kw in (
            ("png", {"dpi": 150, "metadata": {"Software": None}}),
            ("pdf", {"metadata": {"CreationDate": None}}),
        ):
            path = out_dir / f"fig{number}.{ext}"
            try:
                fig.savefig(path, **kw)
            except OSError as exc:
                raise ValueError(f"out: cannot write {str(path)!r}: {exc.strerror}") from None
            written.append(path)
    return written
