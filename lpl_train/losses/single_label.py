"""Single-label baselines that the paper compares LPL against (Tables I-IV, VI, VIII, IX).

Every loss is an ``nn.Module`` with ``forward(logits, target)`` (``logits`` (N, C) float, ``target`` (N,)
int64 class indices) and ``reduction`` in ``{"mean", "sum", "none"}``; ``"none"`` returns the per-sample
loss of shape (N,). Class statistics are given at construction as ``class_counts`` and kept as buffers.
Losses that need the penultimate features (ISDA, L-Softmax, center loss) set ``needs_features = True`` and
are called as ``loss(features, target, classifier)``.

The paper discusses three of them as logit perturbations (Sec. II): logit adjustment (Eqs. 2-4), ISDA
(Eqs. 5-7) and LDAM (Eqs. 8-9). The others are the "robust loss" rows of Tables I-IV. Where the reference
code and the papers disagree or are silent, the choice made here is stated in the class docstring and in
``docs/baselines.md``.

This module holds the losses on the logits and the class counts: cross-entropy, logit adjustment, LDAM
with DRW, class-balanced weights and the focal and class-balanced losses. The feature-level losses (ISDA,
L-Softmax, center loss) are in :mod:`.feature_losses`, DisturbLabel and GCE in :mod:`.label_noise`; every
single-label baseline is importable from here as well.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import perturbation as P
from ..validation import check_float, check_int
from ._common import (  # noqa: F401  (re-exported: the shared checks were defined here before)
    REDUCTIONS,
    _as_counts,
    _caller_stacklevel,
    _check_classifier,
    _check_epoch,
    _check_logits,
    _check_pair,
    _check_reduction,
    _check_target,
    _DRWWeightState,
    _focal_power,
    _is_bool_dtype,
    _reduce,
    _ReprMixin,
    _work_dtype,
)
from .feature_losses import (  # noqa: F401  (re-exported)
    CenterLoss,
    ISDALoss,
    LargeMarginSoftmaxLoss,
    _check_features,
    _cos_multiple,
    _LazyFeatureState,
    _upcast,
)
from .label_noise import DisturbLabelLoss, GeneralizedCELoss  # noqa: F401  (re-exported)
from .registry import register

__all__ = [
    "CrossEntropyLoss",
    "LogitAdjustedLoss",
    "logit_adjust_posthoc",
    "class_balanced_weights",
    "DRWSchedule",
    "LDAMLoss",
    "ldam_margins",
    "FocalLoss",
    "ClassBalancedCELoss",
    "ClassBalancedFocalLoss",
    "ISDALoss",
    "LargeMarginSoftmaxLoss",
    "DisturbLabelLoss",
    "CenterLoss",
    "GeneralizedCELoss",
]


# --------------------------------------------------------------------------------------------------
# CE and logit adjustment (Menon et al., ICLR 2021)
# --------------------------------------------------------------------------------------------------


class _TorchCE(_ReprMixin, nn.Module):
    """``weight``, ``ignore_index``, ``label_smoothing`` and probability targets as ``nn.CrossEntropyLoss``."""

    num_classes: int | None = None

    def _init_torch_ce(self, weight: Any, ignore_index: Any, label_smoothing: Any) -> None:
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer)
        ):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.label_smoothing = check_float("label_smoothing", label_smoothing, low=0.0, high=1.0)
        w = None
        if weight is not None:
            w = _as_counts(weight, self.num_classes, name="weight", allow_zero=True)
        self.register_buffer("weight", w)  # float64; enters in the logits' dtype

    def _targets(self, logits: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
        logits = _check_logits(logits)
        c = logits.shape[1]
        if self.num_classes is not None and c != self.num_classes:
            raise ValueError(
                f"logits have {c} columns but the loss was built for {self.num_classes} classes"
            )
        if self.weight is not None and self.weight.numel() != c:
            raise ValueError(
                f"weight has {self.weight.numel()} entries but logits have {c} columns"
            )
        if isinstance(target, torch.Tensor) and target.is_floating_point():
            if target.dim() != 2:
                raise TypeError(
                    "target must be class indices (an integer tensor (N,)) or class probabilities (a "
                    f"float tensor (N, C)), got a float tensor of shape {tuple(target.shape)}"
                )
            return logits, P.check_probability_target(target, logits)
        return logits, _check_target(target, logits.shape[0], c, self.ignore_index)

    def _cross_entropy(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            z,
            target,
            weight=None if self.weight is None else self.weight.to(z.dtype),
            ignore_index=-100 if self.ignore_index is None else self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        out = super().extra_repr()
        if self.weight is not None:
            out += f", weight={[round(float(v), 6) for v in self.weight]}"
        if self.ignore_index != -100:
            out += f", ignore_index={self.ignore_index}"
        if self.label_smoothing:
            out += f", label_smoothing={self.label_smoothing}"
        return out


@register("ce")
class CrossEntropyLoss(_TorchCE):
    """Standard softmax cross-entropy, the "Basic"/ERM rows of Tables I-IV.

    Takes class indices (N,) or class probabilities (N, C), ``weight``, ``ignore_index`` and
    ``label_smoothing`` as ``nn.CrossEntropyLoss``.

    Args:
        weight: per-class weights (C,) >= 0, or None.
        ignore_index: class-index target value to ignore (default -100); None: none.
        label_smoothing: in [0, 1].
        reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (per-sample, shape (N,)).
    """

    def __init__(
        self,
        weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self._init_torch_ce(weight, ignore_index, label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = self._targets(logits, target)
        return self._cross_entropy(logits, target)


def _log_prior(class_counts: Any, num_classes: int | None = None) -> torch.Tensor:
    counts = _as_counts(class_counts, num_classes)
    return torch.log(counts / counts.sum())


def _lam_alias(lam: float, tau: float | None, where: str) -> float:
    """``tau``, the former name of the logit-adjustment scale, as a deprecated alias of ``lam``."""
    if tau is None:
        return lam
    warnings.warn(
        f"{where}: the scale of the adjustment is now called lam (as in la_lpl, where tau is the split "
        "threshold); tau is a deprecated alias",
        DeprecationWarning,
        stacklevel=_caller_stacklevel(),
    )
    if lam != 1.0:
        raise ValueError(f"{where}: give the scale once, as lam (tau is its deprecated alias)")
    return tau


@register("la")
class LogitAdjustedLoss(_TorchCE):
    """Logit-adjusted softmax cross-entropy (Menon et al., 2021), the paper's Eqs. (2)-(4).

    ``loss = CE(u + lam * log(pi), y)`` with ``pi_c = n_c / sum_j n_j`` the training label prior, i.e. the
    class-level perturbation ``delta = lam * log(pi)`` of Eq. (3) (the paper's lambda, Menon et al.'s
    tau; ``la_lpl`` calls it ``lam`` too). The reference takes ``log(pi**lam + 1e-12)``, which differs
    only where ``pi**lam`` nears 1e-12 (iNaturalist's rarest classes with ``lam`` >= 2); the log prior is
    exact here (float64; it enters in the logits' dtype). ``lam = 0`` is plain CE. The paper searches it
    in {0.5, 1, 1.5, 2, 2.5}.

    Args:
        class_counts: training samples per class (all > 0).
        lam: scale of the adjustment, >= 0 (default 1.0, the reference default).
        num_classes: optional, checked against ``len(class_counts)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        tau: deprecated alias of ``lam``.
        weight, ignore_index, label_smoothing: as ``nn.CrossEntropyLoss`` (class indices or probability
            targets are accepted as there).
    """

    _repr_fields = ("lam",)

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        lam: float = 1.0,
        num_classes: int | None = None,
        reduction: str = "mean",
        tau: float | None = None,
        weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = -100,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        lam = _lam_alias(lam, tau, "la")
        self.lam = check_float("tau" if tau is not None else "lam", lam, low=0.0)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("log_prior", _log_prior(class_counts, num_classes))
        self.num_classes = self.log_prior.numel()
        self._init_torch_ce(weight, ignore_index, label_smoothing)

    @property
    def tau(self) -> float:
        """Deprecated name of :attr:`lam`."""
        return self.lam

    def adjusted_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The perturbed logits ``u + lam * log(pi)`` (Eq. 3)."""
        logits = _check_logits(logits)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[1]} columns, expected {self.num_classes}")
        return logits + self.lam * self.log_prior.to(logits.dtype)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # half-precision logits (autocast) are adjusted and scored in float32, as la_lpl does: log(pi)
        # added in bfloat16 moved the loss by up to 0.05 per sample
        if isinstance(logits, torch.Tensor):
            logits = _work_dtype(logits)
        logits, target = self._targets(logits, target)
        return self._cross_entropy(self.adjusted_logits(logits), target)


def logit_adjust_posthoc(
    logits: torch.Tensor,
    class_counts: Sequence[float] | torch.Tensor,
    lam: float = 1.0,
    tau: float | None = None,
) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al., 2021): ``u - lam * log(pi)`` for a model trained with CE.

    Predict with ``argmax`` of the returned logits. ``lam`` >= 0 (``tau`` is its deprecated alias); the
    reference sweeps {0.25, 0.5, 0.75, 1, 1.5, 2}. This is the opposite sign of the training-time
    perturbation of Eq. (3).
    """
    lam = _lam_alias(lam, tau, "logit_adjust_posthoc")
    logits = _check_logits(logits)
    lam = check_float("tau" if tau is not None else "lam", lam, low=0.0)
    log_prior = _log_prior(class_counts, logits.shape[1]).to(logits.device, logits.dtype)
    return logits - lam * log_prior


# --------------------------------------------------------------------------------------------------
# class-balanced weights (Cui et al., CVPR 2019) and the DRW schedule (Cao et al., NeurIPS 2019)
# --------------------------------------------------------------------------------------------------


def class_balanced_weights(
    class_counts: Sequence[float] | torch.Tensor, beta: float
) -> torch.Tensor:
    """Class-balanced weights from the effective number of samples (Cui et al., 2019).

    ``w_c = (1 - beta) / (1 - beta ** n_c)``, normalised so that ``sum_c w_c = C`` (as the reference does,
    to keep the loss on the scale of the unweighted one). ``beta`` in (0, 1); as ``beta -> 1`` the weights
    tend to ``C * (1/n_c) / sum_j (1/n_j)`` (inverse frequency), as ``beta -> 0`` to all ones.
    Computed and returned in float64, shape (C,).
    """
    beta = check_float("beta", beta, low=0.0, high=1.0, low_open=True, high_open=True)
    counts = _as_counts(class_counts)
    # 1 - beta**n computed as -expm1(n * log(beta)) to keep precision for beta close to 1.
    effective = -torch.expm1(counts * math.log(beta))
    w = -math.expm1(math.log(beta)) / effective
    return w * counts.numel() / w.sum()


def check_drw_beta(value: Any) -> float:
    """A loss's ``drw_beta``, checked with or without ``drw_epoch``: a bad value is refused, not dropped."""
    return check_float("drw_beta", value, low=0.0, high=1.0, low_open=True, high_open=True)


