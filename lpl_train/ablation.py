"""The LPL long-tail ablation: where does (or doesn't) LPL's long-tail gain come from?

Study definitions (the format of ``lpl_train/configs/study/fmnist.toml``, run by ``python -m lpl_train.study``):

* ``lpl_train/configs/study/ablation.toml``: Fashion-MNIST-LT 100:1 (subsampled, 12 epochs, the small CNN),
  every LPL reading (paper, count bound, differentiable, step-normalised, the authors' long-tail preset,
  LA + LPL) and the baselines with their key parameter searched on wide grids, plus the decomposition of
  LDAM-DRW (cosine head, DRW, margin);
* ``ablation_e48.toml``: the key comparison (CE, LA, LDAM-DRW, the best LPL, the best LA + LPL) at the
  selected points, trained 48 epochs instead of 12 (training length);
* ``ablation_full_e12.toml`` and ``ablation_full_e12_lpl.toml``: the same comparison on the full training set
  (no subsampling), 12 epochs (the baselines, then LPL step-normalised and LA + LPL);
* ``ablation_q5.toml``: LPL with the head and schedule of LDAM-DRW (cosine head, logit scale s = 30, DRW);
* ``ablation_resnet_e60.toml``: the key comparison on the full training set with a CIFAR ResNet-8, 60 epochs
  of LDAM's step schedule scaled from 200 (training length and model size).

This module adds what the generic study does not record or report:

* :class:`DeltaNormRecorder`: a forward hook on an LPL loss that records, per class and per epoch, the mean
  ‖δ_c‖ of the training steps and the mean ratio ‖δ_c‖/ε_c to the class's bound (the mechanism question:
  does the raw step of Eq. 31 move δ toward its bound, or does LPL silently become CE?);
* :func:`report`: the tables (``figures/ablation-tables.md``) and figures (``figures/ablation-*.png``) that
  answer the five questions, from the committed run records (``figures/ablation-runs.jsonl``) only.

``python -m lpl_train.ablation --report-only`` rebuilds the tables and figures from the committed records;
``python -m lpl_train.ablation --collect RUNS...`` writes the records of the study outputs first (with
``--add``: adds them to the records already there, which stay unchanged).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DeltaNormRecorder",
    "attach_delta_recorder",
    "axis_curves",
    "main",
    "report",
]

DELTA_FILE = "delta_norm.json"


# --------------------------------------------------------------------------------------- mechanism
class DeltaNormRecorder:
    """Per-class, per-epoch statistics of the LPL perturbation δ_c seen by the training steps.

    Registered as a forward hook on an :class:`~lpl_train.losses.lpl.LPLLoss` (or LA + LPL); it reads the
    loss's ``last_delta`` (the detached δ of the call) and the target, and keeps for each epoch (the
    ``epoch`` attribute of the training loader) and class: the mean over the steps where the class is in
    the batch of ‖δ_c‖₂, of the bound ε_c (Eq. 33 for the paper's reading; α·(K_c + 1) for the authors'
    preset, whose steps have length ≤ α and no projection) and of the ratio ‖δ_c‖/ε_c. Calls without grad
    (the engine's loss-variation measurement, evaluation) are not counted. The statistics are written to
    ``run_dir/delta_norm.json`` at every epoch change, so a resumed run keeps its earlier epochs.
    """

    def __init__(self, loss: Any, loader: Any, run_dir: str | Path | None = None) -> None:
        self.loss = loss
        self.loader = loader
        self.num_classes = int(loss.num_classes)
        self.path = None if run_dir is None else Path(run_dir) / DELTA_FILE
        self.epochs: dict[int, dict[str, list[float]]] = {}
        if self.path is not None and self.path.is_file():
            for i, ep in enumerate(json.loads(self.path.read_text(encoding="utf-8"))):
                if ep is not None:
                    self.epochs[i] = {k: [0.0 if v is None else v * n for v, n in zip(ep[k], ep["n"], strict=True)]
                                      for k in ("norm", "bound", "ratio")} | {"n": list(ep["n"])}  # fmt: skip
        self._last_epoch: int | None = None
        self.handle = loss.register_forward_hook(self._hook)

    def _bounds(self, logits: Any, target: Any) -> Any:
        import torch

        from lpl_train import perturbation as P

        loss = self.loss
        if loss.preset == "authors_longtail":
            k = loss.preset_steps
            k = torch.where(k < 0, k + loss.iterations, k)
            return loss.alpha * (k + 1).to(logits.dtype)
        if loss.preset is not None:
            return None
        work = loss.adjust(logits.float())
        counts, qbar = P.class_statistics(work, target, self.num_classes)
        sign, tau = P.split_signs(qbar, counts > 0, split=loss.split, tau=loss.tau,
                                  rank=getattr(loss, "rank", None), head=loss.head)  # fmt: skip
        return P.class_bounds(qbar, sign, tau, epsilon=loss.epsilon, delta_epsilon=loss.delta_epsilon,
                              split=loss.split, bound=loss.bound, count_ratio=loss.count_ratio)  # fmt: skip

    def _hook(self, module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        import torch

        if not torch.is_grad_enabled() or getattr(module, "last_delta", None) is None:
            return
        with torch.no_grad():
            logits, target = inputs[0].detach(), inputs[1].long()
            epoch = int(getattr(self.loader, "epoch", 0))
            if self._last_epoch is not None and epoch != self._last_epoch:
                self.save()
            self._last_epoch = epoch
            c = self.num_classes
            norm = torch.linalg.vector_norm(module.last_delta.float(), dim=1)
            present = torch.zeros(c, dtype=torch.bool, device=norm.device)
            present[target] = True
            per_class = torch.zeros(c, device=norm.device).scatter_reduce_(
                0, target, norm, "amax", include_self=False
            )
            bounds = self._bounds(logits, target)
            st = self.epochs.setdefault(
                epoch, {k: [0.0] * c for k in ("norm", "bound", "ratio", "n")}
            )
            pc = per_class.tolist()
            bd = None if bounds is None else bounds.float().tolist()
            for j in np.flatnonzero(present.cpu().numpy()):
                st["n"][j] += 1
                st["norm"][j] += pc[j]
                if bd is not None:
                    st["bound"][j] += bd[j]
                    st["ratio"][j] += pc[j] / bd[j] if bd[j] > 0 else 0.0

    def result(self) -> list[dict[str, list[float | None]] | None]:
        """Per epoch (index = epoch): ``norm``, ``bound``, ``ratio`` (C,) means over the steps where the
        class was present (None where it never was), and ``n`` (C,) the number of such steps."""
        if not self.epochs:
            return []
        out: list[dict[str, list[float | None]] | None] = [None] * (max(self.epochs) + 1)
        for e, st in self.epochs.items():
            out[e] = {k: [None if n == 0 else v / n for v, n in zip(st[k], st["n"], strict=True)]
                      for k in ("norm", "bound", "ratio")} | {"n": list(st["n"])}  # fmt: skip
        return out

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{DELTA_FILE}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.result()), encoding="utf-8")
        os.replace(tmp, self.path)

    def close(self) -> list[dict[str, list[float | None]] | None]:
        """Remove the hook, write the file, return :meth:`result`."""
        self.handle.remove()
        self.save()
        return self.result()


def attach_delta_recorder(
    loss: Any, loader: Any, run_dir: str | Path | None = None
) -> DeltaNormRecorder | None:
    """A :class:`DeltaNormRecorder` on ``loss`` if it is a single-label LPL loss, else None."""
    from lpl_train.losses.lpl import LPLLoss

    return DeltaNormRecorder(loss, loader, run_dir) if isinstance(loss, LPLLoss) else None


# ------------------------------------------------------------------------------------------- records
STUDY_DIR = Path(__file__).resolve().parent / "configs" / "study"
#: The ablation's study definitions, by the ``study`` name their records carry.
STUDIES = {
    "lpl_ablation": "ablation.toml",
    "lpl_ablation_e48": "ablation_e48.toml",
    "lpl_ablation_full_e12": "ablation_full_e12.toml",
    "lpl_ablation_full_e12_lpl": "ablation_full_e12_lpl.toml",
    "lpl_ablation_q5": "ablation_q5.toml",
    "lpl_ablation_resnet_e60": "ablation_resnet_e60.toml",
}
#: The training-length comparison: (study name, column title) next to the main study's 12 epochs.
#: One column may join several studies of the same setting (the full-set baselines and the full-set LPL runs).
LENGTH = (
    (("lpl_ablation_e48",), "subsample, 48 epochs"),
    (("lpl_ablation_full_e12", "lpl_ablation_full_e12_lpl"), "full training set, 12 epochs"),
    (("lpl_ablation_resnet_e60",), "full training set, ResNet-8, 60 epochs"),
)
#: The pairs compared in every training-length setting (beside each method against CE).
LENGTH_PAIRS = (
    ("la_lpl", "la"),
    ("lpl_norm", "lpl_varied"),
    ("lpl_norm", "la"),
    ("ldam_drw", "la"),
)
LPL_VARIANTS = ("lpl_fixed", "lpl_varied", "lpl_count", "lpl_diff", "lpl_norm", "lpl_authors", "la_lpl",
                "la_lpl_norm")  # fmt: skip


def _length_columns(
    studies: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]],
) -> tuple[list[tuple[str, dict[str, Any], dict]], list[dict[str, Any]], list[str]]:
    """The training-length columns present: (title, a study definition, joint summary); the methods (rows)
    in order of first appearance; the study names used."""
    from lpl_train.study import summarize

    cols, methods, names, ids = [], [], [], set()
    for group, title in LENGTH:
        present = [n for n in group if n in studies]
        if not present:
            continue
        joint: dict = {}
        for n in present:
            st, rs = studies[n]
            joint.update(summarize(rs, st))
            names.append(n)
            for m in st["methods"]:
                if m["id"] not in ids:
                    ids.add(m["id"])
                    methods.append(m)
        cols.append((title, studies[present[0]][0], joint))
    return cols, methods, names


def collect(run_roots: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every finished run record (``result.json``) under the study output folders ``run_roots``, sorted
    by (study, key). Unfinished runs (no ``result.json``) are left out."""
    records = []
    for root in run_roots:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"run folder {str(root)!r} does not exist")
        for p in sorted((root / "runs").rglob("result.json")):
            records.append(json.loads(p.read_text(encoding="utf-8")))
    return sorted(records, key=lambda r: (r["study"], r["key"]))


