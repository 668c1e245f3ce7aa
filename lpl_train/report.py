"""Summarise finished runs: mean ± std over seeds beside the paper's number for the same table cell.

A run folder is finished when it holds ``final.json`` (written by :func:`lpl_train.engine.fit`). Runs are
grouped by their config with ``train.seed`` removed, so the seeds of one sweep point form one row. The paper's
Tables I-X are read from ``lpl_train/paper_results.json``, the one place where they are stored.

The metric reported is the last epoch's (``final``) and, beside it, the best epoch's (``best``): the paper
does not say which one its tables hold (the LDAM code prints the best epoch, the long-tail LPL code the last).
Standard deviations are sample standard deviations (n − 1); with one seed they are omitted.
"""

from __future__ import annotations

import csv
import io
import json
import math

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ReportRow",
    "aggregate",
    "collect_runs",
    "load_paper_results",
    "make_report",
    "paper_cell",
    "to_csv",
    "to_markdown",
]

_SINGLE = ("top1_error",)
_MULTI = ("map", "map_head", "map_medium", "map_tail")


def load_paper_results() -> dict[str, Any]:
    """The paper's Tables I-X (``paper_results.json`` shipped with the package)."""
    text = (resources.files("lpl_train") / "paper_results.json").read_text(encoding="utf-8")
    return json.loads(text)


def paper_cell(
    table: str, row: str, column: str, results: dict[str, Any] | None = None
) -> dict[str, float]:
    """The paper's numbers for one cell, e.g. ``paper_cell("IV", "LA", "100:1") == {"top1_error": 22.33}``.

    Cells that repeat another table's number (``same_as``) are resolved to it.

    Raises:
        ValueError: naming the table, row or column that does not exist, and what does.
    """
    for arg, value in (("table", table), ("row", row), ("column", column)):
        if not isinstance(value, str):
            raise TypeError(f"{arg} must be a string, got {type(value).__name__}")
    res = results or load_paper_results()
    tables = res["tables"]
    if table not in tables:
        raise ValueError(f"paper table {table!r} does not exist; tables: {', '.join(tables)}")
    rows = tables[table]["rows"]
    if row not in rows:
        raise ValueError(f"table {table} has no row {row!r}; rows: {', '.join(rows)}")
    cols = [c for c in rows[row] if isinstance(rows[row][c], dict)]
    if column not in cols:
        raise ValueError(
            f"table {table}, row {row!r} has no column {column!r}; columns: {', '.join(cols)}"
        )
    cell = rows[row][column]
    if "same_as" in cell:
        return paper_cell(*cell["same_as"], results=res)
    return dict(cell)


@dataclass
class _Run:
    path: Path
    config: dict[str, Any]
    final: dict[str, Any]


