"""Relative loss variation (l′ − l)/l per class, the quantity of the paper's Figs. 1, 2 and 11.

l is the plain loss on the network's logits u (cross-entropy for single-label, elementwise binary
cross-entropy for multi-label) and l′ the loss that a logit-perturbing method actually trains with on the
same batch: LA (u + log π), LDAM (margins, against the CE of its scaled logits s·u), ISDA (augmented logits), NTR, LC, LPL (u + δ), ... It is given
either as that method's per-sample (N,) / elementwise (N, C) loss, or as its perturbed logits (then l′ is
the plain CE/BCE of those logits).

Per class c the sums of l and l′ over its samples are accumulated over an epoch, and the relative
variation is (Σ l′ − Σ l) / Σ l (the relative change of the class's mean loss, which stays finite when a
single sample has l ≈ 0). Multi-label: the positive terms (y_{i,c} = 1) and negative terms (y_{i,c} = 0)
of each class are accumulated separately, as the "pos" and "neg" curves of Figs. 2 and 11.

Usage over an epoch::

    lv = LossVariation(num_classes)
    for x, y in loader:
        logits = model(x)
        lv.update_with(loss_fn, logits, y)          # or lv.update(logits, y, perturbed_logits=...)
    log["loss_variation"] = lv.compute()            # plain lists/dicts, JSON-serialisable
    lv.reset()
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import perturbation as P

__all__ = ["LossVariation"]


def _measure_dtype(t: Tensor) -> Tensor:
    """l and l′ are computed in the logits' dtype (float64 stays float64); half precision in float32."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class _Sums:
    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.base: Tensor | None = None
        self.perturbed: Tensor | None = None
        self.count: Tensor | None = None

    def add(self, base: Tensor, perturbed: Tensor, weight: Tensor) -> None:
        """Add per-class sums of ``weight * base`` and ``weight * perturbed`` ((C,) each) and counts."""
        if self.base is None:
            z = torch.zeros(self.num_classes, dtype=torch.float64, device=base.device)
            self.base, self.perturbed, self.count = z.clone(), z.clone(), z.clone()
        self.base += base.detach().double()
        self.perturbed += perturbed.detach().double()
        self.count += weight.detach().double()

    def result(self) -> dict[str, list[Any]]:
        if self.base is None:
            none = [None] * self.num_classes
            return {
                "relative_variation": list(none),
                "loss": list(none),
                "perturbed_loss": list(none),
                "count": [0] * self.num_classes,
            }
        base, pert, count = self.base.cpu(), self.perturbed.cpu(), self.count.cpu()
        rel, mean_l, mean_p = [], [], []
        for b, p, n in zip(base.tolist(), pert.tolist(), count.tolist(), strict=True):
            mean_l.append(b / n if n > 0 else None)
            mean_p.append(p / n if n > 0 else None)
            rel.append((p - b) / b if n > 0 and b > 0 else None)
        return {
            "relative_variation": rel,
            "loss": mean_l,
            "perturbed_loss": mean_p,
            "count": [int(round(n)) for n in count.tolist()],
        }


