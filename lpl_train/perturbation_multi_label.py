"""The multi-label perturbation of LPL (paper Sec. III-D, Eqs. 34-41): a closed form, one shift per class,
with no inner loop (the single-label perturbation is :mod:`lpl_train.perturbation`)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["multi_label_logit_shift"]


def multi_label_logit_shift(
    rank: Tensor,
    head: int,
    *,
    epsilon: float,
    delta_epsilon: float = 0.0,
    count_ratio: Tensor | None = None,
) -> Tensor:
    """The multi-label perturbation as a shift to add to the logits, (C,).

    Eq. 41 and the text after it: δ̃_c = S(c − τ)·ε_c, shared by the positive and negative terms of
    class c, which enter Eq. 34 as log(1 + e^{−u + δ̃}) and log(1 + e^{u − δ̃}): the logit becomes
    u_{i,c} − δ̃_c. Head classes (rank < ``head``, S = −1, Eq. 37) get +ε_c (positive loss down,
    negative loss up); tail classes (S = +1, Eq. 38) get −ε_c (positive loss up, negative loss down).
    ε_c = ε + Δε·``count_ratio`` (varied) or ε (fixed, ``delta_epsilon == 0``).
    """
    s = torch.where(rank < head, -1.0, 1.0).double()
    if delta_epsilon == 0.0:
        eps = torch.full_like(s, epsilon)
    else:
        if count_ratio is None:
            raise ValueError("varied multi-label bounds need count_ratio")
        eps = epsilon + delta_epsilon * count_ratio.double()
    return -(s * eps)
