"""Plotting shared by the study's figures, ``lpl-train plot`` and the theory check.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: nothing here selects a backend or
keeps figures open, so library calls never change a notebook's inline display or a script's backend.
Saved files carry no timestamp or version (PNG ``Software``, PDF ``CreationDate``/``Producer`` removed),
so the same data gives the same bytes.

Per-class panels put the classes in head → tail order: by training count, largest first (ties by class
index), with the class indices as tick labels — the raw index is not the frequency order on every dataset
(VOC-MLT and COCO-MLT keep their original class order).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["head_to_tail", "loss_variation_panel", "new_figure", "per_class_panel", "save_figure"]

_METADATA = {".png": {"Software": None}, ".pdf": {"CreationDate": None, "Producer": None}}


def new_figure(ncols: int, size: tuple[float, float], nrows: int = 1) -> tuple[Any, np.ndarray]:
    """A figure and its ``(nrows, ncols)`` array of axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` (format from the suffix: .png, .pdf, .svg) without volatile metadata; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {"dpi": dpi}
    if path.suffix.lower() in _METADATA:
        kw["metadata"] = _METADATA[path.suffix.lower()]
    elif path.suffix.lower() == ".svg":
        kw["metadata"] = {"Date": None}
    fig.savefig(path, **kw)
    return path


def head_to_tail(class_counts: Sequence[float] | None, num_classes: int | None = None) -> list[int]:
    """Class indices from the most to the least frequent training class (ties by index); without counts,
    the index order of ``num_classes`` classes."""
    if class_counts is None:
        if num_classes is None:
            raise ValueError("head_to_tail needs class_counts or num_classes")
        return list(range(num_classes))
    counts = list(class_counts)
    return sorted(range(len(counts)), key=lambda c: (-counts[c], c))


def per_class_panel(
    ax: Any,
    curves: Sequence[tuple[str, Sequence[float | None]]],
    order: Sequence[int],
    ylabel: str,
    title: str,
    *,
    zero_line: bool = False,
    symlog: float | None = None,
    colors: dict[str, str] | None = None,
) -> None:
    """One value per class for each curve (label, values by class index), drawn in ``order`` (head → tail).

    ``symlog`` sets a symmetric-log y axis with that linear threshold; a panel without curves gets no
    legend."""
    order = list(order)
    if symlog:
        ax.set_yscale("symlog", linthresh=symlog)
    x = np.arange(len(order))
    for label, values in curves:
        y = np.array([np.nan if values[c] is None else values[c] for c in order], dtype=float)
        ax.plot(x, y, marker="o", label=label, color=(colors or {}).get(label))
    if zero_line:
        ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([str(c) for c in order], fontsize=7)
    ax.set_xlabel("class (index), head → tail by training count")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if curves:
        ax.legend(fontsize=7)


def loss_variation_panel(
    ax: Any,
    curves: Sequence[tuple[str, Sequence[float | None]]],
    order: Sequence[int],
    title: str,
    *,
    symlog: bool = False,
    colors: dict[str, str] | None = None,
) -> None:
    """The relative loss variation (l' − l)/l per class, in percent, head → tail (Figs. 1, 2, 11)."""
    pct = [(lab, [None if v is None or np.isnan(v) else 100.0 * v for v in y]) for lab, y in curves]
    per_class_panel(ax, pct, order, "relative loss variation (l' − l)/l (%)", title, zero_line=True,
                    symlog=10.0 if symlog else None, colors=colors)  # fmt: skip