class DRWSchedule:
    """Deferred re-weighting (LDAM-DRW, Cao et al. 2019): no weights before ``drw_epoch``, class-balanced
    weights with ``beta`` (default 0.9999) from the 0-indexed epoch ``drw_epoch`` on.

    The reference computes ``idx = epoch // 160`` with betas ``[0, 0.9999]``, i.e. all-ones weights for
    epochs 0-159 and class-balanced weights from epoch 160 (of 200). ``drw_epoch = 0`` is the reference's
    "Reweight" rule (class-balanced weights throughout).

    Args:
        class_counts: training samples per class (all > 0).
        drw_epoch: first (0-indexed) epoch with re-weighting, >= 0.
        beta: class-balanced beta in (0, 1).
        beta_name: the name a bad ``beta`` is refused under (a loss passes its own, ``drw_beta``).
    """

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        drw_epoch: int = 160,
        beta: float = 0.9999,
        *,
        beta_name: str = "beta",
    ) -> None:
        self.counts = _as_counts(class_counts)
        self.drw_epoch = check_int("drw_epoch", drw_epoch, minimum=0)
        self.beta = check_float(beta_name, beta, low=0.0, high=1.0, low_open=True, high_open=True)
        self._balanced = class_balanced_weights(self.counts, self.beta)

    def weights(self, epoch: int) -> torch.Tensor:
        """Per-class weights (float64, shape (C,)) for the 0-indexed ``epoch``."""
        check_int("epoch", epoch, minimum=0)
        if epoch >= self.drw_epoch:
            return self._balanced.clone()
        return torch.ones_like(self._balanced)


