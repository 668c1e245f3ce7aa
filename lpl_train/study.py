"""The CPU-scale replication study: Fashion-MNIST balanced, long-tail and multi-label long-tail.

``python -m lpl_train.study [--quick] [--out DIR] [--jobs N] [--figures DIR]`` trains every method of the
study definition (``lpl_train/configs/study/fmnist.toml``) and writes, into the figures folder:

* ``study-runs.jsonl``: one JSON object per training run (selection and final runs), the raw data;
* ``study-tables.md``: top-1 error (mean ± std over seeds) overall and many/medium/few in the layout of the
  paper's Tables III-IV, mAP total/head/medium/tail in the layout of Table V, the selected hyper-parameters,
  and which of the paper's qualitative claims held here;
* ``fig1-loss-variation.png``, ``fig2-loss-variation.png``, ``fig11-loss-variation.png``: the relative loss
  variation (l' - l)/l per class (Figs. 1, 2, 11) measured during the final runs.

``--quick`` writes ``study-quick-*`` instead (small sets, 4 epochs, first grid point, 2 seeds; minutes).

Protocol. Each (dataset, method) grid point is trained with ``select_seed`` on the training split minus a
stratified validation split carved from it (``val_fraction``) and scored on that validation split only:
the balanced (mean per-class) error for single-label data, whose test sets are balanced, and the mAP for
multi-label data. The best point's run is the final run of ``select_seed``; the other seeds train the same
point. The test set is evaluated for every run but never read by the selection (:func:`select_best`).
Runs live in ``--out`` (``runs/<dataset>/<method>/<point>/seed<k>``); a finished run (``result.json``) is
skipped and an interrupted one resumes from its checkpoint, so the command is resumable.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_STUDY",
    "class_groups_by_rank",
    "expand_grid",
    "format_tables",
    "load_study",
    "main",
    "method_grid",
    "plan_runs",
    "point_slug",
    "resolve_params",
    "run_one",
    "select_best",
    "summarize",
    "validation_score",
]

DEFAULT_STUDY = Path(__file__).resolve().parent / "configs" / "study" / "fmnist.toml"
REGIMES = ("balanced", "longtail", "multilabel")
RESULT = "result.json"


# ------------------------------------------------------------------------------------------- definition
def load_study(path: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    """Read and check a study definition; with ``quick`` apply its ``[quick]`` table.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a required key is missing or a value is out of range (the message names it).
    """
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {quick!r}")
    p = Path(path) if path is not None else DEFAULT_STUDY
    if not p.is_file():
        raise FileNotFoundError(f"study definition {str(p)!r} does not exist")
    study = tomllib.loads(p.read_text(encoding="utf-8"))
    for key in ("name", "seeds", "select_seed", "val_fraction", "epochs", "datasets", "methods"):
        if key not in study:
            raise ValueError(f"study definition {str(p)!r} lacks the required key {key!r}")
    study.setdefault("scale", 1.0)
    study.setdefault("grid_mode", "all")
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
    return study


def _check_study(study: dict[str, Any], where: str) -> None:
    seeds = study["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ValueError(f"{where}: seeds must be a non-empty list of ints >= 0, got {seeds!r}")
    if study["select_seed"] not in seeds:
        raise ValueError(
            f"{where}: select_seed {study['select_seed']!r} must be one of the seeds {seeds!r}"
        )
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
                f"{where}: method {m['id']!r} regime must be 'single' or 'multilabel', "
                f"got {m.get('regime')!r}"
            )
        if "loss" not in m:
            raise ValueError(f"{where}: method {m['id']!r} lacks 'loss'")


def expand_grid(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All points of a grid (cartesian product, keys in the given order); ``{}`` gives ``[{}]``.

    >>> expand_grid({"a": [1, 2], "b": ["x"]})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of lists, got {type(grid).__name__}")
    for k, v in grid.items():
        if not isinstance(v, list | tuple) or len(v) == 0:
            raise ValueError(f"grid[{k!r}] must be a non-empty list of values, got {v!r}")
    keys = list(grid)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*grid.values())]


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


def point_slug(point: dict[str, Any]) -> str:
    """Folder name of a grid point: ``default`` or ``key=value,key=value``."""
    if not isinstance(point, dict):
        raise TypeError(f"point must be a dict, got {type(point).__name__}")
    if not point:
        return "default"
    return ",".join(f"{k}={v}" for k, v in point.items())


def resolve_params(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Replace ``"$name"`` strings in loss parameters by ``context[name]`` (``num_train``, ``drw_epoch``)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, str) and v.startswith("$"):
            if v[1:] not in context:
                raise ValueError(
                    f"loss parameter {k}={v!r} names an unknown value; known: {sorted(context)}"
                )
            out[k] = context[v[1:]]
        else:
            out[k] = v
    return out


def _methods_for(study: dict[str, Any], regime: str) -> list[dict[str, Any]]:
    want = "multilabel" if regime == "multilabel" else "single"
    return [m for m in study["methods"] if m["regime"] == want]


def plan_runs(study: dict[str, Any], phase: str = "select") -> list[dict[str, Any]]:
    """The runs of one phase. ``"select"``: every grid point of every (dataset, method) with
    ``select_seed``. Final runs need the selection's result and are made by :func:`final_runs`."""
    if phase != "select":
        raise ValueError(f"phase must be 'select' (final runs come from final_runs), got {phase!r}")
    runs = []
    for dkey, ds in study["datasets"].items():
        for m in _methods_for(study, ds["regime"]):
            fixed, points = method_grid(m, ds["regime"], study["grid_mode"])
            for point in points:
                runs.append(_run_spec(study, dkey, m, fixed, point, study["select_seed"]))
    return runs


