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
* :func:`report` (in :mod:`lpl_train.ablation_report`): the tables (``figures/ablation-tables.md``) and figures
  (``figures/ablation-*.png``) that answer the five questions, from the committed run records
  (``figures/ablation-runs.jsonl.gz``, read and written by :mod:`lpl_train.ablation_records`) only.

``python -m lpl_train.ablation --report-only`` rebuilds the tables and figures from the committed records;
``python -m lpl_train.ablation --collect RUNS...`` writes the records of the study outputs first (with
``--add``: adds them to the records already there, which stay unchanged).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# the records (ablation_records) and the tables and figures (ablation_report) live in their own modules
from lpl_train.ablation_records import (
    RECORDS_FILE,
    STUDIES,
    add_records,
    collect,
    read_records,
    write_records,
)
from lpl_train.ablation_report import axis_curves, figures, report, tables

__all__ = [
    "DeltaNormRecorder",
    "STUDIES",
    "add_records",
    "attach_delta_recorder",
    "axis_curves",
    "collect",
    "figures",
    "main",
    "read_records",
    "report",
    "tables",
]

DELTA_FILE = "delta_norm.json"


# --------------------------------------------------------------------------------------- mechanism
class DeltaNormRecorder:
    """Per-class, per-epoch statistics of the LPL perturbation δ_c seen by the training steps.

    Registered as a forward hook on an :class:`~lpl_train.losses.lpl.LPLLoss` (or LA + LPL); it reads the
    loss's ``last_delta`` (the detached δ of the call) and the target, and keeps for each epoch (the
    ``epoch`` attribute of the training loader) and class: the mean over the steps where the class is in
    the batch of ‖δ_c‖₂, of the bound ε_c (Eq. 33 for the paper's reading; α·(K_c + 1) for the authors'
    preset, whose steps have length ≤ α and no projection) and of the ratio ‖δ_c‖/ε_c. The balanced
    presets have no per-class bound (a fixed number of steps, no projection): their ``bound`` and
    ``ratio`` are None. Calls without grad
    (the engine's loss-variation measurement, evaluation) are not counted. The statistics are written to
    ``run_dir/delta_norm.json`` after an epoch's last step (the loader's length) and at every epoch change,
    so a resumed run keeps its earlier epochs; an epoch that a resumed run trains again (it was cut short
    before its checkpoint) is counted afresh, not twice.
    """

    def __init__(self, loss: Any, loader: Any, run_dir: str | Path | None = None) -> None:
        self.loss = loss
        self.loader = loader
        self.num_classes = int(loss.num_classes)
        self.path = None if run_dir is None else Path(run_dir) / DELTA_FILE
        self.has_bounds = loss.preset in (None, "authors_longtail")  # see _bounds
        self.epochs: dict[int, dict[str, list[float]]] = {}
        if self.path is not None and self.path.is_file():
            for i, ep in enumerate(json.loads(self.path.read_text(encoding="utf-8"))):
                if ep is not None:
                    self.epochs[i] = {k: [0.0 if v is None else v * n for v, n in zip(ep[k], ep["n"], strict=True)]
                                      for k in ("norm", "bound", "ratio")} | {"n": list(ep["n"])}  # fmt: skip
        self._last_epoch: int | None = None
        self._steps = 0  # training steps seen in the current epoch
        try:
            self._per_epoch: int | None = len(loader)
        except TypeError:
            self._per_epoch = None
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
        work = loss.adjust(loss._scaled(logits).float())  # the loss steps on s·u (+ λ·log π)
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
            logits, target = inputs[0].detach(), inputs[1]
            if target.dim() != 1 or target.is_floating_point():
                raise ValueError(
                    "DeltaNormRecorder reads class-index targets; this loss was given "
                    f"{tuple(target.shape)} {target.dtype} targets (probabilities?)"
                )
            delta = module.last_delta
            ignore = getattr(module, "ignore_index", None)
            # ignored rows have no class (and δ = 0): left out as the loss does
            if ignore is not None:
                kept = target != ignore
                logits, target, delta = logits[kept], target[kept], delta[kept]
            target = target.long()
            epoch = int(getattr(self.loader, "epoch", 0))
            if self._last_epoch is None:
                # this process's first step: its epoch and later ones were cut short before a
                # checkpoint and are trained again now
                for e in [e for e in self.epochs if e >= epoch]:
                    del self.epochs[e]
            elif epoch != self._last_epoch:
                self.save()
            if epoch != self._last_epoch:
                self._steps = 0
            self._last_epoch = epoch
            c = self.num_classes
            norm = torch.linalg.vector_norm(delta.float(), dim=1)
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
            self._steps += 1
            if self._steps == self._per_epoch:  # the epoch's last step: saved before its checkpoint
                self.save()

    def result(self) -> list[dict[str, list[float | None]] | None]:
        """Per epoch (index = epoch): ``norm``, ``bound``, ``ratio`` (C,) means over the steps where the
        class was present (None where it never was, and ``bound`` and ``ratio`` None throughout for a
        balanced preset), and ``n`` (C,) the number of such steps."""
        if not self.epochs:
            return []
        out: list[dict[str, list[float | None]] | None] = [None] * (max(self.epochs) + 1)
        for e, st in self.epochs.items():
            out[e] = {k: [None if n == 0 else v / n for v, n in zip(st[k], st["n"], strict=True)]
                      for k in ("norm", "bound", "ratio")} | {"n": list(st["n"])}  # fmt: skip
            if not self.has_bounds:
                out[e] |= {k: [None] * self.num_classes for k in ("bound", "ratio")}
        return out

    def save(self) -> None:
        if self.path is None:
            return
        from lpl_train._files import write_bytes_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, json.dumps(self.result()).encode("utf-8"))

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
                    help="with --collect: keep the records already in ablation-runs.jsonl.gz and add the collected "
                         "ones (a run already recorded is skipped if its record is the same, else an error)")  # fmt: skip
    ap.add_argument("--restore", nargs=2, metavar=("STUDY", "OUT"),
                    help="write the committed records of STUDY (a name of STUDIES, e.g. lpl_ablation_e48) into "
                         "the run folders under OUT, so that the study run with --out OUT trains only what they "
                         "lack (new seeds added to its definition)")  # fmt: skip
    ap.add_argument(
        "--figures", default="figures", help="where ablation-runs.jsonl.gz, tables and figures live"
    )
    args = ap.parse_args(argv)
    if not args.collect and not args.report_only and not args.restore:
        ap.error("give --collect RUNS..., --restore STUDY OUT and/or --report-only")
    if args.add and not args.collect:
        ap.error("--add needs --collect RUNS...")
    if args.restore and args.restore[0] not in STUDIES:
        ap.error(f"--restore: unknown study {args.restore[0]!r}; known: {sorted(STUDIES)}")
    try:
        return _run(args)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        # missing or damaged records, a bad folder: one line, as lpl-train's errors
        print(f"{ap.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    figs = Path(args.figures)
    jsonl = figs / RECORDS_FILE
    if args.restore:
        from lpl_train.study_runs import restore_records

        name, out = args.restore
        recs = [r for r in read_records(jsonl) if r["study"] == name]
        print(f"{out}: {restore_records(recs, out)} of {len(recs)} records of {name} restored")
        if not args.collect and not args.report_only:
            return 0
    if args.collect:
        records = collect(args.collect)
        if args.add:
            records = add_records(read_records(jsonl), records)
        # the report's checks first (records of another study, mode or length): records it would refuse
        # are not written over the committed ones
        tables(records)
        figs.mkdir(parents=True, exist_ok=True)
        write_records(records, jsonl)
        print(f"{jsonl}: {len(records)} runs")
    records = read_records(jsonl)
    print(report(records, figs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
