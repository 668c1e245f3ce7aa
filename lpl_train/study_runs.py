"""The runs of a study: its data splits, the engine config of one run, and the run's record.

A study run is an ordinary run folder written by :func:`lpl_train.engine.fit` (``config.toml``,
``metrics.jsonl``, ``final.json``), trained on the study's training split and evaluated each epoch on its
validation split; :class:`StudyRunner` then evaluates the trained model on the test set, measures the
loss variation of the method's logit perturbation alone, and writes the run's record ``result.json`` beside
the engine's files (one JSON object; the lines of ``study-runs.jsonl``). The checkpoint is removed once the
record is written; a run folder with a record is finished and read back.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpl_train.experiment import PlannedRun
from lpl_train.report.runs import STUDY_RUN

__all__ = [
    "RESULT",
    "StudyRunner",
    "engine_config",
    "held_out_split",
    "resolve_params",
    "restore_records",
    "study_data",
]

RESULT = "result.json"
_CACHE: dict[tuple[str, str, float], dict[str, Any]] = {}


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


def held_out_split(study: dict[str, Any], dkey: str) -> bool:
    """Whether the study's validation split of dataset ``dkey`` is built by the dataset itself from source
    images the training split never uses: multi-label data whose builder takes ``val_fraction`` (the
    Fashion-MNIST mosaics, where splitting the built mosaics would tile validation and training mosaics
    from the same images)."""
    import inspect

    from lpl_train.data import DATASETS

    ds = study["datasets"][dkey]
    builder = DATASETS.get(ds.get("name"))
    return (ds.get("regime") == "multilabel" and builder is not None
            and "val_fraction" in inspect.signature(builder).parameters)  # fmt: skip


def study_data(study: dict[str, Any], dkey: str) -> dict[str, Any]:
    """Training/validation/test splits of a study dataset (cached per process), drawn with ``data_seed``.

    Single-label data: the training set subsampled to ``n_max`` images in its largest class (times the
    quick ``scale``), minus a stratified validation split of ``val_fraction``. Multi-label data: ``num_train``
    items (times ``scale``) in all, of which ``val_fraction`` form the validation split; where
    :func:`held_out_split` holds, the dataset tiles that split from held-out source images, else it is a
    stratified split of the built items."""
    ds = study["datasets"][dkey]
    cache_key = (json.dumps(ds, sort_keys=True, default=str), int(study.get("data_seed", 0)),
                 float(study["scale"]), float(study["val_fraction"]))  # fmt: skip
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    from lpl_train.data import build_datasets
    from lpl_train.data.common import class_counts_of, split_validation

    params = dict(ds.get("params", {}))
    seed = int(study.get("data_seed", 0))
    if ds["regime"] == "multilabel" and "num_train" in params:
        params["num_train"] = max(50, int(params["num_train"] * study["scale"]))
    held_out = held_out_split(study, dkey)
    if held_out:
        params["val_fraction"] = study["val_fraction"]
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
    if held_out:
        val = b.val
    else:
        train, val = split_validation(train, study["val_fraction"], seed)
    out = {"train": train, "val": val, "test": b.test, "num_classes": b.num_classes,
           "class_counts": class_counts_of(train.targets, b.num_classes),
           "multi_label": b.multi_label, "augment": b.augment}  # fmt: skip
    _CACHE[cache_key] = out
    return out


def engine_config(study: dict[str, Any], spec: dict[str, Any], params: dict[str, Any]) -> dict:
    """The (unvalidated) engine config of one study run: the study's model, optimiser and schedule, the
    method's loss with ``params``, evaluation (on the validation split) once at the end."""
    # the name leaves out the seed, so that `lpl-train report` pools the seeds of a grid point
    name = spec["key"].rsplit("/", 1)[0].replace("/", "__").replace(",", "_").replace("=", "-")
    return {
        "name": name,
        "description": STUDY_RUN,  # `lpl-train report` reads such a run's test metrics from its record only
        "data": {"name": study["datasets"][spec["dataset"]]["name"], "batch_size": study.get("batch_size", 128)},
        "model": {"name": study["model"]["name"], "params": {**study["model"].get("params", {}), **spec["model_params"]}},
        "loss": {"name": spec["loss"], "params": params},
        "optim": dict(study.get("optim", {})),
        "schedule": {"epochs": study["epochs"], **study.get("schedule", {})},
        "train": {"seed": spec["seed"], "device": "cpu", "progress": False, "eval_every": study["epochs"],
                  "loss_variation": True, "loss_variation_every": 1, **study.get("train", {})},
    }  # fmt: skip


