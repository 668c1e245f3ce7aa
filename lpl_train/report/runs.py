"""Summarise finished runs: mean ± std over seeds beside the paper's number for the same table cell.

A run folder is finished when it holds ``final.json`` (written by :func:`lpl_train.engine.fit`); one that
holds ``diverged.json`` instead stopped on a non-finite loss and is named in its row, not averaged. Runs are
grouped by their config with ``train.seed`` removed and by the number of processes they ran on (a DDP run is
never averaged with single-process runs), so the seeds of one sweep point form one row. ``n`` counts distinct
seeds: two runs of the same seed (a sweep run twice into two folders) are averaged into one value for that
seed and flagged in the seeds column, never counted as two seeds. The paper's Tables I-X are read from
``lpl_train/paper_results.json``, the one place where they are stored.

Single-label rows show the top-1 error overall and of the many/medium/few groups, multi-label rows the mAP
total and head/medium/tail, with the groups of :class:`lpl_train.report.stats.GroupRule` (by default the
paper's count thresholds; ``--groups ranks`` for the 30% most and 30% least frequent classes); the table's first line says which.

The metric reported is the last epoch's (``final``) and, beside it, the test metric at the epoch chosen on
the validation split (``best_val``; "—" without a validation split). The paper does not say which one its
tables hold (the LDAM code prints the best *test* epoch, the long-tail LPL code the last); the best test
epoch is not reported here, since choosing an epoch on the test set overstates the result.
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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lpl_train.config import computed_keys
from lpl_train.report.checks import check_final, check_paper, read_file
from lpl_train.report.stats import (
    DEFAULT_GROUPS,
    GroupRule,
    diverged_note,
    fmt_mean_std,
    mean_std,
    nanmean,
)

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

#: the engine's diverged.json (lpl_train.engine.files.DIVERGED; named here so the report needs no torch)
DIVERGED = "diverged.json"
#: the description of a study run's engine config (``lpl_train.study_runs.engine_config``): the engine's
#: "test" split is the study's validation split, so its final.json holds validation metrics; the run's test
#: metrics are in its record ``result.json``, written once the trained model has been evaluated
STUDY_RUN = (
    "lpl-train study run: the engine evaluates the validation split; test metrics in result.json"
)
_SINGLE = ("top1_error", "error_many", "error_medium", "error_few")
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
    #: why the run stopped without test metrics (its training loss became non-finite); None if it finished
    diverged: str | None = None


def collect_runs(root: str | Path) -> list[_Run]:
    """Every finished run folder (``final.json`` + ``config.toml``, or a ``final.json`` that keeps the config
    it was trained with where ``config.toml`` is gone) under ``root``, and every diverged one
    (``diverged.json`` + ``config.toml``, no ``final.json``), in path order. A ``final.json`` or
    ``diverged.json`` with no config at all is not a run folder: not collected.

    A study run (``lpl_train.study``) evaluated its validation split during training; its record
    ``result.json`` holds the test metrics, which replace the engine's ``final`` (and its validation-based
    ``best`` is dropped); one without its record yet (the study stopped between training and testing it)
    is not finished: its ``final.json`` holds validation metrics. A diverged run (a study run's record
    without test metrics, or a run that stopped on a non-finite loss) has no metrics: it is named in its
    row's seeds column, not averaged."""
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"report folder {str(root)!r} {what}")
    # finished and diverged run folders, in one walk of the tree
    found = {p.parent for p in root.rglob("*.json") if p.name in ("final.json", DIVERGED)}
    runs = []
    for folder in sorted(found):
        cfg_path, fin = folder / "config.toml", folder / "final.json"
        final = None
        if fin.is_file():
            final = read_file(fin, json.loads, json.JSONDecodeError)
            check_final(fin, final)
        if cfg_path.is_file():
            cfg = read_file(cfg_path, tomllib.loads, tomllib.TOMLDecodeError)
            check_paper(cfg_path, cfg)
        elif final is not None and isinstance(final.get("config"), str):
            cfg = _kept_config(
                fin, final["config"]
            )  # config.toml lost: the config final.json keeps
            check_paper(fin, cfg)
        else:
            continue
        if final is None:  # stopped on a non-finite loss (the engine's diverged.json)
            runs.append(_diverged_run(folder, cfg))
            continue
        if cfg_path.is_file():
            _check_trained_config(cfg_path, fin, final)
        record = folder / "result.json"
        if not record.is_file() and cfg.get("description") == STUDY_RUN:
            continue  # a study run not yet recorded: its final.json holds validation metrics, not test
        if record.is_file():
            rec = read_file(record, json.loads, json.JSONDecodeError)
            if not isinstance(rec, dict):
                raise ValueError(
                    f"result file {str(record)!r} holds {type(rec).__name__}, expected a JSON object"
                )
            test = rec.get("test")
            if not test:
                why = rec.get("diverged") or "its record holds no test metrics"
                runs.append(_Run(folder, cfg, final, diverged=str(why)))
                continue
            final = {**final, "final": test, "best": {}}
        runs.append(_Run(folder, cfg, final))
    return runs


