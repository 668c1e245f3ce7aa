"""Single-label baselines on the penultimate features (Tables I-IV): ISDA (the paper's Eqs. 5-7),
large-margin softmax and center loss.

Each sets ``needs_features = True`` and is called as ``loss(features, target, classifier)`` with
``features`` (N, F), ``target`` (N,) class indices and ``classifier`` the model's ``nn.Linear`` head.
State whose size depends on F (ISDA's covariances, the class centers) is allocated on the first call
when ``feature_dim`` is not given, and survives save/load (``_LazyFeatureState``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_float, check_int
from ._common import (
    _caller_stacklevel,
    _check_classifier,
    _check_epoch,
    _check_reduction,
    _check_target,
    _process_group_up,
    _reduce,
    _ReprMixin,
    _work_dtype,
)
from .registry import register

__all__ = ["CenterLoss", "ISDALoss", "LargeMarginSoftmaxLoss"]


# --------------------------------------------------------------------------------------------------
# feature-level losses: lazily sized state that survives save/load
# --------------------------------------------------------------------------------------------------


def _sum_over_processes(*tensors: torch.Tensor) -> None:
    """Sum ``tensors`` in place over the processes of a running DDP job (nothing in one process), so that a
    loss's running statistics fold in the global batch on every rank rather than rank 0's share alone
    (DDP broadcasts rank 0's buffers at every forward). Every rank calls it at the same point of its
    forward, as DDP's own collectives require."""
    if not _process_group_up() or torch.distributed.get_world_size() < 2:
        return
    for t in tensors:
        torch.distributed.all_reduce(t)


class _LazyFeatureState(nn.Module):
    """Buffers whose last dimensions depend on the feature size, allocated on the first call when the
    feature size is not given; loading a state dict into a not-yet-allocated loss takes the saved feature
    size when the saved buffers are shaped as this loss would allocate them (its classes, ISDA's full or
    diagonal covariance); any other shape is a size-mismatch error, as for any module."""

    _lazy_buffers: tuple[str, ...] = ()

    def _buffer_shape(self, name: str, feature_dim: int) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def _allocate(
        self,
        feature_dim: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        for name in self._lazy_buffers:
            old = getattr(self, name)
            setattr(
                self,
                name,
                torch.zeros(
                    self._buffer_shape(name, feature_dim),
                    dtype=dtype or old.dtype,
                    device=device or old.device,
                ),
            )
        self.feature_dim = feature_dim

    def _ensure(self, features: torch.Tensor) -> None:
        a = features.shape[1]
        want = torch.promote_types(features.dtype, torch.float32)
        if self.feature_dim is None:  # statistics in float64 for float64 features, else float32
            self._allocate(a, features.device, want)
        elif a != self.feature_dim:
            raise ValueError(
                f"features have {a} columns but the loss holds state for {self.feature_dim}"
            )
        else:  # allocated at construction (feature_dim given) or loaded: widen, never narrow
            self._widen(want)

    def _widen(self, dtype: torch.dtype) -> None:
        """Cast the floating state up to ``dtype`` where that is wider (lossless): float64 features keep
        float64 statistics whether the state was allocated lazily, at construction or by a load."""
        for name in self._lazy_buffers:
            buf = getattr(self, name)
            wide = torch.promote_types(buf.dtype, dtype)
            if buf.is_floating_point() and wide != buf.dtype:
                setattr(self, name, buf.to(wide))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for name in self._lazy_buffers:
            saved = state_dict.get(prefix + name)
            cur = getattr(self, name)
            if (
                saved is not None
                and cur.numel() == 0
                and saved.dim() >= 1
                and saved.shape != cur.shape
                # the shape this loss itself would allocate for that feature size (its number of classes,
                # ISDA's full or diagonal covariance): another one is a size mismatch, as for any module
                and tuple(saved.shape) == tuple(self._buffer_shape(name, int(saved.shape[-1])))
            ):
                dtype = cur.dtype
                if saved.is_floating_point() and cur.is_floating_point():  # float64 stays float64
                    dtype = torch.promote_types(cur.dtype, saved.dtype)
                setattr(self, name, torch.zeros(saved.shape, dtype=dtype, device=cur.device))
                if name == self._lazy_buffers[0]:
                    self.feature_dim = int(saved.shape[-1])
            elif (
                saved is not None
                and saved.shape == cur.shape
                and saved.is_floating_point()
                and cur.is_floating_point()
                and torch.promote_types(cur.dtype, saved.dtype) != cur.dtype
            ):
                # allocated at construction (float32): a wider saved state is not rounded on load
                setattr(self, name, cur.to(torch.promote_types(cur.dtype, saved.dtype)))
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

    def get_extra_state(self) -> dict[str, float]:
        """λ of the last :meth:`set_epoch` travels with the statistics in the state dict."""
        return {"lam": float(self.lam)}

    def set_extra_state(self, state: Any) -> None:
        lam = state.get("lam") if isinstance(state, dict) else None
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
            raise ValueError(f"ISDA state: 'lam' must be a finite number, got {state!r}")
        self.lam = float(lam)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # a state dict saved before λ was part of it: λ stays as it is (the engine sets it every epoch)
        missing = args[2] if len(args) > 2 else kwargs.get("missing_keys")
        key = prefix + "_extra_state"
        if key not in state_dict and missing is not None and key in missing:
            missing.remove(key)

    @torch.no_grad()
    def update(self, features: torch.Tensor, target: torch.Tensor) -> None:
        """Fold a batch of (detached) features into the per-class mean and covariance."""
        features, target = _check_features(features, target, self.num_classes)
        self._ensure(features)
        x = features.detach().to(self.mean.dtype)
        c, a = self.num_classes, x.shape[1]
        m = torch.bincount(target, minlength=c).to(x.dtype)
        sums = torch.zeros(c, a, dtype=x.dtype, device=x.device).index_add_(0, target, x)
        _sum_over_processes(m, sums)  # under DDP: the statistics of the global batch, on every rank
        denom = m.clamp_min(1.0)  # classes absent from the batch get zero sums and weight 0 below
        mu_b = sums / denom[:, None]
        xc = x - mu_b[target]
        if self.diagonal:
            cov_b = torch.zeros(c, a, dtype=x.dtype, device=x.device).index_add_(0, target, xc * xc)
            _sum_over_processes(cov_b)
            cov_b = cov_b / denom[:, None]
        else:
            outer = xc[:, :, None] * xc[:, None, :]
            cov_b = torch.zeros(c, a, a, dtype=x.dtype, device=x.device).index_add_(
                0, target, outer
            )
            _sum_over_processes(cov_b)
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
        classifier = _check_classifier(classifier, features.shape[1], self.num_classes)
        self._ensure(features)
        features = _upcast(features, classifier)
        # under autocast the head's logits come in half precision: augmented in float32, as LA adjusts them
        logits = _work_dtype(classifier(features))
        if self.lam == 0.0:
            return logits
        q = self._quadratic(classifier.weight.to(logits.dtype), target)
        return logits + 0.5 * self.lam * q

    def forward(
        self, features: torch.Tensor, target: torch.Tensor, classifier: nn.Linear
    ) -> torch.Tensor:
        if self.training:
            # a classifier the call refuses is refused before the batch enters the statistics
            features, target = _check_features(features, target, self.num_classes)
            _check_classifier(classifier, features.shape[1], self.num_classes)
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
        self._bias_checked = False

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
        # half-precision features meet the classifier in its dtype, as in ISDA and the center loss
        features = _upcast(features, classifier)
        weight = classifier.weight.to(features.dtype)
        # under autocast the product comes in half precision while the norms below come in float32: the
        # logits are scored in float32 (as every loss of logits), so the margin logit can be put back in
        logits = _work_dtype(features @ weight.T)
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
            if not self._bias_checked:
                self._bias_checked = True
                if classifier.bias is not None and classifier.bias.requires_grad:
                    warnings.warn(
                        "large_margin: the classifier has a bias, which L-Softmax's logits leave out, "
                        "so this loss never trains it, yet the model adds it when it predicts; build "
                        "the head without one (build_model(..., classifier_bias=False), in a config "
                        "model.params.classifier_bias = false)",
                        UserWarning,
                        stacklevel=_caller_stacklevel(),
                    )
        return F.cross_entropy(z, target.long(), reduction=self.reduction)


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
        _sum_over_processes(m, sums)  # under DDP: the global batch's counts and sums
        delta = (m[:, None] * self.centers - sums) / (1.0 + m[:, None])
        self.centers.sub_(self.alpha * delta)

    def forward(
        self, features: torch.Tensor, target: torch.Tensor, classifier: nn.Linear
    ) -> torch.Tensor:
        features, target = _check_features(features, target, self.num_classes)
        classifier = _check_classifier(classifier, features.shape[1], self.num_classes)
        self._ensure(features)
        features = _upcast(features, classifier)
        ce = F.cross_entropy(classifier(features), target, reduction="none")
        centers = self.centers.to(features.dtype)[target]
        per = ce + 0.5 * self.weight * (features - centers).pow(2).sum(dim=1)
        if self.training:
            self.update(features, target)
        return _reduce(per, self.reduction)