def add_records(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``old`` unchanged plus ``new``, sorted by (study, key) as :func:`collect` sorts. A run of ``new``
    already in ``old`` (same study and key) with the same record is skipped (a restored run, see
    ``--restore``); with a different record it raises ``ValueError``."""
    seen = {(r["study"], r["key"]): r for r in old}
    dup = sorted(f"{r['study']}/{r['key']}" for r in new
                 if (r["study"], r["key"]) in seen and seen[r["study"], r["key"]] != r)  # fmt: skip
    if dup:
        raise ValueError(
            f"runs already recorded with a different record: {dup[:5]}{' ...' if len(dup) > 5 else ''}"
        )
    fresh = [r for r in new if (r["study"], r["key"]) not in seen]
    return sorted([*old, *fresh], key=lambda r: (r["study"], r["key"]))


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of ``ablation-runs.jsonl``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"ablation records {str(p)!r} do not exist; run `make ablation` (or --collect) first"
        )
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _studies(
    records: Sequence[dict[str, Any]],
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(study definition, records) per study name present in ``records``, in the order of :data:`STUDIES`."""
    from lpl_train.study import load_study

    out = {}
    for name, fname in STUDIES.items():
        recs = [r for r in records if r["study"] == name]
        if recs:
            out[name] = (load_study(STUDY_DIR / fname), recs)
    unknown = sorted({r["study"] for r in records} - set(STUDIES))
    if unknown:
        raise ValueError(f"records of unknown studies {unknown}; known: {sorted(STUDIES)}")
    return out


def _val(r: dict[str, Any]) -> float:
    from lpl_train.study import validation_score

    return validation_score(r)


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
    """ "lower" / "higher" when |Δ| ≥ the combined seed std, else "not established (…)"."""
    (va, sa), (vb, sb) = a, b
    if sa is None or sb is None:  # one seed: no spread to compare with
        return "not established (one seed)"
    noise = math.sqrt(sa**2 + sb**2)
    d = va - vb
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
    from lpl_train.study import class_groups_by_rank, summarize

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
              "| Method | axis | value: validation balanced error (%) (selected in bold) | optimum | val. std over seeds |",
              "|---|---|---|---|---|"]  # fmt: skip
    curves = axis_curves(recs, study["select_seed"])
    for m in study["methods"]:
        for axis, c in curves.get((d, m["id"]), {}).items():
            pts = " · ".join(
                (f"**{v}: {s:.2f}**" if v == c["selected"] else f"{v}: {s:.2f}")
                for v, s in zip(c["values"], c["scores"], strict=True)
            )
            lines.append(f"| {labels[m['id']]} | {axis} | {pts} | {'EDGE' if c['edge'] else 'interior'} | "
                         f"{_val_spread(recs, d, m['id'], summary)} |")  # fmt: skip
    lines.append("")
    # Q2 / Q5: final table
    lines += [f"## Final comparison on {ds_label}: test top-1 error (%), mean ± std over seeds", "",
              "| Method | overall | many | medium | few | selected | seeds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in study["methods"]:
        s = summary.get((d, m["id"]))
        if s is None:
            continue
        lines.append(f"| {labels[m['id']]} | " + " | ".join(_fmt(s[c]) for c in ("overall", "many", "medium", "few"))
                     + f" | {_point_text(s['point'])} | {s['n']} |")  # fmt: skip
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
                  "| Method | axis | value: validation balanced error (%) (selected in bold) | optimum | "
                  "val. std over seeds |", "|---|---|---|---|---|"]  # fmt: skip
        for m in q5["methods"]:
            for axis, c in axis_curves(q5_recs, q5["select_seed"]).get((d, m["id"]), {}).items():
                pts = " · ".join(
                    (f"**{v}: {sc:.2f}**" if v == c["selected"] else f"{v}: {sc:.2f}")
                    for v, sc in zip(c["values"], c["scores"], strict=True)
                )
                lines.append(f"| {labels[m['id']]} | {axis} | {pts} | {'EDGE' if c['edge'] else 'interior'} | "
                             f"{_val_spread(q5_recs, d, m['id'], q5_sum)} |")  # fmt: skip
        lines += [
            "",
            "| Method | overall | many | medium | few | selected | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in q5["methods"]:
            sm = q5_sum.get((d, m["id"]))
            if sm is not None:
                lines.append(f"| {labels[m['id']]} | " + " | ".join(_fmt(sm[c]) for c in ("overall", "many", "medium", "few"))
                             + f" | {_point_text(sm['point'])} | {sm['n']} |")  # fmt: skip
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
        ratio = [
            _delta_mean(fin, "ratio", groups[g], [ep]) for g in ("many", "few") for ep in (0, e - 1)
        ]
        row = [f"{x:.2f}" if not math.isnan(x) else "–" for x in ratio]
        nf = _delta_mean(fin, "norm", groups["few"], [e - 1])
        row.append("–" if math.isnan(nf) else f"{nf:.3f}")
        row += [f"{_variation(fin, groups[g]):+.1f}" for g in ("many", "few")]
        lines.append(f"| {labels[v]} | " + " | ".join(row) + f" | {_fmt(s['overall'])} |")
    lines.append("")
    # Q3: training length
    lines += ["## Q3. Training length and training-set size: the key comparison", ""]
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
                cells.append(f"{_fmt(s['overall'])} (few {_fmt(s['few'])}, n={s['n']}){extra}")
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
            lines.append(f"- `{STUDIES[n]}`: {len(rs)} runs of the {len(st['methods']) * len(st['seeds'])} "
                         f"defined, {sum(r.get('wall_s', 0.0) for r in rs) / 60:.1f} run-minutes.")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def _length_delta_lines(
    studies: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]],
    names: Sequence[str],
    labels: dict[str, str],
) -> list[str]:
    """‖δ_c‖/ε_c of the LPL runs of the training-length studies at the first and the last epoch (does δ
    fade over a longer training, or with another model?)."""
    from lpl_train.report.stats import class_groups_by_rank

    rows = []
    for n in names:
        st, rs = studies[n]
        e = st["epochs"]
        dk = next(iter(st["datasets"]))
        for m in st["methods"]:
            fin = [
                r
                for r in rs
                if r["dataset"] == dk and r["method"] == m["id"] and r.get("delta_norm")
            ]
            if not fin:
                continue
            groups = class_groups_by_rank(
                fin[0]["class_counts"], tuple(st.get("group_fractions", (0.3, 0.3)))
            )
            ratio = [
                _delta_mean(fin, "ratio", groups[g], [ep])
                for g in ("many", "few")
                for ep in (0, e - 1)
            ]
            cells = " | ".join("–" if math.isnan(x) else f"{x:.2f}" for x in ratio)
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
        fig, ax = _subplots(figsize=(7.0, 4.0))
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
        ax.set_xticks(range(len(sums)), [t for t, _, _ in sums])
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
    fig.savefig(path, dpi=110)
    return path