def ldam_margins(class_counts: Sequence[float] | torch.Tensor, max_m: float = 0.5) -> torch.Tensor:
    """LDAM margins ``m_c = K * n_c^(-1/4)`` with ``K`` such that ``max_c m_c = max_m`` (Eq. 8's
    ``C * pi_k^(-1/4)``; priors and counts differ by a constant absorbed in ``K``). Float64, shape (C,);
    ``max_m = 0`` gives no margin (an ablation)."""
    max_m = check_float("max_m", max_m, low=0.0)
    counts = _as_counts(class_counts)
    m = counts.pow(-0.25)
    return m * (max_m / m.max())


@register("ldam")
class LDAMLoss(_DRWWeightState, _ReprMixin, nn.Module):
    """Label-distribution-aware margin loss (Cao et al., 2019), the paper's Eqs. (8)-(9), with optional DRW.

    ``loss_i = w_{y_i} * CE(s * (u_i - m_{y_i} e_{y_i}), y_i)``: the true-class logit is lowered by its margin
    ``m_y`` (see :func:`ldam_margins`) and ``s`` scales the margin-adjusted logits. Train it with the cosine
    head :class:`lpl_train.models.heads.NormedLinear` (models built with ``use_norm=True``), whose logits lie
    in [-1, 1]; ``s`` is then the inverse temperature.

    The weights ``w`` are all ones unless ``drw_epoch`` is given; then the epoch hook
    ``loss.set_epoch(epoch, total_epochs)`` switches to class-balanced weights (``drw_beta``) from that
    0-indexed epoch (see :class:`DRWSchedule`). The engine calls it at the start of each epoch; in your own
    loop call it yourself, or DRW never starts (a warning says so at the first training step without it).
    As in the reference (``F.cross_entropy(weight=w)``), the ``"mean"`` reduction is the weighted mean
    ``sum_i w_{y_i} l_i / sum_i w_{y_i}``; ``"none"`` returns ``w_{y_i} l_i``.

    The first training-mode call warns if the logits are evidently not cosines (some ``|u| > 1``): on raw
    logits ``s`` blows the loss up (hundreds); use ``NormedLinear`` from ``lpl_train.models.heads`` as the
    classifier.

    Args:
        class_counts: training samples per class (all > 0).
        max_m: largest margin, >= 0 (default 0.5; the LDAM authors use 0.3 on iNaturalist; 0 leaves the
            scaled cosine-head cross-entropy, with DRW if ``drw_epoch`` is given).
        s: logit scale, > 0 (default 30).
        drw_epoch: 0-indexed epoch at which DRW switches re-weighting on; ``None`` (default) = never.
        drw_beta: class-balanced beta for DRW, in (0, 1) (default 0.9999).
        num_classes: optional, checked against ``len(class_counts)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        max_m: float = 0.5,
        s: float = 30.0,
        drw_epoch: int | None = None,
        drw_beta: float = 0.9999,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        counts = _as_counts(class_counts, num_classes)
        self.s = check_float("s", s, low=0.0, low_open=True)
        self.max_m = check_float("max_m", max_m, low=0.0)
        self.reduction = _check_reduction(reduction)
        drw_beta = check_drw_beta(drw_beta)
        self.schedule = (
            None
            if drw_epoch is None
            else DRWSchedule(counts, drw_epoch, drw_beta, beta_name="drw_beta")
        )
        self.drw_epoch = drw_epoch
        self.drw_beta = None if self.schedule is None else self.schedule.beta
        self.num_classes = counts.numel()
        self.register_buffer("margins", ldam_margins(counts, self.max_m))
        self.register_buffer("weight", torch.ones(self.num_classes, dtype=torch.float64))
        self._epoch_seen = False
        self._logits_checked = False

    _repr_fields = ("max_m", "s", "drw_epoch", "drw_beta")

    #: :meth:`set_epoch` only rewrites the ``weight`` buffer in place, which a recorded CUDA graph reads at
    #: every replay: the engine's captured step is recorded once per run (``engine.capture.records_once``).
    epoch_state_in_buffers = True

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Epoch hook: apply the DRW weights of the 0-indexed ``epoch`` (no-op without ``drw_epoch``).
        Call it at the start of every epoch."""
        epoch, _ = _check_epoch(epoch, total_epochs)
        self._epoch_seen = True
        if self.schedule is not None:
            self.weight.copy_(self.schedule.weights(epoch))

    def _warn_plug_in(self, logits: torch.Tensor) -> None:
        """Once, in training mode: DRW configured but no epoch hook; logits that are not cosines."""
        if self.schedule is not None and not self._epoch_seen:
            self._epoch_seen = True
            warnings.warn(
                f"ldam: drw_epoch={self.drw_epoch} is set but set_epoch(epoch, total_epochs) was never "
                "called, so the DRW weights stay at 1; call loss.set_epoch at the start of every epoch",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        if not self._logits_checked:
            self._logits_checked = True
            top = float(logits.detach().abs().max()) if logits.numel() else 0.0
            if top > 1.0 + 1e-3:
                warnings.warn(
                    f"ldam expects cosine logits in [-1, 1] (the NormedLinear head of "
                    f"lpl_train.models.heads), got |logit| up to {top:.3g}; s={self.s} scales them",
                    UserWarning,
                    stacklevel=_caller_stacklevel(),
                )

    def margin_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The perturbed, scaled logits ``s * (u - m_y e_y)`` (Eq. 9 before the scale)."""
        logits, target = _check_pair(logits, target, self.num_classes)
        margin = self.margins.to(logits.dtype)[target]
        shifted = logits - F.one_hot(target, self.num_classes).to(logits.dtype) * margin[:, None]
        return self.s * shifted

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_pair(logits, target, self.num_classes)
        if self.training and P._can_read_back(logits):
            self._warn_plug_in(logits)
        z = self.margin_logits(logits, target)
        w = self.weight.to(z.dtype)
        per = F.cross_entropy(z, target, reduction="none") * w[target]
        if self.reduction == "none":
            return per
        if self.reduction == "sum":
            return per.sum()
        return per.sum() / w[target].sum()


# --------------------------------------------------------------------------------------------------
# focal and class-balanced losses
# --------------------------------------------------------------------------------------------------


def _softmax_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample ``-(1 - p_y)^gamma log p_y`` (Lin et al., 2017) with ``p`` the softmax."""
    logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    if gamma == 0.0:
        return -logp
    return -_focal_power((-torch.expm1(logp)).clamp_min(0.0), gamma) * logp


def _sigmoid_focal_onehot(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample ``sum_c (1 - p_t)^gamma BCE(u_c, onehot_c)`` (the class-balanced reference's focal).

    Both factors from ``log(1 + e^x)`` by ``torch.logaddexp(0, x)``, exact to rounding at every logit: the
    BCE is ``log(1 + e^(±u))`` and ``log(1 - p_t)`` is ``-log(1 + e^(∓u))`` (``F.softplus`` is linear above
    20 and ``binary_cross_entropy_with_logits`` takes ``log`` of ``1 + e^-|u|``, which loses a confident
    term's digits; their float64 error reached 1e-11 and 3e-5 relative)."""
    onehot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
    signed = (1 - 2 * onehot) * logits  # u for the other classes, -u for the target's
    zero = logits.new_zeros(())
    bce = torch.logaddexp(zero, signed)
    if gamma != 0.0:
        bce = torch.exp(-gamma * torch.logaddexp(zero, -signed)) * bce
    return bce.sum(dim=1)


@register("focal")
class FocalLoss(_ReprMixin, nn.Module):
    """Softmax focal loss (Lin et al., 2017): ``-(1 - p_y)^gamma log p_y``, the "Focal Loss" rows.

    ``gamma = 0`` is CE. Default ``gamma = 1.0``, the value the LDAM-DRW and class-balanced CIFAR-LT scripts
    use (Lin et al. recommend 2 for detection). Unweighted; see ``cb_focal`` for the class-balanced one.

    Args:
        gamma: focusing parameter, >= 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    _repr_fields = ("gamma",)

    def __init__(self, gamma: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.gamma = check_float("gamma", gamma, low=0.0)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_pair(logits, target)
        return _reduce(_softmax_focal(logits, target, self.gamma), self.reduction)


_VARIANTS = ("softmax", "sigmoid")


class _ClassBalancedBase(_ReprMixin, nn.Module):
    _repr_fields = ("beta", "gamma", "variant")

    def __init__(
        self,
        class_counts: Any,
        beta: float,
        gamma: float,
        variant: str,
        num_classes: int | None,
        reduction: str,
    ) -> None:
        super().__init__()
        counts = _as_counts(class_counts, num_classes)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, low_open=True, high_open=True)
        self.gamma = check_float("gamma", gamma, low=0.0)
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.reduction = _check_reduction(reduction)
        self.num_classes = counts.numel()
        self.register_buffer("weight", class_balanced_weights(counts, self.beta))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_pair(logits, target, self.num_classes)
        if self.variant == "softmax":
            per = _softmax_focal(logits, target, self.gamma)
        else:
            per = _sigmoid_focal_onehot(logits, target, self.gamma)
        # The reference divides the weighted sum by the number of samples (TF1 "sum by non-zero
        # weights" for softmax, "sum / number of positives" for sigmoid): a plain batch mean.
        return _reduce(per * self.weight.to(per.dtype)[target], self.reduction)


@register("cb_ce")
class ClassBalancedCELoss(_ClassBalancedBase):
    """Class-balanced cross-entropy (Cui et al., 2019), the "Class-balanced CE loss" rows of Tables III-VI.

    ``loss_i = w_{y_i} * CE_i`` with ``w`` from :func:`class_balanced_weights` (sum to C). ``variant``:
    ``"softmax"`` (default) uses the softmax CE; ``"sigmoid"`` uses the sum over classes of the binary CE
    on the one-hot target, weighted by ``w_{y_i}`` on every class, as in the reference. The ``"mean"``
    reduction divides by the batch size (the reference's normalisation), not by ``sum w``.
    For the sigmoid variant the reference initialises the last bias to ``-log(C - 1)``.

    Args:
        class_counts: training samples per class (all > 0).
        beta: in (0, 1), default 0.9999 (the reference's CIFAR scripts).
        variant: ``"softmax"`` or ``"sigmoid"``.
        num_classes: optional, checked against ``len(class_counts)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        beta: float = 0.9999,
        variant: str = "softmax",
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, beta, 0.0, variant, num_classes, reduction)


@register("cb_focal")
class ClassBalancedFocalLoss(_ClassBalancedBase):
    """Class-balanced focal loss (Cui et al., 2019), the "Class-balanced focal loss" rows.

    ``variant="sigmoid"`` (default, the reference's focal): ``w_{y_i} sum_c (1 - p_t)^gamma BCE(u_c, y_c)``
    with ``p_t`` the sigmoid probability of the correct binary label. ``variant="softmax"``:
    ``w_{y_i} (1 - p_y)^gamma CE_i`` with ``p_y`` from the unweighted softmax (the LDAM repository computes
    ``p`` from the already-weighted CE, which distorts it; that is not reproduced). ``gamma = 0`` gives
    ``cb_ce`` of the same variant. Reduction ``"mean"`` divides by the batch size.

    Args:
        class_counts: training samples per class (all > 0).
        beta: in (0, 1), default 0.9999.
        gamma: >= 0, default 1.0 (the reference's scripts).
        variant: ``"sigmoid"`` or ``"softmax"``.
        num_classes: optional, checked against ``len(class_counts)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        beta: float = 0.9999,
        gamma: float = 1.0,
        variant: str = "sigmoid",
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, beta, gamma, variant, num_classes, reduction)