def _context(study: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {"num_train": len(data["train"].targets),
            "drw_epoch": int(study.get("drw_fraction", 0.7) * study["epochs"])}  # fmt: skip


def _components(
    study: dict[str, Any], spec: dict[str, Any], cfg: dict[str, Any], data: dict[str, Any]
):
    """Model, loss and loaders of one run, built in the order that fixes its random state (model
    initialisation from the run seed, then the loss)."""
    import torch

    from lpl_train import engine
    from lpl_train.data import make_loader
    from lpl_train.engine.components import _loss_params
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    device = torch.device("cpu")
    torch.manual_seed(spec["seed"])
    model = build_model(
        cfg["model"]["name"], num_classes=data["num_classes"], **cfg["model"]["params"]
    )
    # as the engine builds a run's loss: the run's seed for a loss that draws its own random numbers
    loss = build_loss(spec["loss"], num_classes=data["num_classes"], class_counts=data["class_counts"],
                      **_loss_params(cfg))  # fmt: skip
    bs = cfg["data"]["batch_size"]
    train_loader = make_loader(data["train"], batch_size=bs, train=True, augment=data["augment"],
                               device=device, seed=spec["seed"])  # fmt: skip
    val_loader = make_loader(data["val"], batch_size=512, train=False, device=device, seed=0)
    return engine.Components(model, loss, train_loader, val_loader, data["num_classes"],
                             data["class_counts"], data["multi_label"])  # fmt: skip


@dataclass
class StudyRunner:
    """The :class:`lpl_train.experiment.Runner` of a study: finished when the run's record exists."""

    study: dict[str, Any]

    def finished(self, run: PlannedRun) -> bool:
        return (run.out / RESULT).is_file()

    def load(self, run: PlannedRun) -> dict[str, Any]:
        return read_record(run.out, self.study, run.meta["spec"])

    def train(self, run: PlannedRun, resume: bool) -> dict[str, Any]:
        return train_run(self.study, run.meta["spec"], run.out, resume)


def train_run(
    study: dict[str, Any],
    spec: dict[str, Any],
    run_dir: Path,
    resume: bool,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train one study run with ``engine.fit`` (resuming it when ``resume``), evaluate it on the test set,
    and write and return its record. With ``stop_after_epoch`` the run stops there and nothing is recorded
    (the engine's last epoch record is returned). Denormals are flushed throughout, as the records were
    made, and the caller's setting is restored after."""
    from lpl_train.engine import flush_denormals

    with flush_denormals():
        return _train_run(study, spec, run_dir, resume, stop_after_epoch)


def _train_run(
    study: dict[str, Any],
    spec: dict[str, Any],
    run_dir: Path,
    resume: bool,
    stop_after_epoch: int | None,
) -> dict[str, Any]:
    import torch

    from lpl_train import engine
    from lpl_train.config import validate_config
    from lpl_train.data import make_loader

    data = study_data(study, spec["dataset"])
    ctx = _context(study, data)
    params = resolve_params(spec["params"], ctx)
    cfg = validate_config(engine_config(study, spec, params))
    comps = _components(study, spec, cfg, data)
    recorder = _delta_recorder(study, comps.loss, comps.train_loader, run_dir)
    t0 = time.perf_counter()
    try:  # a resumed run: fit loads the checkpoint into this model and loss
        fit_out = engine.fit(cfg, run_dir, components=comps, resume=resume, progress=False,
                             stop_after_epoch=stop_after_epoch, log=lambda s: None)  # fmt: skip
    except engine.TrainingDiverged as exc:  # recorded, never selected, left out of the tables
        record = {**_identity(study, spec, params, data, ctx), "diverged": str(exc), "val": None,
                  "test": None, "loss_variation": [], "wall_s": time.perf_counter() - t0}  # fmt: skip
        return _write_record(record, run_dir)
    if stop_after_epoch is not None and stop_after_epoch < study["epochs"]:
        return fit_out
    # the training time of every process that trained the run (the engine carries it through resumes),
    # then this one's evaluation
    trained_s, t_eval = fit_out.get("wall_s", time.perf_counter() - t0), time.perf_counter()
    # the record is made under the run folder's lock (fit has released it): of two studies sharing an
    # output folder one evaluates and writes, the other finds the folder locked or the record written
    with engine.RunFolder(run_dir).locked():
        if (run_dir / RESULT).is_file():
            return read_record(run_dir, study, spec)
        test_loader = make_loader(data["test"], batch_size=512, train=False,
                                  device=torch.device("cpu"), seed=0)  # fmt: skip
        test = engine.evaluate(comps.model, test_loader, data["num_classes"], data["class_counts"],
                               data["multi_label"])  # fmt: skip
        record = {
            **_identity(study, spec, params, data, ctx),
            "val": _strip(fit_out["final"]),
            "test": _strip(test),
            "loss_variation": [
                _slim(m.get("loss_variation")) for m in engine.read_metrics(run_dir)
            ],
            "wall_s": trained_s + time.perf_counter() - t_eval,
        }
        if recorder is not None:
            record["delta_norm"] = recorder.close()
        iso = isolated_variation(comps.model, comps.loss, data)
        if iso is not None:
            record["isolated_variation"] = iso
        return _write_record(record, run_dir)


def _delta_recorder(study: dict[str, Any], loss: Any, loader: Any, run_dir: Path) -> Any:
    """With ``record_delta_norm = true`` in the study file (the ablation's studies): the per-class,
    per-epoch ‖δ_c‖ recorder of :mod:`lpl_train.ablation` on an LPL loss (else None)."""
    if not study.get("record_delta_norm", False):
        return None
    from lpl_train.ablation import attach_delta_recorder

    return attach_delta_recorder(loss, loader, run_dir)


#: The study keys that decide how each of its runs trains (its seeds, grids and selection decide which
#: runs exist, not how one of them trains).
DEFINING_KEYS = ("batch_size", "data_seed", "drw_fraction", "epochs", "model", "optim", "scale",
                 "schedule", "train", "val_fraction")  # fmt: skip


def run_definition(study: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides how one study run trains: the study's :data:`DEFINING_KEYS`, its dataset's
    definition (without the display label) and the run's loss, parameters, model parameters and seed.
    Stored in the run's record; a record of another definition is never read back as this run's."""
    ds = {k: v for k, v in study["datasets"][spec["dataset"]].items() if k != "label"}
    definition = {**{k: study.get(k) for k in DEFINING_KEYS}, "dataset": ds, "loss": spec["loss"],
                  "params": spec["params"], "model_params": spec["model_params"], "seed": spec["seed"]}  # fmt: skip
    if held_out_split(study, spec["dataset"]):
        # the validation split of held-out source images: a run trained on the former split of the built
        # mosaics (whose definition has no such key) is not read back as this one
        definition["val_split"] = "held-out source images"
    return json.loads(json.dumps(definition, sort_keys=True, default=str))


def read_record(run_dir: Path, study: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A run folder's ``result.json``, after :func:`check_definition`."""
    record = json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
    check_definition(record, study, spec, run_dir / RESULT)
    return record


def check_definition(record: dict[str, Any], study: dict[str, Any], spec: dict[str, Any],
                     where: Path) -> None:  # fmt: skip
    """Raise ``ValueError`` when ``record`` (a run's ``result.json``) was made with another definition of
    the study than the one asked for now, naming what differs. Records from before definitions were
    stored (the committed ones) carry none and are taken as they are."""
    stored = record.get("definition")
    if stored is None:
        return
    now = run_definition(study, spec)
    diff = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    if diff:
        raise ValueError(
            f"{str(where)!r} holds a record of run {spec['key']!r} made with another definition of the "
            f"study (it differs in {', '.join(diff)}); use another --out, or remove that run folder to "
            "train it again"
        )


def _identity(study: dict[str, Any], spec: dict[str, Any], params: dict[str, Any],
              data: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {"study": study["name"], "quick": study["quick"], "key": spec["key"], "dataset": spec["dataset"],
            "method": spec["method"], "loss": spec["loss"], "point": spec["point"], "params": params,
            "seed": spec["seed"], "epochs": study["epochs"], "multi_label": data["multi_label"],
            "num_train": ctx["num_train"], "num_val": len(data["val"].targets),
            "class_counts": data["class_counts"], "definition": run_definition(study, spec)}  # fmt: skip


def _write_record(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Write ``result.json`` atomically, drop the checkpoint (results kept, weights not needed), and return
    the record as read back (JSON round trip)."""
    from lpl_train.engine.files import _write_text_atomic
    from lpl_train.engine.run_folder import RunFolder, finite_or_none

    _write_text_atomic(json.dumps(finite_or_none(record)) + "\n", run_dir / RESULT, "study record")
    RunFolder(run_dir).discard_checkpoints()  # both kept checkpoints: the engine keeps the last two
    return json.loads((run_dir / RESULT).read_text(encoding="utf-8"))


def restore_records(records: list[dict[str, Any]], out: str | Path) -> int:
    """Write each run record (a ``result.json`` as a study wrote it) back into its run folder under the
    study output folder ``out``, so that the study resumed with ``--out out`` trains only the runs the
    records lack (for example new seeds) and selects from the same validation scores. Returns how many
    were written; a folder that already holds the same record is left alone.

    Raises:
        ValueError: a record lacks its ``key``, or a folder holds a different record of the same run.
    """
    written = 0
    for rec in records:
        key = rec.get("key") if isinstance(rec, dict) else None
        if (
            not isinstance(key, str)
            or not key
            or ".." in Path(key).parts
            or Path(key).is_absolute()
        ):
            raise ValueError(f"a run record needs a relative 'key' (its run folder), got {key!r}")
        run_dir = Path(out) / "runs" / key
        path = run_dir / RESULT
        if path.is_file():
            if json.loads(path.read_text(encoding="utf-8")) != rec:
                raise ValueError(
                    f"{str(path)!r} holds a different record of run {key!r}; restore into an empty --out"
                )
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_record(rec, run_dir)
        written += 1
    return written


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


def isolated_variation(model: Any, loss: Any, data: dict[str, Any]) -> dict[str, Any] | None:
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