def report(records: Sequence[dict[str, Any]], out: str | Path, figs: bool = True) -> Path:
    """Write ``ablation-tables.md`` (and the figures) into ``out``; return the tables path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ablation-tables.md"
    path.write_text(tables(records), encoding="utf-8")
    if figs:
        figures(records, out)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lpl_train.ablation``: merge run records (``--collect``) and/or rebuild the report."""
    ap = argparse.ArgumentParser(
        prog="python -m lpl_train.ablation", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--collect", nargs="+", metavar="RUNS",
                    help="study output folders (--out of lpl_train.study) whose finished runs become the records")  # fmt: skip
    ap.add_argument(
        "--report-only", action="store_true", help="tables and figures from the committed records"
    )
    ap.add_argument("--add", action="store_true",
                    help="with --collect: keep the records already in ablation-runs.jsonl and add the collected "
                         "ones (a run already recorded is skipped if its record is the same, else an error)")  # fmt: skip
    ap.add_argument("--restore", nargs=2, metavar=("STUDY", "OUT"),
                    help="write the committed records of STUDY (a name of STUDIES, e.g. lpl_ablation_e48) into "
                         "the run folders under OUT, so that the study run with --out OUT trains only what they "
                         "lack (new seeds added to its definition)")  # fmt: skip
    ap.add_argument(
        "--figures", default="figures", help="where ablation-runs.jsonl, tables and figures live"
    )
    args = ap.parse_args(argv)
    if not args.collect and not args.report_only and not args.restore:
        ap.error("give --collect RUNS..., --restore STUDY OUT and/or --report-only")
    if args.add and not args.collect:
        ap.error("--add needs --collect RUNS...")
    figs = Path(args.figures)
    jsonl = figs / "ablation-runs.jsonl"
    if args.restore:
        from lpl_train.study_runs import restore_records

        name, out = args.restore
        if name not in STUDIES:
            ap.error(f"--restore: unknown study {name!r}; known: {sorted(STUDIES)}")
        recs = [r for r in read_records(jsonl) if r["study"] == name]
        print(f"{out}: {restore_records(recs, out)} of {len(recs)} records of {name} restored")
        if not args.collect and not args.report_only:
            return 0
    if args.collect:
        records = collect(args.collect)
        if args.add:
            records = add_records(read_records(jsonl), records)
        figs.mkdir(parents=True, exist_ok=True)
        jsonl.write_text(
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8"
        )
        print(f"{jsonl}: {len(records)} runs")
    records = read_records(jsonl)
    print(report(records, figs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
