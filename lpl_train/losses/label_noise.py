"""Single-label baselines for noisy labels, the "robust loss" rows of Tables I-II: DisturbLabel
(cross-entropy on randomly disturbed labels) and generalised cross-entropy L_q.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._seeds import derived_seed
from ..validation import check_float, check_int
from ._common import _check_pair, _check_reduction, _process_group_up, _reduce, _ReprMixin
from .registry import register

__all__ = ["DisturbLabelLoss", "GeneralizedCELoss"]


def _process_rank() -> int:
    """This process's rank in the default ``torch.distributed`` process group (0 without one)."""
    return torch.distributed.get_rank() if _process_group_up() else 0


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
    Under ``torch.distributed`` each rank > 0 seeds it with ``(seed, t, rank)``: the ranks disturb their
    rows independently (with one seed each rank's rows would get the same draws).

    Args:
        alpha: noise rate in [0, 1] (default 0.1).
        seed: int seed in [0, 2**64).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    _repr_fields = ("alpha", "seed")
    #: ``torch.compile(fullgraph=True)`` cannot trace it (``train.compile_loss`` refuses it): each step's
    #: labels come from a CPU generator seeded from the step counter, read on the host
    compilable = False

    def __init__(self, alpha: float = 0.1, seed: int = 0, reduction: str = "mean") -> None:
        super().__init__()
        self.alpha = check_float("alpha", alpha, low=0.0, high=1.0)
        self.seed = check_int("seed", seed, minimum=0)
        if self.seed > 2**64 - 1:  # torch generators take seeds below 2**64
            raise ValueError(f"seed must be in [0, {2**64 - 1}], got {seed!r}")
        self.reduction = _check_reduction(reduction)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def disturb(self, target: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The disturbed labels for the current step (does not advance it)."""
        # modulo 2**64 (the generator's seed range): unchanged below it, no overflow for large seeds
        seed = (self.seed * 1_000_003 + int(self.step)) % 2**64
        rank = _process_rank()
        # under DDP every other rank draws its own labels (rank 0 keeps the seed one process uses)
        if rank:
            seed = derived_seed(seed, rank)
        gen = torch.Generator().manual_seed(seed)
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