def _kept_config(fin: Path, text: str) -> dict[str, Any]:
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise ValueError(f"result file {str(fin)!r}: key 'config' does not hold a config") from None
    return cfg


def _check_trained_config(cfg_path: Path, fin: Path, final: dict[str, Any]) -> None:
    """A run is grouped by its ``config.toml``: that must be the config its result was trained with, as
    ``final.json`` keeps it (a ``final.json`` written before results kept their config is not checked)."""
    from lpl_train.engine.files import config_differences

    kept = final.get("config")
    if kept is None:
        return
    try:
        diff = config_differences(kept, cfg_path.read_text(encoding="utf-8"))
    except (TypeError, ValueError, AttributeError):  # not TOML text
        raise ValueError(f"result file {str(fin)!r}: key 'config' does not hold a config") from None
    if diff:
        raise ValueError(
            f"config file {str(cfg_path)!r} is not the config its run was trained with (kept in "
            f"{str(fin)!r}); it differs in {', '.join(diff)}: restore it, or move the run out of the "
            "report's folder"
        )


def _diverged_run(folder: Path, cfg: dict[str, Any]) -> _Run:
    """A run folder the engine stopped on a non-finite loss: its ``diverged.json`` (the message, and the
    seed, processes and kind of targets the run had, where recorded) as a run without metrics."""
    path = folder / DIVERGED
    info = read_file(path, json.loads, json.JSONDecodeError)
    if not isinstance(info, dict):
        raise ValueError(f"{str(path)!r} holds {type(info).__name__}, expected a JSON object")
    seed = info.get("seed", cfg.get("train", {}).get("seed", 0))
    final = {"seed": seed, "multi_label": bool(info.get("multi_label", False)),
             "run": {"world_size": info.get("world_size", 1)}}  # fmt: skip
    return _Run(folder, cfg, final, diverged=str(info.get("message", "diverged")))


@dataclass
class ReportRow:
    """One config (all seeds): its label, paper cell, distinct seeds and per-metric statistics.

    ``duplicates`` maps a seed to its number of runs when it was run more than once (its values are averaged
    into one per seed); ``world_size`` is the number of processes of the row's runs."""

    label: str
    name: str
    paper: dict[str, str] | None
    seeds: list[int]
    metrics: list[str]
    final: dict[str, tuple[float, float | None]]
    best: dict[str, tuple[float, float | None]]
    paper_values: dict[str, float]
    runs: list[str]
    duplicates: dict[int, int] = field(default_factory=dict)
    world_size: int = 1
    #: seeds whose every run diverged (no metrics): named in the seeds column, not in the means
    diverged: list[int] = field(default_factory=list)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return mean_std(values)


def _world_size(final: dict[str, Any]) -> int:
    """Processes a run trained on, as recorded in ``final.json`` (``run.world_size``; absent: one)."""
    run = final.get("run")
    ws = run.get("world_size", 1) if isinstance(run, dict) else final.get("world_size", 1)
    return ws if isinstance(ws, int) and not isinstance(ws, bool) and ws >= 1 else 1


def _run_metrics(r: _Run, rule: GroupRule) -> dict[str, float | None]:
    """The row metrics of one run: top-1 error and group errors, or mAP and group mAPs (percent)."""
    fin = r.final.get("final", {})
    counts = r.final.get("class_counts")
    if r.final.get("multi_label"):
        out = {"map": fin.get("map")}
        ap = fin.get("ap_per_class")
        if ap is not None and counts is not None and len(ap) == len(counts):
            g = rule.split(counts, multi_label=True)
            for k, name in (("many", "head"), ("medium", "medium"), ("few", "tail")):
                out[f"map_{name}"] = nanmean([ap[c] for c in g[k]])
        else:  # an older final.json without per-class AP: the engine's groups (the counts rule)
            out.update({k: fin.get(k) for k in ("map_head", "map_medium", "map_tail")})
        return out
    out = {"top1_error": fin.get("top1_error")}
    acc = fin.get("per_class_acc")
    if acc is not None and counts is not None and len(acc) == len(counts):
        g = rule.split(counts)
        for k in ("many", "medium", "few"):
            out[f"error_{k}"] = 100.0 - nanmean([acc[c] for c in g[k]])
    return out


