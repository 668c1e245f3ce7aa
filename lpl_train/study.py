"""Studies: a declarative file of datasets × methods × grids × seeds with selection on a validation split.

``lpl-train study FILE`` (also ``python -m lpl_train.study [--study FILE]``) runs a study through the same
machinery as ``lpl-train sweep`` (:mod:`lpl_train.experiment`: run folders, skip finished, resume, locks,
parallel jobs) and summarises it with the same report code (:mod:`lpl_train.report`: mean ± std over seeds,
group rule, seed-noise verdicts). The shipped study is ``lpl_train/configs/study/fmnist.toml``.

Protocol. Each (dataset, method) grid point is trained with ``select_seed`` on the training split minus a
stratified validation split carved from it (``val_fraction``; multi-label data whose builder takes
``val_fraction`` tile it from held-out source images instead, :func:`lpl_train.study_runs.held_out_split`)
and scored on that validation split only:
the balanced (mean per-class) error for single-label data, whose test sets are balanced, and the mAP for
multi-label data. The best point's run is the final run of ``select_seed``; the other seeds train the same
point. The test set is evaluated for every run but never read by the selection (:func:`select_best`).
Runs live in ``OUT/runs/<dataset>/<method>/<point>/seed<k>`` (:mod:`lpl_train.study_runs`).

Study file keys: ``name``, ``description`` (the tables' title), ``seeds``, ``select_seed``, ``val_fraction``,
``epochs``, ``[datasets.*]`` (``name``, ``regime`` in balanced/longtail/multilabel, ``params``, ``n_max``,
``label``), ``[[methods]]`` (``id``, ``regime`` single/multilabel, ``loss``, ``params``, ``grid``,
``balanced``, ``model_params``, ``label``, ``grid_floor``: the smallest value of some grid keys, where an
optimum is not a grid edge, and ``seeds``: the method's own final seeds, overriding the study's), ``[model]``
(required),
``[optim]``, ``[schedule]``, ``batch_size``, ``data_seed``, ``drw_fraction``, ``[quick]`` (``seeds``,
``epochs``, ``scale``, ``grid = "first"``), ``[train]`` (``compile``, ``channels_last``,
``loss_variation_every`` for every run), the group rule (``groups = "counts"|"ranks"`` or
``group_fractions``), ``record_delta_norm`` (the ablation's per-class, per-epoch ‖δ_c‖ in every LPL run's
record) and optional ``[[claims]]`` (see :mod:`lpl_train.report.tables`).
"""

from __future__ import annotations

import difflib
import json
import math

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lpl_train._pipes import print_line
from lpl_train.ablation_records import parse_records
from lpl_train.experiment import PlannedRun, execute, expand_grid
from lpl_train.experiment import point_name as point_slug
from lpl_train.report import tables as _tables
from lpl_train.report.stats import class_groups_by_rank, nanmean
from lpl_train.report.tables import method_seeds
from lpl_train.study_runs import StudyRunner, resolve_params

__all__ = [
    "DEFAULT_STUDY", "all_seeds", "check_records", "claims", "class_groups_by_rank", "expand_grid",
    "final_runs", "find_study", "format_tables", "grid_order", "load_study", "method_grid", "method_seeds", "plan_runs",
    "point_slug", "read_records", "resolve_params", "run_one", "run_study", "select_best",
    "SelectionIncomplete", "shipped_records", "summarize", "validation_score", "write_outputs", "write_tables",
]  # fmt: skip

STUDY_DIR = Path(__file__).resolve().parent / "configs" / "study"
DEFAULT_STUDY = STUDY_DIR / "fmnist.toml"
REGIMES = ("balanced", "longtail", "multilabel")
# engine [train] keys a study may set for all its runs (the seed, device, evaluation and progress stay the study's)
STUDY_TRAIN_KEYS = ("compile", "channels_last", "loss_variation_every")
_REQUIRED = ("name", "seeds", "select_seed", "val_fraction", "epochs", "datasets", "methods",
             "model")  # fmt: skip