def final_runs(
    study: dict[str, Any], chosen: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Runs of the seeds other than ``select_seed`` at each (dataset, method)'s chosen point."""
    runs = []
    for dkey, ds in study["datasets"].items():
        for m in _methods_for(study, ds["regime"]):
            if (dkey, m["id"]) not in chosen:
                continue
            fixed, _ = method_grid(m, ds["regime"], study["grid_mode"])
            for seed in study["seeds"]:
                if seed != study["select_seed"]:
                    runs.append(_run_spec(study, dkey, m, fixed, chosen[(dkey, m["id"])], seed))
    return runs


def _run_spec(
    study: dict[str, Any],
    dkey: str,
    method: dict[str, Any],
    fixed: dict[str, Any],
    point: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    return {
        "dataset": dkey,
        "method": method["id"],
        "loss": method["loss"],
        "params": {**fixed, **point},
        "point": dict(point),
        "seed": seed,
        "key": f"{dkey}/{method['id']}/{point_slug(point)}/seed{seed}",
        "model_params": dict(method.get("model_params", {})),
    }


# ------------------------------------------------------------------------------------------ selection
def class_groups_by_rank(
    class_counts: Sequence[int], fractions: Sequence[float] = (0.3, 0.3)
) -> dict[str, list[int]]:
    """Many/medium/few (head/medium/tail) classes by rank of the training count.

    The ``round(fractions[0] * C)`` most frequent classes are "many", the ``round(fractions[1] * C)``
    least frequent "few", the rest "medium" (ties broken by class index). The paper's CIFAR thresholds
    (> 100 and < 20 of 500 images) leave whole groups empty on a 10-class set, hence ranks.
    """
    counts = list(class_counts)
    if not counts or any(
        isinstance(c, bool) or not isinstance(c, int | float) or c < 0 for c in counts
    ):
        raise ValueError(f"class_counts must be a non-empty list of counts >= 0, got {counts!r}")
    if len(fractions) != 2 or any(not 0 <= f <= 1 for f in fractions) or sum(fractions) > 1:
        raise ValueError(
            f"fractions must be two numbers in [0, 1] summing to <= 1, got {fractions!r}"
        )
    c = len(counts)
    order = sorted(range(c), key=lambda i: (-counts[i], i))
    n_many, n_few = round(fractions[0] * c), round(fractions[1] * c)
    return {
        "many": sorted(order[:n_many]),
        "medium": sorted(order[n_many : c - n_few]),
        "few": sorted(order[c - n_few :]),
    }


def _nanmean(values: Iterable[float | None]) -> float:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else math.nan


def validation_score(record: dict[str, Any]) -> float:
    """The selection score of a run, from its ``val`` metrics only (lower is better): the balanced
    (mean per-class) validation error in percent, or minus the validation mAP for multi-label runs."""
    if record.get("diverged"):
        return math.inf
    if "val" not in record or not isinstance(record["val"], dict):
        raise ValueError(f"record {record.get('key')!r} has no 'val' metrics")
    val = record["val"]
    if record.get("multi_label"):
        return -float(val["map"])
    return 100.0 - _nanmean(val["per_class_acc"])


def select_best(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The chosen grid point of every (dataset, method): the lowest :func:`validation_score` among its
    records. Ties (frequent: a balanced error on 200 validation images per class moves in steps of 0.05)
    go to the point whose :func:`point_slug` sorts first, so the choice does not depend on the order of the
    records (parallel runs finish in any order) and the report of a JSONL file picks what the study picked.
    Only the ``val`` metrics are read; ``test`` is never looked at."""
    best: dict[tuple[str, str], tuple[float, str, dict[str, Any]]] = {}
    for r in records:
        key = (r["dataset"], r["method"])
        s = validation_score(r)
        if math.isnan(s):
            s = math.inf
        rank = (s, point_slug(r["point"]))
        if key not in best or rank < best[key][:2]:
            best[key] = (*rank, r["point"])
    return {k: dict(v[2]) for k, v in best.items()}


# ------------------------------------------------------------------------------------------------ data
_CACHE: dict[str, Any] = {}


def _bundle(study: dict[str, Any], dkey: str) -> dict[str, Any]:
    """Training/validation/test splits of a study dataset (cached per process)."""
    if dkey in _CACHE:
        return _CACHE[dkey]
    import torch

    from lpl_train.data import build_datasets
    from lpl_train.data.common import class_counts_of, split_validation

    ds = study["datasets"][dkey]
    params = dict(ds.get("params", {}))
    seed = int(study.get("data_seed", 0))
    if ds["regime"] == "multilabel" and "num_train" in params:
        params["num_train"] = max(50, int(params["num_train"] * study["scale"]))
    b = build_datasets(ds["name"], seed=seed, **params)
    train = b.train
    if ds["regime"] != "multilabel" and "n_max" in ds:
        target_max = max(1, int(round(ds["n_max"] * study["scale"])))
        counts = np.bincount(train.targets.numpy(), minlength=b.num_classes)
        factor = target_max / counts.max()
        rng = np.random.RandomState(seed)
        keep = []
        for c in range(b.num_classes):
            idx = np.flatnonzero(train.targets.numpy() == c)
            rng.shuffle(idx)
            keep.append(idx[: max(2, int(round(counts[c] * factor)))])
        train = train.subset(np.sort(np.concatenate(keep)))
    train, val = split_validation(train, study["val_fraction"], seed)
    out = {
        "train": train,
        "val": val,
        "test": b.test,
        "num_classes": b.num_classes,
        "class_counts": class_counts_of(train.targets, b.num_classes),
        "multi_label": b.multi_label,
        "augment": b.augment,
        "torch": torch,
    }
    _CACHE[dkey] = out
    return out


# ------------------------------------------------------------------------------------------------ runs
def _engine_config(study: dict[str, Any], spec: dict[str, Any], params: dict[str, Any]) -> dict:
    name = spec["key"].replace("/", "__").replace(",", "_").replace("=", "-")
    return {
        "name": name,
        "data": {"name": study["datasets"][spec["dataset"]]["name"], "batch_size": study.get("batch_size", 128)},
        "model": {"name": study["model"]["name"], "params": {**study["model"].get("params", {}), **spec["model_params"]}},
        "loss": {"name": spec["loss"], "params": params},
        "optim": dict(study.get("optim", {})),
        "schedule": {"epochs": study["epochs"], **study.get("schedule", {})},
        "train": {"seed": spec["seed"], "device": "cpu", "progress": False, "eval_every": study["epochs"],
                  "loss_variation": True},
    }  # fmt: skip


def run_one(study: dict[str, Any], spec: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Train one run (resuming an interrupted one), evaluate it on validation and test, write and return
    its record; a run whose ``result.json`` exists is read back instead."""
    import torch

    from lpl_train import engine
    from lpl_train.data import make_loader
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    run_dir = Path(out) / "runs" / spec["key"]
    if (run_dir / RESULT).is_file():
        return json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
    torch.set_flush_denormal(True)
    data = _bundle(study, spec["dataset"])
    ctx = {
        "num_train": len(data["train"].targets),
        "drw_epoch": int(study.get("drw_fraction", 0.7) * study["epochs"]),
    }
    params = resolve_params(spec["params"], ctx)
    cfg = _engine_config(study, spec, params)
    from lpl_train.config import validate_config

    cfg = validate_config(cfg)
    device = torch.device("cpu")
    torch.manual_seed(spec["seed"])
    model = build_model(
        cfg["model"]["name"], num_classes=data["num_classes"], **cfg["model"]["params"]
    )
    loss = build_loss(
        spec["loss"], num_classes=data["num_classes"], class_counts=data["class_counts"], **params
    )
    bs = cfg["data"]["batch_size"]
    train_loader = make_loader(data["train"], batch_size=bs, train=True, augment=data["augment"],
                               device=device, seed=spec["seed"])  # fmt: skip
    val_loader = make_loader(data["val"], batch_size=512, train=False, device=device, seed=0)
    test_loader = make_loader(data["test"], batch_size=512, train=False, device=device, seed=0)
    comps = engine.Components(model, loss, train_loader, val_loader, data["num_classes"],
                              data["class_counts"], data["multi_label"])  # fmt: skip
    resume = (run_dir / engine.CHECKPOINT).is_file()
    recorder = _delta_recorder(loss, train_loader, run_dir)
    t0 = time.perf_counter()
    try:  # a resumed run: fit loads the checkpoint into this model and loss
        fit_out = engine.fit(cfg, run_dir, components=comps, resume=resume, progress=False,
                             log=lambda s: None)  # fmt: skip
    except engine.TrainingDiverged as exc:  # recorded, never selected, left out of the tables
        record = {**_identity(study, spec, params, data, ctx), "diverged": str(exc), "val": None,
                  "test": None, "loss_variation": [], "wall_s": time.perf_counter() - t0}  # fmt: skip
        _write_record(record, run_dir)
        return record
    val = fit_out["final"]
    test = engine.evaluate(
        model, test_loader, data["num_classes"], data["class_counts"], data["multi_label"]
    )
    metrics = engine.read_metrics(run_dir)
    record = {
        **_identity(study, spec, params, data, ctx),
        "val": _strip(val),
        "test": _strip(test),
        "loss_variation": [_slim(m.get("loss_variation")) for m in metrics],
        "wall_s": time.perf_counter() - t0,
    }
    if recorder is not None:
        record["delta_norm"] = recorder.close()
    iso = _isolated_variation(model, loss, data)
    if iso is not None:
        record["isolated_variation"] = iso
    _write_record(record, run_dir)
    return json.loads((run_dir / RESULT).read_text(encoding="utf-8"))


def _delta_recorder(loss: Any, loader: Any, run_dir: Path) -> Any:
    """The per-class, per-epoch ‖δ_c‖ recorder of :mod:`lpl_train.ablation` on an LPL loss (else None)."""
    from lpl_train.ablation import attach_delta_recorder

    return attach_delta_recorder(loss, loader, run_dir)


def _identity(
    study: dict[str, Any],
    spec: dict[str, Any],
    params: dict[str, Any],
    data: dict[str, Any],
    ctx: dict[str, Any],
) -> dict[str, Any]:
    return {
        "study": study["name"],
        "quick": study["quick"],
        "key": spec["key"],
        "dataset": spec["dataset"],
        "method": spec["method"],
        "loss": spec["loss"],
        "point": spec["point"],
        "params": params,
        "seed": spec["seed"],
        "epochs": study["epochs"],
        "multi_label": data["multi_label"],
        "num_train": ctx["num_train"],
        "num_val": len(data["val"].targets),
        "class_counts": data["class_counts"],
    }


def _write_record(record: dict[str, Any], run_dir: Path) -> None:
    from lpl_train import engine

    tmp = run_dir / f".{RESULT}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(engine._finite_or_none(record)) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / RESULT)
    (run_dir / engine.CHECKPOINT).unlink(missing_ok=True)  # results kept, weights not needed


def _slim(lv: dict[str, Any] | None) -> dict[str, Any] | None:
    """Keep the per-class relative variation and counts of a loss-variation record (pos/neg nested)."""
    if lv is None:
        return None
    if "relative_variation" not in lv:
        return {k: _slim(v) for k, v in lv.items()}
    return {k: lv[k] for k in ("relative_variation", "count") if k in lv}


def _strip(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("loss", "top1_error", "per_class_acc", "map", "ap_per_class")
    return {k: metrics[k] for k in keep if k in metrics}


def _isolated_variation(model: Any, loss: Any, data: dict[str, Any]) -> dict[str, Any] | None:
    """The relative loss variation of a method's logit perturbation alone, on the trained model over the
    training split (None for methods whose training loss already is the bare perturbation: CE, LA, LPL,
    LA+LPL, focal, ISDA's augmented logits).

    * LDAM (Eq. 9): CE of s(u - m_y e_y) against CE of s·u (the scale s applies to every logit);
    * NTR (Eq. 10) and LC (Eq. 12): the loss with the re-balanced weights and the focal factor switched off
      against BCE of u (the shift/negative scaling, or the learned per-class affine maps, alone);
    * multi-label LPL (Eq. 34): BCE of the perturbed logits against BCE of u, whatever the base loss.
    """
    import torch

    from lpl_train.data import make_loader
    from lpl_train.loss_variation import LossVariation

    name = type(loss).__name__
    if hasattr(loss, "margin_logits"):
        kind = "ldam"
    elif hasattr(loss, "transformed_logits") and (loss.logit_compensation or loss.init_bias != 0.0):
        kind = "db"
        iso = copy.deepcopy(loss)
        iso.reweight, iso.focal_gamma, iso.reduction = False, None, "none"
    elif name == "MultiLabelLPLLoss":
        kind = "ml_lpl"
    else:
        return None
    lv = LossVariation(data["num_classes"], multi_label=data["multi_label"])
    was = model.training
    model.eval()
    with torch.no_grad():
        for x, y in make_loader(data["train"], batch_size=512, train=False, seed=0):
            u = model(x).float()
            if kind == "ldam":
                lv.update(loss.s * u, y, perturbed_logits=loss.margin_logits(u, y))
            elif kind == "db":
                lv.update(u, y, perturbed_loss=iso(u, y.float()))
            else:
                lv.update(u, y, perturbed_logits=loss.perturb(u))
    model.train(was)
    return lv.compute()


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _run_task(args: tuple[dict[str, Any], dict[str, Any], str]) -> dict[str, Any]:
    study, spec, out = args
    return run_one(study, spec, out)


def _execute(
    study: dict[str, Any],
    specs: list[dict[str, Any]],
    out: Path,
    jobs: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    cost = {"balanced": 3, "multilabel": 3, "longtail": 1}
    specs = sorted(specs, key=lambda s: -cost[study["datasets"][s["dataset"]]["regime"]])
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if jobs == 1:
        _worker_init()
        it: Iterable[dict[str, Any]] = (run_one(study, s, str(out)) for s in specs)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(jobs, initializer=_worker_init)
        it = pool.imap_unordered(_run_task, [(study, s, str(out)) for s in specs])
    try:
        for i, r in enumerate(it, 1):
            results.append(r)
            head = f"[{i}/{len(specs)} {time.perf_counter() - t0:.0f}s] {r['key']}"
            if r.get("diverged"):
                log(f"{head}: diverged ({r['diverged']})")
                continue
            score = r["test"].get("top1_error", r["test"].get("map"))
            log(f"{head}: test {'mAP' if r['multi_label'] else 'error'} {score:.2f}")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return results


# ------------------------------------------------------------------------------------------- summaries
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def summarize(
    records: Sequence[dict[str, Any]], study: dict[str, Any]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Mean and std over the final runs (the chosen point, every seed) of each (dataset, method).

    Single-label: test top-1 error overall and error of the many/medium/few groups (100 - group mean
    per-class accuracy; :func:`class_groups_by_rank` of the training counts). Multi-label: test mAP total
    and head/medium/tail (mean AP of the group). Values in percent; ``n`` is the number of seeds found.
    """
    chosen = select_best([r for r in records if r["seed"] == study["select_seed"]])
    fr = tuple(study.get("group_fractions", (0.3, 0.3)))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, point in chosen.items():
        runs = [r for r in records if (r["dataset"], r["method"]) == key and r["point"] == point
                and r["seed"] in study["seeds"] and not r.get("diverged")]  # fmt: skip
        if not runs:
            continue
        runs.sort(key=lambda r: r["seed"])
        groups = class_groups_by_rank(runs[0]["class_counts"], fr)
        cols: dict[str, list[float]] = {}
        for r in runs:
            t = r["test"]
            if r["multi_label"]:
                ap = [math.nan if a is None else a for a in t["ap_per_class"]]
                vals = {"total": _nanmean(ap)}
                for g, name in (("many", "head"), ("medium", "medium"), ("few", "tail")):
                    vals[name] = _nanmean([ap[c] for c in groups[g]])
            else:
                acc = [math.nan if a is None else a for a in t["per_class_acc"]]
                vals = {"overall": t["top1_error"]}
                for g in ("many", "medium", "few"):
                    vals[g] = 100.0 - _nanmean([acc[c] for c in groups[g]])
            for k, v in vals.items():
                cols.setdefault(k, []).append(v)
        out[key] = {
            "point": point,
            "n": len(runs),
            "seeds": [r["seed"] for r in runs],
            "multi_label": runs[0]["multi_label"],
            **{k: _mean_std(v) for k, v in cols.items()},
        }
    return out


def _fmt(ms: tuple[float, float]) -> str:
    m, s = ms
    return "–" if math.isnan(m) else f"{m:.2f} ± {s:.2f}"


def format_tables(summary: dict[tuple[str, str], dict[str, Any]], study: dict[str, Any]) -> str:
    """Markdown tables: one per single-label dataset (Tables III-IV layout: method rows, top-1 error
    overall and many/medium/few, mean ± std in percent) and one per multi-label dataset (Table V layout:
    mAP total/head/medium/tail), each with the selected hyper-parameters and the number of seeds."""
    labels = {m["id"]: m.get("label", m["id"]) for m in study["methods"]}
    lines: list[str] = []
    for dkey, ds in study["datasets"].items():
        rows = [
            (m["id"], summary[(dkey, m["id"])])
            for m in study["methods"]
            if (dkey, m["id"]) in summary
        ]
        if not rows:
            continue
        ml = ds["regime"] == "multilabel"
        lines.append(
            f"### {ds.get('label', dkey)}"
            + (" — test mAP (%)" if ml else " — test top-1 error (%)")
        )
        lines.append("")
        cols = ["total", "head", "medium", "tail"] if ml else ["overall", "many", "medium", "few"]
        if ds["regime"] == "balanced":
            cols = ["overall"]
        lines.append("| Method | " + " | ".join(cols) + " | selected | seeds |")
        lines.append("|---|" + "---|" * (len(cols) + 2))
        for mid, s in rows:
            sel = ", ".join(f"{k}={v}" for k, v in s["point"].items()) or "–"
            lines.append(
                f"| {labels[mid]} | "
                + " | ".join(_fmt(s[c]) for c in cols)
                + f" | {sel} | {s['n']} |"
            )
        lines.append("")
    return "\n".join(lines)


def claims(summary: dict[tuple[str, str], dict[str, Any]], study: dict[str, Any]) -> list[str]:
    """The paper's qualitative claims, each checked on the means and seed std of the summary.

    A difference smaller than the combined seed std sqrt(s_a² + s_b²) is reported as "not established" (within
    the seed noise), with the side the means fall on, never as "held" or "did not hold"."""
    out: list[str] = []

    def get(d: str, m: str, col: str) -> tuple[float, float] | None:
        s = summary.get((d, m))
        return None if s is None or col not in s else s[col]

    def cmp(d: str, a: str, b: str, col: str, lower_better: bool, text: str) -> None:
        ga, gb = get(d, a, col), get(d, b, col)
        if ga is None or gb is None or math.isnan(ga[0]) or math.isnan(gb[0]):
            return
        (va, sa), (vb, sb) = ga, gb
        held = va < vb if lower_better else va > vb
        unit = "mAP" if study["datasets"][d]["regime"] == "multilabel" else "error"
        label = study["datasets"][d].get("label", d)
        noise = math.sqrt(sa**2 + sb**2)
        if abs(va - vb) < noise:  # the means alone would call it; the seeds do not
            side = "favour" if held else "go against"
            out.append(f"- {label}: {text} — not established: the difference is within the seed noise "
                       f"({unit} {va:.2f} vs {vb:.2f}, |Δ| {abs(va - vb):.2f} < {noise:.2f}; the means "
                       f"{side} the claim).")  # fmt: skip
            return
        out.append(f"- {label}: {text} — {'held' if held else 'did not hold'} "
                   f"({unit} {va:.2f} vs {vb:.2f}).")  # fmt: skip

    for d, ds in study["datasets"].items():
        if ds["regime"] == "longtail":
            cmp(d, "lpl_varied", "ce", "overall", True, "LPL (varied ε_c) beats CE")
            cmp(d, "lpl_varied", "la", "overall", True, "LPL (varied ε_c) beats LA")
            cmp(d, "lpl_varied", "lpl_fixed", "overall", True, "varied bound beats fixed bound")
            cmp(d, "la_lpl", "la", "overall", True, "LA + LPL improves on LA")
            cmp(d, "la", "ce", "overall", True, "LA beats CE")
            cmp(d, "lpl_varied", "isda", "overall", True, "LPL beats ISDA on long-tail data")
            cmp(
                d,
                "lpl_varied",
                "ce",
                "few",
                True,
                "LPL lowers the few-shot (tail) error relative to CE",
            )
        elif ds["regime"] == "balanced":
            cmp(d, "lpl_fixed", "ce", "overall", True, "LPL (fixed ε) beats CE on balanced data")
            cmp(
                d, "lpl_varied", "ce", "overall", True, "LPL (varied ε_c) beats CE on balanced data"
            )
            cmp(
                d,
                "lpl_varied",
                "isda",
                "overall",
                True,
                "LPL (varied ε_c) beats ISDA on balanced data",
            )
        else:
            cmp(
                d,
                "rbce_focal_lpl_varied",
                "rbce_focal",
                "total",
                False,
                "R-BCE-Focal + LPL (varied) beats R-BCE-Focal",
            )
            cmp(
                d,
                "rbce_focal_lpl_varied",
                "rbce_focal_ntr",
                "total",
                False,
                "R-BCE-Focal + LPL (varied) beats + NTR",
            )
            cmp(
                d,
                "rbce_focal_lpl_varied",
                "rbce_focal_lc",
                "total",
                False,
                "R-BCE-Focal + LPL (varied) beats + LC",
            )
            cmp(
                d,
                "rbce_focal_lpl_varied",
                "rbce_focal_lpl_fixed",
                "total",
                False,
                "varied bound beats fixed bound",
            )
            cmp(d, "bce_lpl_varied", "bce", "total", False, "BCE + LPL beats BCE")
    return out  # fmt: skip


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``study-runs.jsonl`` file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"study results {str(p)!r} do not exist; run python -m lpl_train.study first"
        )
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_outputs(
    records: list[dict[str, Any]], study: dict[str, Any], figures: Path, prefix: str
) -> Path:
    """Write ``<prefix>-runs.jsonl`` and ``<prefix>-tables.md`` into ``figures``; return the tables path."""
    figures.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: r["key"])
    (figures / f"{prefix}-runs.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8"
    )
    summary = summarize(records, study)
    md = [f"# {study['description'] if 'description' in study else study['name']}"
          + (" — QUICK MODE (small sets, 4 epochs, no search: a smoke test, not the study's results)" if study["quick"] else ""), ""]  # fmt: skip
    md.append(
        f"Seeds {study['seeds']}, {study['epochs']} epochs, model {study['model']['name']} "
        f"{study['model'].get('params', {})}; hyper-parameters selected on a validation split "
        f"({study['val_fraction']:.0%} of the training set, stratified) with seed {study['select_seed']}; "
        "groups: the 30% most frequent training classes (many/head), the 30% least frequent (few/tail), the "
        f"rest (medium). {len(records)} runs, {sum(r.get('wall_s', 0.0) for r in records) / 60:.1f} CPU-minutes of "
        "training. Raw runs: "
        + f"`{prefix}-runs.jsonl`. Regenerate: `python -m lpl_train.study"
        + (" --quick" if study["quick"] else "")
        + "`."
    )
    md.append("")
    md.append(format_tables(summary, study))
    md.append("## The paper's qualitative claims, checked on these means and their seed std")
    md.append("")
    md.extend(claims(summary, study))
    md.append("")
    path = figures / f"{prefix}-tables.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- figures
def _mean_variation(records: list[dict[str, Any]], part: str | None = None) -> np.ndarray:
    """Per-class relative loss variation averaged over the epochs and seeds of ``records``."""
    rows = []
    for r in records:
        for ep in r["loss_variation"]:
            if ep is None:
                continue
            d = ep[part] if part else ep
            rows.append([math.nan if v is None else v for v in d["relative_variation"]])
    return np.nanmean(np.array(rows, dtype=float), axis=0) if rows else np.full(1, math.nan)


def _mean_isolated(records: list[dict[str, Any]], part: str | None = None) -> np.ndarray:
    """Per-class isolated variation (:func:`_isolated_variation`) averaged over the seeds of ``records``."""
    rows = []
    for r in records:
        iso = r.get("isolated_variation")
        if iso:
            d = iso[part] if part else iso
            rows.append([math.nan if v is None else v for v in d["relative_variation"]])
    return np.nanmean(np.array(rows, dtype=float), axis=0) if rows else np.full(1, math.nan)


def _final_records(
    records: list[dict[str, Any]], study: dict[str, Any], dkey: str, mid: str
) -> list[dict]:
    chosen = select_best([r for r in records if r["seed"] == study["select_seed"]])
    point = chosen.get((dkey, mid))
    return [
        r for r in records if r["dataset"] == dkey and r["method"] == mid and r["point"] == point
    ]


def loss_variation_figures(
    records: list[dict[str, Any]], study: dict[str, Any], figures: Path, prefix: str = ""
) -> list[Path]:
    """Figs. 1, 2 and 11 analogues from the final runs' per-epoch loss variation (class 0 = head).

    Fig. 1: LA and ISDA (during training), LDAM's margin alone (trained model); Fig. 2: NTR and LC alone,
    pos/neg (trained model, :func:`_isolated_variation`); Fig. 11: LPL on balanced and long-tail data
    (during training) and multi-label LPL (during training on BCE; alone on the trained R-BCE-Focal+LPL
    model). Returns the PNG paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = study["datasets"]
    lt = [k for k, v in ds.items() if v["regime"] == "longtail"]
    bal = [k for k, v in ds.items() if v["regime"] == "balanced"]
    ml = [k for k, v in ds.items() if v["regime"] == "multilabel"]
    paths = []

    def panel(
        ax: Any, curves: list[tuple[str, np.ndarray]], title: str, symlog: bool = False
    ) -> None:
        if symlog:  # LDAM's margin variation is an order of magnitude above LA's and ISDA's
            ax.set_yscale("symlog", linthresh=10.0)
        colors = {
            "LA (training)": "C0",
            "ISDA (training)": "C1",
            "LDAM margin (trained model)": "C2",
        }
        for label, y in curves:
            ax.plot(np.arange(len(y)), 100 * y, marker="o", label=label, color=colors.get(label))
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("class index (long-tail: 0 = head, by training count)")
        ax.set_ylabel("relative loss variation (l' − l)/l (%)")
        ax.set_title(title, fontsize=9)
        if curves:  # a panel with no runs (a partial study) gets no empty legend
            ax.legend(fontsize=7)

    # Fig. 1
    fig, axes = plt.subplots(1, 1 + len(lt), figsize=(4.5 * (1 + len(lt)), 3.6), squeeze=False)
    for i, d in enumerate(bal[:1] + lt):
        curves = []
        for mid, lab in (("la", "LA (training)"), ("isda", "ISDA (training)"),
                         ("ldam_drw", "LDAM margin (trained model)")):  # fmt: skip
            recs = _final_records(records, study, d, mid)
            if not recs or (mid == "la" and d in bal):
                continue
            if mid == "ldam_drw":
                curves.append((lab, _mean_isolated(recs)))
            else:
                curves.append((lab, _mean_variation(recs)))
        panel(axes[0, i], curves, f"Fig. 1 analogue: {ds[d].get('label', d)}", symlog=True)
    fig.tight_layout()
    paths.append(_save(fig, figures / f"{prefix}fig1-loss-variation.png"))
    # Fig. 2
    if ml:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), squeeze=False)
        for i, (mid, lab) in enumerate(
            (("rbce_focal_ntr", "R-BCE-Focal + NTR"), ("rbce_focal_lc", "R-BCE-Focal + LC"))
        ):
            recs = _final_records(records, study, ml[0], mid)
            curves = [(f"{lab.split(' + ')[-1]} alone, {p} (trained model)", _mean_isolated(recs, p))
                      for p in ("pos", "neg")] if recs else []  # fmt: skip
            panel(axes[0, i], curves, f"Fig. 2 analogue: {lab}, {ds[ml[0]].get('label', ml[0])}")
        fig.tight_layout()
        paths.append(_save(fig, figures / f"{prefix}fig2-loss-variation.png"))
    # Fig. 11
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6), squeeze=False)
    curves = [(f"LPL varied, {ds[d].get('label', d)} (training)", _mean_variation(_final_records(records, study, d, "lpl_varied")))
              for d in bal]  # fmt: skip
    curves += [(f"LPL fixed, {ds[d].get('label', d)} (training)", _mean_variation(_final_records(records, study, d, "lpl_fixed")))
               for d in bal]  # fmt: skip
    panel(axes[0, 0], curves, "Fig. 11(a) analogue: balanced")
    curves = [(f"LPL varied, {ds[d].get('label', d)} (training)", _mean_variation(_final_records(records, study, d, "lpl_varied")))
              for d in lt]  # fmt: skip
    panel(axes[0, 1], curves, "Fig. 11(b) analogue: long-tail")
    curves = []
    for d in ml:
        recs = _final_records(records, study, d, "bce_lpl_varied")
        if recs:
            curves += [
                (f"BCE + LPL {p} (training)", _mean_variation(recs, p)) for p in ("pos", "neg")
            ]
        recs = _final_records(records, study, d, "rbce_focal_lpl_varied")
        if recs:
            curves += [(f"R-BCE-Focal + LPL {p} (shift alone, trained model)", _mean_isolated(recs, p))
                       for p in ("pos", "neg")]  # fmt: skip
    panel(axes[0, 2], curves, "Fig. 11(c) analogue: multi-label (vs BCE)")
    fig.tight_layout()
    paths.append(_save(fig, figures / f"{prefix}fig11-loss-variation.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig11_live(figures: str | Path, epochs: int = 3, seed: int = 0) -> Path:
    """A short live run for one Fig. 11 panel: LPL (index split, varied bound) on Fashion-MNIST-LT 100:1
    (the shipped ``fmnist_lt100_lpl`` config, ``epochs`` epochs), plotting the per-class relative loss
    variation of each epoch. About a minute on one CPU core. Returns the PNG path."""
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from lpl_train import engine
    from lpl_train.config import load_config

    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    torch.set_flush_denormal(True)
    cfg = load_config("fmnist_lt100_lpl", [f"train.seed={seed}", "train.progress=false", 'train.device="cpu"'],
                      epochs=epochs)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        engine.fit(cfg, Path(tmp) / "run", log=lambda s: None)
        metrics = engine.read_metrics(Path(tmp) / "run")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m in metrics:
        y = np.array(
            [math.nan if v is None else v for v in m["loss_variation"]["relative_variation"]]
        )
        ax.plot(np.arange(len(y)), 100 * y, marker="o", label=f"epoch {m['epoch'] + 1}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("class index (0 = head, by training count)")
    ax.set_ylabel("relative loss variation (l' − l)/l (%)")
    ax.set_title("Fig. 11(b) analogue, live: LPL on Fashion-MNIST-LT 100:1", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, Path(figures) / "fig11-live.png")


# ------------------------------------------------------------------------------------------------- CLI
def run_study(
    study: dict[str, Any], out: str | Path, jobs: int = 1, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Selection runs, then the other seeds at the chosen points; returns every record."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(study, indent=1, default=str), encoding="utf-8")
    select = _execute(study, plan_runs(study), out, jobs, log)
    chosen = select_best(select)
    for (d, m), p in sorted(chosen.items()):
        log(f"selected on validation: {d}/{m}: {point_slug(p)}")
    final = _execute(study, final_runs(study, chosen), out, jobs, log)
    return select + final


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lpl_train.study``: run the study (resumable), then write tables and figures."""
    ap = argparse.ArgumentParser(
        prog="python -m lpl_train.study", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="small sets, 4 epochs, first grid point, 2 seeds (minutes)",
    )
    ap.add_argument(
        "--out", default=None, help="run folder (default runs/study or runs/study-quick)"
    )
    ap.add_argument("--jobs", type=int, default=1, help="parallel runs, one CPU thread each")
    ap.add_argument("--figures", default="figures", help="where tables, JSONL and figures go")
    ap.add_argument(
        "--study", default=None, help="study definition TOML (default: the shipped one)"
    )
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild tables and figures from the committed JSONL, no training")  # fmt: skip
    ap.add_argument("--fig11-live", action="store_true",
                    help="only the short live Fig. 11 run (figures/fig11-live.png)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    figures = Path(args.figures)
    if args.fig11_live:
        import torch

        torch.set_num_threads(1)
        print(fig11_live(figures))
        return 0
    study = load_study(args.study, quick=args.quick)
    prefix = "study-quick" if args.quick else "study"
    if args.report_only:
        records = read_records(figures / f"{prefix}-runs.jsonl")
    else:
        out = Path(args.out or ("runs/study-quick" if args.quick else "runs/study"))
        records = run_study(study, out, args.jobs)
    print(write_outputs(records, study, figures, prefix))
    for p in loss_variation_figures(records, study, figures, "study-quick-" if args.quick else ""):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
