"""Theory meets experiment: train a linear classifier with the class-level logit perturbation on the Gaussian
binary task of Sec. III.B and compare where it lands with the closed-form b* of ``lpl_theory``.

Data (Eq. 17): y = +1 with prior 1/(1 + Γ), x ~ N(θ, σ²I); y = -1, x ~ N(-θ, K²σ²I); θ = (η, ..., η).
Classifier (Appendix A): u = wᵀx + b with w = 1 (the theory's w; optionally learned). Class-level
perturbation (Eqs. 18-19): class c's logit is shifted by its bound ε_c = ρ_c ε, towards the wrong side for the
first type (loss maximisation) and towards the right side for the second type (loss minimisation). With one
logit per sample the inner maximisation/minimisation of LPL (Eq. 26) is solved exactly at the bound, so the
perturbed margins are ``u - s₊ε₊`` for y = +1 and ``-(u + s₋ε₋)`` for y = -1 (s = +1 first type, -1 second).

Training objectives, minimised by full-batch Adam on ``n_train`` samples:

* ``"smooth01"``: the perturbed 0-1 error of Eq. 20 smoothed as sigmoid(-margin / T): the objective whose
  exact minimiser the theory's b* is (as T → 0 and n → ∞);
* ``"ce"``: the logistic (cross-entropy) loss on the perturbed logits, i.e. the LPL loss for this task.

The per-class natural errors of the trained classifier are computed exactly from (w, b) (Gaussian tails),
so the only sampling noise is in training.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr

__all__ = [
    "LOSSES",
    "Trained",
    "compare_figure",
    "natural_errors",
    "plot_comparison",
    "train_linear",
]

LOSSES = ("smooth01", "ce")


@dataclass(frozen=True)
class Trained:
    """A trained linear classifier u = wᵀx + b in the theory's scale (b_equiv = b / mean(w)) and its exact
    natural errors R(f, +1), R(f, -1) and total error (Eq. 20 with the priors)."""

    w: list[float]
    b: float
    b_equiv: float
    R_plus: float
    R_minus: float
    R_total: float


def natural_errors(
    w: Sequence[float], b: float, gamma: float, eta: float, sigma: float = 1.0, K: float = 1.0
) -> tuple[float, float, float]:
    """Exact per-class errors of sign(wᵀx + b) on the Gaussian task: (R₊, R₋, total).

    R₊ = Φ(-(wᵀθ + b) / (σ‖w‖)), R₋ = Φ((b - wᵀθ) / (Kσ‖w‖)), total = (R₊ + Γ R₋) / (1 + Γ).
    """
    w = np.asarray(w, dtype=float)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or not np.any(w):
        raise ValueError(f"w must be a non-zero finite vector, got {w!r}")
    for name, v in (("gamma", gamma), ("eta", eta), ("sigma", sigma), ("K", K)):
        if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if isinstance(b, bool) or not isinstance(b, int | float):
        raise TypeError(f"b must be a real number, got {b!r}")
    if not math.isfinite(b):
        raise ValueError(f"b must be finite, got {b!r}")
    norm = float(np.linalg.norm(w))
    wt = float(w.sum()) * eta
    r_plus = float(ndtr(-(wt + b) / (sigma * norm)))
    r_minus = float(ndtr((b - wt) / (K * sigma * norm)))
    return r_plus, r_minus, (r_plus + gamma * r_minus) / (1 + gamma)


def train_linear(
    task: Any,
    perturbation: Any,
    loss: str = "smooth01",
    n_train: int = 100000,
    seed: int = 0,
    steps: int = 600,
    lr: float = 0.05,
    temperature: float = 0.1,
    learn_w: bool = False,
) -> Trained:
    """Train u = wᵀx + b on ``n_train`` samples of ``task`` (an ``lpl_theory.GaussianTask``) with the
    class-level perturbation ``perturbation`` (an ``lpl_theory.Perturbation``, Eqs. 18-19).

    Args:
        loss: ``"smooth01"`` (smoothed perturbed 0-1 error, temperature ``temperature``) or ``"ce"``.
        n_train: training samples; round(n Γ/(1 + Γ)) of class -1, the rest of class +1.
        seed: data and initialisation seed.
        steps, lr: full-batch Adam iterations and step size.
        learn_w: learn w as well (default: w = 1 as in the theory).
    """
    from lpl_theory import GaussianTask, Perturbation
    from lpl_theory.task import type_sign

    if not isinstance(task, GaussianTask):
        raise TypeError(f"task must be an lpl_theory.GaussianTask, got {type(task).__name__}")
    if not isinstance(perturbation, Perturbation):
        raise TypeError(
            f"perturbation must be an lpl_theory.Perturbation, got {type(perturbation).__name__}"
        )
    perturbation.check_against(task)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    for name, v in (("n_train", n_train), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"{name} must be an int >= 2, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    for name, v in (("lr", lr), ("temperature", temperature)):
        if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if not isinstance(learn_w, bool):
        raise TypeError(f"learn_w must be a bool, got {learn_w!r}")
    from lpl_train.data.gaussian import sample_gaussian

    g = task.gamma
    n_neg = int(round(n_train * g / (1 + g)))
    rng = np.random.default_rng(seed)
    x, y01 = sample_gaussian(
        n_neg, n_train - n_neg, task.d, task.eta, task.sigma_plus, task.sigma_minus, rng
    )
    x64 = torch.from_numpy(x).double()
    ypm = torch.from_numpy(y01).double() * 2 - 1  # +1 / -1
    shift = torch.where(
        ypm > 0,
        torch.full_like(ypm, -type_sign(perturbation.type_plus) * perturbation.eps_plus),
        torch.full_like(ypm, type_sign(perturbation.type_minus) * perturbation.eps_minus),
    )  # δ_y added to the logit: first type pushes towards the wrong side
    w = torch.ones(task.d, dtype=torch.float64, requires_grad=learn_w)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([b, w] if learn_w else [b], lr=lr)
    for _ in range(steps):
        margin = ypm * (x64 @ w + b + shift)
        value = (
            torch.sigmoid(-margin / temperature).mean()
            if loss == "smooth01"
            else torch.nn.functional.softplus(-margin).mean()
        )
        opt.zero_grad()
        value.backward()
        opt.step()
    wv = w.detach().numpy().astype(float)
    bv = float(b.detach())
    rp, rm, rt = natural_errors(wv, bv, g, task.eta, task.sigma, task.K)
    return Trained(list(wv), bv, bv / float(wv.mean()), rp, rm, rt)


def compare_figure(
    number: int,
    points: int = 7,
    losses: Sequence[str] = LOSSES,
    n_train: int = 100000,
    seed: int = 0,
    **train_kw: Any,
) -> dict[str, Any]:
    """Theory vs training along the varied ρ of the paper's Fig. ``number`` (3-6).

    Returns plain data: ``rho``; ``theory`` with ``b_star``, ``R_plus``, ``R_minus`` (the global optimum,
    ``lpl_theory.solve``); and per loss the trained ``b`` (theory scale), ``R_plus``, ``R_minus``.
    """
    from lpl_theory import figure_spec, solve_task

    spec = figure_spec(number)
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an int >= 2, got {points!r}")
    bad = [x for x in losses if x not in LOSSES]
    if bad or not losses:
        raise ValueError(f"losses must be a non-empty subset of {LOSSES}, got {list(losses)!r}")
    rhos = np.linspace(0.0, spec.rho_max, points + 1)[:-1]
    out: dict[str, Any] = {"figure": number, "params": spec.params(), "rho": rhos.tolist(),
                           "theory": {"b_star": [], "R_plus": [], "R_minus": []}}  # fmt: skip
    for name in losses:
        out[name] = {"b": [], "R_plus": [], "R_minus": []}
    for rho in rhos:
        pert = spec.perturbation(float(rho))
        sol = solve_task(spec.task, pert)
        out["theory"]["b_star"].append(float(sol.b_global))
        out["theory"]["R_plus"].append(float(sol.R_plus_global))
        out["theory"]["R_minus"].append(float(sol.R_minus_global))
        for name in losses:
            t = train_linear(spec.task, pert, name, n_train=n_train, seed=seed, **train_kw)
            out[name]["b"].append(t.b_equiv)
            out[name]["R_plus"].append(t.R_plus)
            out[name]["R_minus"].append(t.R_minus)
    return out


def plot_comparison(results: Sequence[dict[str, Any]]) -> Any:
    """One panel per figure: theory curves R(f, +1), R(f, -1) against ρ with the trained classifiers'
    errors as markers (filled: smoothed 0-1 objective, open: cross-entropy on the perturbed logits)."""
    from lpl_train.plotting import new_figure

    fig, axes = new_figure(len(results), (5.2 * len(results), 3.9))
    for ax, res in zip(axes[0], results, strict=True):
        from lpl_theory import figure_spec

        spec = figure_spec(res["figure"])
        dense = np.linspace(0.0, spec.rho_max, 200, endpoint=False)
        from lpl_theory import solve_task

        sols = [solve_task(spec.task, spec.perturbation(float(r))) for r in dense]
        for key, color, lab in (
            ("R_plus", "tab:red", "R(f, +1)"),
            ("R_minus", "tab:blue", "R(f, −1)"),
        ):
            ax.plot(
                dense,
                [float(getattr(s, key + "_global")) for s in sols],
                color=color,
                label=f"theory {lab}",
            )
            if "smooth01" in res:
                ax.plot(
                    res["rho"],
                    res["smooth01"][key],
                    "o",
                    color=color,
                    label=f"trained, smoothed 0-1 {lab}",
                )
            if "ce" in res:
                ax.plot(
                    res["rho"],
                    res["ce"][key],
                    "s",
                    mfc="none",
                    color=color,
                    label=f"trained, CE {lab}",
                )
        ax.set_xlabel(
            f"{'ρ₊' if spec.vary == 'rho_plus' else 'ρ₋'} (bound multiplier, ε = {spec.eps})"
        )
        ax.set_ylabel("natural error")
        ax.set_title(spec.title, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lpl_train.theory_check [--out figures] [--points 7]``: Figs. 3-4 settings, trained vs b*;
    writes ``theory-vs-training.png`` and ``theory-vs-training.json``."""
    ap = argparse.ArgumentParser(
        prog="python -m lpl_train.theory_check", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--out", default="figures")
    ap.add_argument("--points", type=int, default=7)
    ap.add_argument("--n-train", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = [compare_figure(n, args.points, n_train=args.n_train, seed=args.seed) for n in (3, 4)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_comparison(results)
    from lpl_train.plotting import save_figure

    save_figure(fig, out / "theory-vs-training.png")
    (out / "theory-vs-training.json").write_text(
        json.dumps(results, indent=1) + "\n", encoding="utf-8"
    )
    for r in results:
        for name in LOSSES:
            gap = max(abs(a - b) for a, b in zip(r[name]["b"], r["theory"]["b_star"], strict=True))
            print(f"Fig. {r['figure']}: {name}: max |b - b*| = {gap:.3f}")
    print(out / "theory-vs-training.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
