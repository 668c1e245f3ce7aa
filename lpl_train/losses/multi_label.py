"""Multi-label baselines of Table V (VOC-MLT, COCO-MLT) and Table X (MS-COCO).

Every loss is an ``nn.Module`` with ``forward(logits, target)``: ``logits`` (N, C) float (any real values:
the LPL multi-label wrapper perturbs them before calling these losses) and ``target`` (N, C) multi-hot
(0/1, any dtype). ``reduction``: ``"mean"`` (over all N x C entries, as the Distribution-Balanced reference
does), ``"sum"``, or ``"none"`` (the elementwise (N, C) loss).

The distribution-balanced family (Wu et al., ECCV 2020) is one class, :class:`RebalancedBCELoss` (R-BCE;
timm's ``DistributionBalancedLoss`` is the full DB loss, here :class:`DBLoss`), whose three optional parts
are off unless their parameters are given: the focal term (``focal_gamma``),
negative-tolerant regularisation (NTR, ``neg_scale``/``init_bias``, the paper's Eq. 10) and logit
compensation (LC, the paper's Eq. 12). The registered names fix which parts are on:
``rbce`` (re-balanced weighting only), ``rbce_focal``, ``rbce_ntr``, ``rbce_focal_ntr`` (= DB loss),
``rbce_lc``, ``rbce_focal_lc``. The "RS" (class-aware resampling) of R-BCE is a data sampler:
:class:`lpl_train.samplers.ClassAwareSampler`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..perturbation_checks import _can_read_back
from ..validation import check_float, check_int
from ._common import (
    _as_counts,
    _caller_stacklevel,
    _check_logits,
    _check_reduction,
    _focal_power,
    _reduce,
    _ReprMixin,
    _work_dtype,
)
from .registry import register
from .single_label import class_balanced_weights

__all__ = [
    "BCELoss",
    "ReweightedBCELoss",
    "FocalBCELoss",
    "ClassBalancedFocalBCELoss",
    "RebalancedBCELoss",
    "DistributionBalancedLoss",
    "RBCEFocalLoss",
    "RBCENTRLoss",
    "DBLoss",
    "RBCELCLoss",
    "RBCEFocalLCLoss",
    "rebalanced_weights",
    "ntr_bias",
]


def _check_multilabel(
    logits: Any, target: Any, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = _work_dtype(_check_logits(logits))  # half precision (autocast) is scored in float32
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"logits have {logits.shape[1]} columns but the loss was built for {num_classes} classes"
        )
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a multi-hot torch.Tensor, got {type(target).__name__}")
    if target.shape != logits.shape:
        raise ValueError(
            f"target must be multi-hot with the shape of logits {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if target.dtype.is_complex:
        raise TypeError(f"target must be real 0/1 values, got dtype {target.dtype}")
    t = target.to(logits.dtype)
    if t.numel() and _can_read_back(t) and not ((t == 0) | (t == 1)).all():
        bad = t[(t != 0) & (t != 1)][:3].tolist()
        raise ValueError(f"target must be multi-hot (only 0 and 1), got values such as {bad}")
    return logits, t


def _focal_factor(bce_unweighted: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(1 - p_t)^gamma`` with ``p_t = exp(-bce)``; ``-expm1`` keeps it accurate when ``p_t`` is near 1."""
    return _focal_power((-torch.expm1(-bce_unweighted)).clamp_min(0.0), gamma)


@register("bce")
class BCELoss(_ReprMixin, nn.Module):
    """Binary cross-entropy with logits, the "ERM" row of Table V.

    ``l_{ic} = -y log sigmoid(u) - (1 - y) log(1 - sigmoid(u))``.

    Args:
        reduction: ``"mean"`` (over all N x C entries), ``"sum"`` or ``"none"`` ((N, C)).
    """

    multi_label = True

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_multilabel(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target, reduction=self.reduction)