class LossVariation:
    """Accumulates the per-class relative loss variation (l′ − l)/l over an epoch (Figs. 1, 2, 11).

    Args:
        num_classes: C.
        multi_label: targets are (N, C) multi-hot and the reference loss is elementwise BCE; results are
            reported for positive and negative terms separately.
        validate: check the inputs of every update (one host synchronisation each).
    """

    def __init__(self, num_classes: int, multi_label: bool = False, validate: bool = True) -> None:
        self.num_classes = P.check_num_classes(num_classes, minimum=1 if multi_label else 2)
        if not isinstance(multi_label, bool):
            raise TypeError(f"multi_label must be a bool, got {multi_label!r}")
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {validate!r}")
        self.multi_label = multi_label
        self.validate = validate
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated (call at the start of each epoch)."""
        if self.multi_label:
            self._pos = _Sums(self.num_classes)
            self._neg = _Sums(self.num_classes)
        else:
            self._all = _Sums(self.num_classes)

    def _check(
        self,
        logits: Tensor,
        target: Tensor,
        perturbed_loss: Tensor | None,
        perturbed_logits: Tensor | None,
        ignore_index: int | None = None,
    ) -> Tensor:
        if (perturbed_loss is None) == (perturbed_logits is None):
            raise ValueError("give exactly one of perturbed_loss and perturbed_logits")
        P.check_logits(logits, min_classes=1 if self.multi_label else 2)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have num_classes={self.num_classes} columns, got shape {tuple(logits.shape)}"
            )
        if perturbed_logits is not None:
            P.check_logits(perturbed_logits, "perturbed_logits", min_classes=1)
            if perturbed_logits.shape != logits.shape:
                raise ValueError(
                    f"perturbed_logits must have the shape of logits {tuple(logits.shape)}, got "
                    f"{tuple(perturbed_logits.shape)}"
                )
        else:
            want = tuple(logits.shape) if self.multi_label else (logits.shape[0],)
            if not isinstance(perturbed_loss, Tensor):
                raise TypeError(
                    f"perturbed_loss must be a tensor, got {type(perturbed_loss).__name__}"
                )
            if tuple(perturbed_loss.shape) != want:
                raise ValueError(
                    f"perturbed_loss must be the {'elementwise' if self.multi_label else 'per-sample'} loss "
                    f"of shape {want}, got {tuple(perturbed_loss.shape)}"
                )
        if self.multi_label:
            return P.check_multi_label_target(target, logits.float(), soft=False)
        return P.check_single_label_target(target, logits, ignore_index=ignore_index)

    def update(
        self,
        logits: Tensor,
        target: Tensor,
        *,
        perturbed_loss: Tensor | None = None,
        perturbed_logits: Tensor | None = None,
        ignore_index: int | None = None,
    ) -> None:
        """Add one batch: ``logits`` u (N, C), ``target`` labels (N,) or multi-hot (N, C), and exactly one
        of ``perturbed_loss`` (l′ per sample (N,) or elementwise (N, C) for multi-label) or
        ``perturbed_logits`` (N, C). Single-label rows whose label is ``ignore_index`` are left out (as
        the loss leaves them out), without a host synchronisation."""
        if self.validate:
            target = self._check(logits, target, perturbed_loss, perturbed_logits, ignore_index)
        u = _measure_dtype(logits.detach())
        if self.multi_label:
            y = target.to(u.dtype)
            base = F.binary_cross_entropy_with_logits(u, y, reduction="none")
            if perturbed_logits is not None:
                pert = F.binary_cross_entropy_with_logits(
                    perturbed_logits.detach().to(u.dtype), y, reduction="none"
                )
            else:
                pert = perturbed_loss.detach().to(u.dtype)
            pos = (y > 0.5).to(u.dtype)
            neg = 1.0 - pos
            self._pos.add((base * pos).sum(0), (pert * pos).sum(0), pos.sum(0))
            self._neg.add((base * neg).sum(0), (pert * neg).sum(0), neg.sum(0))
            return
        y = target.long()
        # an ignored row's l and l′ are 0 (torch's cross-entropy, and the loss's own value for it); it is
        # added to class 0 with a count of 0
        ignore = -100 if ignore_index is None else ignore_index
        base = F.cross_entropy(u, y, ignore_index=ignore, reduction="none")
        if perturbed_logits is not None:
            pert = F.cross_entropy(
                perturbed_logits.detach().to(u.dtype), y, ignore_index=ignore, reduction="none"
            )
        else:
            pert = perturbed_loss.detach().to(u.dtype)
        if ignore_index is None:
            ones = torch.ones_like(base)
        else:
            kept = y != ignore_index
            y, ones = torch.where(kept, y, 0), kept.to(u.dtype)
        zeros = u.new_zeros(self.num_classes)
        self._all.add(
            zeros.index_add(0, y, base),
            zeros.index_add(0, y, pert),
            zeros.index_add(0, y, ones),
        )

    def update_with(self, loss: nn.Module, logits: Tensor, target: Tensor) -> None:
        """Add one batch using ``loss`` (any loss module of this package with a ``reduction`` attribute) to
        get l′: it is called in training mode with ``reduction="none"`` on ``logits``; its mode, reduction
        and buffers (step counters such as DisturbLabel's) are restored afterwards, so measuring does not
        change training. l and l′ are computed in the logits' dtype (float32 for half precision).

        LDAM (a loss with ``margin_logits`` and a scale ``s``) is compared on its own scale: its logits are
        cosines in [−1, 1] that it multiplies by ``s``, so l is the CE of s·u and l′ the CE of its
        margin-adjusted logits s·(u − m_y·e_y) (Eq. 9), without the DRW weights. Against the CE of the raw
        cosines, the scale alone would make every class's variation close to −100%. LPL and LA + LPL with
        a ``scale`` other than 1, class weights (``weight``, DRW) or ``label_smoothing`` are measured the
        same way: l the CE of s·u, l′ the CE of their perturbed logits (``perturb``), unweighted and
        unsmoothed.

        Feature-level losses (ISDA) are not called on logits: pass their augmented logits to
        :meth:`update` as ``perturbed_logits`` instead.
        """
        if getattr(loss, "needs_features", False):
            raise ValueError(
                "a feature-level loss (needs_features) cannot be called on logits; pass its augmented logits to update(perturbed_logits=...)"
            )
        ignore = _ignore_index(loss, target, self.multi_label)
        # the loss sees what l is computed from: half-precision logits in float32 (a bf16 CE as l′
        # against a float32 CE as l read a variation of about −0.03% for the plain CE itself)
        logits = _measure_dtype(logits.detach())
        margin_logits = getattr(loss, "margin_logits", None)
        if callable(margin_logits) and not self.multi_label:
            with torch.no_grad():
                perturbed = margin_logits(logits, target)
                self.update(float(loss.s) * logits.detach(), target, perturbed_logits=perturbed)
            return
        if _scaled_or_weighted_lpl(loss) and not self.multi_label and target.dim() == 1:
            # LPL / LA + LPL on a cosine head (scale s), with class weights (DRW) or label smoothing: as
            # for LDAM, l is the CE of s·u and l′ the CE of the perturbed logits, both unweighted and
            # unsmoothed, so that the variation is the perturbation's and not the scale's, the
            # re-weighting's or the smoothing's
            with torch.no_grad():
                self._update_scaled(loss, logits, target, loss.perturb(logits, target), ignore)
            return
        if not hasattr(loss, "reduction"):
            raise TypeError(f"loss must have a 'reduction' attribute, got {type(loss).__name__}")
        saved = loss.reduction
        buffers = (
            {n: b.clone() for n, b in loss.named_buffers()} if isinstance(loss, nn.Module) else {}
        )
        was_training = getattr(loss, "training", True)
        loss.reduction = "none"
        try:
            if isinstance(loss, nn.Module):
                loss.train(
                    True
                )  # l′ is the training loss (perturbing losses are plain in eval mode)
            with torch.no_grad():
                value = loss(logits, target)
        finally:
            if isinstance(loss, nn.Module):
                loss.train(was_training)
            loss.reduction = saved
            with torch.no_grad():
                for n, b in loss.named_buffers() if buffers else ():
                    b.copy_(buffers[n])
        self.update(logits, target, perturbed_loss=value, ignore_index=ignore)

    def update_from_perturbed(
        self, loss: nn.Module, logits: Tensor, target: Tensor, perturbed: Tensor
    ) -> None:
        """:meth:`update_with` for an LPL-family loss whose perturbed logits for this batch are known
        already (``loss.forward_with_perturbed``, as the training step computed them): the same l and l′,
        without running the loss a second time. Class-index targets only."""
        if self.multi_label or target.dim() != 1:
            raise ValueError("update_from_perturbed takes single-label class-index targets (N,)")
        if not (
            callable(getattr(loss, "perturb", None)) and callable(getattr(loss, "_scaled", None))
        ):
            raise TypeError(f"loss must be an LPL-family loss, got {type(loss).__name__}")
        if not target.is_floating_point() and target.dtype != torch.long:
            target = target.long()  # (as the loss itself takes int32 labels)
        with torch.no_grad():
            # l the CE of s·u and l′ the unweighted CE of the perturbed logits (scaled or weighted), else
            # l′ the loss itself with reduction="none"
            ignore = _ignore_index(loss, target, self.multi_label)
            if _scaled_or_weighted_lpl(loss):
                self._update_scaled(loss, logits, target, perturbed, ignore)
            else:
                value = loss._cross_entropy(perturbed, target, reduction="none")
                self.update(logits, target, perturbed_loss=value, ignore_index=ignore)

    def _update_scaled(
        self, loss: nn.Module, logits: Tensor, target: Tensor, perturbed: Tensor, ignore: int | None
    ) -> None:
        """A scaled or weighted LPL-family loss's batch: l the CE of s·u, l′ the unweighted CE of its
        perturbed logits."""
        self.update(
            loss._scaled(logits.detach()), target, perturbed_logits=perturbed, ignore_index=ignore
        )

    def compute(self) -> dict[str, Any]:
        """The accumulated result as plain Python data (JSON-serialisable; None where undefined).

        Single-label: ``{"relative_variation", "loss", "perturbed_loss", "count"}``, each a list over
        classes (mean l and l′ per class, number of samples). Multi-label: ``{"pos": {...}, "neg": {...}}``
        with the same keys for positive and negative terms.
        """
        if self.multi_label:
            return {"pos": self._pos.result(), "neg": self._neg.result()}
        return self._all.result()


def _ignore_index(loss: Any, target: Tensor, multi_label: bool) -> int | None:
    """The label a single-label loss leaves out (``ignore_index``, as ``nn.CrossEntropyLoss`` has it), for
    class-index targets; None otherwise."""
    ignore = getattr(loss, "ignore_index", None)
    if multi_label or target.dim() != 1 or target.is_floating_point() or ignore is None:
        return None
    return int(ignore)


def _scaled_or_weighted_lpl(loss: Any) -> bool:
    """An LPL-family loss (``perturb`` and ``_scaled``) whose training loss is not the plain CE of its
    perturbed logits: a ``scale`` other than 1, class weights, or label smoothing."""
    if not (callable(getattr(loss, "perturb", None)) and callable(getattr(loss, "_scaled", None))):
        return False
    return (
        float(getattr(loss, "scale", 1.0)) != 1.0
        or getattr(loss, "weight", None) is not None
        or float(getattr(loss, "label_smoothing", 0.0)) > 0.0
    )
