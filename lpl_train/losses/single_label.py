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
from .registry import register


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


class _ReprMixin:
    """``extra_repr`` from the hyper-parameters named in ``_repr_fields`` (as the LPL losses show theirs)."""

    _repr_fields: tuple[str, ...] = ()
    #: Multi-label losses (elementwise (N, C) on multi-hot targets) set this to True.
    multi_label: bool = False

    def extra_repr(self) -> str:
        parts = []
        for name in (*self._repr_fields, "reduction"):
            if hasattr(self, name):
                value = getattr(self, name)
                parts.append(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}")
        return ", ".join(parts)


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

REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------------
# validation helpers (shared with multi_label.py)
# --------------------------------------------------------------------------------------------------


def _check_reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _is_bool_dtype(value: Any) -> bool:
    """A NumPy boolean array or scalar (counts must be numbers, not flags)."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and getattr(dtype, "kind", None) == "b"


def _as_counts(
    class_counts: Any,
    num_classes: int | None = None,
    *,
    name: str = "class_counts",
    allow_zero: bool = False,
) -> torch.Tensor:
    """Validate per-class counts and return them as a float64 tensor of shape (C,)."""
    if class_counts is None:
        raise ValueError(f"{name} is required (one positive count per class), got None")
    if isinstance(class_counts, torch.Tensor):
        if class_counts.dtype == torch.bool or class_counts.is_complex():
            raise TypeError(f"{name} must hold numbers, got dtype {class_counts.dtype}")
        counts = class_counts.detach().to("cpu", torch.float64)
    else:
        if _is_bool_dtype(class_counts) or isinstance(class_counts, str | bytes):
            raise TypeError(f"{name} must be a sequence of numbers, got {class_counts!r}")
        try:
            values = list(class_counts)
        except TypeError as exc:
            raise TypeError(
                f"{name} must be a sequence of numbers, got {type(class_counts).__name__}"
            ) from exc
        if any(isinstance(v, bool) or _is_bool_dtype(v) for v in values):
            raise TypeError(f"{name} must hold numbers, not bools, got {values!r}")
        try:
            counts = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be a sequence of numbers, got {type(class_counts).__name__}"
            ) from exc
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            f"{name} must be 1-D with at least 2 classes, got shape {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all():
        raise ValueError(f"{name} must be finite, got {counts.tolist()}")
    bad = torch.nonzero(counts < 0 if allow_zero else counts <= 0).flatten()[:5].tolist()
    if bad:
        shown = ", ".join(f"{name}[{i}]={counts[i].item():g}" for i in bad)
        rule = ">= 0" if allow_zero else "> 0 for every class (they are divided by or logged)"
        raise ValueError(f"{name} must be {rule}, got {shown}")
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=2)
        if counts.numel() != num_classes:
            raise ValueError(
                f"{name} has {counts.numel()} entries but num_classes is {num_classes}; "
                "give one count per class"
            )
    return counts


def _check_logits(logits: Any, name: str = "logits") -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, C) with C >= 2, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    return logits


def _check_target(
    target: Any, n: int, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(
            f"target must be a torch.Tensor of class indices, got {type(target).__name__}"
        )
    if target.dim() != 1 or target.shape[0] != n:
        raise ValueError(
            f"target must have shape ({n},) (one class index per row), got {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"target must be an integer tensor of class indices, got dtype {target.dtype}"
        )
    if n > 0 and not _compiling():
        t = target
        if ignore_index is not None:
            t = torch.where(t == ignore_index, torch.zeros_like(t), t)
        lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one device read
        if lo < 0 or hi >= num_classes:
            extra = f" (or ignore_index={ignore_index})" if ignore_index is not None else ""
            raise ValueError(
                f"target must hold class indices in [0, {num_classes - 1}]{extra}, got values in [{lo}, {hi}]"
            )
    return target.long()


def _check_pair(
    logits: Any, target: Any, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = _check_logits(logits)
    c = logits.shape[1]
    if num_classes is not None and c != num_classes:
        raise ValueError(
            f"logits have {c} columns but the loss was built for {num_classes} classes"
        )
    return logits, _check_target(target, logits.shape[0], c)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def _check_epoch(epoch: Any, total_epochs: Any) -> tuple[int, int]:
    check_int("total_epochs", total_epochs, minimum=1)
    check_int("epoch", epoch, minimum=0)
    if epoch > total_epochs:
        raise ValueError(f"epoch must be in [0, total_epochs={total_epochs}], got {epoch}")
    return epoch, total_epochs


def _check_classifier(classifier: Any, feature_dim: int) -> nn.Linear:
    if not isinstance(classifier, nn.Linear):
        raise TypeError(
            f"classifier must be the model's nn.Linear head (weight of shape (C, F)), "
            f"got {type(classifier).__name__}"
        )
    if classifier.in_features != feature_dim:
        raise ValueError(
            f"classifier takes {classifier.in_features} features but features have {feature_dim}"
        )
    return classifier


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
        stacklevel=3,
    )
    if lam != 1.0:
        raise ValueError(f"{where}: give the scale once, as lam (tau is its deprecated alias)")
    return tau


@register("la")
class LogitAdjustedLoss(_TorchCE):
    """Logit-adjusted softmax cross-entropy (Menon et al., 2021), the paper's Eqs. (2)-(4).

    ``loss = CE(u + lam * log(pi), y)`` with ``pi_c = n_c / sum_j n_j`` the training label prior, i.e. the
    class-level perturbation ``delta = lam * log(pi)`` of Eq. (3) (the paper's lambda, Menon et al.'s
    tau; ``la_lpl`` calls it ``lam`` too). The reference adds ``1e-12`` inside the log; with positive
    counts that changes nothing measurable, so the log prior is exact here (float64; it enters in the
    logits' dtype). ``lam = 0`` is plain CE. The paper searches it in {0.5, 1, 1.5, 2, 2.5}.

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
    """

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        drw_epoch: int = 160,
        beta: float = 0.9999,
    ) -> None:
        self.counts = _as_counts(class_counts)
        self.drw_epoch = check_int("drw_epoch", drw_epoch, minimum=0)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, low_open=True, high_open=True)
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
class LDAMLoss(_ReprMixin, nn.Module):
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
        self.schedule = None if drw_epoch is None else DRWSchedule(counts, drw_epoch, drw_beta)
        self.drw_epoch = drw_epoch
        self.drw_beta = None if self.schedule is None else self.schedule.beta
        self.num_classes = counts.numel()
        self.register_buffer("margins", ldam_margins(counts, self.max_m))
        self.register_buffer("weight", torch.ones(self.num_classes, dtype=torch.float64))
        self._epoch_seen = False
        self._logits_checked = False

    _repr_fields = ("max_m", "s", "drw_epoch", "drw_beta")

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
                stacklevel=3,
            )
        if not self._logits_checked:
            self._logits_checked = True
            top = float(logits.detach().abs().max()) if logits.numel() else 0.0
            if top > 1.0 + 1e-3:
                warnings.warn(
                    f"ldam expects cosine logits in [-1, 1] (the NormedLinear head of "
                    f"lpl_train.models.heads), got |logit| up to {top:.3g}; s={self.s} scales them",
                    UserWarning,
                    stacklevel=3,
                )

    def margin_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The perturbed, scaled logits ``s * (u - m_y e_y)`` (Eq. 9 before the scale)."""
        logits, target = _check_pair(logits, target, self.num_classes)
        margin = self.margins.to(logits.dtype)[target]
        shifted = logits - F.one_hot(target, self.num_classes).to(logits.dtype) * margin[:, None]
        return self.s * shifted

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_pair(logits, target, self.num_classes)
        if self.training and not _compiling():
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
    return -((-torch.expm1(logp)).clamp_min(0.0) ** gamma) * logp


def _sigmoid_focal_onehot(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample ``sum_c (1 - p_t)^gamma BCE(u_c, onehot_c)`` (the class-balanced reference's focal)."""
    onehot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    if gamma != 0.0:
        # exp(-gamma * y * z - gamma * log(1 + exp(-z))) == (1 - p_t)^gamma, computed stably.
        bce = torch.exp(-gamma * onehot * logits - gamma * F.softplus(-logits)) * bce
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


# --------------------------------------------------------------------------------------------------
# feature-level losses: lazily sized state that survives save/load
# --------------------------------------------------------------------------------------------------


class _LazyFeatureState(nn.Module):
    """Buffers whose last dimensions depend on the feature size, allocated on the first call when the
    feature size is not given; loading a state dict into a not-yet-allocated loss takes the saved shape
    (an allocated one of another size is a size-mismatch error, as for any module)."""

    _lazy_buffers: tuple[str, ...] = ()

    def _buffer_shape(self, name: str, feature_dim: int) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def _allocate(self, feature_dim: int, device: torch.device | None = None) -> None:
        for name in self._lazy_buffers:
            old = getattr(self, name)
            setattr(
                self,
                name,
                torch.zeros(
                    self._buffer_shape(name, feature_dim),
                    dtype=old.dtype,
                    device=device or old.device,
                ),
            )
        self.feature_dim = feature_dim

    def _ensure(self, features: torch.Tensor) -> None:
        a = features.shape[1]
        if self.feature_dim is None:
            self._allocate(a, features.device)
        elif a != self.feature_dim:
            raise ValueError(
                f"features have {a} columns but the loss holds state for {self.feature_dim}"
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for name in self._lazy_buffers:
            saved = state_dict.get(prefix + name)
            cur = getattr(self, name)
            if saved is not None and cur.numel() == 0 and saved.shape != cur.shape:
                setattr(self, name, torch.zeros(saved.shape, dtype=cur.dtype, device=cur.device))
                if name == self._lazy_buffers[0]:
                    self.feature_dim = int(saved.shape[-1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _upcast(features: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
    """Half-precision features (autocast) meet a float32/float64 classifier in the classifier's dtype."""
    weight = getattr(classifier, "weight", None)
    if (
        features.dtype in (torch.float16, torch.bfloat16)
        and isinstance(weight, torch.Tensor)
        and weight.dtype != features.dtype
    ):
        return features.to(weight.dtype)
    return features


def _check_features(
    features: Any, target: Any, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(
            f"features must be a float tensor of shape (N, F), got {tuple(features.shape)} {features.dtype}"
        )
    return features, _check_target(target, features.shape[0], num_classes)


# --------------------------------------------------------------------------------------------------
# ISDA (Wang et al., NeurIPS 2019)
# --------------------------------------------------------------------------------------------------


@register("isda")
class ISDALoss(_ReprMixin, _LazyFeatureState):
    """Implicit semantic data augmentation (Wang et al., 2019), the paper's Eqs. (5)-(7).

    Called as ``loss(features, target, classifier)`` (``needs_features = True``): ``features`` (N, F) from
    ``model.forward_features``, ``classifier`` the model's ``nn.Linear`` head (weight ``W`` of shape (C, F)).
    The loss is ``CE(u~, y)`` with the augmented logits

        ``u~_c = u_c + (lambda / 2) (w_c - w_y)^T Sigma_y (w_c - w_y)``            (Eqs. 6-7)

    where ``u = classifier(features)`` (bias included in ``u``; the quadratic term uses the weight only)
    and ``Sigma_y`` is the running covariance of class ``y``'s features. ``lambda = lambda0 * epoch / E``
    is set by :meth:`set_epoch` (0-indexed epoch, constant within an epoch; 0 before the first call).

    Covariance estimator (the reference's exact streaming update, on detached features): for each class
    with ``m`` samples in the batch and ``n`` seen before, ``w = m / (n + m)``,
    ``mu <- (1 - w) mu + w mu_b``,
    ``Sigma <- (1 - w) Sigma + w Sigma_b + w (1 - w) (mu - mu_b)(mu - mu_b)^T`` (old ``mu``),
    with ``Sigma_b`` the biased (1/m) batch covariance; ``n += m``. The state starts at zero, with no decay,
    so ``Sigma`` is the biased covariance of all features seen so far. As in the reference, a training-mode
    ``forward`` first updates the statistics with the batch, then augments with the updated ``Sigma``;
    in eval mode (``loss.eval()``) the statistics are frozen. Gradients flow to the features and to ``W``
    (through ``u`` and the quadratic term), not to ``Sigma``.

    Args:
        num_classes: number of classes C.
        lambda0: final augmentation strength, >= 0 (default 0.5; the reference recommends 0.5 or 0.25).
        feature_dim: feature size F; ``None`` (default) = taken from the first batch.
        diagonal: keep only the per-dimension variances (the reference's ImageNet variant, memory C*F
            instead of C*F*F); the quadratic term becomes ``sum_a sigma2_{y,a} (w_{c,a} - w_{y,a})^2``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    "ISDA + Dropout" (Tables I-IV, VI) is this loss with the model's dropout on.
    """

    needs_features = True
    _lazy_buffers = ("covariance", "mean")
    _repr_fields = ("num_classes", "lambda0", "feature_dim", "diagonal")

    def __init__(
        self,
        num_classes: int | None = None,
        lambda0: float = 0.5,
        feature_dim: int | None = None,
        diagonal: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if num_classes is None:
            raise ValueError("num_classes is required (the engine passes it), got None")
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.lambda0 = check_float("lambda0", lambda0, low=0.0)
        if not isinstance(diagonal, bool):
            raise TypeError(f"diagonal must be a bool, got {diagonal!r}")
        self.diagonal = diagonal
        self.reduction = _check_reduction(reduction)
        self.lam = 0.0
        self.feature_dim = None
        self.register_buffer("covariance", torch.zeros(0))
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("count", torch.zeros(self.num_classes, dtype=torch.int64))
        if feature_dim is not None:
            self._allocate(check_int("feature_dim", feature_dim, minimum=1))

    def _buffer_shape(self, name: str, feature_dim: int) -> tuple[int, ...]:
        if name == "mean" or self.diagonal:
            return (self.num_classes, feature_dim)
        return (self.num_classes, feature_dim, feature_dim)

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Epoch hook: ``lambda = lambda0 * epoch / total_epochs`` (0-indexed epoch)."""
        epoch, total_epochs = _check_epoch(epoch, total_epochs)
        self.lam = self.lambda0 * epoch / total_epochs

    @torch.no_grad()
    def update(self, features: torch.Tensor, target: torch.Tensor) -> None:
        """Fold a batch of (detached) features into the per-class mean and covariance."""
        features, target = _check_features(features, target, self.num_classes)
        self._ensure(features)
        x = features.detach().to(self.mean.dtype)
        c, a = self.num_classes, x.shape[1]
        m = torch.bincount(target, minlength=c).to(x.dtype)
        denom = m.clamp_min(1.0)  # classes absent from the batch get zero sums and weight 0 below
        mu_b = (
            torch.zeros(c, a, dtype=x.dtype, device=x.device).index_add_(0, target, x)
            / denom[:, None]
        )
        xc = x - mu_b[target]
        if self.diagonal:
            cov_b = torch.zeros(c, a, dtype=x.dtype, device=x.device).index_add_(0, target, xc * xc)
            cov_b = cov_b / denom[:, None]
        else:
            outer = xc[:, :, None] * xc[:, None, :]
            cov_b = torch.zeros(c, a, a, dtype=x.dtype, device=x.device).index_add_(
                0, target, outer
            )
            cov_b = cov_b / denom[:, None, None]
        n = self.count.to(x.dtype)
        w = m / (n + m).clamp_min(1.0)
        diff = self.mean - mu_b
        if self.diagonal:
            cross = diff * diff
            wv = w[:, None]
        else:
            cross = diff[:, :, None] * diff[:, None, :]
            wv = w[:, None, None]
        self.covariance.mul_(1 - wv).add_(wv * cov_b + wv * (1 - wv) * cross)
        self.mean.mul_(1 - w[:, None]).add_(w[:, None] * mu_b)
        self.count.add_(m.long())

    def _quadratic(self, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, C) rows ``Q[i, c] = (w_c - w_k)^T Sigma_k (w_c - w_k)`` with ``k = target[i]``.

        Computed per class (a (C, C) table, then gathered) when C <= N, else per sample, so the cost is
        ``min(N, C) * C * F`` (diagonal) or ``min(N, C) * C * F^2`` (full)."""
        c = self.num_classes
        per_sample = target.shape[0] < c
        cov = self.covariance.to(weight.dtype)
        if per_sample:
            cov = cov[target]
        w_k = weight[target] if per_sample else weight  # (K, F)
        if self.diagonal:
            w2 = weight * weight
            q = cov @ w2.T - 2 * (cov * w_k) @ weight.T + (cov * w_k * w_k).sum(1, keepdim=True)
            # the true class's own term is exactly zero (w_y - w_y = 0); remove rounding there
            own = target[:, None] if per_sample else torch.arange(c, device=q.device)[:, None]
            q = q.scatter(1, own, 0.0)
        else:
            diff = weight[None, :, :] - w_k[:, None, :]  # (K, C, F): w_c - w_k
            q = torch.einsum("kca,kab,kcb->kc", diff, cov, diff)
        return q if per_sample else q[target]

    def augmented_logits(
        self, features: torch.Tensor, target: torch.Tensor, classifier: nn.Linear
    ) -> torch.Tensor:
        """The ISDA logits ``u~`` of Eq. (6) with the current statistics and lambda (no update)."""
        features, target = _check_features(features, target, self.num_classes)
        classifier = _check_classifier(classifier, features.shape[1])
        if classifier.out_features != self.num_classes:
            raise ValueError(
                f"classifier has {classifier.out_features} outputs, expected {self.num_classes}"
            )
        self._ensure(features)
        features = _upcast(features, classifier)
        logits = classifier(features)
        if self.lam == 0.0:
            return logits
        q = self._quadratic(classifier.weight.to(logits.dtype), target)
        return logits + 0.5 * self.lam * q

    def forward(
        self, features: torch.Tensor, target: torch.Tensor, classifier: nn.Linear
    ) -> torch.Tensor:
        if self.training:
            self.update(features, target)
        aug = self.augmented_logits(features, target, classifier)
        return F.cross_entropy(aug, target.long(), reduction=self.reduction)


# --------------------------------------------------------------------------------------------------
# L-Softmax (Liu et al., ICML 2016)
# --------------------------------------------------------------------------------------------------


def _cos_multiple(cos: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m * theta) as a polynomial in cos(theta) (Chebyshev recurrence)."""
    t_prev, t = torch.ones_like(cos), cos
    if m == 0:
        return t_prev
    for _ in range(m - 1):
        t_prev, t = t, 2 * cos * t - t_prev
    return t


@register("large_margin")
class LargeMarginSoftmaxLoss(_ReprMixin, nn.Module):
    """Large-margin softmax (L-Softmax, Liu et al., 2016), the "Large Margin" rows of Tables I-II.

    Called as ``loss(features, target, classifier)`` (``needs_features = True``). With ``W`` the classifier
    weight (the bias is not used: L-Softmax is defined on ``||w_c|| ||x|| cos(theta_c)``), the true-class
    logit ``||w_y|| ||x|| cos(theta_y)`` is replaced by

        ``(beta * ||w_y|| ||x|| cos(theta_y) + ||w_y|| ||x|| psi(theta_y)) / (1 + beta)``,
        ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta`` in ``[k pi/m, (k+1) pi/m]``,

    and the loss is the CE of these logits. ``beta`` is annealed as in the paper, large at the start and
    decaying: ``beta_t = max(beta_min, beta_base * (1 + beta_gamma * t) ** -beta_power)`` with ``t`` the
    number of training-mode calls so far (kept as a buffer, so a resumed run continues the schedule).
    The defaults (``beta_base=1000, beta_gamma=0.12, beta_power=1, beta_min=0``) are our choice of that
    form; ``margin=1`` is plain CE on bias-free logits.

    Args:
        margin: the integer m >= 1 (default 4).
        beta_base, beta_gamma, beta_power, beta_min: the annealing schedule (all >= 0).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    needs_features = True
    _repr_fields = ("margin", "beta_base", "beta_gamma", "beta_power", "beta_min")

    def __init__(
        self,
        margin: int = 4,
        beta_base: float = 1000.0,
        beta_gamma: float = 0.12,
        beta_power: float = 1.0,
        beta_min: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.margin = check_int("margin", margin, minimum=1)
        self.beta_base = check_float("beta_base", beta_base, low=0.0)
        self.beta_gamma = check_float("beta_gamma", beta_gamma, low=0.0)
        self.beta_power = check_float("beta_power", beta_power, low=0.0)
        self.beta_min = check_float("beta_min", beta_min, low=0.0)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    @property
    def beta(self) -> float:
        """The current annealing weight."""
        t = int(self.step)
        return max(self.beta_min, self.beta_base * (1 + self.beta_gamma * t) ** (-self.beta_power))

    def psi(self, cos: torch.Tensor) -> torch.Tensor:
        """``psi(theta)`` as a function of ``cos(theta)`` (monotone decreasing in theta)."""
        cos = cos.clamp(-1.0, 1.0)
        theta = torch.acos(cos.detach())
        k = torch.floor(self.margin * theta / math.pi).clamp(0, self.margin - 1)
        sign = 1.0 - 2.0 * torch.remainder(k, 2)
        return sign * _cos_multiple(cos, self.margin) - 2.0 * k

    def augmented_logits(
        self, features: torch.Tensor, target: torch.Tensor, classifier: nn.Linear
    ) -> torch.Tensor:
        """The L-Softmax logits (bias-free, true class replaced), with the current ``beta``."""
        if not isinstance(classifier, nn.Linear):
            raise TypeError(f"classifier must be an nn.Linear, got {type(classifier).__name__}")
        features, target = _check_features(features, target, classifier.out_features)
        classifier = _check_classifier(classifier, features.shape[1])
        weight = classifier.weight.to(features.dtype)
        logits = features @ weight.T
        w_norm = weight.norm(dim=1)[target]
        x_norm = features.norm(dim=1)
        scale = w_norm * x_norm
        u_y = logits.gather(1, target[:, None]).squeeze(1)
        cos = u_y / scale.clamp_min(torch.finfo(features.dtype).tiny)
        beta = self.beta
        f_y = (beta * u_y + scale * self.psi(cos)) / (1.0 + beta)
        return logits.scatter(1, target[:, None], f_y[:, None])

    def forward(
        self, features: torch.Tensor, target: torch.Tensor, classifier: nn.Linear
    ) -> torch.Tensor:
        z = self.augmented_logits(features, target, classifier)
        if self.training:
            self.step.add_(1)
        return F.cross_entropy(z, target.long(), reduction=self.reduction)


# --------------------------------------------------------------------------------------------------
# DisturbLabel (Xie et al., CVPR 2016)
# --------------------------------------------------------------------------------------------------


@register("disturb_label")
class DisturbLabelLoss(_ReprMixin, nn.Module):
    """DisturbLabel (Xie et al., 2016), the "Disturb Label" rows of Tables I-II.

    In training mode each sample's label is, with probability ``alpha``, replaced by a label drawn
    uniformly from the C classes (possibly the true one), i.e. drawn from the paper's multinoulli with
    ``p_y = 1 - alpha (C - 1)/C`` and ``alpha / C`` elsewhere; the loss is CE on the disturbed labels.
    In eval mode it is plain CE. The draws come from a CPU generator seeded with ``(seed, t)`` where
    ``t`` counts training-mode calls (a buffer), so runs are reproducible and a resumed run continues.

    Args:
        alpha: noise rate in [0, 1] (default 0.1).
        seed: int seed.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    _repr_fields = ("alpha", "seed")

    def __init__(self, alpha: float = 0.1, seed: int = 0, reduction: str = "mean") -> None:
        super().__init__()
        self.alpha = check_float("alpha", alpha, low=0.0, high=1.0)
        self.seed = check_int("seed", seed, minimum=0)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def disturb(self, target: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The disturbed labels for the current step (does not advance it)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.step))
        n = target.shape[0]
        flip = torch.rand(n, generator=gen) < self.alpha
        new = torch.randint(num_classes, (n,), generator=gen)
        return torch.where(flip.to(target.device), new.to(target.device), target)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_pair(logits, target)
        if self.training:
            target = self.disturb(target, logits.shape[1])
            self.step.add_(1)
        return F.cross_entropy(logits, target, reduction=self.reduction)


# --------------------------------------------------------------------------------------------------
# Center loss (Wen et al., ECCV 2016)
# --------------------------------------------------------------------------------------------------


@register("center")
class CenterLoss(_ReprMixin, _LazyFeatureState):
    """Softmax CE plus center loss (Wen et al., 2016), the "Center Loss" rows of Tables I-II.

    Called as ``loss(features, target, classifier)`` (``needs_features = True``):
    ``loss_i = CE(classifier(x_i), y_i) + (weight / 2) ||x_i - c_{y_i}||^2``.

    The centres ``c`` (C, F) are learned by the paper's own update rule, not by the optimiser: after each
    training-mode call, ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + m_j)`` (Wen et al.,
    Eq. 4, ``m_j`` samples of class j in the batch, on detached features). They are therefore a buffer
    (saved in the state dict and checkpoints), need no optimiser or learning rate of their own, and
    receive no gradient; the gradient of the center term flows to the features only. They start at zero.
    In eval mode they are frozen.

    Args:
        num_classes: number of classes C.
        weight: lambda of the paper, >= 0 (default 0.003, Wen et al.'s face experiments).
        alpha: centre learning rate in [0, 1] (default 0.5, as Wen et al.).
        feature_dim: feature size F; ``None`` (default) = taken from the first batch.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    needs_features = True
    _lazy_buffers = ("centers",)
    _repr_fields = ("num_classes", "weight", "alpha", "feature_dim")

    def __init__(
        self,
        num_classes: int | None = None,
        weight: float = 0.003,
        alpha: float = 0.5,
        feature_dim: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if num_classes is None:
            raise ValueError("num_classes is required (the engine passes it), got None")
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.weight = check_float("weight", weight, low=0.0)
        self.alpha = check_float("alpha", alpha, low=0.0, high=1.0)
        self.reduction = _check_reduction(reduction)
        self.feature_dim = None
        self.register_buffer("centers", torch.zeros(0))
        if feature_dim is not None:
            self._allocate(check_int("feature_dim", feature_dim, minimum=1))

    def _buffer_shape(self, name: str, feature_dim: int) -> tuple[int, ...]:
        return (self.num_classes, feature_dim)

    @torch.no_grad()
    def update(self, features: torch.Tensor, target: torch.Tensor) -> None:
        """One step of the centre update rule (Wen et al., Eq. 4)."""
        features, target = _check_features(features, target, self.num_classes)
        self._ensure(features)
        x = features.detach().to(self.centers.dtype)
        m = torch.bincount(target, minlength=self.num_classes).to(x.dtype)
        sums = torch.zeros_like(self.centers).index_add_(0, target, x)
        delta = (m[:, None] * self.centers - sums) / (1.0 + m[:, None])
        self.centers.sub_(self.alpha * delta)

    def forward(
        self, features: torch.Tensor, target: torch.Tensor, classifier: nn.Linear
    ) -> torch.Tensor:
        features, target = _check_features(features, target, self.num_classes)
        classifier = _check_classifier(classifier, features.shape[1])
        if classifier.out_features != self.num_classes:
            raise ValueError(
                f"classifier has {classifier.out_features} outputs, expected num_classes={self.num_classes}"
            )
        self._ensure(features)
        features = _upcast(features, classifier)
        ce = F.cross_entropy(classifier(features), target, reduction="none")
        centers = self.centers.to(features.dtype)[target]
        per = ce + 0.5 * self.weight * (features - centers).pow(2).sum(dim=1)
        if self.training:
            self.update(features, target)
        return _reduce(per, self.reduction)


# --------------------------------------------------------------------------------------------------
# Lq / generalised cross-entropy (Zhang & Sabuncu, NeurIPS 2018)
# --------------------------------------------------------------------------------------------------


@register("lq")
class GeneralizedCELoss(_ReprMixin, nn.Module):
    """Generalised cross-entropy L_q (Zhang & Sabuncu, 2018), the "Lq Loss" rows of Tables I-II.

    ``loss_i = (1 - p_{y_i}^q) / q`` with ``p`` the softmax. ``q -> 0`` gives CE, ``q = 1`` gives
    ``1 - p_y`` (MAE up to a factor 2). Computed as ``-expm1(q log p) / q`` for accuracy.

    Args:
        q: in (0, 1] (default 0.7, the paper's choice).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    _repr_fields = ("q",)

    def __init__(self, q: float = 0.7, reduction: str = "mean") -> None:
        super().__init__()
        self.q = check_float("q", q, low=0.0, high=1.0, low_open=True)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_pair(logits, target)
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return _reduce(-torch.expm1(self.q * logp) / self.q, self.reduction)
