"""``lpl-train plot RUN... [--out FILE]``: the plots of one or more run folders, overlaid.

Four panels: the training loss and the evaluated test metric (top-1 error, or mAP) per epoch; the final
per-class accuracy (AP for multi-label runs); and the per-class relative loss variation (l' − l)/l of the
last epoch that recorded it (the Fig. 11 panel; positive and negative terms for multi-label runs). Per-class
axes run head → tail by the training counts of the first run (:func:`lpl_train.plotting.head_to_tail`).
A study run (``lpl-train study``) is evaluated on the study's validation split during training: its
panels say so. Runs overlaid must have the same kind of labels (single- or multi-label), the same classes
(number and names) and the same evaluated split; others are refused with a ``ValueError``.
The format follows the suffix of ``--out`` (.png, .pdf, .svg).
"""

from __future__ import annotations

import json

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpl_train.plotting import (
    head_to_tail,
    loss_variation_panel,
    new_figure,
    per_class_panel,
    save_figure,
)
from lpl_train.report.checks import read_file
from lpl_train.report.runs import STUDY_RUN

__all__ = ["load_run_data", "plot_runs"]


def load_run_data(run_dir: str | Path) -> dict[str, Any]:
    """What the plots need from a run folder: its name, per-epoch records (``metrics.jsonl``), and, once
    finished, ``final.json`` (class counts, per-class metrics).

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl`` (not a run folder, or nothing trained yet).
    """
    from lpl_train.engine import read_metrics

    d = Path(run_dir)
    if not (d / "metrics.jsonl").is_file():
        raise FileNotFoundError(
            f"{str(d)!r} is not a run folder with epochs to plot (no metrics.jsonl)"
        )
    name, cfg = d.name, {}
    if (d / "config.toml").is_file():
        cfg = read_file(d / "config.toml", tomllib.loads, tomllib.TOMLDecodeError)
        name = cfg.get("name", name)
    final = _read_json(d / "final.json")
    metrics = read_metrics(d)
    gap = next((i for i, m in enumerate(metrics) if m.get("epoch") != i), None)
    if gap is not None:  # a line deleted by hand: the curve would bridge it without a word
        raise ValueError(
            f"metrics file {str(d / 'metrics.jsonl')!r} lacks the record of epoch {gap} (the next "
            f"holds epoch {metrics[gap].get('epoch')!r}); resume the run (--resume) to restore it from "
            "its checkpoint"
        )
    # an unfinished run: classes.json, written when it started, holds what final.json will
    classes = final or _read_json(d / "classes.json")
    counts = classes.get("class_counts")
    if counts is None:
        # a folder from before classes.json: the counts of the samples the loss variation measured,
        # only an estimate of the training counts' order (every k-th step, or a resampled epoch)
        lv = next((m["loss_variation"] for m in reversed(metrics) if m.get("loss_variation")), None)
        counts = (lv.get("count") or (lv.get("pos") or {}).get("count")) if lv else None
    num_classes = classes.get("num_classes", len(counts) if counts is not None else None)
    return {"dir": d, "name": name, "metrics": metrics, "final": final, "class_counts": counts,
            "num_classes": num_classes, "class_names": classes.get("class_names"),
            "multi_label": bool(classes.get("multi_label", any("test_map" in m for m in metrics))),
            # a study run's engine evaluates the study's validation split where it says "test"
            "split": "validation" if cfg.get("description") == STUDY_RUN else "test"}  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when there is no such file. A damaged file is named."""
    if not path.is_file():
        return {}
    data = read_file(path, json.loads, json.JSONDecodeError)
    if not isinstance(data, dict):
        raise ValueError(f"file {str(path)!r} holds {type(data).__name__}, expected a JSON object")
    return data


def _check_same_classes(runs: list[dict[str, Any]]) -> None:
    """Per-class panels overlay runs class by class: refuse runs whose numbers or names of classes differ
    (runs that do not record them, e.g. unfinished runs without a loss variation, are not compared)."""
    known = [r for r in runs if r["num_classes"] is not None]
    if len({r["num_classes"] for r in known}) > 1:
        have = ", ".join(f"{str(r['dir'])!r}: {r['num_classes']} classes" for r in known)
        raise ValueError(
            f"cannot overlay runs with different numbers of classes ({have}); plot them separately"
        )
    named = [r for r in runs if r["class_names"]]
    for b in named[1:]:
        a, n = named[0], max(len(named[0]["class_names"]), len(b["class_names"]))
        x, y = (list(r["class_names"]) + [None] * n for r in (a, b))  # None: no such class
        c = next((c for c in range(n) if x[c] != y[c]), None)
        if c is not None:
            raise ValueError(
                f"cannot overlay runs with different classes (class {c} is {x[c]!r} in "
                f"{str(a['dir'])!r} but {y[c]!r} in {str(b['dir'])!r}); plot them separately"
            )


def _labels(runs: list[dict[str, Any]]) -> list[str]:
    names = [r["name"] for r in runs]
    return [
        f"{n} ({r['dir'].name})" if names.count(n) > 1 else n
        for n, r in zip(names, runs, strict=True)
    ]


def _curves(ax_loss: Any, ax_test: Any, runs: list[dict[str, Any]], labels: list[str]) -> None:
    for r, lab in zip(runs, labels, strict=True):
        ep = [m["epoch"] + 1 for m in r["metrics"]]
        ax_loss.plot(ep, [m["train_loss"] for m in r["metrics"]], marker=".", label=lab)
        key = "test_map" if r["multi_label"] else "test_top1_error"
        pts = [(m["epoch"] + 1, m[key]) for m in r["metrics"] if m.get(key) is not None]
        if pts:
            ax_test.plot(*zip(*pts, strict=True), marker="o", label=lab)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    split = runs[0]["split"]
    ax_test.set(xlabel="epoch", ylabel=f"{split} mAP (%)" if runs[0]["multi_label"] else f"{split} top-1 error (%)",
                title=f"evaluated {split} metric")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_test):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)


def _per_class(runs: list[dict[str, Any]], labels: list[str]) -> list[tuple[str, list]]:
    key = "ap_per_class" if runs[0]["multi_label"] else "per_class_acc"
    return [(lab, r["final"]["final"][key]) for r, lab in zip(runs, labels, strict=True)
            if key in r["final"].get("final", {})]  # fmt: skip


def _variation(runs: list[dict[str, Any]], labels: list[str]) -> list[tuple[str, list]]:
    out = []
    for r, lab in zip(runs, labels, strict=True):
        lv = next(
            (m["loss_variation"] for m in reversed(r["metrics"]) if m.get("loss_variation")), None
        )
        if lv is None:
            continue
        if "relative_variation" in lv:
            out.append((lab, lv["relative_variation"]))
        else:
            out += [(f"{lab}, {p}", lv[p]["relative_variation"]) for p in ("pos", "neg") if p in lv]
    return out


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Draw the four panels for ``run_dirs`` overlaid and save them to ``out``; returns the path."""
    if isinstance(run_dirs, str | Path) or not run_dirs:
        raise ValueError("run_dirs must be a non-empty list of run folders")
    if Path(out).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"--out {str(out)!r} must end in .png, .pdf or .svg")
    runs = [load_run_data(d) for d in run_dirs]
    if len({r["multi_label"] for r in runs}) > 1:
        raise ValueError("cannot overlay single-label and multi-label runs in one plot")
    if len({r["split"] for r in runs}) > 1:
        raise ValueError(
            "cannot overlay study runs (their engine evaluates the study's validation split) with other "
            "runs (evaluated on the test split) in one plot; plot them separately"
        )
    _check_same_classes(runs)
    labels = _labels(runs)
    n = next((len(c[1]) for c in _per_class(runs, labels) + _variation(runs, labels)), None)
    order = head_to_tail(runs[0]["class_counts"], n) if n else []
    fig, axes = new_figure(4, (19, 3.9))
    _curves(axes[0, 0], axes[0, 1], runs, labels)
    ml = runs[0]["multi_label"]
    per_class_panel(axes[0, 2], _per_class(runs, labels), order, "AP (%)" if ml else "accuracy (%)",
                    "final per-class " + ("AP" if ml else f"{runs[0]['split']} accuracy"))  # fmt: skip
    loss_variation_panel(axes[0, 3], _variation(runs, labels), order,
                         "loss variation per class, last recorded epoch (Fig. 11)")  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, out)


def main(run_dirs: Sequence[str], out: str | None) -> int:
    """The ``plot`` subcommand: default output ``RUN/plots.png`` for one run, ``plots.png`` otherwise."""
    dest = out or (str(Path(run_dirs[0]) / "plots.png") if len(run_dirs) == 1 else "plots.png")
    print(plot_runs(run_dirs, dest))
    return 0
