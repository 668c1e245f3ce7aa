"""Multi-label LPL (paper Sec. III-D, Eqs. 34-41): :class:`MultiLabelLPLLoss` (``"ml_lpl"``).

Eq. 34 with the closed form δ̃_c = S(c − τ)·ε_c (Eqs. 37, 38, 41), wrapped around any elementwise binary
loss (plain BCE by default). It is re-exported by :mod:`lpl_train.losses.lpl` with the single-label LPL
losses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .. import perturbation as P
from ._common import _check_bool, _check_reduction, _empty_batch, _work_dtype
from .registry import build_loss, register

__all__ = ["MultiLabelLPLLoss"]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _bce_elementwise(logits: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def _multi_label_names() -> list[str]:
    from .registry import _REGISTRY

    return sorted(
        n for n, c in _REGISTRY.items() if getattr(c, "multi_label", False) and n != "ml_lpl"
    )


@register("ml_lpl")
class MultiLabelLPLLoss(nn.Module):
    """Multi-label LPL (Eq. 34): a binary loss on the logits shifted by the class-level perturbation.

    Each class c is a binary task; δ̃_c = S(c − τ)·ε_c (Eq. 41 and the closed form after it) is shared
    by its positive and negative terms, so the logit u_{i,c} becomes u_{i,c} − δ̃_c. With classes ranked
    by positive count, the τ most frequent (head, Eq. 37) get their positive loss minimised and negative
    loss maximised; the others (tail, Eq. 38) the reverse. ``tau=0`` is Eq. 35, ``tau=C`` is Eq. 36.

    Args:
        num_classes: C (>= 1).
        class_counts: positive training samples per class (C,), required (class order; > 0 for every
            class when ``delta_epsilon > 0``).
        epsilon: ε >= 0; delta_epsilon: Δε >= 0 (varied bound ε + Δε·n_c/n_max for head classes and
            ε + Δε·n_min/n_c for tail classes, the count form of Eq. 33).
        tau: head size as an int in [0, C] or a fraction of C as a float in [0, 1].
        base_loss: the binary loss on the perturbed logits: None (plain BCE), a registered loss name
            (built with ``reduction="none"``, ``num_classes``, ``class_counts`` and ``base_params``), or any
            module/callable ``(logits, target) -> (N, C)`` elementwise loss (a module with a
            ``reduction`` attribute must have ``reduction="none"``).
        base_params: parameters for a base loss given by name.
        soft_targets: accept targets in [0, 1] instead of {0, 1}.
        reduction: ``"mean"`` (over N·C, as the 1/(C·N) of Eq. 34), ``"sum"`` or ``"none"`` ((N, C)).
        validate: check the inputs on every call (the value checks are skipped under torch.compile, while
            a CUDA graph records and inside ``no_host_reads()``).

    In ``eval()`` mode the loss is the base loss on the raw logits (no perturbation).
    """

    multi_label = True

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[float] | Tensor | None = None,
        epsilon: float = 0.1,
        delta_epsilon: float = 0.0,
        tau: float | int = 0.5,
        base_loss: str | nn.Module | Callable[[Tensor, Tensor], Tensor] | None = None,
        base_params: dict[str, Any] | None = None,
        soft_targets: bool = False,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = P.check_num_classes(num_classes, minimum=1)
        if class_counts is None:
            raise ValueError(
                "class_counts (positive samples per class) must be given to order the classes"
            )
        counts = P.check_class_counts(class_counts, self.num_classes)
        self.register_buffer("class_counts", counts)
        self.epsilon = P.check_non_negative(epsilon, "epsilon")
        self.delta_epsilon = P.check_non_negative(delta_epsilon, "delta_epsilon")
        self.head = P.index_threshold(tau, self.num_classes)
        self.tau = tau
        self.soft_targets = _check_bool(soft_targets, "soft_targets")
        self.reduction = _check_reduction(reduction)
        self.validate = _check_bool(validate, "validate")
        rank = P.class_rank(counts)
        ratio = None
        if self.delta_epsilon > 0:
            if bool((counts <= 0).any()):
                raise ValueError(
                    "a varied bound (delta_epsilon > 0) needs class_counts > 0 for every class"
                )
            ratio = P.count_bound_ratio(counts, self.head)
        self.register_buffer("rank", rank)
        shift = P.multi_label_logit_shift(
            rank,
            self.head,
            epsilon=self.epsilon,
            delta_epsilon=self.delta_epsilon,
            count_ratio=ratio,
        )
        self.register_buffer("logit_shift", shift)  # float64; enters in the logits' dtype
        if base_params is not None and not isinstance(base_loss, str):
            raise ValueError("base_params is only used with base_loss given by name")
        if base_params is not None and not isinstance(base_params, Mapping):
            raise TypeError(f"base_params must be a dict of parameters, got {base_params!r}")
        for key in ("num_classes", "class_counts"):
            if base_params is not None and key in base_params:
                raise ValueError(
                    f"base_params must not contain {key!r}: ml_lpl passes its own {key} to the base "
                    f"loss (give {key} to ml_lpl itself)"
                )
        if base_loss is None:
            self.base_loss: Callable[[Tensor, Tensor], Tensor] = _bce_elementwise
        elif isinstance(base_loss, str):
            params = dict(base_params or {})
            params.setdefault("reduction", "none")
            self.base_loss = build_loss(
                base_loss, num_classes=self.num_classes, class_counts=counts.tolist(), **params
            )
            if getattr(self.base_loss, "multi_label", None) is False:
                raise ValueError(
                    f"base_loss={base_loss!r} is a single-label loss; ml_lpl needs an elementwise "
                    f"multi-label loss by name ({', '.join(_multi_label_names())}) or a callable"
                )
        elif callable(base_loss):
            self.base_loss = base_loss
        else:
            raise TypeError(f"base_loss must be None, a loss name or a callable, got {base_loss!r}")
        red = getattr(self.base_loss, "reduction", "none")
        if red != "none":
            raise ValueError(
                f"base_loss must have reduction='none' (elementwise (N, C)), got {red!r}"
            )

    @property
    def delta(self) -> Tensor:
        """δ̃_c = S(c − τ)·ε_c per class (C,); the perturbed logit is u − δ̃."""
        return -self.logit_shift

    def perturb(self, logits: Tensor, target: Tensor | None = None) -> Tensor:
        """The perturbed logits u − δ̃ (N, C)."""
        return _work_dtype(logits) + self.logit_shift.to(logits.device, _work_dtype(logits).dtype)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The base loss on the perturbed logits, reduced per ``reduction`` ((N, C) for ``"none"``); on
        the raw logits in ``eval()`` mode."""
        if _empty_batch(logits, target) and logits.shape[1] == self.num_classes:
            # no rows: the base loss of none (nan for the mean, as torch's), nothing to perturb
            if self.validate and target.shape != logits.shape:
                raise ValueError(
                    f"target must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}"
                )
            work = _work_dtype(logits)
            return _reduce(self.base_loss(work, target.to(work.dtype)), self.reduction)
        if self.validate:
            P.check_logits(logits, min_classes=1)
            if logits.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits must have num_classes={self.num_classes} columns, got shape {tuple(logits.shape)}"
                )
            target = P.check_multi_label_target(
                target, _work_dtype(logits), soft=self.soft_targets, check_finite_logits=True
            )
        else:
            target = target.to(_work_dtype(logits).dtype)
        work = self.perturb(logits) if self.training else _work_dtype(logits)
        loss = self.base_loss(work, target)
        if not isinstance(loss, Tensor) or loss.shape != logits.shape:
            raise ValueError(
                f"base_loss must return the elementwise loss of shape {tuple(logits.shape)}, got "
                f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}"
            )
        return _reduce(loss, self.reduction)

    def extra_repr(self) -> str:
        parts = [
            f"epsilon={self.epsilon}, delta_epsilon={self.delta_epsilon}, tau={self.tau} (head={self.head})"
        ]
        base = self.base_loss
        # a module base loss prints below, as a child
        if base is not _bce_elementwise and not isinstance(base, nn.Module):
            parts.append(f"base_loss={getattr(base, '__qualname__', None) or repr(base)}")
        if self.soft_targets:
            parts.append("soft_targets=True")
        parts.append(f"reduction={self.reduction!r}")
        if not self.validate:
            parts.append("validate=False")
        return ", ".join(parts)
