"""Evaluation of a model on a loader: top-1 error, per-class accuracy and groups, or mAP (multi-label)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
) -> dict[str, Any]:
    """Test-set metrics, in percent (an undefined value, e.g. the mean of an empty group, is None).

    Single-label: ``loss`` (mean CE), ``top1_error``, ``per_class_acc`` and the many/medium/few group means
    (``lpl_train.metrics.group_accuracy``). Multi-label: ``loss`` (mean BCE over N×C), ``map``,
    ``ap_per_class`` and ``map_head/medium/tail`` (``lpl_train.metrics.map_groups``).
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
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = 0
    correct = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    scores, targets = [], []
    for x, y in loader:
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(x)
        logits = logits.float()
        if multi_label:
            loss_sum += (
                F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum")
                .double()
                .cpu()
            )
            count += y.numel()
            scores.append(logits.cpu())
            targets.append(y.cpu())
        else:
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            count += y.numel()
            hit = (logits.argmax(1) == y).double()
            total += torch.bincount(y.cpu(), minlength=num_classes).double()
            correct += torch.zeros(num_classes, dtype=torch.float64).index_add_(
                0, y.cpu(), hit.cpu()
            )
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluation loader yielded no samples")
    out: dict[str, Any] = {"loss": float(loss_sum) / count}
    if multi_label:
        ap = M.average_precision_per_class(torch.cat(scores), torch.cat(targets))  # percent
        out["ap_per_class"] = [float(a) for a in ap]
        for k, v in M.map_groups(ap, class_counts).items():
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