# every key a study file may hold, per table (the module docstring says what each does); [optim] and
# [schedule] go whole into each run's config, validated with it when the file is read (_check_runs)
_KEYS: dict[str, tuple[str, ...]] = {
    "": (*_REQUIRED, "description", "optim", "schedule", "batch_size", "data_seed",
         "drw_fraction", "quick", "train", "groups", "group_fractions", "record_delta_norm", "claims"),
    "model": ("name", "params"),
    "datasets": ("name", "regime", "params", "n_max", "label"),
    "methods": ("id", "regime", "loss", "params", "grid", "balanced", "model_params", "label",
                "grid_floor", "seeds"),
    "balanced": ("params", "grid"),
    "quick": ("seeds", "epochs", "scale", "grid"),
    "claims": ("regime", "a", "b", "column", "lower_better", "text"),
}  # fmt: skip


# ------------------------------------------------------------------------------------------ definition
def find_study(name_or_path: str | Path | None) -> Path:
    """A study file: a path, or the name of a shipped study (``fmnist``); None gives the default."""
    if name_or_path is None:
        return DEFAULT_STUDY
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = STUDY_DIR / f"{name_or_path}.toml"
    if p.suffix != ".toml" and shipped.is_file():
        return shipped
    names = ", ".join(sorted(q.stem for q in STUDY_DIR.glob("*.toml")))
    what = "is a folder, not a study file (.toml)" if p.is_dir() else "does not exist"
    raise FileNotFoundError(f"study definition {str(p)!r} {what} (shipped studies: {names})")


def load_study(path: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    """Read and check a study definition; with ``quick`` apply its ``[quick]`` table.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a required key is missing or a value is out of range (the message names it).
    """
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {quick!r}")
    p = find_study(path)
    try:
        study = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"study definition {str(p)!r} is not valid TOML: {exc}") from None
    for key in _REQUIRED:
        if key not in study:
            raise ValueError(f"study definition {str(p)!r} lacks the required key {key!r}")
    _check_keys(study, f"study definition {str(p)!r}")
    study.setdefault("scale", 1.0)
    study.setdefault("grid_mode", "all")
    if not isinstance(study.setdefault("record_delta_norm", False), bool):
        raise ValueError(f"study definition {str(p)!r}: record_delta_norm must be true or false")
    if "quick" in study and not isinstance(study["quick"], dict):
        raise ValueError(f"study definition {str(p)!r}: [quick] must be a table")
    study["quick_settings"] = study.pop("quick", {})
    study["quick"] = quick
    if quick:
        q = study["quick_settings"]
        study["seeds"] = list(q.get("seeds", study["seeds"]))
        study["epochs"] = int(q.get("epochs", study["epochs"]))
        study["scale"] = float(q.get("scale", 1.0))
        study["grid_mode"] = q.get("grid", "all")
    _check_study(study, str(p))
    study["path"] = str(p)
    return study


def _check_keys(study: dict[str, Any], where: str) -> None:
    """Refuse a key no table of a study file knows (a misspelt ``grid`` would train without one), naming
    it and the closest allowed key."""
    tables: list[tuple[str, str, Any]] = [("", "", study)]
    if isinstance(study.get("datasets"), dict):
        tables += [("datasets", f"datasets.{k}", v) for k, v in study["datasets"].items()]
    for kind in ("methods", "claims"):
        if isinstance(study.get(kind), list):
            tables += [(kind, f"{kind}[{i}]", v) for i, v in enumerate(study[kind])]
    tables += [("balanced", f"{name}.balanced", t["balanced"]) for kind, name, t in list(tables)
               if kind == "methods" and isinstance(t, dict) and "balanced" in t]  # fmt: skip
    if isinstance(study.get("quick"), dict):  # (another value is refused as [quick] below)
        tables.append(("quick", "quick", study["quick"]))
    if "model" in study:
        tables.append(("model", "model", study["model"]))
    for kind, name, table in tables:
        if not isinstance(table, dict):
            raise ValueError(f"{where}: {name} must be a table, got {table!r}")
        allowed = _KEYS[kind]
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1) or [
                    a for a in allowed if a.startswith(key) or key.startswith(a)
                ]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                at = f"{name}.{key}" if name else key
                raise ValueError(
                    f"{where}: unknown key {at!r}{hint}; allowed there: {', '.join(allowed)}"
                )


