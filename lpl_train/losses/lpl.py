"""LPL losses: class-level logit perturbation as a drop-in loss (paper Sec. III-C/D, IV-D).

* :class:`LPLLoss` (``"lpl"``): single-label LPL, Eq. 26 with the split of Eq. 27 (mean or fixed τ on q̄_c)
  or Eq. 29 (class-index τ, long tail), bounds of Eq. 33, δ inferred by Algorithm 1; then cross-entropy
  on the perturbed logits. Optional presets reproduce the authors' released scripts.
* :class:`LALPLLoss` (``"la_lpl"``): logit adjustment then LPL, u + λ·log π + δ (Sec. IV-D); defined in
  :mod:`lpl_train.losses.lpl_la` and re-exported here.
* :class:`MultiLabelLPLLoss` (``"ml_lpl"``): multi-label LPL, Eq. 34 with the closed form δ̃_c = S(c − τ)·ε_c
  (Eqs. 37, 38, 41), wrapped around any elementwise binary loss (plain BCE by default); defined in
  :mod:`lpl_train.losses.lpl_multi_label` and re-exported here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import perturbation as P
from ..perturbation_fused import fused_loop_fallback
from ._common import (
    REDUCTIONS,  # noqa: F401 (re-exported)
    _caller_stacklevel,
    _check_bool,
    _check_epoch,
    _check_reduction,
    _DRWWeightState,
    _empty_batch,
    _work_dtype,
)
from .registry import build_loss, register, supplied_by_builder  # noqa: F401 (build_loss re-exported)
from .single_label import DRWSchedule, check_drw_beta

__all__ = ["PRESETS", "LALPLLoss", "LPLLoss", "MultiLabelLPLLoss"]

#: The authors' scripts each preset reproduces, with that script's defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # lpl-balanced/networks/train.py: mean split, fixed number of steps, no projection.
    "authors_balanced_fixed": {"alpha": 0.005, "steps": 20, "differentiable": False},
    # lpl-balanced/train_lpl.py: K_c in [P, 1.1P] from the initial logits, doubled steps.
    "authors_balanced_varied": {"alpha": 0.01, "steps": 40, "differentiable": False},
    # lpl-balanced/networks/train_var.py: K_c in [0, P-1], doubled steps.
    "authors_balanced_varied_isda": {"alpha": 0.001, "steps": 10, "differentiable": False},
    # lpl-longtail-100/la_lpl_cifar100.py (and lpl-longtail-other): static count schedule, index split.
    "authors_longtail": {"alpha": 0.2, "steps": 50, "head_scale": 0.2, "differentiable": True},
}


def _check_ignore_index(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not P._is_number(value) or int(value) != value:
        raise TypeError(f"ignore_index must be an int or None, got {value!r}")
    return int(value)


def _check_label_smoothing(value: object) -> float:
    if not P._is_number(value):
        raise TypeError(f"label_smoothing must be a number in [0, 1], got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"label_smoothing must lie in [0, 1], got {value!r}")
    return float(value)


def _class_weight(weight: object, num_classes: int) -> Tensor | None:
    """``weight`` as in ``nn.CrossEntropyLoss``: None or C finite numbers >= 0 (kept in float64)."""
    if weight is None:
        return None
    if isinstance(weight, Tensor) and weight.dim() != 1:
        raise ValueError(
            f"weight must be 1-D with num_classes={num_classes} entries, got shape {tuple(weight.shape)}"
        )
    w = P.check_class_counts(weight, num_classes, name="weight")
    return w


def _is_soft(target: object) -> bool:
    """Probability targets: a floating (N, C) tensor (class indices are an integer (N,) tensor)."""
    return isinstance(target, Tensor) and target.dim() == 2 and target.is_floating_point()


# more (sample, class) pairs than this per row on average: dense probability targets, a call costing more
# than this many times the class-index loss (warned once)
_DENSE_PAIRS = 16


def _check_target_kind(target: object) -> None:
    if isinstance(target, Tensor) and target.dim() == 1 and target.is_floating_point():
        raise TypeError(
            f"target must be class indices (an integer tensor (N,)) or class probabilities (a float "
            f"tensor (N, C)), got a float tensor of shape {tuple(target.shape)}"
        )


@register("lpl")
class LPLLoss(_DRWWeightState, nn.Module):
    """Single-label LPL (Eq. 26): cross-entropy on u_i + δ_{y_i}, δ from the PGD-like Algorithm 1.

    Per mini-batch (Algorithm 2): q̄_c of Eq. 28 over the classes present in the batch; the split into
    𝒫_a (maximised, positive augmentation) and 𝒩_a (minimised, negative augmentation); the bounds ε_c of
    Eq. 33; K_c = ⌊ε_c/α⌋ steps of Eq. 31/32 with projection onto ‖δ_c‖₂ ≤ ε_c. Classes absent from the
    batch are not perturbed and do not enter τ; a class exactly at τ is not perturbed.

    Used like ``nn.CrossEntropyLoss``: ``target`` is class indices (N,) (rows equal to ``ignore_index``
    are left out of the class statistics and of the loss) or class probabilities (N, C) (mixup, cutmix,
    smoothed labels): then each (sample, class) pair with target mass y_ic > 0 counts for its class with
    weight y_ic, and the loss of sample i is Σ_c y_ic·CE(u_i + δ_c, c) (``docs/lpl.md``; at one-hot targets
    this is the class-index loss). ``weight`` and ``label_smoothing`` act on the final cross-entropy as in
    torch. In ``eval()`` mode the loss is the unperturbed cross-entropy (for LA+LPL: on u + λ·log π), so
    a validation loss computed with the criterion is the model's loss.

    Args:
        num_classes: C (>= 2).
        class_counts: training samples per class (C,); used by ``split="index"`` (class order),
            ``bound="count"`` and the ``authors_longtail`` preset, and by nothing else (a warning says so
            when given directly without them); kept as a float64 buffer.
        alpha: step size α > 0 (default 0.01, or the preset's; paper grid {0.01, 0.02, 0.03}).
        epsilon: base bound ε >= 0 (Eq. 33; paper grid {0.1, 0.2, 0.3, 0.4} balanced, {1.5, 2.5, 5} LT).
        delta_epsilon: Δε >= 0; 0 gives the fixed bound. (ε + Δε)/α, the loop length, is at most 10 000.
        split: ``"mean"`` (τ = mean q̄_c, Eq. 27), ``"value"`` (fixed τ in [0, 1] on q̄_c) or
            ``"index"`` (Eq. 29; τ = number of head classes as an int, or a fraction of C as a float).
        tau: the split threshold τ: must be None for ``"mean"``, a q̄ value in [0, 1] for ``"value"``, the
            head size for ``"index"`` (None there means 0.4, i.e. 0.4·C, the default of LA+LPL).
        bound: varied-bound schedule for the index split: ``"qbar"`` (second form of Eq. 33) or
            ``"count"`` (from ``class_counts``).
        normalize_step: scale each class step to length α (default True: δ_c keeps moving towards its
            bound ε_c, where Eq. 26's inner max/min lies, ``docs/lpl.md``). False: Algorithm 1 read
            literally, the raw step α·mean_c(softmax − one-hot) of Eqs. 31/32, which fades as the network
            fits (its best bounds differ: they do not transfer between the two).
        differentiable: back-propagate through the inner loop (default: δ is a constant).
        preset: None, or one of :data:`PRESETS` to reproduce the authors' scripts instead.
        steps: preset only: P (balanced) or S (long-tail).
        head_scale: preset ``authors_longtail`` only: the head factor (0.2; 0.6 in the CIFAR-10 script).
        iterations: preset ``authors_longtail`` only: the loop length (the scripts use C).
        weight: per-class weights of the cross-entropy (C,), as ``nn.CrossEntropyLoss(weight=...)``.
        ignore_index: class-index target value to ignore (default -100, as torch); None: no value is.
        label_smoothing: in [0, 1], as ``nn.CrossEntropyLoss(label_smoothing=...)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample loss, shape (N,)); ``"mean"`` is torch's
            (weighted mean over non-ignored rows for class indices, mean over N for probabilities).
        validate: check the inputs on every call (one host synchronisation). The data-dependent part
            of the check is skipped under torch.compile, while a CUDA graph records, on the meta device and
            inside ``no_host_reads()`` (shapes and dtypes are still checked). Without it, class-index
            targets are taken as valid.
        scale: s > 0 (default 1: the logits as given): the loss works on s·u, i.e. δ is inferred on and
            added to s·u, in training and in ``eval()`` mode; for a cosine head (logits in [−1, 1]),
            as ``ldam``'s s (30 there).
        drw_epoch: deferred re-weighting as in ``ldam`` (see :class:`DRWSchedule`): ``None`` (default) =
            never; otherwise the cross-entropy's class weights are 1 until this 0-indexed epoch and
            class-balanced (``drw_beta``) from it, switched by the epoch hook
            ``loss.set_epoch(epoch, total_epochs)`` (the engine calls it). Needs ``class_counts``;
            excludes ``weight``.
        drw_beta: class-balanced beta for DRW, in (0, 1) (default 0.9999).
        fused_loop: run the inner loop as one kernel, one program or thread per class
            (:mod:`lpl_train.perturbation_fused`): on a CUDA device a Triton kernel (one launch instead
            of about ten per step, and no host synchronisation), on the CPU a C++ kernel (built on first
            use, about half a minute once per machine; no operator call per step). Its values agree with
            the default loop's to rounding (the sums are taken in another order; in float32 with a
            fast exp, and on a GPU fast division and square root, a few ulp to 20 ulp each). While
            ``torch.compile`` traces the default loop runs; where the kernel cannot run (a GPU without
            Triton, a CPU without a C++ compiler) it warns once and the default loop runs. Not with
            ``differentiable=True`` or a preset.
    """

    multi_label = False

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[float] | Tensor | None = None,
        alpha: float | None = None,
        epsilon: float = 0.1,
        delta_epsilon: float = 0.0,
        split: str = "mean",
        tau: float | int | None = None,
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
        super().__init__()
        self._dense_warned = False  # probability targets with many pairs per row: warned once
        self._fused_warned = False  # fused_loop=True that fell back to the torch loop: warned once
        self.num_classes = P.check_num_classes(num_classes)
        self.reduction = _check_reduction(reduction)
        self.validate = _check_bool(validate, "validate")
        self.normalize_step = _check_bool(normalize_step, "normalize_step")
        self.ignore_index = _check_ignore_index(ignore_index)
        self.label_smoothing = _check_label_smoothing(label_smoothing)
        self.register_buffer("weight", _class_weight(weight, self.num_classes))
        counts = None
        if class_counts is not None:
            counts = P.check_class_counts(class_counts, self.num_classes)
            self.register_buffer("class_counts", counts)
        else:
            self.class_counts = None
        self.scale = P.check_positive(scale, "scale")
        self._init_drw(counts, drw_epoch, drw_beta, weight)
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"preset must be None or one of {sorted(PRESETS)}, got {preset!r}")
        self.preset = preset
        defaults = PRESETS.get(preset, {}) if preset is not None else {}
        self.alpha = P.check_positive(
            alpha if alpha is not None else defaults.get("alpha", 0.01), "alpha"
        )
        if differentiable is None:
            differentiable = defaults.get("differentiable", False)
        self.differentiable = _check_bool(differentiable, "differentiable")
        self.fused_loop = _check_bool(fused_loop, "fused_loop")
        if self.fused_loop and preset is not None:
            raise ValueError(
                "fused_loop=True runs the paper's inner loop without gradients as one kernel; it "
                f"does not apply to preset {preset!r}"
            )
        if self.fused_loop and self.differentiable:
            raise ValueError(
                "fused_loop=True runs the paper's inner loop without gradients as one kernel; it "
                "excludes differentiable=True"
            )
        if preset is None:
            self._init_paper(
                counts, epsilon, delta_epsilon, split, tau, bound, steps, head_scale, iterations
            )
        else:
            self._init_preset(
                counts,
                epsilon,
                delta_epsilon,
                split,
                tau,
                bound,
                steps,
                head_scale,
                iterations,
                defaults,
            )
        if (
            counts is not None
            and not self._uses_class_counts()
            and "class_counts" not in supplied_by_builder()
        ):
            warnings.warn(
                f"class_counts has no effect with split={self.split!r} and bound={self.bound!r} (it orders "
                "the classes for split='index' and sets bound='count'); it is ignored",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )

    def _init_drw(self, counts, drw_epoch, drw_beta, weight) -> None:
        """Deferred re-weighting as in ``ldam``: the weights start at 1 and :meth:`set_epoch` switches them."""
        self.drw_epoch = drw_epoch
        self.schedule = None
        self.drw_beta = None
        check_drw_beta(drw_beta)
        if drw_epoch is None:
            return
        if weight is not None:
            raise ValueError(
                "weight and drw_epoch exclude each other (DRW sets the class weights); give one of them"
            )
        if counts is None:
            raise ValueError("drw_epoch needs class_counts (the class-balanced weights of DRW)")
        self.schedule = DRWSchedule(counts, drw_epoch, drw_beta, beta_name="drw_beta")
        self.drw_beta = self.schedule.beta
        self.weight = torch.ones(self.num_classes, dtype=torch.float64)
        self._epoch_seen = False

    #: :meth:`set_epoch` only rewrites the ``weight`` buffer in place, which a recorded CUDA graph reads at
    #: every replay: the engine's captured step is recorded once per run (``engine.capture.records_once``).
    epoch_state_in_buffers = True

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Epoch hook: apply the DRW weights of the 0-indexed ``epoch`` (no-op without ``drw_epoch``).
        Call it at the start of every epoch (the training engine does)."""
        epoch, _ = _check_epoch(epoch, total_epochs)
        if self.schedule is not None:
            self._epoch_seen = True
            self.weight.copy_(self.schedule.weights(epoch))

    def _scaled(self, logits: Tensor) -> Tensor:
        """s·u (the logits unchanged at the default ``scale=1``)."""
        return logits if self.scale == 1.0 else logits * self.scale

    def _uses_class_counts(self) -> bool:
        if self.drw_epoch is not None:
            return True
        if self.preset is not None:
            return self.preset == "authors_longtail"
        return self.split == "index" or self.bound == "count"

    # ---------------------------------------------------------------- construction
    def _init_paper(
        self, counts, epsilon, delta_epsilon, split, tau, bound, steps, head_scale, iterations
    ) -> None:
        for name, value in (
            ("steps", steps),
            ("head_scale", head_scale),
            ("iterations", iterations),
        ):
            if value is not None:
                raise ValueError(
                    f"{name} is a preset parameter; it must be None without a preset, got {value!r}"
                )
        self.epsilon = P.check_non_negative(epsilon, "epsilon")
        self.delta_epsilon = P.check_non_negative(delta_epsilon, "delta_epsilon")
        if P.check_step_budget(self.epsilon, self.delta_epsilon, self.alpha) == 0 and (
            self.epsilon + self.delta_epsilon > 0
        ):
            warnings.warn(
                f"alpha={self.alpha!r} exceeds epsilon + delta_epsilon = "
                f"{self.epsilon + self.delta_epsilon!r}: no class takes a step (K_c = ⌊ε_c/α⌋ = 0), so "
                "the loss is plain cross-entropy; alpha is the step length, epsilon the bound",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        if split not in P.SPLITS:
            raise ValueError(f"split must be one of {P.SPLITS}, got {split!r}")
        if bound not in P.BOUNDS:
            raise ValueError(f"bound must be one of {P.BOUNDS}, got {bound!r}")
        self.split, self.bound = split, bound
        self.head: int | None = None
        self.tau: float | None = None
        if split == "mean":
            if tau is not None:
                raise ValueError(
                    f"tau must be None for split='mean' (τ is the batch mean), got {tau!r}"
                )
        elif split == "value":
            if not P._is_number(tau):
                raise TypeError(f"tau must be a number in [0, 1] for split='value', got {tau!r}")
            if not (math.isfinite(tau) and 0.0 <= tau <= 1.0):
                raise ValueError(
                    f"tau must lie in [0, 1] for split='value' (a q̄ threshold), got {tau!r}"
                )
            self.tau = float(tau)
        else:
            if counts is None:
                raise ValueError(
                    "split='index' needs class_counts to order the classes by frequency"
                )
            self.head = P.index_threshold(0.4 if tau is None else tau, self.num_classes)
            self._warn_one_sided(tau)
            self.register_buffer("rank", P.class_rank(counts))
        if bound == "count":
            if split != "index":
                raise ValueError(f"bound='count' needs split='index', got split={split!r}")
            if counts is None or bool((counts <= 0).any()):
                raise ValueError("bound='count' needs class_counts > 0 for every class")
            if self.delta_epsilon == 0.0:
                warnings.warn(
                    "bound='count' has no effect with delta_epsilon=0 (the bound is the fixed epsilon)",
                    UserWarning,
                    stacklevel=_caller_stacklevel(),
                )
            self.register_buffer("count_ratio", P.count_bound_ratio(counts, self.head))
        else:
            self.count_ratio = None

    def _warn_one_sided(self, tau: object) -> None:
        if self.head in (0, self.num_classes):
            side = "head (loss minimised)" if self.head else "tail (loss maximised)"
            hint = " (the logit-adjustment scale is lam)" if isinstance(self, LALPLLoss) else ""
            warnings.warn(
                f"tau={tau!r} puts every class in the {side} for split='index': tau is the number of "
                f"head classes (int) or a fraction of C (float){hint}",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )

    def _init_preset(
        self,
        counts,
        epsilon,
        delta_epsilon,
        split,
        tau,
        bound,
        steps,
        head_scale,
        iterations,
        defaults,
    ) -> None:
        if (epsilon, delta_epsilon, split, bound) != (
            0.1,
            0.0,
            "mean",
            "qbar",
        ) or not self.normalize_step:
            raise ValueError(
                f"preset {self.preset!r} fixes the perturbation: leave epsilon, delta_epsilon, split, bound "
                "and normalize_step at their defaults (set alpha, steps, tau, head_scale, iterations)"
            )
        self.split, self.bound = "mean", "qbar"
        steps = defaults["steps"] if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if steps > P.MAX_STEPS:
            raise ValueError(f"steps must be <= {P.MAX_STEPS}, got {steps!r}")
        if self.preset in ("authors_balanced_varied", "authors_balanced_varied_isda"):
            P.authors_varied_schedule(steps, self._varied_variant())  # too few steps: ValueError
        self.steps = steps
        if self.preset != "authors_longtail":
            for name, value in (
                ("tau", tau),
                ("head_scale", head_scale),
                ("iterations", iterations),
            ):
                if value is not None:
                    raise ValueError(
                        f"{name} must be None for preset {self.preset!r} (it uses the batch mean), got {value!r}"
                    )
            return
        if counts is None or bool((counts <= 0).any()):
            raise ValueError("preset 'authors_longtail' needs class_counts > 0 for every class")
        if tau is None:
            raise ValueError(
                "preset 'authors_longtail' needs tau, the split index (the scripts use 27 or 40 for "
                "CIFAR-100-LT, 4 for CIFAR-10-LT)"
            )
        self.head = P.index_threshold(tau, self.num_classes)
        self.head_scale = P.check_positive(
            defaults["head_scale"] if head_scale is None else head_scale, "head_scale"
        )
        iterations = self.num_classes if iterations is None else iterations
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
        if iterations > P.MAX_STEPS:
            raise ValueError(f"iterations must be <= {P.MAX_STEPS}, got {iterations!r}")
        ks, signs = P.authors_longtail_schedule(
            counts, self.head, steps=steps, head_scale=self.head_scale
        )
        if max(ks) >= iterations:
            raise ValueError(
                f"iterations={iterations} is too short for the step schedule of steps={steps} (largest "
                f"step index {max(ks)}): give iterations > {max(ks)} or fewer steps (iterations defaults "
                "to C; the scripts use steps=50 for C = 100 and steps=10, head_scale=0.6 for C = 10)"
            )
        # Snapshots after the last one any class takes are never used: stop there (same result).
        self.iterations = iterations if min(ks) < 0 else max(ks) + 1
        self.register_buffer("preset_steps", torch.tensor(ks, dtype=torch.long))
        self.register_buffer("preset_sign", torch.tensor(signs))

    # ---------------------------------------------------------------- forward
    def _check_logits(self, logits: Tensor) -> None:
        P.check_logits(logits)
        self._check_columns(logits)

    def _check_columns(self, logits: Tensor) -> None:
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have num_classes={self.num_classes} columns, got shape {tuple(logits.shape)}"
            )

    def _check(self, logits: Tensor, target: Tensor) -> Tensor:
        """Class-index targets checked (as int64); raises as before for any other kind."""
        self._check_logits(logits)
        return P.check_single_label_target(
            target, logits, check_finite_logits=True, ignore_index=self.ignore_index
        )

    def _targets(self, logits: Tensor, target: Tensor) -> tuple[Tensor, bool, bool]:
        """``(target, soft, maybe_ignored)`` with the checks of ``validate``."""
        _check_target_kind(target)
        if _is_soft(target):
            if self.validate:
                self._check_logits(logits)
                target = P.check_probability_target(target, logits, check_finite_logits=True)
            return target.to(_work_dtype(logits).dtype), True, False
        if self.validate:
            self._check_logits(logits)
            target, ignored = P.check_index_target(
                target, logits, check_finite_logits=True, ignore_index=self.ignore_index
            )
            return target, False, ignored
        return target.long(), False, self.ignore_index is not None

    def _delta(
        self,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        if self.preset is None:
            if self.fused_loop and not self._fused_warned:
                self._warn_fused_fallback(logits)
            return P.single_label_perturbation(
                logits,
                target,
                alpha=self.alpha,
                epsilon=self.epsilon,
                delta_epsilon=self.delta_epsilon,
                split=self.split,
                tau=self.tau,
                rank=getattr(self, "rank", None),
                head=self.head,
                bound=self.bound,
                count_ratio=self.count_ratio,
                normalize_step=self.normalize_step,
                weight=weight,
                keep=keep,
                check=False,  # checked when the loss was built
                fused=self.fused_loop,
            ).delta
        if keep is not None:  # the authors' scripts know no weights: drop the ignored rows
            rows = keep.nonzero().squeeze(1)
            delta = torch.zeros_like(logits)
            return delta.index_copy(0, rows, self._delta(logits[rows], target[rows]))
        if self.preset == "authors_balanced_fixed":
            return P.authors_balanced_fixed_perturbation(
                logits, target, alpha=self.alpha, steps=self.steps
            )
        if self.preset == "authors_longtail":
            return P.authors_longtail_perturbation(
                logits,
                target,
                self.preset_steps,
                self.preset_sign,
                alpha=self.alpha,
                iterations=self.iterations,
            )
        return P.authors_balanced_varied_perturbation(
            logits, target, alpha=self.alpha, steps=self.steps, variant=self._varied_variant()
        )

    def _warn_fused_fallback(self, logits: Tensor) -> None:
        """Warn once when ``fused_loop=True`` cannot run its kernel where one was expected (see
        :func:`~lpl_train.perturbation_fused.fused_loop_fallback`)."""
        why = fused_loop_fallback(logits)
        if why is not None:
            self._fused_warned = True
            warnings.warn(
                f"fused_loop=True but the kernel cannot run: {why}; the default inner loop runs instead "
                "(same values to rounding, more launches)",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )

    def _varied_variant(self) -> str:
        """The authors' script a varied-bound preset follows (``train_lpl.py`` or ``train_var.py``)."""
        return "train_lpl" if self.preset == "authors_balanced_varied" else "train_var"

    def adjust(self, logits: Tensor) -> Tensor:
        """Logits before the perturbation (identity here; LA+LPL adds λ·log π)."""
        return logits

    def _perturbed(
        self,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        work = self.adjust(_work_dtype(logits))
        if self.differentiable:
            delta = self._delta(work, target, weight, keep)
        else:
            with torch.no_grad():
                delta = self._delta(work.detach(), target, weight, keep)
        self.last_delta = delta.detach()  # δ of the last call (N, C), for monitoring ‖δ_c‖
        return work + delta

    def _index_perturbed(self, logits: Tensor, target: Tensor, maybe_ignored: bool) -> Tensor:
        if maybe_ignored and self.preset is not None and P._can_read_back(target):
            # the presets drop ignored rows (a host read); look whether there are any first
            maybe_ignored = bool((target == self.ignore_index).any())
        if not maybe_ignored:
            return self._perturbed(logits, target)
        # Ignored rows keep a placeholder class and mass 0: they neither count nor move any class.
        keep = target != self.ignore_index
        return self._perturbed(logits, torch.where(keep, target, 0), keep=keep)

    def perturb(self, logits: Tensor, target: Tensor) -> Tensor:
        """The perturbed logits u_i + δ_{y_i} (N, C) on which the loss is the cross-entropy (class-index
        targets; the training-mode perturbation whatever the module's mode; s·u + δ with ``scale``)."""
        logits = self._scaled(logits)
        target, soft, maybe_ignored = self._targets(logits, target)
        if soft:
            raise ValueError(
                "perturb() takes class-index targets (N,); with class probabilities each (sample, "
                "class) pair has its own perturbed logits (call the loss itself)"
            )
        return self._index_perturbed(logits, target, maybe_ignored)

    def _cross_entropy(
        self, z: Tensor, target: Tensor, reduction: str | None = None, ignore: bool = True
    ) -> Tensor:
        """``ignore``: rows labelled ``ignore_index`` count for nothing; probability targets have no ignored
        rows (their (sample, class) pairs are class indices, and a class equal to ``ignore_index`` keeps
        its pairs), so their calls pass ``ignore=False`` or a floating target."""
        # the logits' device and dtype: like the class counts, the weights follow the logits
        weight = None if self.weight is None else self.weight.to(z)
        ignored = ignore and self.ignore_index is not None and not target.is_floating_point()
        return F.cross_entropy(
            z,
            target,
            weight=weight,
            ignore_index=self.ignore_index if ignored else -100,
            reduction=self.reduction if reduction is None else reduction,
            label_smoothing=self.label_smoothing,
        )

    def _soft_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.preset is not None:
            raise ValueError(
                f"preset {self.preset!r} takes class-index targets (N,); class probabilities (N, C) are "
                "supported without a preset"
            )
        rows, cols = (target > 0).nonzero(as_tuple=True)
        n = logits.shape[0]
        if (
            not getattr(self, "_dense_warned", False)
            and P._can_read_back(target)
            and rows.shape[0] > _DENSE_PAIRS * n
        ):
            self._dense_warned = True
            warnings.warn(
                f"lpl: the probability targets hold {rows.shape[0]} (sample, class) pairs of mass > 0 for "
                f"{n} rows; each pair has its own perturbed logits, so a call costs about "
                f"{rows.shape[0] / n:.0f}x the class-index loss in time and memory. Smoothed targets (e.g. "
                "timm's Mixup with label_smoothing > 0) make every pair non-zero: pass unsmoothed targets "
                "and give the smoothing to the loss (label_smoothing=...), which keeps one or two pairs per "
                "row (warned once)",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        mass = target[rows, cols]
        pair = self._perturbed(logits[rows], cols, mass)
        per_pair = self._cross_entropy(pair, cols, reduction="none", ignore=False)
        per = per_pair.new_zeros(logits.shape[0]).index_add(0, rows, mass * per_pair)
        if self.reduction == "none":
            return per
        return per.sum() if self.reduction == "sum" else per.sum() / logits.shape[0]

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy on the perturbed logits, reduced per ``reduction`` ((N,) for ``"none"``); the
        unperturbed cross-entropy in ``eval()`` mode."""
        return self._forward(logits, target)[0]

    def forward_with_perturbed(
        self, logits: Tensor, target: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward`'s value and the perturbed logits it took the cross-entropy of, detached:
        :meth:`perturb`'s (N, C) result for class-index targets in training mode, ``None`` otherwise (in
        ``eval()`` mode, and with probability targets, whose pairs each have their own). The training
        engine measures the loss variation from them instead of running the loss a second time."""
        return self._forward(logits, target)

    def _forward(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        logits = self._scaled(logits)
        # (not while torch.compile traces, which cannot trace a warning: the eager call warns)
        warn_drw = self.training and self.schedule is not None and not self._epoch_seen
        if warn_drw and not P._compiling():
            self._epoch_seen = True
            warnings.warn(
                f"lpl: drw_epoch={self.drw_epoch} is set but set_epoch(epoch, total_epochs) was never "
                "called, so the DRW weights stay at 1; call loss.set_epoch at the start of every epoch",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        # no rows: nothing to perturb, the cross-entropy of no rows, as torch's
        if _empty_batch(logits, target):
            self._check_columns(logits)
            _check_target_kind(target)
            soft = _is_soft(target)
            if self.validate and target.shape != (logits.shape if soft else logits.shape[:1]):
                want = tuple(logits.shape) if soft else (0,)
                raise ValueError(
                    f"target must have shape {want} to match logits {tuple(logits.shape)}, got "
                    f"{tuple(target.shape)}"
                )
            z = _work_dtype(logits)
            value = self._cross_entropy(z, target.to(z.dtype) if soft else target.long())
            return value, None if soft or not self.training else z.detach()
        target, soft, maybe_ignored = self._targets(logits, target)
        if not self.training:
            return self._cross_entropy(self.adjust(_work_dtype(logits)), target), None
        if soft:
            return self._soft_loss(logits, target), None
        z = self._index_perturbed(logits, target, maybe_ignored)
        return self._cross_entropy(z, target), z.detach()

    def _torch_repr(self) -> str:
        parts = []
        if self.weight is not None and self.schedule is None:
            parts.append(f"weight={[round(float(w), 6) for w in self.weight]}")
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.scale != 1.0:
            parts.append(f"scale={self.scale}")
        if self.drw_epoch is not None:
            parts.append(f"drw_epoch={self.drw_epoch}, drw_beta={self.drw_beta}")
        if not self.validate:
            parts.append("validate=False")
        if self.fused_loop:
            parts.append("fused_loop=True")
        return "".join(", " + p for p in parts)

    def extra_repr(self) -> str:
        if self.preset is not None:
            return (
                f"preset={self.preset!r}, alpha={self.alpha}, steps={self.steps}, "
                f"reduction={self.reduction!r}" + self._torch_repr()
            )
        return (
            f"alpha={self.alpha}, epsilon={self.epsilon}, delta_epsilon={self.delta_epsilon}, "
            f"split={self.split!r}, tau={self.tau if self.head is None else self.head}, bound={self.bound!r}, "
            f"normalize_step={self.normalize_step}, differentiable={self.differentiable}, "
            f"reduction={self.reduction!r}" + self._torch_repr()
        )


# Imported last so that the registry order stays lpl, la_lpl, ml_lpl.
from .lpl_la import LALPLLoss  # noqa: E402
from .lpl_multi_label import (  # noqa: E402
    MultiLabelLPLLoss,
    _bce_elementwise,  # noqa: F401 (re-exported)
    _multi_label_names,  # noqa: F401 (re-exported)
    _reduce,  # noqa: F401 (re-exported)
)
