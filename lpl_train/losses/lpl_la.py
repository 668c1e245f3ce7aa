"""LA + LPL (paper Sec. IV-D): :class:`LALPLLoss` (``"la_lpl"``), logit adjustment then LPL.

The logits become u + λ·log π + δ, δ inferred by :class:`~lpl_train.losses.lpl.LPLLoss` on the adjusted
logits. It is re-exported by :mod:`lpl_train.losses.lpl` with the other LPL losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .. import perturbation as P
from .lpl import LPLLoss
from .registry import register

__all__ = ["LALPLLoss"]


class _DefaultHead(float):
    """The default ``tau`` of LA+LPL (0.4, a fraction of C), told apart from a user's explicit value so that
    it applies to the index split only."""

    def __repr__(self) -> str:
        return "0.4"


_DEFAULT_HEAD = _DefaultHead(0.4)


@register("la_lpl")
class LALPLLoss(LPLLoss):
    """LA + LPL (Sec. IV-D): cross-entropy on u_i + λ·log π + δ_{y_i}, where π is the training class prior
    from ``class_counts`` and δ is inferred by LPL on the adjusted logits u + λ·log π.

    Takes every argument of :class:`LPLLoss` plus ``lam`` (λ >= 0, default 1; the same name as in
    ``la``). ``class_counts`` (all > 0) is required. The default split is the index split with τ = 0.4
    (0.4·C head classes; the paper's long-tail grid is {0.4C, 0.5C, 0.6C}); ``tau`` is the split
    threshold as in ``lpl``, not the adjustment's scale. The only preset is ``authors_longtail`` (the
    authors' LA+LPL script), which takes the split index from ``tau``. In ``eval()`` mode the loss is the
    logit-adjusted cross-entropy without δ. Evaluate the model with the raw logits u (logit adjustment is
    a training-time loss).
    """

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[float] | Tensor | None = None,
        lam: float = 1.0,
        alpha: float | None = None,
        epsilon: float = 0.1,
        delta_epsilon: float = 0.0,
        split: str = "index",
        tau: float | int | None = _DEFAULT_HEAD,
        bound: str = "qbar",
        normalize_step: bool = True,
        differentiable: bool | None = None,
        preset: str | None = None,
        steps: int | None = None,
        head_scale: float | None = None,
        iterations: int | None = None,
        weight: Sequence[float] | Tensor | None = None,
        ignore_index: int | None = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        validate: bool = True,
        scale: float = 1.0,
        drw_epoch: int | None = None,
        drw_beta: float = 0.9999,
        fused_loop: bool = False,
    ) -> None:
        if class_counts is None:
            raise ValueError(
                "class_counts must be given for LA+LPL (the prior π of the adjustment)"
            )
        if preset is not None:
            if preset != "authors_longtail":
                raise ValueError(
                    f"preset must be None or 'authors_longtail' for la_lpl (the authors' LA+LPL script), "
                    f"got {preset!r}"
                )
            if split != "index":
                raise ValueError(
                    f"preset {preset!r} fixes the split (its index is tau): leave split at its default, "
                    f"got {split!r}"
                )
            split = "mean"  # the preset's own schedule; LPLLoss checks the paper parameters are untouched
            if tau is _DEFAULT_HEAD:
                tau = None  # the preset's split index must be given (LPLLoss says so), never 0.4·C
        elif split != "index" and tau is _DEFAULT_HEAD:
            tau = None  # the default head size belongs to the index split
        if tau is _DEFAULT_HEAD:
            tau = 0.4
        super().__init__(
            num_classes,
            class_counts=class_counts,
            alpha=alpha,
            epsilon=epsilon,
            delta_epsilon=delta_epsilon,
            split=split,
            tau=tau,
            bound=bound,
            normalize_step=normalize_step,
            differentiable=differentiable,
            preset=preset,
            steps=steps,
            head_scale=head_scale,
            iterations=iterations,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            reduction=reduction,
            validate=validate,
            scale=scale,
            drw_epoch=drw_epoch,
            drw_beta=drw_beta,
            fused_loop=fused_loop,
        )
        self.lam = P.check_non_negative(lam, "lam")
        counts = P.check_class_counts(class_counts, self.num_classes, positive=True)
        self.register_buffer("log_prior", torch.log(counts / counts.sum()))

    def _uses_class_counts(self) -> bool:
        return True

    def adjust(self, logits: Tensor) -> Tensor:
        """u + λ·log π (the float64 prior enters in the logits' dtype)."""
        return logits + self.lam * self.log_prior.to(logits)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, " + super().extra_repr()
