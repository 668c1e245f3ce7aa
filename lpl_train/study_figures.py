"""A study's loss-variation figures (Figs. 1, 2, 11 analogues) from its records, and the live Fig. 11 panel.

Fed by the records of a study and the grid points chosen on validation (``lpl_train.study.chosen_points``);
drawn with :mod:`lpl_train.plotting` (classes head → tail by training count).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lpl_train.plotting import head_to_tail, loss_variation_panel, new_figure, save_figure

__all__ = ["fig11_live", "loss_variation_figures", "mean_isolated", "mean_variation"]

_COLORS = {"LA (training)": "C0", "ISDA (training)": "C1", "LDAM margin (trained model)": "C2"}


def _row(d: dict[str, Any]) -> list[float]:
    return [math.nan if v is None else v for v in d["relative_variation"]]


def mean_variation(records: list[dict[str, Any]], part: str | None = None) -> np.ndarray:
    """Per-class relative loss variation averaged over the epochs and seeds of ``records``."""
    rows = [
        _row(ep[part] if part else ep)
        for r in records
        for ep in r["loss_variation"]
        if ep is not None
    ]
    return np.nanmean(np.array(rows, dtype=float), axis=0) if rows else np.full(1, math.nan)


def mean_isolated(records: list[dict[str, Any]], part: str | None = None) -> np.ndarray:
    """Per-class variation of the perturbation alone (``isolated_variation``) averaged over the seeds."""
    rows = [_row(r["isolated_variation"][part] if part else r["isolated_variation"])
            for r in records if r.get("isolated_variation")]  # fmt: skip
    return np.nanmean(np.array(rows, dtype=float), axis=0) if rows else np.full(1, math.nan)


def _final(
    records: list[dict[str, Any]], chosen: dict, dkey: str, mid: str
) -> list[dict[str, Any]]:
    point = chosen.get((dkey, mid))
    return [
        r for r in records if r["dataset"] == dkey and r["method"] == mid and r["point"] == point
    ]


def _order(records: list[dict[str, Any]], curves: list[tuple[str, np.ndarray]]) -> list[int]:
    counts = next((r.get("class_counts") for r in records if r.get("class_counts")), None)
    n = max((len(y) for _, y in curves), default=1)
    return head_to_tail(counts if counts and len(counts) == n else None, n)


def _panel(
    ax: Any, recs: list[dict[str, Any]], curves: list, title: str, symlog: bool = False
) -> None:
    loss_variation_panel(ax, curves, _order(recs, curves), title, symlog=symlog, colors=_COLORS)


def _fig1(records: list[dict], study: dict, chosen: dict, path: Path) -> Path:
    ds = study["datasets"]
    bal = [k for k, v in ds.items() if v["regime"] == "balanced"]
    lt = [k for k, v in ds.items() if v["regime"] == "longtail"]
    fig, axes = new_figure(1 + len(lt), (4.5 * (1 + len(lt)), 3.6))
    for i, d in enumerate(bal[:1] + lt):
        curves, used = [], []
        for mid, lab in (("la", "LA (training)"), ("isda", "ISDA (training)"),
                         ("ldam_drw", "LDAM margin (trained model)")):  # fmt: skip
            recs = _final(records, chosen, d, mid)
            if not recs or (mid == "la" and d in bal):
                continue
            used += recs
            curves.append((lab, mean_isolated(recs) if mid == "ldam_drw" else mean_variation(recs)))
        # LDAM's margin variation is an order of magnitude above LA's and ISDA's: symmetric-log axis
        _panel(axes[0, i], used, curves, f"Fig. 1 analogue: {ds[d].get('label', d)}", symlog=True)
    fig.tight_layout()
    return save_figure(fig, path)


def _fig2(records: list[dict], study: dict, chosen: dict, ml: str, path: Path) -> Path:
    fig, axes = new_figure(2, (9, 3.6))
    for i, (mid, lab) in enumerate((("rbce_focal_ntr", "R-BCE-Focal + NTR"),
                                    ("rbce_focal_lc", "R-BCE-Focal + LC"))):  # fmt: skip
        recs = _final(records, chosen, ml, mid)
        curves = [(f"{lab.split(' + ')[-1]} alone, {p} (trained model)", mean_isolated(recs, p))
                  for p in ("pos", "neg")] if recs else []  # fmt: skip
        label = study["datasets"][ml].get("label", ml)
        _panel(axes[0, i], recs, curves, f"Fig. 2 analogue: {lab}, {label}")
    fig.tight_layout()
    return save_figure(fig, path)


def _fig11(records: list[dict], study: dict, chosen: dict, path: Path) -> Path:
    ds = study["datasets"]
    by = {
        r: [k for k, v in ds.items() if v["regime"] == r]
        for r in ("balanced", "longtail", "multilabel")
    }
    fig, axes = new_figure(3, (13.5, 3.6))
    for ax, regime, kinds, title in (
        (axes[0, 0], "balanced", (("lpl_varied", "LPL varied"), ("lpl_fixed", "LPL fixed")),
         "Fig. 11(a) analogue: balanced"),
        (axes[0, 1], "longtail", (("lpl_varied", "LPL varied"),), "Fig. 11(b) analogue: long-tail"),
    ):  # fmt: skip
        curves, used = [], []
        for mid, name in kinds:
            for d in by[regime]:
                recs = _final(records, chosen, d, mid)
                if not recs:  # records of a study still running, or of part of it: no curve
                    continue
                used += recs
                curves.append((f"{name}, {ds[d].get('label', d)} (training)", mean_variation(recs)))
        _panel(ax, used, curves, title)
    curves, used = [], []
    for d in by["multilabel"]:
        recs = _final(records, chosen, d, "bce_lpl_varied")
        if recs:
            used += recs
            curves += [
                (f"BCE + LPL {p} (training)", mean_variation(recs, p)) for p in ("pos", "neg")
            ]
        recs = _final(records, chosen, d, "rbce_focal_lpl_varied")
        if recs:
            used += recs
            curves += [(f"R-BCE-Focal + LPL {p} (shift alone, trained model)", mean_isolated(recs, p))
                       for p in ("pos", "neg")]  # fmt: skip
    # the shift alone at a large selected bound reaches thousands of percent: symmetric-log axis, as Fig. 1
    _panel(axes[0, 2], used, curves, "Fig. 11(c) analogue: multi-label (vs BCE)", symlog=True)
    fig.tight_layout()
    return save_figure(fig, path)


def loss_variation_figures(records: list[dict[str, Any]], study: dict[str, Any], chosen: dict,
                           figures: Path, prefix: str = "") -> list[Path]:  # fmt: skip
    """Figs. 1, 2 and 11 analogues from the final runs' loss variation; returns the PNG paths written.

    Fig. 1: LA and ISDA (during training), LDAM's margin alone (trained model); Fig. 2: NTR and LC alone,
    pos/neg (trained model); Fig. 11: LPL on balanced and long-tail data (during training) and multi-label
    LPL (during training on BCE; alone on the trained R-BCE-Focal+LPL model)."""
    figures = Path(figures)
    paths = [_fig1(records, study, chosen, figures / f"{prefix}fig1-loss-variation.png")]
    ml = [k for k, v in study["datasets"].items() if v["regime"] == "multilabel"]
    if ml:
        paths.append(
            _fig2(records, study, chosen, ml[0], figures / f"{prefix}fig2-loss-variation.png")
        )
    paths.append(_fig11(records, study, chosen, figures / f"{prefix}fig11-loss-variation.png"))
    return paths


def fig11_live(figures: str | Path, epochs: int = 3, seed: int = 0) -> Path:
    """A short live run for one Fig. 11 panel: LPL (index split, varied bound) on Fashion-MNIST-LT 100:1
    (the shipped ``fmnist_lt100_lpl`` config, ``epochs`` epochs), plotting the per-class relative loss
    variation of each epoch (:func:`lpl_train.plot.plot_runs`' panel). Returns the PNG path."""
    import tempfile

    from lpl_train import engine
    from lpl_train.config import load_config
    from lpl_train.plot import load_run_data

    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    cfg = load_config("fmnist_lt100_lpl", [f"train.seed={seed}", "train.progress=false", 'train.device="cpu"',
                                           "train.loss_variation_every=1"],  # every step, as the study
                      epochs=epochs)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        engine.fit(cfg, Path(tmp) / "run", log=lambda s: None)
        run = load_run_data(Path(tmp) / "run")
    curves = [
        (f"epoch {m['epoch'] + 1}", m["loss_variation"]["relative_variation"])
        for m in run["metrics"]
    ]
    fig, axes = new_figure(1, (5.5, 3.8))
    loss_variation_panel(axes[0, 0], curves, head_to_tail(run["class_counts"], len(curves[0][1])),
                         "Fig. 11(b) analogue, live: LPL on Fashion-MNIST-LT 100:1")  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, Path(figures) / "fig11-live.png")
