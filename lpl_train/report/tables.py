"""A study's tables and claims from its records (one JSON object per run, see ``lpl_train.study``).

:func:`summarize` takes the runs at each (dataset, method)'s chosen grid point and gives mean ± std over the
study's seeds of the test metrics, with the many/medium/few groups of the study's :class:`GroupRule`;
:func:`format_tables` lays them out like the paper's Tables III-IV (single-label) and V (multi-label);
:func:`claims` checks the paper's qualitative claims with :func:`lpl_train.report.stats.verdict`.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpl_train.report.stats import (
    DEFAULT_GROUPS,
    GroupRule,
    diverged_note,
    fmt_mean_std,
    mean_std,
    nanmean,
    parse_groups,
    verdict,
)

__all__ = [
    "DEFAULT_CLAIMS",
    "claims",
    "format_tables",
    "method_seeds",
    "seeds_cell",
    "selected_cell",
    "study_groups",
    "summarize",
    "tables_markdown",
]

# (dataset regime, method a, method b, column, lower is better, claim "a beats b"); a study file may give
# its own list as [[claims]] tables with the keys regime, a, b, column, lower_better, text.
DEFAULT_CLAIMS: tuple[tuple[str, str, str, str, bool, str], ...] = (
    ("longtail", "lpl_varied", "ce", "overall", True, "LPL (varied ε_c) beats CE"),
    ("longtail", "lpl_varied", "la", "overall", True, "LPL (varied ε_c) beats LA"),
    ("longtail", "lpl_varied", "lpl_fixed", "overall", True, "varied bound beats fixed bound"),
    ("longtail", "la_lpl", "la", "overall", True, "LA + LPL improves on LA"),
    ("longtail", "la", "ce", "overall", True, "LA beats CE"),
    ("longtail", "lpl_varied", "isda", "overall", True, "LPL beats ISDA on long-tail data"),
    ("longtail", "lpl_varied", "ce", "few", True, "LPL lowers the few-shot (tail) error relative to CE"),
    ("balanced", "lpl_fixed", "ce", "overall", True, "LPL (fixed ε) beats CE on balanced data"),
    ("balanced", "lpl_varied", "ce", "overall", True, "LPL (varied ε_c) beats CE on balanced data"),
    ("balanced", "lpl_varied", "isda", "overall", True, "LPL (varied ε_c) beats ISDA on balanced data"),
    ("multilabel", "rbce_focal_lpl_varied", "rbce_focal", "total", False, "R-BCE-Focal + LPL (varied) beats R-BCE-Focal"),
    ("multilabel", "rbce_focal_lpl_varied", "rbce_focal_ntr", "total", False, "R-BCE-Focal + LPL (varied) beats + NTR"),
    ("multilabel", "rbce_focal_lpl_varied", "rbce_focal_lc", "total", False, "R-BCE-Focal + LPL (varied) beats + LC"),
    ("multilabel", "rbce_focal_lpl_varied", "rbce_focal_lpl_fixed", "total", False, "varied bound beats fixed bound"),
    ("multilabel", "bce_lpl_varied", "bce", "total", False, "BCE + LPL beats BCE"),
)  # fmt: skip


def study_groups(study: dict[str, Any]) -> GroupRule:
    """The study's group rule: ``groups = "counts" | "ranks[:f,f]"`` if given, else ``group_fractions``
    (rank fractions), else the default (the paper's count rule)."""
    if "groups" in study:
        return parse_groups(study["groups"])
    if "group_fractions" in study:
        f = study["group_fractions"]
        return GroupRule("ranks", fractions=(float(f[0]), float(f[1])))
    return DEFAULT_GROUPS


#: the columns of a summary row: multi-label (mAP total and by group) or single-label (top-1 error)
_COLUMNS = {True: ("total", "head", "medium", "tail"), False: ("overall", "many", "medium", "few")}


def _run_values(r: dict[str, Any], groups: dict[str, list[int]]) -> dict[str, float]:
    t = r["test"]
    if r["multi_label"]:
        ap = [math.nan if a is None else a for a in t["ap_per_class"]]
        vals = {"total": nanmean(ap)}
        for g, name in (("many", "head"), ("medium", "medium"), ("few", "tail")):
            vals[name] = nanmean([ap[c] for c in groups[g]])
        return vals
    acc = [math.nan if a is None else a for a in t["per_class_acc"]]
    vals = {"overall": t["top1_error"]}
    for g in ("many", "medium", "few"):
        vals[g] = 100.0 - nanmean([acc[c] for c in groups[g]])
    return vals


def method_seeds(study: dict[str, Any], method: dict[str, Any] | str) -> list[int]:
    """The seeds of a method's final runs: its own ``seeds`` if the study file gives it some (more seeds
    for the comparisons that need them), else the study's."""
    if isinstance(method, str):
        method = next(m for m in study["methods"] if m["id"] == method)
    return list(method.get("seeds", study["seeds"]))


def summarize(
    records: Sequence[dict[str, Any]],
    study: dict[str, Any],
    chosen: dict[tuple[str, str], dict[str, Any]],
) -> dict[tuple[str, str], dict[str, Any]]:
    """Mean and std over the final runs (the ``chosen`` point, every seed of the study or of the method's own
    ``seeds``) of each (dataset, method).

    Single-label: test top-1 error overall and error of the many/medium/few groups (100 − group mean
    per-class accuracy). Multi-label: test mAP total and head/medium/tail (mean AP of the group). Values in
    percent; ``n`` is the number of distinct seeds found (a seed recorded twice counts once: its first
    record in ``records`` is used). A seed whose run diverged has no test metrics: it is left out of the
    means and listed in ``diverged`` (:func:`seeds_cell` shows it); a point where every seed diverged is
    kept with undefined (NaN) values, so that its row says so instead of vanishing."""
    rule = study_groups(study)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, point in chosen.items():
        seeds = method_seeds(study, key[1])
        by_seed: dict[int, dict[str, Any]] = {}
        lost: dict[int, dict[str, Any]] = {}
        for r in records:
            if (r["dataset"], r["method"]) == key and r["point"] == point and r["seed"] in seeds:
                (lost if r.get("diverged") else by_seed).setdefault(r["seed"], r)
        diverged = sorted(set(lost) - set(by_seed))
        if not by_seed:
            if diverged:
                ml = bool(lost[diverged[0]].get("multi_label"))
                out[key] = {"point": point, "n": 0, "seeds": [], "diverged": diverged,
                            "multi_label": ml, **{k: (math.nan, None) for k in _COLUMNS[ml]}}  # fmt: skip
            continue
        runs = [by_seed[s] for s in sorted(by_seed)]
        groups = rule.split(runs[0]["class_counts"], multi_label=bool(runs[0]["multi_label"]))
        cols: dict[str, list[float]] = {}
        for r in runs:
            for k, v in _run_values(r, groups).items():
                cols.setdefault(k, []).append(v)
        out[key] = {
            "point": point,
            "n": len(runs),
            "seeds": [r["seed"] for r in runs],
            "diverged": diverged,
            "multi_label": runs[0]["multi_label"],
            **{k: mean_std(v) for k, v in cols.items()},
        }
    return out


def seeds_cell(s: dict[str, Any]) -> str:
    """The seeds column of a summary row: the number of seeds averaged, and the seeds whose run diverged
    (left out of the means), e.g. ``"2 (seed 1 diverged)"``."""
    div = s.get("diverged") or []
    return f"{s['n']} ({diverged_note(div)})" if div else str(s["n"])


def selected_cell(
    point: dict[str, Any], method: dict[str, Any], regime: str, grid_mode: str = "all"
) -> str:
    """The selected point as ``key=value, ...``, a value at the smallest or largest of its searched axis
    (two values or more in the study's grid) marked "(EDGE)": the grid was too small, the optimum may lie
    beyond it; "(floor)" instead at the method's ``grid_floor`` for that axis, the smallest value the
    parameter can take; "(not in the grid)" for a value the study's grid no longer has (records of an
    earlier, wider grid). "–" for a method without parameters searched."""
    src = method.get("balanced", method) if regime == "balanced" else method
    grid = src.get("grid", {}) if grid_mode == "all" else {}
    floors = method.get("grid_floor", {})
    parts = []
    for k, v in point.items():
        axis = sorted(grid.get(k, []))
        mark = ""
        if k in grid and v not in axis:
            mark = " (not in the grid)"
        elif len(axis) > 1 and v in (axis[0], axis[-1]):
            mark = " (floor)" if k in floors and v == axis[0] == floors[k] else " (EDGE)"
        parts.append(f"{k}={v}{mark}")
    return ", ".join(parts) or "–"


def format_tables(summary: dict[tuple[str, str], dict[str, Any]], study: dict[str, Any]) -> str:
    """Markdown tables: one per single-label dataset (Tables III-IV layout: method rows, top-1 error
    overall and many/medium/few, mean ± std in percent) and one per multi-label dataset (Table V layout:
    mAP total/head/medium/tail), each with the selected hyper-parameters (an end of its grid marked,
    :func:`selected_cell`) and the number of seeds."""
    labels = {m["id"]: m.get("label", m["id"]) for m in study["methods"]}
    methods = {m["id"]: m for m in study["methods"]}
    lines: list[str] = []
    for dkey, ds in study["datasets"].items():
        rows = [(m["id"], summary[(dkey, m["id"])]) for m in study["methods"]
                if (dkey, m["id"]) in summary]  # fmt: skip
        if not rows:
            continue
        ml = ds["regime"] == "multilabel"
        what = " — test mAP (%)" if ml else " — test top-1 error (%)"
        lines += [f"### {ds.get('label', dkey)}{what}", ""]
        cols = ["overall"] if ds["regime"] == "balanced" else list(_COLUMNS[ml])
        lines.append("| Method | " + " | ".join(cols) + " | selected | seeds |")
        lines.append("|---|" + "---|" * (len(cols) + 2))
        for mid, s in rows:
            sel = selected_cell(
                s["point"], methods[mid], ds["regime"], study.get("grid_mode", "all")
            )
            cells = " | ".join(fmt_mean_std(s[c], empty="–") for c in cols)
            lines.append(f"| {labels[mid]} | {cells} | {sel} | {seeds_cell(s)} |")
        lines.append("")
    return "\n".join(lines)


def _claim_list(study: dict[str, Any]) -> list[tuple[str, str, str, str, bool, str]]:
    if "claims" not in study:
        return list(DEFAULT_CLAIMS)
    out = []
    for i, c in enumerate(study["claims"]):
        missing = [k for k in ("regime", "a", "b", "column", "lower_better", "text") if k not in c]
        if missing:
            raise ValueError(f"study claims[{i}] lacks {', '.join(missing)}")
        out.append((c["regime"], c["a"], c["b"], c["column"], bool(c["lower_better"]), c["text"]))
    return out


def claims(summary: dict[tuple[str, str], dict[str, Any]], study: dict[str, Any]) -> list[str]:
    """The paper's qualitative claims, each checked on the means and seed std of the summary.

    A difference smaller than the combined seed std sqrt(s_a² + s_b²) is reported as "not established" (within
    the seed noise), with the side the means fall on, never as "held" or "did not hold"."""
    out: list[str] = []
    listed = _claim_list(study)
    for d, ds in study["datasets"].items():
        for regime, a, b, col, lower_better, text in listed:
            if regime != ds["regime"]:
                continue
            ga, gb = (summary.get((d, m), {}).get(col) for m in (a, b))
            if ga is None or gb is None or math.isnan(ga[0]) or math.isnan(gb[0]):
                continue
            v = verdict(ga, gb, lower_better)
            unit = "mAP" if ds["regime"] == "multilabel" else "error"
            label = ds.get("label", d)
            nums = f"{unit} {ga[0]:.2f} vs {gb[0]:.2f}"
            if v["status"] == "not established":  # the means alone would call it; the seeds do not
                side = ("are equal: neither favour nor go against" if ga[0] == gb[0]
                        else "favour" if v["favours"] else "go against")  # fmt: skip
                if v["noise"] is None:
                    why = f"one seed, no spread to compare the difference with ({nums}"
                else:
                    why = (f"the difference is within the seed noise ({nums}, |Δ| {v['delta']:.2f} < "
                           f"{v['noise']:.2f}")  # fmt: skip
                out.append(
                    f"- {label}: {text} — not established: {why}; the means {side} the claim)."
                )
            else:
                out.append(f"- {label}: {text} — {v['status']} ({nums}).")
    return out


def _study_ref(study: dict[str, Any]) -> str:
    """How ``lpl-train study`` names ``study``: a shipped study by its name, another by its file."""
    from lpl_train.study import STUDY_DIR

    path = Path(study.get("path", STUDY_DIR / "fmnist.toml"))
    return path.stem if path.resolve().parent == STUDY_DIR else str(path)


def records_display_name(path: Path) -> str:
    """A records file as a table header names it: relative to the project for a shipped one, else as the
    study command was given it (so that the header's commands run from where the study was run)."""
    from lpl_train.study import STUDY_DIR

    path = Path(path)
    if path.resolve().parent == STUDY_DIR:
        return f"lpl_train/configs/study/{path.name}"
    return str(path)


def _held_out(study: dict[str, Any]) -> bool:
    """Whether some multi-label dataset of the study tiles its validation split from held-out source images
    (:func:`lpl_train.study_runs.held_out_split`)."""
    from lpl_train.study_runs import held_out_split

    return any(held_out_split(study, d) for d in study.get("datasets", {}))


def tables_markdown(
    records: Sequence[dict[str, Any]],
    study: dict[str, Any],
    chosen: dict[tuple[str, str], dict[str, Any]],
    prefix: str,
    records_name: str | None = None,
    path_args: str = "",
) -> str:
    """The whole ``<prefix>-tables.md``: a header stating the protocol and the group rule (and the records
    file it was made from, ``records_name``, with the commands that redraw and retrain it: ``path_args``
    are the ``--out``/``--figures`` options the study was run with), the tables and the claims."""
    summary = summarize(records, study, chosen)
    title = study["description"] if "description" in study else study["name"]
    if study["quick"]:
        title += (
            " — QUICK MODE (small sets, 4 epochs, no search: a smoke test, not the study's results)"
        )
    minutes = sum(r.get("wall_s", 0.0) for r in records) / 60
    quick = " --quick" if study["quick"] else ""
    quick += path_args + (f" --records {shlex.quote(records_name)}" if records_name else "")
    split = f"{study['val_fraction']:.0%} of the training set, stratified"
    if _held_out(study):
        split += "; multi-label mosaics tiled from held-out source images"
    head = (
        f"Seeds {study['seeds']}, {study['epochs']} epochs, model {study['model']['name']} "
        f"{study['model'].get('params', {})}; hyper-parameters selected on a validation split "
        f"({split}) with seed {study['select_seed']}; "
        f"groups: {study_groups(study).describe()}; a selected value marked (EDGE) is the smallest or "
        f"largest of its grid (the grid was too small to show an interior optimum). {len(records)} runs, {minutes:.1f} run-minutes (summed wall time, one CPU thread a run) of "
        f"training. Raw runs: `{records_name or prefix + '-runs.jsonl'}`. Redraw: `lpl-train study "
        f"{_study_ref(study)}{quick} --report-only`; train what is missing: `lpl-train study "
        f"{_study_ref(study)}{quick}`."
    )  # fmt: skip
    md = [f"# {title}", "", head, "", format_tables(summary, study)]
    md += ["## The paper's qualitative claims, checked on these means and their seed std", ""]
    md += claims(summary, study)
    md.append("")
    return "\n".join(md)