def collect_runs(root: str | Path) -> list[_Run]:
    """Every finished run folder (``final.json`` + ``config.toml``) under ``root``, in path order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"report folder {str(root)!r} does not exist")
    runs = []
    for fin in sorted(root.rglob("final.json")):
        cfg_path = fin.parent / "config.toml"
        if not cfg_path.is_file():
            continue
        try:
            final = json.loads(fin.read_text(encoding="utf-8"))
            cfg = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(
                f"run folder {str(fin.parent)!r} has an unreadable file: {exc}"
            ) from None
        runs.append(_Run(fin.parent, cfg, final))
    return runs


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v)
    return out


_IGNORED = {"train.seed", "train.progress", "train.device", "description"}


@dataclass
class ReportRow:
    """One config (all seeds): its label, paper cell, seed count and per-metric statistics."""

    label: str
    name: str
    paper: dict[str, str] | None
    seeds: list[int]
    metrics: list[str]
    final: dict[str, tuple[float, float | None]]
    best: dict[str, tuple[float, float | None]]
    paper_values: dict[str, float]
    runs: list[str]


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def aggregate(runs: list[_Run], results: dict[str, Any] | None = None) -> list[ReportRow]:
    """Group runs whose configs differ only in ``train.seed`` and average their metrics."""
    groups: dict[str, list[_Run]] = {}
    flat: dict[str, dict[str, Any]] = {}
    for r in runs:
        f = {k: v for k, v in _flatten(r.config).items() if k not in _IGNORED}
        key = json.dumps(sorted(f.items()))
        groups.setdefault(key, []).append(r)
        flat[key] = f
    by_name: dict[str, list[str]] = {}
    for key, rs in groups.items():
        by_name.setdefault(rs[0].config.get("name", "?"), []).append(key)
    rows = []
    for key, rs in groups.items():
        name = rs[0].config.get("name", "?")
        label = name
        siblings = by_name[name]
        if len(siblings) > 1:  # name the keys that distinguish this sweep point
            keys = sorted({k for s in siblings for k in flat[s]})
            diff = [k for k in keys if len({flat[s].get(k) for s in siblings}) > 1]
            label += " [" + ", ".join(f"{k}={json.loads(flat[key][k])}" if k in flat[key] else f"{k}=-"
                                      for k in diff) + "]"  # fmt: skip
        multi = bool(rs[0].final.get("multi_label"))
        names = list(_MULTI if multi else _SINGLE)
        fin: dict[str, tuple[float, float | None]] = {}
        bst: dict[str, tuple[float, float | None]] = {}
        for m in names:
            # None = undefined for that run (an empty class group, e.g. no tail class): left out
            vals = [r.final["final"][m] for r in rs if r.final.get("final", {}).get(m) is not None]
            if vals:
                fin[m] = _mean_std([float(v) for v in vals])
        best_key = "test_map" if multi else "test_top1_error"
        bvals = [
            r.final["best"][best_key]
            for r in rs
            if r.final.get("best", {}).get(best_key) is not None
        ]
        if bvals:
            bst[names[0]] = _mean_std([float(v) for v in bvals])
        paper = rs[0].config.get("paper")
        pv: dict[str, float] = {}
        if paper:
            try:
                pv = paper_cell(paper["table"], paper["row"], paper["column"], results)
            except ValueError:
                pv = {}
        rows.append(
            ReportRow(
                label=label,
                name=name,
                paper=paper,
                seeds=sorted(int(r.final.get("seed", 0)) for r in rs),
                metrics=names,
                final=fin,
                best=bst,
                paper_values=pv,
                runs=[str(r.path) for r in rs],
            )
        )
    order = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"]
    rows.sort(key=lambda r: (order.index(r.paper["table"]) if r.paper else 99, r.label))
    return rows


def _fmt(ms: tuple[float, float | None] | None) -> str:
    if ms is None:
        return "—"
    mean, std = ms
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _paper_fmt(pv: dict[str, float], m: str) -> str:
    if m not in pv:
        return "—"
    std = pv.get(f"{m}_std")
    return f"{pv[m]:.2f}" if std is None else f"{pv[m]:.2f} ± {std:.2f}"


def _table_rows(rows: list[ReportRow]) -> tuple[list[str], list[list[str]]]:
    header = [
        "config",
        "paper cell",
        "seeds",
        "metric",
        "final (%)",
        "best (%)",
        "paper (%)",
        "final − paper",
    ]
    body = []
    for r in rows:
        cell = f"{r.paper['table']} / {r.paper['row']} / {r.paper['column']}" if r.paper else "—"
        for i, m in enumerate(r.metrics):
            delta = "—"
            if m in r.final and m in r.paper_values:
                delta = f"{r.final[m][0] - r.paper_values[m]:+.2f}"
            body.append(
                [
                    r.label if i == 0 else "",
                    cell if i == 0 else "",
                    str(len(r.seeds)) if i == 0 else "",
                    m,
                    _fmt(r.final.get(m)),
                    _fmt(r.best.get(m)),
                    _paper_fmt(r.paper_values, m),
                    delta,
                ]
            )
    return header, body


def to_markdown(rows: list[ReportRow]) -> str:
    """A Markdown table: one line per (config, metric), mean ± std over seeds beside the paper's value."""
    header, body = _table_rows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[ReportRow]) -> str:
    """CSV with one line per (config, metric): numbers unformatted (empty where absent)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["config", "table", "row", "column", "n_seeds", "metric", "final_mean", "final_std",
                "best_mean", "best_std", "paper", "paper_std"])  # fmt: skip
    for r in rows:
        p = r.paper or {}
        for m in r.metrics:
            fm, fs = r.final.get(m, (None, None))
            bm, bs = r.best.get(m, (None, None))
            w.writerow([r.label, p.get("table", ""), p.get("row", ""), p.get("column", ""), len(r.seeds), m,
                        _num(fm), _num(fs), _num(bm), _num(bs), _num(r.paper_values.get(m)),
                        _num(r.paper_values.get(f"{m}_std"))])  # fmt: skip
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def make_report(root: str | Path, fmt: str = "md") -> str:
    """Collect, aggregate and format the finished runs under ``root`` (``fmt`` in {"md", "csv"})."""
    if fmt not in ("md", "csv"):
        raise ValueError(f"fmt must be 'md' or 'csv', got {fmt!r}")
    runs = collect_runs(root)
    if not runs:
        raise FileNotFoundError(
            f"no finished runs (folders with final.json and config.toml) under {str(root)!r}"
        )
    rows = aggregate(runs)
    return to_markdown(rows) if fmt == "md" else to_csv(rows)