@register("rw_bce")
class ReweightedBCELoss(_ReprMixin, nn.Module):
    """BCE with per-class re-weighting, the "RW" row of Table V.

    ``l_{ic} = w_c BCE(u_{ic}, y_{ic})`` on positive and negative entries alike, with
    ``w_c ∝ n_c^(-power)`` normalised to ``sum_c w_c = C``. ``power=1`` (default) is inverse frequency,
    ``0.5`` the square-root variant. The Distribution-Balanced release ships no RW config, so this form is
    our reading of "re-weighting by inverse class frequency".

    Args:
        class_counts: positive training images per class (all > 0).
        power: exponent >= 0 (0 = plain BCE).
        num_classes: optional, checked against ``len(class_counts)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    multi_label = True
    _repr_fields = ("num_classes", "power")

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        power: float = 1.0,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        counts = _as_counts(class_counts, num_classes)
        self.power = check_float("power", power, low=0.0)
        self.reduction = _check_reduction(reduction)
        w = counts.pow(-self.power)
        self.register_buffer("weight", w * counts.numel() / w.sum())  # float64
        self.num_classes = counts.numel()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_multilabel(logits, target, self.num_classes)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return _reduce(bce * self.weight.to(bce.dtype), self.reduction)


@register("focal_bce")
class FocalBCELoss(_ReprMixin, nn.Module):
    """Sigmoid focal loss (Lin et al., 2017), the "Focal Loss" row of Table V.

    ``l_{ic} = balance * (1 - p_t)^gamma * BCE(u_{ic}, y_{ic})`` with ``p_t = exp(-BCE)``, the focal term of
    the Distribution-Balanced reference (``gamma = 2``, ``balance = 2``) without its re-weighting.

    Args:
        focal_gamma: >= 0 (default 2.0).
        focal_balance: > 0 constant factor (default 2.0, the reference's ``balance_param``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    multi_label = True
    _repr_fields = ("focal_gamma", "focal_balance")

    def __init__(
        self, focal_gamma: float = 2.0, focal_balance: float = 2.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.focal_gamma = check_float("focal_gamma", focal_gamma, low=0.0)
        self.focal_balance = check_float("focal_balance", focal_balance, low=0.0, low_open=True)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_multilabel(logits, target)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return _reduce(
            self.focal_balance * _focal_factor(bce, self.focal_gamma) * bce, self.reduction
        )


@register("cb_focal_bce")
class ClassBalancedFocalBCELoss(_ReprMixin, nn.Module):
    """Class-balanced sigmoid focal loss (Cui et al., 2019) for multi-label, the "CB-Focal" row of Table V.

    Each image gets one weight, the average of the class-balanced weights (:func:`class_balanced_weights`,
    normalised to sum C) of its positive labels (the reference's ``CB_mode='average_w'``), applied to all
    its C entries. An image with no positive label gets weight 1: unlike R-BCE's ratio (whose limit at an
    empty label set is r = ∞, hence 1 + ``map_alpha`` there), an average over an empty set has no limit,
    and 1 is the mean class weight (the weights sum to C), the weight of an image that favours no class.
    Then the focal term of ``focal_bce``.
    The reference's raw weights ``(1 - beta)/(1 - beta^n)`` may be unnormalised there; normalising only
    rescales the loss by a constant.

    Args:
        class_counts: positive training images per class (all > 0).
        beta: in (0, 1) (default 0.9, the reference's ``CB_beta``).
        focal_gamma: >= 0 (default 2.0).
        focal_balance: > 0 (default 2.0).
        num_classes: optional, checked against ``len(class_counts)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    multi_label = True
    _repr_fields = ("num_classes", "beta", "focal_gamma", "focal_balance")

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        beta: float = 0.9,
        focal_gamma: float = 2.0,
        focal_balance: float = 2.0,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        counts = _as_counts(class_counts, num_classes)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, low_open=True, high_open=True)
        self.focal_gamma = check_float("focal_gamma", focal_gamma, low=0.0)
        self.focal_balance = check_float("focal_balance", focal_balance, low=0.0, low_open=True)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("class_weight", class_balanced_weights(counts, self.beta))
        self.num_classes = counts.numel()

    def sample_weights(self, target: torch.Tensor) -> torch.Tensor:
        """Per-image weight (N, 1): mean class-balanced weight over the positive labels (1 if none), in the
        dtype of ``target`` (float32 for an integer or bool target, as :meth:`RebalancedBCELoss.weights`)."""
        if not target.is_floating_point():
            target = target.to(torch.float32)
        cw = self.class_weight.to(target.dtype)
        npos = target.sum(dim=1, keepdim=True)
        avg = (target * cw).sum(dim=1, keepdim=True) / npos.clamp_min(1.0)
        return torch.where(npos > 0, avg, torch.ones_like(avg))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_multilabel(logits, target, self.num_classes)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        w = self.sample_weights(target)
        loss = self.focal_balance * _focal_factor(bce, self.focal_gamma) * w * bce
        return _reduce(loss, self.reduction)


# --------------------------------------------------------------------------------------------------
# Distribution-balanced family (Wu et al., ECCV 2020) and logit compensation (Guo & Wang, CVPR 2021)
# --------------------------------------------------------------------------------------------------


def rebalanced_weights(
    target: torch.Tensor,
    class_counts: Sequence[float] | torch.Tensor,
    map_alpha: float = 0.1,
    map_beta: float = 10.0,
    map_mu: float = 0.3,
) -> torch.Tensor:
    """Re-balanced weights of the DB loss, shape (N, C), for every entry (positive and negative).

    ``r_{ik} = (1/n_k) / sum_{j in y_i} (1/n_j)`` (class-level over instance-level sampling rate under
    class-aware sampling), then the smoothing map ``w_{ik} = map_alpha + sigmoid(map_beta (r_{ik} - map_mu))``.
    A row with no positive label has instance-level sampling rate 0, so r = ∞ and its weights are the
    formula's limit ``1 + map_alpha`` (as the DB reference and timm compute them; ``map_alpha + 1/2`` at
    ``map_beta = 0``, where the map is flat and the reference would give NaN). ``map_alpha >= 0`` and
    ``map_beta >= 0`` keep every weight positive. Computed in the dtype of ``target`` (float32 for an
    integer target).
    """
    counts = _as_counts(class_counts)
    if (
        not isinstance(target, torch.Tensor)
        or target.dim() != 2
        or target.shape[1] != counts.numel()
    ):
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"target must be a (N, {counts.numel()}) multi-hot tensor, got {shape}")
    alpha = check_float("map_alpha", map_alpha, low=0.0)
    beta = check_float("map_beta", map_beta, low=0.0)
    mu = check_float("map_mu", map_mu)
    dtype = target.dtype if target.is_floating_point() else torch.float32
    return _rebalanced(target.to(dtype), 1.0 / counts, alpha, beta, mu)


def _rebalanced(
    target: torch.Tensor, inv_counts: torch.Tensor, alpha: float, beta: float, mu: float
) -> torch.Tensor:
    inv = inv_counts.to(device=target.device, dtype=target.dtype)
    rate = (target * inv).sum(dim=1, keepdim=True)
    r = inv[None, :] / rate.clamp_min(torch.finfo(target.dtype).tiny)
    w = alpha + torch.sigmoid(beta * (r - mu))
    # r = ∞: the limit alpha + sigmoid(beta·∞), i.e. alpha + 1, or alpha + 1/2 where beta = 0 (the map is flat)
    limit = alpha + (1.0 if beta > 0 else 0.5)
    return torch.where(rate > 0, w, torch.full_like(w, limit))


def ntr_bias(
    class_counts: Sequence[float] | torch.Tensor,
    num_samples: int,
    init_bias: float,
    neg_scale: float,
) -> torch.Tensor:
    """NTR logit shift ``b_k = -(init_bias / neg_scale) log(N / n_k - 1)`` (float64, shape (C,)).

    This is ``-v_k`` of the paper's Eq. (10) with ``psi = init_bias / neg_scale`` (kappa / lambda): the
    reference code divides kappa by lambda, the paper's notation does not show it.
    """
    counts = _as_counts(class_counts)
    n = check_int("num_samples", num_samples, minimum=1)
    kappa = check_float("init_bias", init_bias)
    lam = check_float("neg_scale", neg_scale, low=0.0, low_open=True)
    if (counts >= n).any():
        raise ValueError(
            f"every class count must be < num_samples={n} for log(N/n_k - 1) to be finite, "
            f"got max count {counts.max().item()}"
        )
    return -(kappa / lam) * torch.log(n / counts - 1.0)


@register("rbce")
class RebalancedBCELoss(_ReprMixin, nn.Module):
    """Re-balanced BCE (R-BCE) with optional focal term, NTR (Eq. 10) or logit compensation (Eq. 12).

    With ``w`` the re-balanced weights (:func:`rebalanced_weights`, computed from the target, no gradient)
    and per-class transforms of the logit ``u``:

    * positive entry: ``w * softplus(-z_p)``;  negative entry: ``(w / lambda) * softplus(lambda * z_n)``;
    * plain / NTR: ``z_p = z_n = u + b`` with ``b = -(kappa / lambda) log(N / n_k - 1)`` and
      ``lambda = neg_scale``, ``kappa = init_bias`` (Eq. 10 with ``v = -b``, ``psi = kappa / lambda``;
      ``neg_scale = 1, init_bias = 0`` is plain BCE);
    * LC (``logit_compensation=True``): ``z_p = sigma^p_k u + mu^p_k``, ``z_n = sigma^n_k u + mu^n_k``
      with learnable per-class ``mu`` and ``sigma > 0`` (Eq. 12). No reference code exists; our choices:
      ``mu`` starts at 0 and ``sigma`` at 1 (so training starts from R-BCE), ``sigma = exp(log_sigma)``
      keeps it positive, and at test time the raw logits ``u`` are used (each transform is increasing in
      ``u`` per class, so per-class AP and mAP are the same either way). The engine must give
      ``loss.parameters()`` to the optimiser.
    * focal (``focal_gamma`` given): the entry is multiplied by ``focal_balance * (1 - p_t)^gamma`` with
      ``p_t = exp(-l)`` and ``l`` the *unweighted* loss of the entry on the transformed logits
      (``softplus(-z_p)`` or ``softplus(lambda z_n)``), as in the reference.

    No part is on unless its parameter is given (the reference constructor's defaults silently turn
    focal and NTR on; here they do not). ``reweight=False`` drops the re-balanced weights (all ones).

    Class constants (``1/n_k``, the NTR shift) are kept in float64 and enter in the logits' dtype.

    Args:
        class_counts: positive training images per class, ``n_k`` (all > 0).
        map_alpha, map_beta, map_mu: the smoothing map (VOC 0.1, 10, 0.3; COCO 0.1, 10, 0.2);
            ``map_alpha >= 0``, ``map_beta >= 0``, ``map_mu`` finite.
        focal_gamma: ``None`` (off) or >= 0; focal_balance: > 0 (default 2.0, the reference's).
        neg_scale: NTR lambda > 0 (1 = off). init_bias: NTR kappa (0 = off; needs ``num_samples``).
        num_samples: number of training images N (needed when ``init_bias != 0``).
        logit_compensation: learnable LC transforms (exclusive with NTR).
        reweight: use the re-balanced weights (default True).
        num_classes: optional, checked against ``len(class_counts)``.
        reduction: ``"mean"`` (over N x C entries), ``"sum"`` or ``"none"`` ((N, C)).
    """

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        map_alpha: float = 0.1,
        map_beta: float = 10.0,
        map_mu: float = 0.3,
        focal_gamma: float | None = None,
        focal_balance: float = 2.0,
        neg_scale: float = 1.0,
        init_bias: float = 0.0,
        num_samples: int | None = None,
        logit_compensation: bool = False,
        reweight: bool = True,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        counts = _as_counts(class_counts, num_classes)
        self.num_classes = counts.numel()
        self.map_alpha = check_float("map_alpha", map_alpha, low=0.0)
        self.map_beta = check_float("map_beta", map_beta, low=0.0)
        self.map_mu = check_float("map_mu", map_mu)
        self.focal_gamma = (
            None if focal_gamma is None else check_float("focal_gamma", focal_gamma, low=0.0)
        )
        self.focal_balance = check_float("focal_balance", focal_balance, low=0.0, low_open=True)
        self.neg_scale = check_float("neg_scale", neg_scale, low=0.0, low_open=True)
        self.init_bias = check_float("init_bias", init_bias)
        for name, flag in (("logit_compensation", logit_compensation), ("reweight", reweight)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        self.logit_compensation = logit_compensation
        self.reweight = reweight
        self.reduction = _check_reduction(reduction)
        if logit_compensation and (self.neg_scale != 1.0 or self.init_bias != 0.0):
            raise ValueError(
                "logit_compensation cannot be combined with NTR (neg_scale != 1 or init_bias != 0); "
                f"got neg_scale={self.neg_scale}, init_bias={self.init_bias}"
            )
        if self.init_bias != 0.0:
            if num_samples is None:
                raise ValueError(
                    "num_samples (the number of training images N) is required when init_bias != 0, "
                    "got None"
                )
            bias = ntr_bias(counts, num_samples, self.init_bias, self.neg_scale)
        else:
            bias = torch.zeros(self.num_classes, dtype=torch.float64)
        self.num_samples = num_samples
        self.register_buffer("class_counts", counts)
        self.register_buffer("inv_counts", 1.0 / counts)
        self.register_buffer("bias", bias)
        if logit_compensation:
            self.mu_pos = nn.Parameter(torch.zeros(self.num_classes))
            self.mu_neg = nn.Parameter(torch.zeros(self.num_classes))
            self.log_sigma_pos = nn.Parameter(torch.zeros(self.num_classes))
            self.log_sigma_neg = nn.Parameter(torch.zeros(self.num_classes))

    multi_label = True
    _repr_fields = (
        "num_classes",
        "map_alpha",
        "map_beta",
        "map_mu",
        "focal_gamma",
        "focal_balance",
        "neg_scale",
        "init_bias",
        "num_samples",
        "logit_compensation",
        "reweight",
    )

    @property
    def psi(self) -> float:
        """The paper's Eq. (10) ``psi = init_bias / neg_scale``."""
        return self.init_bias / self.neg_scale

    def weights(self, target: torch.Tensor) -> torch.Tensor:
        """The (N, C) re-balanced weights for ``target`` (ones when ``reweight=False``), in the dtype of
        ``target`` (float32 for an integer or bool target, as :func:`rebalanced_weights`)."""
        if not target.is_floating_point():
            target = target.to(torch.float32)
        if not self.reweight:
            return torch.ones_like(target)
        return _rebalanced(target, self.inv_counts, self.map_alpha, self.map_beta, self.map_mu)

    def transformed_logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_p, z_n)``: the logits seen by the positive and negative terms (NTR shift or LC)."""
        logits = _check_logits(logits)
        if self.logit_compensation:
            zp = torch.exp(self.log_sigma_pos) * logits + self.mu_pos
            zn = torch.exp(self.log_sigma_neg) * logits + self.mu_neg
            return zp.to(logits.dtype), zn.to(logits.dtype)
        z = logits + self.bias.to(logits.dtype)
        return z, z

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_multilabel(logits, target, self.num_classes)
        zp, zn = self.transformed_logits(logits)
        lam = self.neg_scale
        # softplus(-z_p) and softplus(lam z_n) as logaddexp(0, x), exact to rounding at every x: F.softplus is
        # linear above 20 (it drops log1p(e^-20) ~ 2e-9) and binary_cross_entropy_with_logits takes log, not
        # log1p, of 1 + e^-|x| (a confident entry's loss kept few digits)
        zero = zp.new_zeros(())
        pos = torch.logaddexp(zero, -zp)
        neg = torch.logaddexp(zero, lam * zn)
        loss = self.weights(target) * (target * pos + (1 - target) * neg / lam)
        if self.focal_gamma is not None:
            unweighted = target * pos + (1 - target) * neg
            loss = self.focal_balance * _focal_factor(unweighted, self.focal_gamma) * loss
        return _reduce(loss, self.reduction)


@register("rbce_focal")
class RBCEFocalLoss(RebalancedBCELoss):
    """R-BCE-Focal: :class:`RebalancedBCELoss` with the focal term on (gamma 2, balance 2)."""

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        map_alpha: float = 0.1,
        map_beta: float = 10.0,
        map_mu: float = 0.3,
        focal_gamma: float = 2.0,
        focal_balance: float = 2.0,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            class_counts,
            map_alpha,
            map_beta,
            map_mu,
            focal_gamma=focal_gamma,
            focal_balance=focal_balance,
            num_classes=num_classes,
            reduction=reduction,
        )


@register("rbce_ntr")
class RBCENTRLoss(RebalancedBCELoss):
    """R-BCE+NTR: :class:`RebalancedBCELoss` with NTR on. Defaults are the VOC config
    (``neg_scale=5, init_bias=0.05``, psi = 0.01); COCO uses ``neg_scale=2`` (psi = 0.025), ``map_mu=0.2``.
    ``num_samples`` (training images) is required."""

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        num_samples: int | None = None,
        map_alpha: float = 0.1,
        map_beta: float = 10.0,
        map_mu: float = 0.3,
        neg_scale: float = 5.0,
        init_bias: float = 0.05,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            class_counts,
            map_alpha,
            map_beta,
            map_mu,
            neg_scale=neg_scale,
            init_bias=init_bias,
            num_samples=num_samples,
            num_classes=num_classes,
            reduction=reduction,
        )


@register("rbce_focal_ntr")
class DBLoss(RebalancedBCELoss):
    """R-BCE-Focal+NTR, the shipped Distribution-Balanced (DB-Focal) loss: focal and NTR on, VOC defaults."""

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        num_samples: int | None = None,
        map_alpha: float = 0.1,
        map_beta: float = 10.0,
        map_mu: float = 0.3,
        focal_gamma: float = 2.0,
        focal_balance: float = 2.0,
        neg_scale: float = 5.0,
        init_bias: float = 0.05,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            class_counts,
            map_alpha,
            map_beta,
            map_mu,
            focal_gamma=focal_gamma,
            focal_balance=focal_balance,
            neg_scale=neg_scale,
            init_bias=init_bias,
            num_samples=num_samples,
            num_classes=num_classes,
            reduction=reduction,
        )


@register("rbce_lc")
class RBCELCLoss(RebalancedBCELoss):
    """R-BCE+LC: :class:`RebalancedBCELoss` with learnable logit compensation (Eq. 12)."""

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        map_alpha: float = 0.1,
        map_beta: float = 10.0,
        map_mu: float = 0.3,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            class_counts,
            map_alpha,
            map_beta,
            map_mu,
            logit_compensation=True,
            num_classes=num_classes,
            reduction=reduction,
        )


@register("rbce_focal_lc")
class RBCEFocalLCLoss(RebalancedBCELoss):
    """R-BCE-Focal+LC: focal term and learnable logit compensation (Eq. 12)."""

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        map_alpha: float = 0.1,
        map_beta: float = 10.0,
        map_mu: float = 0.3,
        focal_gamma: float = 2.0,
        focal_balance: float = 2.0,
        num_classes: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            class_counts,
            map_alpha,
            map_beta,
            map_mu,
            focal_gamma=focal_gamma,
            focal_balance=focal_balance,
            logit_compensation=True,
            num_classes=num_classes,
            reduction=reduction,
        )


class DistributionBalancedLoss(RebalancedBCELoss):
    """Deprecated name of :class:`RebalancedBCELoss` (R-BCE, registered as ``"rbce"``). timm's
    ``DistributionBalancedLoss`` is the full DB loss, which is :class:`DBLoss` (``"rbce_focal_ntr"``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "DistributionBalancedLoss is renamed RebalancedBCELoss (plain R-BCE; the full DB loss, timm's "
            "DistributionBalancedLoss, is DBLoss)",
            DeprecationWarning,
            stacklevel=_caller_stacklevel(),
        )
        super().__init__(*args, **kwargs)
