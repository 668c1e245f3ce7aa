"""Evaluation of a model on a loader: top-1 error, per-class accuracy and groups, or mAP (multi-label)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lpl_train.metrics import right_predictions
from lpl_train.perturbation import _work_dtype

from .run_folder import finite_or_none as _finite_or_none

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    class_counts: list[int],
    multi_label: bool,
    autocast: Any = None,
    channels_last: bool = False,
    *,
    distributed: bool = False,
) -> dict[str, Any]:
    """Test-set metrics, in percent (an undefined value, e.g. the mean of an empty group, is None).

    Single-label: ``loss`` (mean CE), ``top1_error``, ``per_class_acc`` and the many/medium/few group means
    (``lpl_train.metrics.group_accuracy``). Multi-label: ``loss`` (mean BCE over N×C), ``map``,
    ``ap_per_class`` and ``map_head/medium/tail`` (``lpl_train.metrics.map_groups``).

    ``distributed``: every process of the default process group calls this with its own part of the
    split (rank r the r-th of consecutive parts, in order; a part may be empty); the sums are added over
    the processes (and, for mAP, the scores gathered in rank order), so every process returns the whole
    split's metrics.
    """
    from lpl_train import metrics as M

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if len(class_counts) != num_classes:
        raise ValueError(
            f"class_counts must have num_classes={num_classes} entries, got {len(class_counts)}"
        )
    autocast = autocast or contextlib.nullcontext()
    was_training = model.training
    model.eval()
    meter: _EvalMeter | None = None
    if distributed:  # a process whose part is empty still takes part in the sums
        meter = _EvalMeter(num_classes, multi_label, _device_of(model))
    for x, y in loader:
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(x)
        meter = meter or _EvalMeter(num_classes, multi_label, logits.device)
        meter.update(_work_dtype(logits), y)
    model.train(was_training)
    if meter is not None and distributed:
        meter.combine()
    if meter is None or meter.count == 0:
        raise ValueError("evaluation loader yielded no samples")
    loss_sum, correct, total, scores, targets = meter.read()
    count = meter.count
    out: dict[str, Any] = {"loss": float(loss_sum) / count}
    if multi_label:
        ap = M.average_precision_per_class(scores, targets)  # percent
        out["ap_per_class"] = [float(a) for a in ap]
        positives = (targets > 0.5).sum(0).tolist()
        for k, v in M.map_groups(ap, class_counts, positives=positives).items():
            out["map" if k == "total" else f"map_{k}"] = float(v)
    else:
        acc = [
            100.0 * c / t if t > 0 else math.nan
            for c, t in zip(correct.tolist(), total.tolist(), strict=True)
        ]
        out["top1_error"] = 100.0 * (1.0 - float(correct.sum() / total.sum()))
        out["per_class_acc"] = acc
        for k, v in M.group_accuracy(acc, class_counts).items():
            out[f"acc_{k}"] = float(v)
    return _finite_or_none(out)


def _device_of(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


class _EvalMeter:
    """The sums of an evaluation, kept on the logits' device: :meth:`update` never waits for the device,
    :meth:`read` moves everything to the host once (sums in float64 where the device has it, as on CPU)."""

    def __init__(self, num_classes: int, multi_label: bool, device: torch.device) -> None:
        self.multi_label, self.count = multi_label, 0
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.loss_sum = torch.zeros((), dtype=self.dtype, device=device)
        self.correct = torch.zeros(num_classes, dtype=self.dtype, device=device)
        self.total = torch.zeros(num_classes, dtype=self.dtype, device=device)
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.count += y.numel()
        if self.multi_label:
            bce = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum")
            self.loss_sum += bce.to(self.dtype)
            self.scores.append(logits)
            self.targets.append(y)
            return
        self.loss_sum += F.cross_entropy(logits, y, reduction="sum").to(self.dtype)
        # index_add_, not bincount: CUDA's bincount reads the largest label on the host
        self.total.index_add_(0, y, torch.ones_like(y, dtype=self.dtype))
        # a row with a non-finite logit predicts nothing (argmax would take a NaN for the largest value)
        self.correct.index_add_(0, y, right_predictions(logits, y).to(self.dtype))

    def combine(self) -> None:
        """Add the sums over the processes of the default group, and gather the scores (multi-label) in
        rank order; afterwards every process holds the whole split's meter."""
        dist = torch.distributed
        count = torch.tensor(self.count, dtype=torch.long, device=self.loss_sum.device)
        for t in (self.loss_sum, self.correct, self.total, count):
            dist.all_reduce(t)
        self.count = int(count)
        if self.multi_label:
            # in the sums' dtype (an empty part has no batch to take one from): float64 keeps a float64
            # run's scores, whose ranking float32 could tie
            c, dev, dt = self.correct.shape[0], self.loss_sum.device, self.dtype
            self.scores = [_gather_rows([t.to(dt) for t in self.scores], c, dev, dt)]
            self.targets = [_gather_rows([t.to(dt) for t in self.targets], c, dev, dt)]

    def read(
        self,
    ) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(loss sum, correct per class, samples per class, all scores, all targets) on the host."""
        scores = torch.cat(self.scores).cpu() if self.scores else None
        targets = torch.cat(self.targets).cpu() if self.targets else None
        return (float(self.loss_sum), self.correct.double().cpu(), self.total.double().cpu(), scores,
                targets)  # fmt: skip


def _gather_rows(
    parts: list[torch.Tensor], columns: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """This process's rows of ``columns`` values of ``dtype`` (the concatenation of ``parts``; none for an
    empty part), gathered from every process of the default group and concatenated in rank order. Done with
    sums only (each process writes its rows at its offset into zeros, and the buffers are added), which
    every backend and torch version runs alike; adding zeros changes no value but the sign of a zero."""
    dist = torch.distributed
    rows = torch.cat(parts) if parts else torch.zeros((0, columns), dtype=dtype, device=device)
    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = torch.zeros(world, dtype=torch.long, device=rows.device)
    sizes[rank] = rows.shape[0]
    dist.all_reduce(sizes)
    start = int(sizes[:rank].sum())
    out = torch.zeros((int(sizes.sum()), columns), dtype=rows.dtype, device=rows.device)
    out[start : start + rows.shape[0]] = rows
    dist.all_reduce(out)
    return out