def _per_seed(rs: list[_Run], values: list[float | None]) -> tuple[list[int], list[float | None]]:
    """Distinct seeds and one value per seed (the mean of a seed's runs when it was run twice)."""
    by_seed: dict[int, list[float]] = {}
    for r, v in zip(rs, values, strict=True):
        seed = int(r.final.get("seed", r.config.get("train", {}).get("seed", 0)))
        by_seed.setdefault(seed, [])
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            by_seed[seed].append(float(v))
    seeds = sorted(by_seed)
    return seeds, [nanmean(by_seed[s]) if by_seed[s] else None for s in seeds]


def _group_key(r: _Run) -> str:
    # the runs of one config that differ only in train.seed (what a run folder counts as the same config)
    f = {k: json.dumps(v) for k, v in computed_keys(r.config).items() if k != "train.seed"}
    f["#world_size"] = json.dumps(_world_size(r.final))
    return json.dumps(sorted(f.items()))


def _labels(groups: dict[str, list[_Run]]) -> dict[str, str]:
    """Config name, plus the keys that tell apart the rows sharing that name (sweep points, DDP)."""
    flat = {key: dict(json.loads(key)) for key in groups}
    by_name: dict[str, list[str]] = {}
    for key, rs in groups.items():
        by_name.setdefault(rs[0].config.get("name", "?"), []).append(key)
    out = {}
    for name, siblings in by_name.items():
        keys = sorted({k for s in siblings for k in flat[s]})
        diff = [k for k in keys if len({flat[s].get(k) for s in siblings}) > 1]
        for key in siblings:
            parts = [f"{k}={json.loads(flat[key][k])}" if k in flat[key] else f"{k}=-"
                     for k in diff if k != "#world_size"]  # fmt: skip
            ws = int(json.loads(flat[key]["#world_size"]))
            if ws > 1:
                parts.append(f"DDP × {ws} processes")
            out[key] = name + (" [" + ", ".join(parts) + "]" if parts else "")
    return out


def aggregate(
    runs: list[_Run], results: dict[str, Any] | None = None, groups: GroupRule = DEFAULT_GROUPS
) -> list[ReportRow]:
    """Group runs whose configs differ only in ``train.seed`` (compared as
    :func:`lpl_train.config.computed_keys` gives them: no volatile keys, defaults for keys written later;
    and that ran on as many processes) and average their metrics over distinct seeds."""
    grouped: dict[str, list[_Run]] = {}
    for r in runs:
        grouped.setdefault(_group_key(r), []).append(r)
    labels = _labels(grouped)
    rows = [_row(labels[key], rs, results, groups) for key, rs in grouped.items()]
    order = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"]
    rows.sort(key=lambda r: (order.index(r.paper["table"]) if r.paper else 99, r.label))
    return rows


def _at_best_val(final: dict[str, Any], key: str) -> float | None:
    """The test metric at the epoch with the best *validation* score (``best_val``), or None without a
    validation split. The best *test* epoch (``best``) is never reported: choosing an epoch on the test
    set overstates the result."""
    bv = final.get("best_val")
    v = bv.get(key) if isinstance(bv, dict) else None
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def _row(
    label: str, runs: list[_Run], results: dict[str, Any] | None, groups: GroupRule
) -> ReportRow:
    rs = [r for r in runs if r.diverged is None]
    lost = sorted({_seed(r) for r in runs if r.diverged is not None} - {_seed(r) for r in rs})
    multi = bool((rs or runs)[0].final.get("multi_label"))
    names = list(_MULTI if multi else _SINGLE)
    per_run = [_run_metrics(r, groups) for r in rs]
    fin: dict[str, tuple[float, float | None]] = {}
    seeds: list[int] = []
    for m in names:
        # None = undefined for that run (an empty class group, e.g. no tail class): left out
        seeds, vals = _per_seed(rs, [pm.get(m) for pm in per_run])
        if any(v is not None for v in vals):
            fin[m] = _mean_std(vals)
    best_key = "test_map" if multi else "test_top1_error"  # at the epoch chosen on validation
    _, bvals = _per_seed(rs, [_at_best_val(r.final, best_key) for r in rs])
    bst = {names[0]: _mean_std(bvals)} if any(v is not None for v in bvals) else {}
    paper = runs[0].config.get("paper")
    pv: dict[str, float] = {}
    if paper:
        try:
            pv = paper_cell(paper["table"], paper["row"], paper["column"], results)
        except ValueError as exc:  # a [paper] reference to no cell: named, not shown as "—"
            where = runs[0].path / "config.toml"
            raise ValueError(
                f"config file {str(where)!r}: key 'paper' names no cell: {exc}"
            ) from None
    count: dict[int, int] = {}
    for r in rs:
        count[_seed(r)] = count.get(_seed(r), 0) + 1
    return ReportRow(label=label, name=runs[0].config.get("name", "?"), paper=paper, seeds=seeds,
                     metrics=names, final=fin, best=bst, paper_values=pv, runs=[str(r.path) for r in rs],
                     duplicates={s: n for s, n in count.items() if n > 1},
                     world_size=_world_size(runs[0].final), diverged=lost)  # fmt: skip