def _check_seeds(seeds: Any, select_seed: Any, where: str) -> None:
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ValueError(f"{where}: seeds must be a non-empty list of ints >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: seeds must be distinct, got {seeds!r}")
    if select_seed not in seeds:
        raise ValueError(f"{where}: select_seed {select_seed!r} must be one of the seeds {seeds!r}")


def _check_study(study: dict[str, Any], where: str) -> None:
    _check_seeds(study["seeds"], study["select_seed"], where)
    vf = study["val_fraction"]
    if not isinstance(vf, float) or not 0.0 < vf < 1.0:
        raise ValueError(f"{where}: val_fraction must be a float in (0, 1), got {vf!r}")
    if not isinstance(study["epochs"], int) or study["epochs"] < 1:
        raise ValueError(f"{where}: epochs must be an int >= 1, got {study['epochs']!r}")
    if study["grid_mode"] not in ("all", "first"):
        raise ValueError(
            f"{where}: quick.grid must be 'all' or 'first', got {study['grid_mode']!r}"
        )
    if not 0.0 < study["scale"] <= 1.0:
        raise ValueError(f"{where}: quick.scale must be in (0, 1], got {study['scale']!r}")
    for key, ds in study["datasets"].items():
        if ds.get("regime") not in REGIMES:
            raise ValueError(
                f"{where}: datasets.{key}.regime must be one of {REGIMES}, got {ds.get('regime')!r}"
            )
    ids = [m.get("id") for m in study["methods"]]
    if len(set(ids)) != len(ids) or not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"{where}: method ids must be unique non-empty strings, got {ids!r}")
    for m in study["methods"]:
        if m.get("regime") not in ("single", "multilabel"):
            raise ValueError(
                f"{where}: method {m['id']!r} regime must be 'single' or 'multilabel', got {m.get('regime')!r}"
            )
        if "loss" not in m:
            raise ValueError(f"{where}: method {m['id']!r} lacks 'loss'")
        _check_grid_floor(m, where)
        if "seeds" in m:
            _check_seeds(m["seeds"], study["select_seed"], f"{where}: method {m['id']!r}")
    train = study.get("train", {})
    if not isinstance(train, dict) or set(train) - set(STUDY_TRAIN_KEYS):
        bad = sorted(set(train) - set(STUDY_TRAIN_KEYS)) if isinstance(train, dict) else train
        raise ValueError(f"{where}: [train] may set only {list(STUDY_TRAIN_KEYS)}, got {bad!r}")
    _tables.study_groups(study)  # the group rule parses
    _tables._claim_list(study)  # so do the claims
    _check_runs(study, where)


def _check_runs(study: dict[str, Any], where: str) -> None:
    """Validate each planned run's engine config as the run will (:func:`lpl_train.config.validate_config`):
    the study's ``[model]``, ``[optim]``, ``[schedule]``, ``batch_size`` and ``[train]`` go into it whole,
    so a misspelt ``[optim]`` key is refused when the file is read, not when the first run trains."""
    from lpl_train.config import ConfigError, validate_config
    from lpl_train.study_runs import engine_config

    if not isinstance(study["model"].get("name"), str):
        raise ValueError(f"{where}: [model] needs a name (a string), got {study['model']!r}")
    for spec in plan_runs(study):
        try:
            validate_config(engine_config(study, spec, spec["params"]))
        except ConfigError as exc:
            raise ValueError(f"{where}: run {spec['key']}: {exc}") from None


