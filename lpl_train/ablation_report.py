"""The LPL long-tail ablation's tables (``figures/ablation-tables.md``) and figures (``figures/ablation-*.png``),
made from the run records only (:mod:`lpl_train.ablation_records`). The command line is
:mod:`lpl_train.ablation`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lpl_train.ablation_records import (
    LENGTH_PAIRS,
    LPL_VARIANTS,
    STUDIES,
    _length_columns,
    _studies,
    _val,
)
from lpl_train.report.tables import seeds_cell


# ---------------------------------------------------------------------------------------------- Q1
def axis_curves(
    records: Sequence[dict[str, Any]], select_seed: int = 0
) -> dict[tuple[str, str], dict[str, Any]]:
    """The validation curve along each grid axis through the selected point of every (dataset, method).

    For every key with more than one value among a method's seed-``select_seed`` records: the validation
    score (balanced error, %) at each value with the other keys at the selected point, the selected value,
    and ``edge`` (True when the selected value is the smallest or largest of the axis). Returns
    ``{(dataset, method): {axis: {"values": [...], "scores": [...], "selected": v, "edge": bool}}}``.
    """
    from lpl_train.study import select_best

    sel = [r for r in records if r["seed"] == select_seed]
    chosen = select_best(sel)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (d, m), point in chosen.items():
        recs = [r for r in sel if (r["dataset"], r["method"]) == (d, m)]
        axes: dict[str, Any] = {}
        for key in point:
            values = sorted({r["point"][key] for r in recs})
            if len(values) < 2:
                continue
            curve = []
            for v in values:
                match = [r for r in recs if r["point"][key] == v
                         and all(r["point"][k] == point[k] for k in point if k != key)]  # fmt: skip
                curve.append(_val(match[0]) if match else math.nan)
            axes[key] = {"values": values, "scores": curve, "selected": point[key],
                         "edge": point[key] in (values[0], values[-1])}  # fmt: skip
        out[(d, m)] = axes
    return out


# ------------------------------------------------------------------------------------------ helpers
def _cmp(a: tuple[float, float], b: tuple[float, float]) -> str:
    """ "lower" / "higher" when |Δ| ≥ the combined seed std, else "not established (…)"; "equal" for
    equal means without any seed spread (the same runs, e.g. a method whose chosen point is another)."""
    (va, sa), (vb, sb) = a, b
    if sa is None or sb is None:  # one seed: no spread to compare with
        return "not established (one seed)"
    noise = math.sqrt(sa**2 + sb**2)
    d = va - vb
    if d == 0 and noise == 0:
        return "equal (no difference, no seed spread)"
    if abs(d) < noise:
        return f"not established (|Δ| {abs(d):.2f} < {noise:.2f})"
    return f"{'lower' if d < 0 else 'higher'} by {abs(d):.2f} (> {noise:.2f})"


def _fmt(ms: tuple[float, float]) -> str:
    m, s = ms
    if s is None:  # one seed so far: no spread
        return "–" if m is None or math.isnan(m) else f"{m:.2f}"
    return "–" if math.isnan(m) else f"{m:.2f} ± {s:.2f}"


def _point_text(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "–"


def _delta_mean(
    recs: Sequence[dict[str, Any]], field: str, classes: Sequence[int], epochs: Sequence[int]
) -> float:
    vals = []
    for r in recs:
        dn = r.get("delta_norm") or []
        for e in epochs:
            if e < len(dn) and dn[e] is not None:
                vals += [dn[e][field][c] for c in classes if dn[e][field][c] is not None]
    return float(np.mean(vals)) if vals else math.nan


def _ratio_cells(recs: Sequence[dict[str, Any]], groups: dict[str, Any], epochs: int) -> list[str]:
    """‖δ_c‖/ε_c of ``recs`` for the many and the few classes at the first and the last epoch, as table
    cells ("–" where nothing was recorded)."""
    ratio = [
        _delta_mean(recs, "ratio", groups[g], [ep])
        for g in ("many", "few")
        for ep in (0, epochs - 1)
    ]
    return ["–" if math.isnan(x) else f"{x:.2f}" for x in ratio]


def _variation(recs: Sequence[dict[str, Any]], classes: Sequence[int]) -> float:
    vals = []
    for r in recs:
        for ep in r.get("loss_variation") or []:
            if ep is None:
                continue
            vals += [
                ep["relative_variation"][c]
                for c in classes
                if ep["relative_variation"][c] is not None
            ]
    return 100.0 * float(np.mean(vals)) if vals else math.nan


def _curve_rows(
    recs: Sequence[dict[str, Any]],
    study: dict[str, Any],
    d: str,
    labels: dict[str, str],
    summary: dict,
) -> list[str]:
    """Rows of a validation-curve table: each grid axis of each method of ``study`` through its selected
    point, the optimum's place on the axis and the validation std over the seeds. The place is
    "interior", "EDGE" (the grid was too small), or "floor" when the optimum is the axis's smallest value
    and that value is the method's ``grid_floor`` for the axis, the smallest the parameter can take (such
    as Δε = 0, no perturbation): there is no grid below it to extend to."""
    rows = []
    curves = axis_curves(recs, study["select_seed"])
    for m in study["methods"]:
        floors = m.get("grid_floor", {})
        for axis, c in curves.get((d, m["id"]), {}).items():
            pts = " · ".join(
                (f"**{v}: {sc:.2f}**" if v == c["selected"] else f"{v}: {sc:.2f}")
                for v, sc in zip(c["values"], c["scores"], strict=True)
            )
            place = "interior"
            if c["edge"]:
                at_floor = axis in floors and c["selected"] == c["values"][0] == floors[axis]
                place = "floor" if at_floor else "EDGE"
            rows.append(f"| {labels.get(m['id'], m['id'])} | {axis} | {pts} | "
                        f"{place} | {_val_spread(recs, d, m['id'], summary)} |")  # fmt: skip
    return rows


_CURVE_HEADER = [
    "| Method | axis | value: validation balanced error (%) (selected in bold) | optimum | val. std over seeds |",
    "|---|---|---|---|---|",
]


def _val_spread(recs: Sequence[dict[str, Any]], d: str, mid: str, summary: dict) -> str:
    s = summary.get((d, mid))
    if s is None:
        return "–"
    vals = [_val(r) for r in recs if (r["dataset"], r["method"]) == (d, mid) and r["point"] == s["point"]
            and not r.get("diverged")]  # fmt: skip
    return f"{np.std(vals, ddof=1):.2f} (n={len(vals)})" if len(vals) > 1 else "–"


# ------------------------------------------------------------------------------------------- tables
def tables(records: Sequence[dict[str, Any]]) -> str:
    """The Markdown tables answering the five questions, from the run records only."""
    from lpl_train.study import class_groups_by_rank, method_seeds, summarize

    studies = _studies(records)
    lines: list[str] = ["# LPL long-tail ablation: tables", ""]
    if "lpl_ablation" not in studies:
        return "\n".join(lines + ["No records of the main ablation study.", ""])
    study, recs = studies["lpl_ablation"]
    labels = {m["id"]: m.get("label", m["id"]) for m in study["methods"]}
    summary = summarize(recs, study)
    d = next(iter(study["datasets"]))
    ds_label = study["datasets"][d].get("label", d)
    n_runs = len(recs)
    cpu_min = sum(r.get("wall_s", 0.0) for r in recs) / 60
    lines += [
        f"Main study `{STUDIES['lpl_ablation']}`: {ds_label}, {study['epochs']} epochs, model "
        f"{study['model']['name']} {study['model'].get('params', {})}, seeds {study['seeds']}; every grid point "
        f"trained with seed {study['select_seed']} and scored on the validation split (balanced error, %), "
        f"the best point then trained with every seed. {n_runs} runs, {cpu_min:.1f} run-minutes (the summed wall time of the single-thread runs). A difference "
        "smaller than the combined seed std sqrt(s_a² + s_b²) is *not established*. Regenerate: "
        "`python -m lpl_train.ablation --report-only`.",
        "",
    ]
    # Q1
    lines += ["## Q1. Grid adequacy: validation curve along each axis through the selected point", "",
              "The last column is the std of the validation error over the seeds at the selected point: "
              "differences along a curve smaller than it are within the validation noise.", "",
              *_CURVE_HEADER]  # fmt: skip
    lines += _curve_rows(recs, study, d, labels, summary)
    lines.append("")
    # Q2 / Q5: final table
    lines += [f"## Final comparison on {ds_label}: test top-1 error (%), mean ± std over seeds", "",
              "| Method | overall | many | medium | few | selected | seeds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in study["methods"]:
        s = summary.get((d, m["id"]))
        if s is None:
            continue
        lines.append(f"| {labels[m['id']]} | " + " | ".join(_fmt(s[c]) for c in ("overall", "many", "medium", "few"))
                     + f" | {_point_text(s['point'])} | {seeds_cell(s)} |")  # fmt: skip
    lines.append("")

    def comp(a: str, b: str, col: str = "overall") -> str | None:
        sa, sb = summary.get((d, a)), summary.get((d, b))
        if sa is None or sb is None or sa[col][1] is None or sb[col][1] is None:
            return None
        return (f"- {labels[a]} vs {labels[b]} ({col}): {_fmt(sa[col])} vs {_fmt(sb[col])}: "
                f"{_cmp(sa[col], sb[col])}")  # fmt: skip

    lines += ["## Q2. Which LPL? Each reading against CE, the paper's reading and LA", ""]
    for v in LPL_VARIANTS:
        for other in ("ce", "lpl_varied", "la") if not v.startswith("la_") else ("la", "ce"):
            if other != v:
                t = comp(v, other)
                if t:
                    lines.append(t)
    lines.append("")
    lines += ["## Q5. Like for like: decomposing LDAM-DRW's lead", ""]
    for a, b in (("ce_cos", "ce"), ("ce_cos_drw", "ce_cos"), ("ldam", "ce_cos"), ("ldam_drw", "ce_cos_drw"),
                 ("ldam_drw", "ldam"), ("ldam_drw", "ce"), ("ce_cos_drw", "la"), ("ce_cos_drw", "lpl_varied"),
                 ("ldam_drw", "la")):  # fmt: skip
        for col in ("overall", "few"):
            t = comp(a, b, col)
            if t:
                lines.append(t)
    lines.append("")
    if "lpl_ablation_q5" in studies:
        q5, q5_recs = studies["lpl_ablation_q5"]
        q5_sum = summarize(q5_recs, q5)
        summary = {**summary, **q5_sum}
        labels.update({m["id"]: m.get("label", m["id"]) for m in q5["methods"]})
        lines += [f"### LPL with the cosine head and DRW (`{STUDIES['lpl_ablation_q5']}`, same protocol, "
                  f"{len(q5_recs)} runs, {sum(r.get('wall_s', 0.0) for r in q5_recs) / 60:.1f} run-minutes)", "",
                  *_CURVE_HEADER]  # fmt: skip
        lines += _curve_rows(q5_recs, q5, d, labels, q5_sum)
        lines += [
            "",
            "| Method | overall | many | medium | few | selected | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in q5["methods"]:
            sm = q5_sum.get((d, m["id"]))
            if sm is not None:
                lines.append(f"| {labels[m['id']]} | " + " | ".join(_fmt(sm[c]) for c in ("overall", "many", "medium", "few"))
                             + f" | {_point_text(sm['point'])} | {seeds_cell(sm)} |")  # fmt: skip
        lines.append("")
        for a in (m["id"] for m in q5["methods"]):
            for b in ("ce_cos_drw", "ldam_drw", "la", "lpl_norm", "lpl_varied"):
                for col in ("overall", "few"):
                    t = comp(a, b, col)
                    if t:
                        lines.append(t)
        lines.append("")
    # Q4: mechanism
    e = study["epochs"]
    counts = recs[0]["class_counts"]
    groups = class_groups_by_rank(counts, tuple(study.get("group_fractions", (0.3, 0.3))))
    lines += ["## Q4. Mechanism: ‖δ_c‖ against its bound, and the loss-variation signature", "",
              "Final runs (all seeds) at the selected point. ‖δ_c‖/ε_c: mean over the training steps where the "
              "class is in the batch (ε_c: Eq. 33; the preset: α·(K_c + 1)); many = the 3 most frequent classes, "
              "few = the 3 rarest. Loss variation: (l' − l)/l (%) per class averaged over epochs and seeds, "
              "l = CE of the logits, l' = the method's loss.", "",
              "| Method | ‖δ‖/ε many, epoch 1 | many, last epoch | ‖δ‖/ε few, epoch 1 | few, last epoch | "
              "‖δ‖ few, last epoch | loss var. many (%) | loss var. few (%) | test error |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for v in LPL_VARIANTS + ("la",):
        s = summary.get((d, v))
        if s is None:
            continue
        fin = [r for r in recs if r["method"] == v and r["point"] == s["point"]]
        row = _ratio_cells(fin, groups, e)
        nf = _delta_mean(fin, "norm", groups["few"], [e - 1])
        row.append("–" if math.isnan(nf) else f"{nf:.3f}")
        row += [f"{_variation(fin, groups[g]):+.1f}" for g in ("many", "few")]
        lines.append(f"| {labels[v]} | " + " | ".join(row) + f" | {_fmt(s['overall'])} |")
    lines.append("")
    # Q3: training length
    lines += [
        "## Q3. Training length, training-set size, model and imbalance ratio: the key comparison",
        "",
    ]
    cols, length_methods, names = _length_columns(studies)
    if not cols:
        lines += ["No records of the training-length studies.", ""]
    else:
        sums = [(f"subsample, {study['epochs']} epochs", study, summary), *cols]
        lines += ["Test top-1 error (%) overall and few, at the points selected in the main study; Δ vs CE in the "
                  "same setting with the seed-noise rule; n = seeds.", "",
                  "| Method | " + " | ".join(t for t, _, _ in sums) + " |", "|---|" + "---|" * len(sums)]  # fmt: skip
        for m in length_methods:
            cells = []
            for _, st, sm in sums:
                dk = next(iter(st["datasets"]))
                s, ce = sm.get((dk, m["id"])), sm.get((dk, "ce"))
                if s is None:
                    cells.append("–")
                    continue
                extra = (
                    ""
                    if m["id"] == "ce" or ce is None
                    else f"; vs CE: {_cmp(s['overall'], ce['overall'])}"
                )
                cells.append(
                    f"{_fmt(s['overall'])} (few {_fmt(s['few'])}, n={seeds_cell(s)}){extra}"
                )
            lines.append(f"| {labels.get(m['id'], m['id'])} | " + " | ".join(cells) + " |")
        lines.append("")
        for title, st, sm in sums:
            dk = next(iter(st["datasets"]))
            for a, b in LENGTH_PAIRS:
                if (dk, a) in sm and (dk, b) in sm:
                    lines.append(f"- {title}: {labels.get(a, a)} vs {labels.get(b, b)}: "
                                 f"{_fmt(sm[dk, a]['overall'])} vs {_fmt(sm[dk, b]['overall'])}: "
                                 f"{_cmp(sm[dk, a]['overall'], sm[dk, b]['overall'])}")  # fmt: skip
        lines.append("")
        lines += _length_delta_lines(studies, names, labels)
        for n in names:
            st, rs = studies[n]
            minutes = f"{sum(r.get('wall_s', 0.0) for r in rs) / 60:.1f} run-minutes"
            if any(m.get("grid") for m in st["methods"]):
                lines.append(f"- `{STUDIES[n]}`: {len(rs)} runs (the grids on seed {st['select_seed']}, then "
                             f"{len(st['seeds'])} seeds at the selected points), {minutes}.")  # fmt: skip
            else:
                defined = sum(len(method_seeds(st, m)) for m in st["methods"])
                lines.append(
                    f"- `{STUDIES[n]}`: {len(rs)} runs of the {defined} defined, {minutes}."
                )
        lines.append("")
        if "lpl_ablation_lt10_search" in studies:
            st, rs = studies["lpl_ablation_lt10_search"]
            dk = next(iter(st["datasets"]))
            lines += [f"### 10:1 searched at 10:1 (`{STUDIES['lpl_ablation_lt10_search']}`): validation curves "
                      "through the selected points", "", *_CURVE_HEADER]  # fmt: skip
            lines += _curve_rows(rs, st, dk, labels, summarize(rs, st))
            lines.append("")
    return "\n".join(lines)


def _length_delta_lines(
    studies: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]],
    names: Sequence[str],
    labels: dict[str, str],
) -> list[str]:
    """‖δ_c‖/ε_c of the LPL runs of the training-length studies at the first and the last epoch (does δ
    fade over a longer training, or with another model?), at each method's selected point."""
    from lpl_train.study import class_groups_by_rank, select_best

    rows = []
    for n in names:
        st, rs = studies[n]
        e = st["epochs"]
        dk = next(iter(st["datasets"]))
        chosen = select_best([r for r in rs if r["seed"] == st["select_seed"]])  # searched studies
        for m in st["methods"]:
            fin = [
                r
                for r in rs
                if r["dataset"] == dk
                and r["method"] == m["id"]
                and r["point"] == chosen.get((dk, m["id"]))
                and r.get("delta_norm")
            ]
            if not fin:
                continue
            groups = class_groups_by_rank(
                fin[0]["class_counts"], tuple(st.get("group_fractions", (0.3, 0.3)))
            )
            cells = " | ".join(_ratio_cells(fin, groups, e))
            rows.append(
                f"| `{STUDIES[n]}` ({e} epochs) | {labels.get(m['id'], m['id'])} | {cells} | {len(fin)} |"
            )
    if not rows:
        return []
    return ["‖δ_c‖/ε_c of the LPL runs in these settings (as in Q4: many = the 3 most frequent classes, few = "
            "the 3 rarest; mean over the steps, then over the seeds):", "",
            "| Study | Method | many, epoch 1 | many, last epoch | few, epoch 1 | few, last epoch | n |",
            "|---|---|---|---|---|---|---|", *rows, ""]  # fmt: skip


