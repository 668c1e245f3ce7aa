"""Evaluation metrics of the paper's tables.

* Single-label (Tables I-IV, VI, VIII, IX): top-1 error in percent, per-class accuracy, and the
  many/medium/few-shot groups of the long-tail literature (Liu et al., OLTR: a class is *many* when it has
  more than ``many`` = 100 training samples, *few* when it has fewer than ``few`` = 20, *medium*
  otherwise, so a class of exactly 100 is medium).
* Multi-label (Table V, X): per-class average precision and mAP, in percent, with the same definition as
  ``sklearn.metrics.average_precision_score`` (AP = sum_n (R_n - R_{n-1}) P_n over the distinct score
  thresholds), and the head/medium/tail mAP of Wu et al. (head: at least 100 training positives, tail:
  fewer than 20; unlike the single-label rule, a class of exactly 100 is head, as in their VOC-MLT split).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch

from lpl_train.report.stats import class_groups_by_count


def _check_logits_target(logits: torch.Tensor, target: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"logits and target must be tensors, got {type(logits).__name__} and {type(target).__name__}"
        )
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must have shape ({logits.shape[0]},) to match logits, got {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got {target.dtype}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= logits.shape[1]):
        raise ValueError(
            f"target values must lie in [0, {logits.shape[1]}), got [{int(target.min())}, {int(target.max())}]"
        )


def top1_error(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 error in percent: ``100 * mean(argmax(logits) != target)``."""
    _check_logits_target(logits, target)
    if target.numel() == 0:
        raise ValueError("logits must hold at least one sample, got 0")
    return 100.0 * (~right_predictions(logits, target)).to(torch.float64).mean().item()


def right_predictions(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Right predictions; a row with a non-finite logit is wrong (argmax takes NaN for the largest)."""
    return (logits.argmax(dim=1) == target) & torch.isfinite(logits).all(dim=1)


def per_class_accuracy(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy (in [0, 1]) of each class over its test samples; NaN for a class with no test sample."""
    _check_logits_target(logits, target)
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int)
        or num_classes < logits.shape[1]
    ):
        raise ValueError(
            f"num_classes must be an int >= {logits.shape[1]} (logits width), got {num_classes!r}"
        )
    correct = right_predictions(logits, target).to(torch.float64)
    hits = torch.zeros(num_classes, dtype=torch.float64, device=target.device).index_add_(
        0, target.long(), correct
    )
    total = torch.bincount(target.long(), minlength=num_classes).to(torch.float64)
    return [
        h / t if t > 0 else math.nan for h, t in zip(hits.tolist(), total.tolist(), strict=True)
    ]


def _groups(
    class_counts: Sequence[int], n: int, many: int, few: int, many_inclusive: bool
) -> dict[str, list[int]]:
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.tolist()
    if len(class_counts) != n:
        raise ValueError(
            f"class_counts must have {n} entries (one per class), got {len(class_counts)}"
        )
    if any(isinstance(c, bool) or not isinstance(c, Integral) or c < 0 for c in class_counts):
        raise ValueError(
            f"class_counts must be non-negative ints, got {list(class_counts)[:10]}..."
        )
    if not (
        all(isinstance(t, int) and not isinstance(t, bool) for t in (many, few)) and 0 < few <= many
    ):
        raise ValueError(
            f"thresholds must be ints with 0 < few <= many, got many={many!r}, few={few!r}"
        )
    return class_groups_by_count([int(c) for c in class_counts], many, few, many_inclusive)


def class_groups(
    class_counts: Sequence[int], many: int = 100, few: int = 20
) -> dict[str, list[int]]:
    """Class indices per group: ``many`` (count > many), ``medium`` (few <= count <= many), ``few``
    (count < few), the single-label rule of OLTR (Liu et al., 2019)."""
    return _groups(class_counts, len(class_counts), many, few, many_inclusive=False)