def _check_grid_floor(m: dict[str, Any], where: str) -> None:
    """A method's optional ``grid_floor``: for some of its grid keys, the smallest value the parameter can
    take (Δε = 0: no perturbation). The ablation report calls an optimum there "floor", not "EDGE"."""
    floor = m.get("grid_floor", {})
    if not isinstance(floor, dict):
        raise ValueError(f"{where}: method {m['id']!r} grid_floor must be a table, got {floor!r}")
    bal = m.get("balanced", {})
    grids = [m.get("grid", {}), bal.get("grid", {}) if isinstance(bal, dict) else {}]
    for key, v in floor.items():
        axes = [g[key] for g in grids if key in g]
        if not axes:
            raise ValueError(
                f"{where}: method {m['id']!r} grid_floor names {key!r}, not a grid key"
            )
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(
                f"{where}: method {m['id']!r} grid_floor.{key} must be a number, got {v!r}"
            )
        if any(x < v for axis in axes for x in axis):
            raise ValueError(
                f"{where}: method {m['id']!r} grid {key} has values below its grid_floor {v!r}"
            )


def method_grid(
    method: dict[str, Any], regime: str, grid_mode: str = "all"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(fixed loss parameters, grid points) of ``method`` on a dataset of ``regime``.

    On the balanced regime a method's ``balanced`` table replaces its ``params`` and ``grid``. With
    ``grid_mode="first"`` only the first point is kept (the quick mode: no search).
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if grid_mode not in ("all", "first"):
        raise ValueError(f"grid_mode must be 'all' or 'first', got {grid_mode!r}")
    src = method.get("balanced", method) if regime == "balanced" else method
    params = dict(src.get("params", {}))
    points = expand_grid(dict(src.get("grid", {})))
    return params, points[:1] if grid_mode == "first" else points


# -------------------------------------------------------------------------------------------- planning
def _methods_for(study: dict[str, Any], regime: str) -> list[dict[str, Any]]:
    want = "multilabel" if regime == "multilabel" else "single"
    return [m for m in study["methods"] if m["regime"] == want]


def _spec(study: dict[str, Any], dkey: str, method: dict[str, Any], fixed: dict[str, Any],
          point: dict[str, Any], seed: int) -> dict[str, Any]:  # fmt: skip
    return {"dataset": dkey, "method": method["id"], "loss": method["loss"], "params": {**fixed, **point},
            "point": dict(point), "seed": seed, "key": f"{dkey}/{method['id']}/{point_slug(point)}/seed{seed}",
            "model_params": dict(method.get("model_params", {}))}  # fmt: skip


def plan_runs(study: dict[str, Any], phase: str = "select") -> list[dict[str, Any]]:
    """The runs of one phase. ``"select"``: every grid point of every (dataset, method) with
    ``select_seed``. Final runs need the selection's result and are made by :func:`final_runs`."""
    if phase != "select":
        raise ValueError(f"phase must be 'select' (final runs come from final_runs), got {phase!r}")
    runs = []
    for dkey, ds in study["datasets"].items():
        for m in _methods_for(study, ds["regime"]):
            fixed, points = method_grid(m, ds["regime"], study["grid_mode"])
            runs += [_spec(study, dkey, m, fixed, p, study["select_seed"]) for p in points]
    return runs


def final_runs(
    study: dict[str, Any], chosen: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Runs of the seeds other than ``select_seed`` at each (dataset, method)'s chosen point, seed by seed
    (every method's seed 1, then every method's seed 2, ...), so that a study stopped part-way leaves the
    same seeds for every method. A chosen point's keys are put in the grid's order (:func:`grid_order`),
    so its runs land in the folders a study run straight through would use, whatever order the point's
    keys came in (a record read back from a JSONL file has them sorted)."""
    chosen = _chosen_in_grid_order(study, chosen)
    runs = []
    for s in all_seeds(study):
        if s == study["select_seed"]:
            continue
        for dkey, ds in study["datasets"].items():
            for m in _methods_for(study, ds["regime"]):
                if (dkey, m["id"]) in chosen and s in method_seeds(study, m):
                    fixed, _ = method_grid(m, ds["regime"], study["grid_mode"])
                    runs.append(_spec(study, dkey, m, fixed, chosen[(dkey, m["id"])], s))
    return runs


def all_seeds(study: dict[str, Any]) -> list[int]:
    """The study's seeds, then the seeds only some methods have, in the order they first appear."""
    out = list(study["seeds"])
    for m in study["methods"]:
        out += [s for s in method_seeds(study, m) if s not in out]
    return out


def _chosen_in_grid_order(
    study: dict[str, Any], chosen: dict[tuple[str, str], dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Each chosen point with its keys in its method's grid order (:func:`grid_order`)."""
    methods = {m["id"]: m for m in study["methods"]}
    out = {}
    for (d, m), p in chosen.items():
        points = method_grid(methods[m], study["datasets"][d]["regime"], study["grid_mode"])[1]
        out[(d, m)] = grid_order(p, points)
    return out


def grid_order(point: dict[str, Any], points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``point`` with its keys in the order of the grid ``points`` (the order that names its run
    folders, see :func:`point_slug`); keys the grid lacks keep their order, after the grid's."""
    order = {k: i for p in points[:1] for i, k in enumerate(p)}
    return dict(sorted(point.items(), key=lambda kv: order.get(kv[0], len(order))))


def planned(
    study: dict[str, Any], specs: list[dict[str, Any]], out: str | Path
) -> list[PlannedRun]:
    """The specs as runs of :func:`lpl_train.experiment.execute` (folder ``OUT/runs/<key>``), costliest
    regimes first so that parallel workers end together."""
    cost = {"balanced": 3, "multilabel": 3, "longtail": 1}
    specs = sorted(specs, key=lambda s: -cost[study["datasets"][s["dataset"]]["regime"]])
    return [PlannedRun(s["key"], Path(out) / "runs" / s["key"], None, s["seed"], s["point"], {"spec": s})
            for s in specs]  # fmt: skip


# ------------------------------------------------------------------------------------------- selection
def validation_score(record: dict[str, Any]) -> float:
    """The selection score of a run, from its ``val`` metrics only (lower is better): the balanced
    (mean per-class) validation error in percent, or minus the validation mAP for multi-label runs."""
    if record.get("diverged"):
        return math.inf
    if "val" not in record or not isinstance(record["val"], dict):
        raise ValueError(f"record {record.get('key')!r} has no 'val' metrics")
    val = record["val"]
    if record.get("multi_label"):  # no mAP: no class of the split has a positive; ranked last
        return math.inf if val.get("map") is None else -float(val["map"])
    return 100.0 - nanmean(val["per_class_acc"])


def select_best(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The chosen grid point of every (dataset, method): the lowest :func:`validation_score` among its
    records. Ties (frequent: a balanced error on 200 validation images per class moves in steps of 0.05)
    go to the point whose :func:`point_slug`, with its keys sorted, sorts first, so the choice depends
    neither on the order of the records (parallel runs finish in any order) nor on the order of a point's
    keys (the grid's in a study's own runs, sorted in a JSONL file): the report of a JSONL file picks
    what the study picked. Only the ``val`` metrics are read; ``test`` is never looked at."""
    best: dict[tuple[str, str], tuple[float, str, dict[str, Any]]] = {}
    for r in records:
        key = (r["dataset"], r["method"])
        s = validation_score(r)
        rank = (math.inf if math.isnan(s) else s, point_slug(sorted(r["point"].items())))
        if key not in best or rank < best[key][:2]:
            best[key] = (*rank, r["point"])
    return {k: dict(v[2]) for k, v in best.items()}


def chosen_points(
    records: Sequence[dict[str, Any]], study: dict[str, Any]
) -> dict[tuple[str, str], dict]:
    """:func:`select_best` over the selection runs (``select_seed``) of ``records``."""
    return select_best([r for r in records if r["seed"] == study["select_seed"]])


# --------------------------------------------------------------------------------------------- running
def run_one(study: dict[str, Any], spec: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Train one run (or read its record back) through :func:`lpl_train.experiment.execute`."""
    (outcome,) = execute(planned(study, [spec], out), StudyRunner(study), log=lambda s: None)
    if outcome.result is None:
        raise FileExistsError(f"study run {str(outcome.run.out)!r} is locked by another process")
    return outcome.result


def _describe(o: Any) -> str:
    r = o.result
    if r.get("diverged"):
        return f"diverged ({r['diverged']})"
    score = r["test"].get("top1_error", r["test"].get("map"))
    return f"test {'mAP' if r['multi_label'] else 'error'} {score:.2f}"


class SelectionIncomplete(RuntimeError):
    """Some selection runs of a study are being trained by another process: nothing is selected yet."""


def run_study(study: dict[str, Any], out: str | Path, jobs: int = 1,
              log: Callable[[str], None] = print_line) -> list[dict[str, Any]]:  # fmt: skip
    """Selection runs, then the other seeds at the chosen points; returns every record found.

    Raises:
        SelectionIncomplete: another process holds some selection runs (two studies sharing ``out``):
            this call trained the others and stops before selecting; the last to finish selects.

    Worker processes (``jobs > 1``) use one CPU thread each; ``lpl-train study`` sets the same for its own
    process, the setting the committed records were made with (call ``torch.set_num_threads(1)`` before
    this function to reproduce them from Python)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(study, indent=1, default=str), encoding="utf-8")
    runner = StudyRunner(study)
    done = execute(
        planned(study, plan_runs(study), out), runner, jobs=jobs, log=log, describe=_describe
    )
    busy = sorted(o.run.key for o in done if o.status == "locked")
    if busy:  # a choice among the finished points only could differ from the study's own
        raise SelectionIncomplete(
            f"selection incomplete: {len(busy)} selection run(s) are being trained by another process "
            f"({', '.join(busy[:3])}{', ...' if len(busy) > 3 else ''}); nothing was selected. Run the "
            "study again when they have finished"
        )
    select = [o.result for o in done if o.result is not None]
    chosen = _chosen_in_grid_order(study, select_best(select))
    for (d, m), p in sorted(chosen.items()):
        log(f"selected on validation: {d}/{m}: {point_slug(p)}")
    done = execute(planned(study, final_runs(study, chosen), out), runner, jobs=jobs, log=log,
                   describe=_describe)  # fmt: skip
    return select + [o.result for o in done if o.result is not None]


# ------------------------------------------------------------------------------------ records, tables
def shipped_records(study: dict[str, Any]) -> Path:
    """The committed records shipped beside a study definition: ``<stem>-runs.jsonl``."""
    p = Path(study.get("path", DEFAULT_STUDY))
    return p.with_name(f"{p.stem}-runs.jsonl")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``study-runs.jsonl`` file (:func:`lpl_train.ablation_records.parse_records`)."""
    p = Path(path)
    if p.is_dir():
        raise FileNotFoundError(
            f"study results {str(p)!r} is a folder, not a records file (.jsonl)"
        )
    if not p.is_file():
        raise FileNotFoundError(
            f"study results {str(p)!r} do not exist; run the study (lpl-train study) first"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"study results {str(p)!r} are not UTF-8 text: {exc}") from None
    return parse_records(text, p)


def write_records(records: list[dict[str, Any]], path: Path) -> Path:
    """Write the records sorted by key, one JSON object a line (keys sorted); the file is replaced whole
    (a crash leaves the old records)."""
    from lpl_train._files import write_bytes_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: r["key"])
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    return write_bytes_atomic(path, text.encode("utf-8"))


def check_records(
    records: Sequence[dict[str, Any]], study: dict[str, Any], source: str | Path | None = None
) -> None:
    """Refuse records that are not runs of ``study`` as defined now: a record naming another study, made in
    the other mode (quick or not) or with another number of epochs, or of a (dataset, method) the study
    does not define. Their numbers would otherwise be selected and averaged as this study's, under its
    header (a JSONL file of another study, or of two studies joined)."""
    where = f"study results {str(source)!r}" if source is not None else "study records"
    checks = (("study", study["name"]), ("quick", study["quick"]), ("epochs", study["epochs"]))
    for field, want in checks:
        bad = [r for r in records if field in r and r[field] != want]
        if bad:
            got = sorted({json.dumps(r[field]) for r in bad})
            raise ValueError(
                f"{where} hold {len(bad)} record(s) with {field} {', '.join(got)} (e.g. "
                f"{bad[0].get('key')!r}), not the {field} {json.dumps(want)} of study "
                f"{study['name']!r}: records of another study or mode cannot be reported as this one's"
            )
    known = {
        (d, m["id"])
        for d, ds in study["datasets"].items()
        for m in _methods_for(study, ds["regime"])
    }
    unknown = sorted({f"{r['dataset']}/{r['method']}" for r in records
                      if (r["dataset"], r["method"]) not in known})  # fmt: skip
    if unknown:
        raise ValueError(
            f"{where} hold records of (dataset, method) pairs that study {study['name']!r} does not "
            f"define: {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}"
        )
    # a run recorded twice with different results (two JSONL files joined) would be selected on its better
    # copy and averaged with its first: refused (identical copies are one record)
    seen: dict[str, str] = {}
    differ: set[str] = set()
    for r in records:
        key, text = str(r.get("key")), json.dumps(r, sort_keys=True, default=str)
        if seen.setdefault(key, text) != text:
            differ.add(key)
    if differ:
        raise ValueError(
            f"{where} hold {len(differ)} run(s) recorded twice with different results (e.g. "
            f"{sorted(differ)[0]!r}): selection would take the better copy; keep one record of each run"
        )


def summarize(
    records: Sequence[dict[str, Any]], study: dict[str, Any]
) -> dict[tuple[str, str], dict]:
    """Mean ± std at the chosen points (:func:`lpl_train.report.tables.summarize`) of ``records``, which
    must be the study's (:func:`check_records`)."""
    check_records(records, study)
    return _tables.summarize(records, study, chosen_points(records, study))


def format_tables(summary: dict[tuple[str, str], dict[str, Any]], study: dict[str, Any]) -> str:
    """The study's tables (:func:`lpl_train.report.tables.format_tables`)."""
    return _tables.format_tables(summary, study)


def claims(summary: dict[tuple[str, str], dict[str, Any]], study: dict[str, Any]) -> list[str]:
    """The claims checked on the summary (:func:`lpl_train.report.tables.claims`)."""
    return _tables.claims(summary, study)


def write_outputs(records: list[dict[str, Any]], study: dict[str, Any], figures: Path, prefix: str,
                  records_path: Path | None = None, path_args: str = "") -> Path:  # fmt: skip
    """Write ``<prefix>-runs.jsonl`` (or ``records_path``) and ``<prefix>-tables.md`` into ``figures``;
    return the tables path."""
    path = records_path or figures / f"{prefix}-runs.jsonl"
    write_records(records, path)
    return write_tables(records, study, figures, prefix, records_path=path, path_args=path_args)


def write_tables(records: list[dict[str, Any]], study: dict[str, Any], figures: Path, prefix: str,
                 records_path: Path | None = None, path_args: str = "") -> Path:  # fmt: skip
    """Write ``<prefix>-tables.md`` into ``figures`` from ``records`` (read from ``records_path``, which
    its header names, with the commands that redraw and retrain it, given ``path_args``: the ``--out`` and
    ``--figures`` options of the study command); return its path."""
    check_records(records, study, records_path)
    figures.mkdir(parents=True, exist_ok=True)
    name = None if records_path is None else _tables.records_display_name(records_path)
    text = _tables.tables_markdown(sorted(records, key=lambda r: r["key"]), study,
                                   chosen_points(records, study), prefix, name, path_args)  # fmt: skip
    path = figures / f"{prefix}-tables.md"
    path.write_text(text, encoding="utf-8")
    return path


def loss_variation_figures(records: list[dict[str, Any]], study: dict[str, Any], figures: Path,
                           prefix: str = "") -> list[Path]:  # fmt: skip
    """The Figs. 1, 2 and 11 analogues (:func:`lpl_train.study_figures.loss_variation_figures`)."""
    from lpl_train.study_figures import loss_variation_figures as draw

    return draw(records, study, chosen_points(records, study), figures, prefix)


def fig11_live(figures: str | Path, epochs: int = 3, seed: int = 0) -> Path:
    """The short live Fig. 11 run (:func:`lpl_train.study_figures.fig11_live`)."""
    from lpl_train.study_figures import fig11_live as live

    return live(figures, epochs, seed)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lpl_train.study``: the same command as ``lpl-train study``."""
    from lpl_train.study_cli import main as cli

    return cli(argv, prog="python -m lpl_train.study")


if __name__ == "__main__":
    import sys

    sys.exit(main())