def _seed(r: _Run) -> int:
    return int(r.final.get("seed", r.config.get("train", {}).get("seed", 0)))


def _fmt(ms: tuple[float, float | None] | None) -> str:
    return fmt_mean_std(ms)


def _paper_fmt(pv: dict[str, float], m: str) -> str:
    if m not in pv:
        return "—"
    std = pv.get(f"{m}_std")
    return f"{pv[m]:.2f}" if std is None else f"{pv[m]:.2f} ± {std:.2f}"


def _seeds_cell(r: ReportRow) -> str:
    notes = []
    if r.duplicates:
        dup = ", ".join(f"seed {s} ×{n}" for s, n in sorted(r.duplicates.items()))
        notes.append(f"duplicate runs: {dup}")
    if r.diverged:
        notes.append(diverged_note(r.diverged))
    return f"{len(r.seeds)} ({'; '.join(notes)})" if notes else str(len(r.seeds))


def _table_rows(rows: list[ReportRow]) -> tuple[list[str], list[list[str]]]:
    header = ["config", "paper cell", "seeds", "metric", "final (%)", "at best val (%)", "paper (%)",
              "final − paper"]  # fmt: skip
    body = []
    for r in rows:
        cell = f"{r.paper['table']} / {r.paper['row']} / {r.paper['column']}" if r.paper else "—"
        shown = [m for m in r.metrics if m in r.final or m in r.paper_values or m == r.metrics[0]
                 or m.startswith("map")]  # fmt: skip
        for i, m in enumerate(shown):
            delta = "—"
            if m in r.final and m in r.paper_values:
                delta = f"{r.final[m][0] - r.paper_values[m]:+.2f}"
            body.append([r.label if i == 0 else "", cell if i == 0 else "",
                         _seeds_cell(r) if i == 0 else "", m, _fmt(r.final.get(m)),
                         _fmt(r.best.get(m)), _paper_fmt(r.paper_values, m), delta])  # fmt: skip
    return header, body


def to_markdown(rows: list[ReportRow], groups: GroupRule = DEFAULT_GROUPS) -> str:
    """A Markdown table: one line per (config, metric), mean ± std over seeds beside the paper's value,
    headed by the group definition used for many/medium/few."""
    header, body = _table_rows(rows)
    lines = [f"Mean ± sample std over distinct seeds; groups: {groups.describe()}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[ReportRow], groups: GroupRule = DEFAULT_GROUPS) -> str:
    """CSV with one line per (config, metric): numbers unformatted (empty where absent); the columns
    ``groups`` (the group definition), ``n_runs`` and ``world_size`` beside ``n_seeds``, and
    ``diverged_seeds`` (space-separated; left out of the means)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["config", "table", "row", "column", "n_seeds", "n_runs", "world_size", "groups",
                "metric", "final_mean", "final_std", "best_val_mean", "best_val_std", "paper",
                "paper_std", "diverged_seeds"])  # fmt: skip
    rule = groups.spec()
    for r in rows:
        p = r.paper or {}
        for m in r.metrics:
            fm, fs = r.final.get(m, (None, None))
            bm, bs = r.best.get(m, (None, None))
            w.writerow([r.label, p.get("table", ""), p.get("row", ""), p.get("column", ""), len(r.seeds),
                        len(r.runs), r.world_size, rule, m, _num(fm), _num(fs), _num(bm), _num(bs),
                        _num(r.paper_values.get(m)), _num(r.paper_values.get(f"{m}_std")),
                        " ".join(map(str, r.diverged))])  # fmt: skip
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def make_report(root: str | Path, fmt: str = "md", groups: GroupRule | str = DEFAULT_GROUPS) -> str:
    """Collect, aggregate and format the finished runs under ``root`` (``fmt`` in {"md", "csv"};
    ``groups`` a :class:`GroupRule` or its spec, e.g. ``"ranks"``)."""
    from lpl_train.report.stats import parse_groups

    if fmt not in ("md", "csv"):
        raise ValueError(f"fmt must be 'md' or 'csv', got {fmt!r}")
    rule = parse_groups(groups) if isinstance(groups, str) else groups
    runs = collect_runs(root)
    if not runs:
        raise FileNotFoundError(
            f"no finished runs (folders with final.json and a config) under {str(root)!r}"
        )
    rows = aggregate(runs, groups=rule)
    return to_markdown(rows, rule) if fmt == "md" else to_csv(rows, rule)