def _nanmean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def group_accuracy(
    per_class_acc: Sequence[float], class_counts: Sequence[int], many: int = 100, few: int = 20
) -> dict[str, float]:
    """Mean per-class accuracy of the many (count > ``many``) / medium / few (count < ``few``) groups
    (:func:`class_groups`; NaN for an empty group).

    ``class_counts`` are the *training* counts that define the groups.
    """
    g = _groups(class_counts, len(per_class_acc), many, few, many_inclusive=False)
    return {k: _nanmean([float(per_class_acc[c]) for c in idx]) for k, idx in g.items()}


def _check_multilabel(scores: torch.Tensor, target: torch.Tensor) -> None:
    if not isinstance(scores, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("scores and target must be tensors")
    if scores.dim() != 2 or target.shape != scores.shape:
        raise ValueError(
            f"scores and target must both have shape (N, C); got {tuple(scores.shape)} and {tuple(target.shape)}"
        )
    if target.numel() and not torch.all((target == 0) | (target == 1)):
        raise ValueError("target must be a 0/1 multi-hot matrix")


def average_precision_per_class(scores: torch.Tensor, target: torch.Tensor) -> list[float]:
    """AP of each column in percent (sklearn's ``average_precision_score`` definition; ties share a
    threshold). NaN for a class without a positive, and for a column holding a non-finite score (it has
    no ranking)."""
    _check_multilabel(scores, target)
    out = []
    s_all = scores.detach().to(torch.float64).cpu()
    t_all = target.detach().to(torch.float64).cpu()
    for c in range(scores.shape[1]):
        s, t = s_all[:, c], t_all[:, c]
        npos = t.sum().item()
        if npos == 0 or not bool(torch.isfinite(s).all()):
            out.append(math.nan)
            continue
        order = torch.argsort(s, descending=True, stable=True)
        s, t = s[order], t[order]
        tp = torch.cumsum(t, 0)
        fp = torch.cumsum(1 - t, 0)
        last = torch.ones_like(s, dtype=torch.bool)
        last[:-1] = s[1:] != s[:-1]  # the last index of every run of equal scores
        tp, fp = tp[last], fp[last]
        precision = tp / (tp + fp)
        recall = tp / npos
        prev = torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])
        out.append(100.0 * float(((recall - prev) * precision).sum()))
    return out


def mean_average_precision(scores: torch.Tensor, target: torch.Tensor) -> float:
    """mAP in percent: the mean AP over the classes that have at least one positive (NaN when one of
    them has a non-finite score: a diverged class has no AP and must not drop out of the mean)."""
    ap = average_precision_per_class(scores, target)
    return map_groups(ap, [0] * len(ap), positives=(target > 0.5).sum(0).tolist())["total"]


def map_groups(
    ap_per_class: Sequence[float],
    class_counts: Sequence[int],
    head: int = 100,
    tail: int = 20,
    positives: Sequence[int] | None = None,
) -> dict[str, float]:
    """mAP over all classes and over the head (>= ``head`` training positives), medium and tail
    (< ``tail``) classes: keys ``total``, ``head``, ``medium``, ``tail`` (NaN for an empty group).

    ``positives``: the evaluated split's positives per class; a mean over a class that has positives but a
    NaN AP (a non-finite score column) is NaN, instead of the mean of the other classes."""
    g = _groups(class_counts, len(ap_per_class), head, tail, many_inclusive=True)
    ap = [float(a) for a in ap_per_class]
    if positives is not None and len(positives) != len(ap):
        raise ValueError(f"positives must have {len(ap)} entries, got {len(positives)}")
    bad = {
        c for c, a in enumerate(ap) if positives is not None and positives[c] > 0 and math.isnan(a)
    }

    def mean(idx: Sequence[int]) -> float:
        return math.nan if bad & set(idx) else _nanmean([ap[c] for c in idx])

    return {
        "total": mean(range(len(ap))),
        "head": mean(g["many"]),
        "medium": mean(g["medium"]),
        "tail": mean(g["few"]),
    }