# ------------------------------------------------------------------------------------------ figures
def figures(records: Sequence[dict[str, Any]], out: str | Path) -> list[Path]:
    """``ablation-axes.png`` (Q1), ``ablation-delta.png`` and ``ablation-loss-variation.png`` (Q4),
    ``ablation-length.png`` (Q3, when its records exist). Returns the paths written."""
    from matplotlib import colormaps

    from lpl_train.study import summarize

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    studies = _studies(records)
    if "lpl_ablation" not in studies:
        return []
    study, recs = studies["lpl_ablation"]
    labels = {m["id"]: m.get("label", m["id"]) for m in study["methods"]}
    d = next(iter(study["datasets"]))
    paths = []
    # Q1: axis curves
    curves = axis_curves(recs, study["select_seed"])
    panels = [
        (m["id"], a, c) for m in study["methods"] for a, c in curves.get((d, m["id"]), {}).items()
    ]
    ncol = 4
    nrow = max(1, math.ceil(len(panels) / ncol))
    fig, axes = _subplots(nrow, ncol, figsize=(3.6 * ncol, 2.7 * nrow), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (mid, a, c) in zip(axes.flat, panels, strict=False):
        xs = np.arange(len(c["values"]))
        ax.plot(xs, c["scores"], marker="o")
        i = c["values"].index(c["selected"])
        ax.plot([i], [c["scores"][i]], marker="*", ms=14, color="C3")
        ax.set_xticks(xs, [str(v) for v in c["values"]])
        ax.set_xlabel(a)
        ax.set_ylabel("val. balanced error (%)")
        ax.set_title(labels[mid], fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / "ablation-axes.png"))
    # Q4: ‖δ_c‖/ε_c per epoch and class; loss variation per class
    summary = summarize(recs, study)
    variants = [v for v in LPL_VARIANTS if (d, v) in summary]
    fig, axes = _subplots(2, 4, figsize=(14.4, 6.0), squeeze=False)
    for ax in axes.flat[len(variants) :]:
        ax.axis("off")
    for ax, v in zip(axes.flat, variants, strict=False):
        fin = [r for r in recs if r["method"] == v and r["point"] == summary[(d, v)]["point"]]
        n_ep = max((len(r.get("delta_norm") or []) for r in fin), default=0)
        c_n = len(fin[0]["class_counts"])
        cmap = colormaps["viridis"]
        for c in range(c_n):
            y = [_delta_mean(fin, "ratio", [c], [e]) for e in range(n_ep)]
            ax.plot(np.arange(1, n_ep + 1), y, color=cmap(c / max(1, c_n - 1)), label=f"class {c}")
        ax.set_ylim(-0.05, 1.3)
        ax.axhline(1.0, color="k", lw=0.6, ls="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel("‖δ_c‖ / ε_c")
        ax.set_title(f"{labels[v]}\n{_point_text(summary[(d, v)]['point'])}", fontsize=7)
    if variants:
        axes.flat[0].legend(fontsize=5, ncol=2)
    fig.tight_layout()
    paths.append(_save(fig, out / "ablation-delta.png"))
    fig, ax = _subplots(figsize=(7.5, 4.2))
    for v in [*variants, "la"]:
        if (d, v) not in summary:
            continue
        fin = [r for r in recs if r["method"] == v and r["point"] == summary[(d, v)]["point"]]
        c_n = len(fin[0]["class_counts"])
        ax.plot(np.arange(c_n), [_variation(fin, [c]) for c in range(c_n)], marker="o",
                label=f"{labels[v]} ({summary[(d, v)]['overall'][0]:.1f}% err.)")  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=10.0)
    ax.set_xlabel("class index (0 = head)")
    ax.set_ylabel("(l' − l)/l (%), training")
    ax.set_title("Loss-variation signature (Fig. 11(b) analogue) of each reading", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(_save(fig, out / "ablation-loss-variation.png"))
    # Q3
    cols, length_methods, _ = _length_columns(studies)
    if cols:
        fig, ax = _subplots(figsize=(max(7.0, 1.45 * (len(cols) + 1)), 4.0))
        sums = [(f"subsample\n{study['epochs']} ep.", study, summary)]
        sums += [(t.replace(", ", "\n"), st, sm) for t, st, sm in cols]
        for m in length_methods:
            xs, ys, es = [], [], []
            for i, (_, st, sm) in enumerate(sums):
                s = sm.get((next(iter(st["datasets"])), m["id"]))
                if s is not None:
                    xs.append(i)
                    ys.append(s["overall"][0])
                    es.append(math.nan if s["overall"][1] is None else s["overall"][1])  # one seed
            if xs:
                ax.errorbar(
                    xs, ys, yerr=es, marker="o", capsize=3, label=labels.get(m["id"], m["id"])
                )
        ax.set_xticks(range(len(sums)), [t for t, _, _ in sums], fontsize=8)
        ax.set_ylabel("test top-1 error (%)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        paths.append(_save(fig, out / "ablation-length.png"))
    return paths


def _subplots(nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Any, Any]:
    """A figure made without pyplot (no backend is selected; nothing global changes)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kw.pop("figsize", None))
    return fig, fig.subplots(nrows, ncols, **kw)


def _save(fig: Any, path: Path) -> Path:
    # without the matplotlib version (PNG "Software"), like every other figure: same data, same bytes
    from lpl_train.plotting import save_figure

    return save_figure(fig, path, dpi=110)


def report(records: Sequence[dict[str, Any]], out: str | Path, figs: bool = True) -> Path:
    """Write ``ablation-tables.md`` (and the figures) into ``out``; return the tables path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ablation-tables.md"
    path.write_text(tables(records), encoding="utf-8")
    if figs:
        figures(records, out)
    return path
