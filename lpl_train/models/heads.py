"""Classifier heads shared by the models.

``NormedLinear`` is the cosine classifier that LDAM (Cao et al., 2019) trains with: logits are the cosine
similarity between the L2-normalised feature and each L2-normalised class weight, in [-1, 1]. LDAM's scale
``s`` multiplies them inside the loss, so the head has no bias and no scale of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NormedLinear(nn.Module):
    """Cosine classifier: ``logits = normalize(x) @ normalize(W, dim=0)``.

    Args:
        in_features: feature size.
        out_features: number of classes.

    The weight has shape ``(in_features, out_features)``; it is initialised uniformly in [-1, 1] and each
    column (one class) renormalised to unit length, as in the LDAM reference code. No bias.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        for arg, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            self.weight.copy_(F.normalize(self.weight, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (N, {self.in_features}), got {tuple(x.shape)}")
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
